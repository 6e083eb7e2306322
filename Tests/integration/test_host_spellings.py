"""A `deny` route for an IPv4 address matches that address in every spelling the proxy could
dial or translate to it: decimal, octal, hex, short, IPv4-mapped, NAT64 (`64:ff9b::/96`) and 6to4
(`2002::/16`). The router and the SSRF classifier read hosts with one canonicaliser."""

from __future__ import annotations

import pytest

from harness.rawhttp import get_via_proxy

CONFIG = """\
listen 127.0.0.1:0
ca-file {ca}
connect-timeout 2s
route 127.0.0.1:{upstream_port}/secret {
  deny
}
route * {
  auth none
  allow-private
}
"""


@pytest.fixture(scope="module")
def px(module_proxy_factory):
    return module_proxy_factory(CONFIG, name="host-spellings")


@pytest.mark.parametrize("host", [
    "127.0.0.1", "2130706433", "127.1", "0x7f.0.0.1", "0177.0.0.1", "[::ffff:127.0.0.1]",
    "[64:ff9b::7f00:1]", "[64:ff9b::127.0.0.1]", "[2002:7f00:1::]", "[2002:7f00:0001:5::1]",
])
def test_ipv4_deny_route_matches_every_spelling(px, upstream, token, host):
    r = get_via_proxy(px.port, f"http://{host}:{upstream.port}/secret/{token}/echo")
    assert r.status in (400, 403), r
    if r.status == 403:
        assert r.error_code == "denied", r
    assert not upstream.requests_matching(token), "a denied path reached the upstream"


def test_other_paths_on_the_ipv4_host_are_routed(px, upstream, token):
    r = get_via_proxy(px.port, f"http://127.0.0.1:{upstream.port}/open/{token}/echo")
    assert r.status == 200, r
