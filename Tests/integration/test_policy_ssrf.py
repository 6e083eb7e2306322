"""SSRF rules on the dialled address: loopback, link-local, private and unspecified addresses
are refused (403 `blocked_address`) after DNS, whatever the spelling of the host, unless the
route names that host exactly, uses `connect-to`, or says `allow-private`. The same for CONNECT.

Targets use the live upstream's port wherever the address is loopback, so a proxy that let one
through would reach a real server (and the test would see the request arrive)."""

from __future__ import annotations

import pytest

from harness.rawhttp import RawConnection
from policy_support import (  # noqa: F401 - fixture
    assert_refused,
    connect_tunnel,
    fetch,
    policy_secrets,
    tls_over,
)

pytestmark = pytest.mark.timeout(60)

OPEN_CONF = """\
listen 127.0.0.1:0
ca-file {ca}
connect-timeout 2s
request-timeout 10s
route * {
  auth none
  tunnel
}
"""


@pytest.fixture(scope="module")
def open_px(module_proxy_factory):
    return module_proxy_factory(OPEN_CONF, name="wildcard")


# (host as written in the URL, what it is). {up} is the live upstream's port.
DENIED_HOSTS = [
    ("169.254.169.254", "link-local metadata address"),
    ("127.0.0.1", "loopback"),
    ("2130706433", "loopback as one decimal number"),
    ("0x7f.1", "loopback in hex, short form"),
    ("0x7f000001", "loopback as one hex number"),
    ("0177.0.0.1", "loopback in octal"),
    ("127.1", "loopback, short form"),
    ("127.0.0.2", "loopback, not .1"),
    ("[::1]", "IPv6 loopback"),
    ("[0:0:0:0:0:0:0:1]", "IPv6 loopback, long form"),
    ("[::ffff:127.0.0.1]", "IPv4-mapped loopback"),
    ("localhost", "a name resolving to loopback"),
    ("LocalHost.", "the same name, other case, trailing dot"),
    ("0.0.0.0", "unspecified"),
    ("0", "unspecified, short form"),
    ("[::]", "IPv6 unspecified"),
    ("10.0.0.1", "private 10/8"),
    ("172.16.5.4", "private 172.16/12"),
    ("192.168.1.1", "private 192.168/16"),
    ("[fd00::1]", "IPv6 unique local"),
    ("[fe80::1]", "IPv6 link-local"),
]


def _ok_refusal(r, host: str) -> None:
    if r.error_code == "blocked_address":
        assert r.status == 403, r
        return
    # A spelling the request parser refuses outright is fine too.
    assert r.status in (400, 403) and r.error_code in ("bad_request", "no_route"), \
        f"{host}: expected 403 blocked_address, got {r!r}"


@pytest.mark.parametrize("host, what", DENIED_HOSTS, ids=[h for h, _ in DENIED_HOSTS])
def test_denied_by_default(open_px, upstream, token, host, what):
    before = upstream.connection_count
    r = fetch(open_px, f"http://{host}:{upstream.port}/echo/{token}", timeout=10)
    _ok_refusal(r, host)
    assert upstream.requests_matching(token) == [], f"{what}: the request reached the upstream"
    assert upstream.connection_count == before, f"{what}: the proxy connected to the upstream"


@pytest.mark.parametrize("url", [
    "http://169.254.169.254/",
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "http://2130706433/",
    "http://0x7f.1/",
    "http://0177.0.0.1/",
    "http://127.1/",
    "http://[::1]/",
    "http://localhost/",
])
def test_denied_default_ports(open_px, url):
    r = fetch(open_px, url, timeout=10)
    _ok_refusal(r, url)


def test_denied_origin_form_with_host_header(open_px, upstream, token):
    for host in ("2130706433", "0x7f.1", "[::1]", "localhost"):
        with RawConnection(open_px.port, timeout=10) as c:
            r = c.request("GET", f"/echo/{token}", [("Host", f"{host}:{upstream.port}")])
        _ok_refusal(r, host)
    assert upstream.requests_matching(token) == []


def test_blocked_body_names_address_class_not_secrets(open_px):
    r = fetch(open_px, "http://169.254.169.254/", timeout=10)
    assert_refused(r, 403, "blocked_address")
    assert "169.254.169.254" in r.text, r


@pytest.mark.parametrize("host", ["127.0.0.1", "2130706433", "0x7f.1", "[::1]", "localhost",
                                  "169.254.169.254", "10.0.0.1"])
def test_connect_denied_by_default(open_px, upstream, host):
    port = 443 if host.startswith(("169.", "10.")) else upstream.port
    before = upstream.connection_count
    conn, resp = connect_tunnel(open_px.port, f"{host}:{port}")
    conn.close()
    assert resp.status in (400, 403), resp
    if resp.status == 403:
        assert resp.error_code == "blocked_address", resp
    assert upstream.connection_count == before, f"CONNECT {host} reached the upstream"


