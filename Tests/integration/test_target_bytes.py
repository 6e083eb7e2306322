"""Raw bytes >= 0x80 in a request target (curl sends ``http://h/café`` as raw UTF-8) are accepted
in the path and query, as nginx and squid do, and forwarded percent-encoded; never in the host."""

from __future__ import annotations

import pytest

from harness.rawhttp import RawConnection
from policy_support import curl

CONFIG = """\
listen 127.0.0.1:0
ca-file {ca}

route localhost:{upstream_port} {
  auth none
}
"""


@pytest.fixture(scope="module")
def px(module_proxy_factory):
    return module_proxy_factory(CONFIG, name="target-bytes")


def test_curl_raw_utf8_path_reaches_upstream_percent_encoded(px, upstream, token):
    r = curl("-x", f"http://127.0.0.1:{px.port}",
             f"http://localhost:{upstream.port}/{token}/caf\u00e9/echo?q=\u00fc")
    assert r.status == 200, r
    seen = upstream.requests_matching(token)
    assert seen and seen[-1].target == f"/{token}/caf%C3%A9/echo?q=%C3%BC", seen[-1].target


def test_raw_socket_high_bytes_are_encoded(px, upstream, token):
    with RawConnection(px.port) as c:
        c.sock.sendall(
            b"GET http://localhost:%d/%s/a\xff\x80/echo HTTP/1.1\r\nHost: localhost:%d\r\n"
            b"Connection: close\r\n\r\n" % (upstream.port, token.encode(), upstream.port))
        resp = c.read_head(10)
    assert resp.status == 200, resp
    seen = upstream.requests_matching(token)
    assert seen and seen[-1].target == f"/{token}/a%FF%80/echo", seen[-1].target


@pytest.mark.parametrize("request_line", [
    b"GET http://caf\xc3\xa9.example/ HTTP/1.1",
    b"GET /caf\xc3\xa9\x7f HTTP/1.1",
    b"GET /caf\xc3\xa9\x01 HTTP/1.1",
])
def test_high_bytes_never_in_host_and_controls_stay_refused(px, upstream, request_line):
    with RawConnection(px.port) as c:
        c.sock.sendall(request_line + b"\r\nHost: localhost:%d\r\n\r\n" % upstream.port)
        resp = c.read_head(10)
    assert resp.status == 400, resp
