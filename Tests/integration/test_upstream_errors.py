"""Upstream failures become credproxy's own answers: 502 upstream_connect (refused), 502 upstream_tls
(untrusted or wrong-name certificate), 504 upstream_timeout (request-timeout), and a truncated
upstream response is never passed off as complete."""

from __future__ import annotations

import re
import time

import pytest

from harness import secret_values as sv
from harness.rawhttp import RawConnection, ResponseError, get_via_proxy

CONFIG = """\
listen 127.0.0.1:0
ca-file {ca}
connect-timeout 3s
request-timeout 30s

route localhost:{closed_port} {
  auth bearer env:{env_bearer}
}
route localhost:{untrusted_port} {
  auth bearer env:{env_bearer}
}
route wrongname.itest.invalid:8443 {
  connect-to 127.0.0.1:{upstream_port}
  auth bearer env:{env_bearer}
}
route localhost:{upstream_port}/quick {
  request-timeout 1s
  auth bearer env:{env_bearer}
}
route localhost:{upstream_port} {
  auth none
}
"""

# No ca-file: the test CA is not trusted, so the main upstream's certificate must be refused.
NO_CA_CONFIG = """\
listen 127.0.0.1:0
route localhost:{upstream_port} {
  auth bearer env:{env_bearer}
}
"""

GLOBAL_TIMEOUT_CONFIG = """\
listen 127.0.0.1:0
ca-file {ca}
request-timeout 1s
route localhost:{upstream_port} {
  auth none
}
"""


@pytest.fixture(scope="module")
def px(module_proxy_factory):
    return module_proxy_factory(CONFIG, name="upstream-errors")


def assert_proxy_error(resp, status: int, code: str):
    assert resp.status == status, resp
    assert resp.error_code == code, resp
    assert (resp.header("Content-Type") or "").startswith("text/plain"), resp
    text = resp.body.decode("utf-8", "replace")
    assert text.strip() and "\n" not in text.strip(), f"not one line: {text!r}"
    assert not sv.find_leaks(text + resp.raw_head.decode("latin-1")), "a secret is in the error"
    return text


def test_connection_refused_502_upstream_connect(px, closed_port):
    r = get_via_proxy(px.port, f"http://localhost:{closed_port}/echo/x")
    text = assert_proxy_error(r, 502, "upstream_connect")
    assert str(closed_port) in text, f"the error does not name the upstream: {text!r}"
    assert re.search(r"connect|refused", text, re.I), f"no connection error text: {text!r}"


def test_untrusted_certificate_502_upstream_tls(px, untrusted_upstream, token):
    r = get_via_proxy(px.port, untrusted_upstream.url(f"/echo/{token}"))
    assert_proxy_error(r, 502, "upstream_tls")
    assert untrusted_upstream.requests_matching(token) == [], "a request went over an untrusted TLS session"


def test_certificate_name_mismatch_502_upstream_tls(px, upstream, token):
    r = get_via_proxy(px.port, f"http://wrongname.itest.invalid:8443/echo/{token}")
    assert_proxy_error(r, 502, "upstream_tls")
    assert upstream.requests_matching(token) == []


def test_no_ca_file_means_test_ca_untrusted(proxy_factory, upstream, token):
    p = proxy_factory(NO_CA_CONFIG)
    r = get_via_proxy(p.port, upstream.url(f"/echo/{token}"))
    assert_proxy_error(r, 502, "upstream_tls")
    assert upstream.requests_matching(token) == []


@pytest.mark.timeout(30)
def test_route_request_timeout_504(px, upstream, token):
    start = time.monotonic()
    r = get_via_proxy(px.port, upstream.url(f"/quick/hang?id={token}"), timeout=15)
    elapsed = time.monotonic() - start
    assert_proxy_error(r, 504, "upstream_timeout")
    assert 0.8 <= elapsed < 5, f"504 after {elapsed:.2f}s with request-timeout 1s"
    assert upstream.wait_event("hang_disconnect", token, timeout=5), \
        "the timed-out upstream transfer was not closed"


@pytest.mark.timeout(30)
def test_global_request_timeout_504(proxy_factory, upstream, token):
    p = proxy_factory(GLOBAL_TIMEOUT_CONFIG)
    start = time.monotonic()
    r = get_via_proxy(p.port, upstream.url(f"/hang?id={token}"), timeout=15)
    assert_proxy_error(r, 504, "upstream_timeout")
    assert time.monotonic() - start < 5


@pytest.mark.timeout(30)
def test_truncated_upstream_response_not_passed_off_as_complete(px, upstream, token):
    with RawConnection(px.port, timeout=10) as c:
        c.send_request("GET", upstream.url(f"/truncate?id={token}"))
        try:
            resp = c.read_response(timeout=10)
        except ResponseError:
            return  # headers went out, then the connection was cut: the client can tell
        # Otherwise the proxy must have answered with an error, not a short 200.
        assert resp.status in (502, 504), resp
        assert resp.error_code, resp


def test_proxy_healthy_after_upstream_errors(px, upstream, token):
    with RawConnection(px.port) as c:
        for i in range(3):
            r = c.request("GET", upstream.url(f"/echo/{token}/{i}"))
            assert r.status == 200, r


def test_error_keeps_client_connection_usable(px, upstream, closed_port, token):
    """A 502 is a complete answer: the caller's keep-alive connection may go on."""
    with RawConnection(px.port) as c:
        r = c.request("GET", f"http://localhost:{closed_port}/x")
        assert r.status == 502
        if any(v.lower() == "close" for v in r.header_all("Connection")):
            assert c.wait_closed(5)
            return
        r = c.request("GET", upstream.url(f"/echo/{token}"))
        assert r.status == 200, r