def test_public_looking_name_is_not_trusted_by_default(open_px, upstream, token):
    """A name with no route that names it exactly is checked after DNS: `localhost` via `*`."""
    r = fetch(open_px, f"http://localhost:{upstream.port}/echo/{token}")
    assert_refused(r, 403, "blocked_address")


# -- allowed when the operator says so ----------------------------------------------------------

EXPLICIT_CONF = """\
listen 127.0.0.1:0
ca-file {ca}
connect-timeout 2s
request-timeout 10s
route 127.0.0.1:{upstream_port} {
  auth none
  tunnel
}
route localhost:{upstream_port} {
  auth none
  tunnel
}
route upstream.itest.invalid:8443 {
  connect-to 127.0.0.1:{upstream_port}
}
route * {
  auth none
  tunnel
}
"""


@pytest.fixture(scope="module")
def explicit_px(module_proxy_factory):
    return module_proxy_factory(EXPLICIT_CONF, name="explicit")


def test_exact_ip_route_allows_loopback(explicit_px, upstream, token):
    r = fetch(explicit_px, f"http://127.0.0.1:{upstream.port}/echo/{token}")
    assert r.status == 200, f"{r!r}\n{explicit_px.stderr_text()[-1500:]}"
    assert len(upstream.requests_matching(token)) == 1


@pytest.mark.parametrize("host", ["2130706433", "0x7f.1", "0177.0.0.1", "127.1"])
def test_exact_ip_route_and_alternate_spellings(explicit_px, open_px, upstream, token, host):
    """An alternate spelling of 127.0.0.1 is either normalised (and then the exact route takes
    it: 200) or refused by the request parser (400 everywhere); never a 403 blocked_address on the
    exact route, never a 5xx."""
    r = fetch(explicit_px, f"http://{host}:{upstream.port}/echo/{token}")
    if r.status == 400:
        assert r.error_code == "bad_request", r
        again = fetch(open_px, f"http://{host}:{upstream.port}/echo/{token}")
        assert again.status == 400, f"{host}: refused by the exact route's proxy but {again!r} on `*`"
        assert upstream.requests_matching(token) == []
    else:
        assert r.status == 200, f"{host}: {r!r}"
        assert len(upstream.requests_matching(token)) == 1


def test_exact_name_route_allows_loopback(explicit_px, upstream, token):
    r = fetch(explicit_px, f"http://localhost:{upstream.port}/echo/{token}")
    assert r.status == 200, r


def test_exact_route_is_per_port(explicit_px, upstream, plain_upstream, token):
    # The exact routes name the upstream's port; another loopback port falls to `*`: blocked.
    r = fetch(explicit_px, f"http://127.0.0.1:{plain_upstream.port}/echo/{token}")
    assert_refused(r, 403, "blocked_address")
    assert plain_upstream.requests_matching(token) == []


def test_connect_to_allows_private_address(explicit_px, upstream, token):
    r = fetch(explicit_px, f"http://upstream.itest.invalid:8443/echo/{token}")
    assert r.status == 200, r
    assert r.json()["sni"] == "upstream.itest.invalid"


def test_connect_exact_routes_allowed(explicit_px, upstream, pki, token):
    for authority in (f"localhost:{upstream.port}", f"127.0.0.1:{upstream.port}"):
        conn, resp = connect_tunnel(explicit_px.port, authority)
        with conn:
            assert resp.status == 200, (authority, resp)
            tls_over(conn, pki.client_context())
            r = conn.request("GET", f"/echo/{token}", [("Host", authority), ("Connection", "close")])
            assert r.status == 200, r
    conn, resp = connect_tunnel(explicit_px.port, f"[::1]:{upstream.port}")
    conn.close()
    assert_refused(resp, 403, "blocked_address")


ALLOW_PRIVATE_CONF = """\
listen 127.0.0.1:0
ca-file {ca}
connect-timeout 2s
request-timeout 10s
route * {
  auth none
  allow-private
  tunnel
}
"""


def test_allow_private_route(proxy_factory, upstream, pki, token):
    px = proxy_factory(ALLOW_PRIVATE_CONF)
    for i, host in enumerate(("localhost", "127.0.0.1", "LOCALHOST.")):
        r = fetch(px, f"http://{host}:{upstream.port}/echo/{token}/{i}")
        assert r.status == 200, f"{host}: {r!r}"
    conn, resp = connect_tunnel(px.port, f"localhost:{upstream.port}")
    with conn:
        assert resp.status == 200, resp
        tls_over(conn, pki.client_context())
        r = conn.request("GET", f"/echo/{token}/tunnel", [("Host", "localhost"), ("Connection", "close")])
        assert r.status == 200
    assert len(upstream.requests_matching(token)) == 4
    # Private addresses other than the upstream are dialled too (nothing listens: 502, not 403).
    r = fetch(px, f"http://[::1]:{upstream.port}/echo/{token}/v6", timeout=10)
    assert r.status == 502 and r.error_code == "upstream_connect", r
