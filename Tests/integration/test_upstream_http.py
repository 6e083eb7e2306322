"""`upstream-http 1.1|2|auto`: which HTTP version a route offers its upstream, seen from the upstream's
side of the TLS handshake (the ALPN protocol it selected), and what `explain` says about it.

The upstream here offers `h2` before `http/1.1` and selects the first of its own list that the
client offers, so the selected protocol tells what credproxy offered. It speaks only HTTP/1.1: a
route that negotiates h2 with it fails (502), which is the point: the version really changes."""

from __future__ import annotations

import re

import pytest

from harness.rawhttp import get_via_proxy
from harness.upstream import UpstreamServer

CONFIG = """\
listen 127.0.0.1:0
ca-file {ca}
connect-timeout 5s
route localhost:{h2_port}/v11 {
  upstream-http 1.1
  auth bearer env:{env_bearer}
}
route localhost:{h2_port}/v2 {
  upstream-http 2
  auth bearer env:{env_bearer}
}
route localhost:{h2_port}/auto {
  upstream-http auto
  auth bearer env:{env_bearer}
}
route localhost:{h2_port} {
  auth bearer env:{env_bearer}
}
"""


@pytest.fixture(scope="module")
def h2_upstream(pki):
    server = UpstreamServer("alpn-h2-first", pki.server.server_context(alpn=("h2", "http/1.1"))).start()
    yield server
    server.stop()


def config(upstream: UpstreamServer) -> str:
    return CONFIG.replace("{h2_port}", str(upstream.port))


@pytest.fixture
def px(proxy_factory, h2_upstream):
    return proxy_factory(config(h2_upstream))


def selected_alpn(upstream: UpstreamServer, since: int) -> list:
    return [e.info.get("alpn") for e in upstream.find_events("connect")[since:]]


def test_http11_route_offers_only_http11(px, h2_upstream, token):
    r = get_via_proxy(px.port, f"http://localhost:{h2_upstream.port}/v11/echo/{token}")
    assert r.status == 200, r
    [rec] = h2_upstream.requests_matching(token)
    assert rec.alpn == "http/1.1"


@pytest.mark.parametrize("prefix", ["v2", "auto"])
def test_h2_and_auto_routes_negotiate_h2(px, h2_upstream, token, prefix):
    before = len(h2_upstream.find_events("connect"))
    r = get_via_proxy(px.port, f"http://localhost:{h2_upstream.port}/{prefix}/echo/{token}")
    # The upstream selected h2 and then could not speak it: the route really offered h2.
    assert r.status == 502, r
    assert r.error_code == "upstream_protocol", r
    assert "h2" in selected_alpn(h2_upstream, before), h2_upstream.find_events("connect")[before:]
    assert not h2_upstream.requests_matching(token)


def test_default_is_what_explain_says(px, proxy_factory, cli, h2_upstream, token):
    path = proxy_factory.config(config(h2_upstream))
    r = cli("explain", f"http://localhost:{h2_upstream.port}/other", "--config", str(path))
    assert r.returncode == 0, r.stderr
    m = re.search(r"upstream-http (1\.1|2|auto): ", r.stdout)
    assert m, r.stdout
    before = len(h2_upstream.find_events("connect"))
    resp = get_via_proxy(px.port, f"http://localhost:{h2_upstream.port}/other/echo/{token}")
    if m.group(1) == "1.1":
        assert resp.status == 200, resp
        assert [rec.alpn for rec in h2_upstream.requests_matching(token)] == ["http/1.1"]
    else:
        assert resp.status == 502, resp
        assert "h2" in selected_alpn(h2_upstream, before)


def test_check_rejects_an_unknown_version(proxy_factory, cli, h2_upstream):
    path = proxy_factory.config(config(h2_upstream).replace("upstream-http 2", "upstream-http 3"))
    r = cli("check", "--config", str(path))
    assert r.returncode != 0
    assert re.search(r'proxy\.conf:\d+:\d+: invalid upstream-http "3"; expected 1\.1, 2 or auto', r.stderr), r.stderr
