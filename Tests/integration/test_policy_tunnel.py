"""CONNECT tunnels (`tunnel` routes): allowed end to end with the caller's own TLS and nothing
injected; refused with 403 `tunnel_denied` before a byte is relayed; clients identify for
CONNECT too; `curl -p` through the proxy; and a TLS listener (`listen … tls CERT KEY`) used as
`curl --proxy https://…`."""

from __future__ import annotations

import pytest

from harness import secret_values
from harness.rawhttp import RawConnection
from policy_support import (  # noqa: F401 - fixture
    ALICE_PASSWORD,
    BOB_TOKEN,
    POLICY_ENV,
    assert_refused,
    basic,
    bearer,
    connect_tunnel,
    curl,
    fetch,
    header_values,
    policy_secrets,
    tls_over,
)

pytestmark = pytest.mark.timeout(60)

# Route 1 is a credential route with a path prefix (never matches CONNECT); route 2 allows
# tunnels to the upstream by name; route 3 names 127.0.0.1 and the plain upstream without `tunnel`.
CONF = """\
listen 127.0.0.1:0
ca-file {ca}
connect-timeout 5s
request-timeout 30s
route localhost:{upstream_port}/api {
  auth bearer env:{env_bearer}
}
route localhost:{upstream_port} {
  tunnel
}
route 127.0.0.1:{upstream_port} {
  auth none
}
route localhost:{plain_port} {
  upstream http
}
"""


@pytest.fixture(scope="module")
def px(module_proxy_factory):
    return module_proxy_factory(CONF, name="tunnel")


def tunnel_get(px, upstream, pki, path: str, headers=()) -> tuple[dict, list]:
    conn, resp = connect_tunnel(px.port, f"localhost:{upstream.port}", headers)
    with conn:
        assert resp.status == 200, resp
        assert resp.header("Content-Length") is None and resp.header("Transfer-Encoding") is None, resp
        tls_over(conn, pki.client_context())
        r = conn.request("GET", path, [("Host", f"localhost:{upstream.port}"),
                                       ("Connection", "close")])
    assert r.status == 200, r
    return r.json(), r.headers


def test_connect_allowed_relays_tls_end_to_end(px, upstream, pki, token):
    echo, _ = tunnel_get(px, upstream, pki, f"/api/echo/{token}")
    assert echo["upstream"] == "main"
    assert echo["target"] == f"/api/echo/{token}"
    assert echo["sni"] == "localhost", "the TLS inside the tunnel is the client's own"
    hs = [tuple(h) for h in echo["headers"]]
    # /api has a bearer route, but nothing is injected into a tunnel.
    assert header_values(hs, "Authorization") == []
    assert header_values(hs, "Proxy-Authorization") == []
    assert [n for n, _ in hs] == ["Host", "Connection"], hs


def test_connect_keeps_several_requests_on_one_tunnel(px, upstream, pki, token):
    conn, resp = connect_tunnel(px.port, f"localhost:{upstream.port}")
    with conn:
        assert resp.status == 200, resp
        tls_over(conn, pki.client_context())
        for i in range(3):
            r = conn.request("POST", f"/echo/{token}/{i}", [("Host", "localhost")], body=b"x" * 1000 * (i + 1))
            assert r.status == 200, r
            assert r.json()["body_length"] == 1000 * (i + 1)
    conns = {r.conn_id for r in upstream.requests_matching(token)}
    assert len(conns) == 1, "one tunnel is one upstream connection"


@pytest.mark.parametrize("authority, why", [
    ("127.0.0.1:{up}", "route without tunnel"),
    ("localhost:{plain}", "plain route without tunnel"),
    ("localhost:{closed}", "no route for that port"),
    ("elsewhere.itest.invalid:443", "no route"),
])
def test_connect_denied_before_any_byte(px, upstream, plain_upstream, closed_port, authority, why):
    authority = authority.format(up=upstream.port, plain=plain_upstream.port, closed=closed_port)
    before = (upstream.connection_count, plain_upstream.connection_count)
    conn, resp = connect_tunnel(px.port, authority)
    with conn:
        assert_refused(resp, 403, "tunnel_denied")
        assert conn.wait_closed(5), f"{why}: the connection stayed open after a refused CONNECT"
    assert (upstream.connection_count, plain_upstream.connection_count) == before, \
        f"{why}: the proxy connected upstream for a refused CONNECT"


def test_connect_bytes_after_refusal_are_not_relayed(px, upstream, token):
    """A client that pipelines its TLS ClientHello-ish bytes right behind CONNECT gets 403 and
    nothing reaches an upstream."""
    before = upstream.connection_count
    with RawConnection(px.port) as c:
        c.send(f"CONNECT 127.0.0.1:{upstream.port} HTTP/1.1\r\nHost: 127.0.0.1:{upstream.port}\r\n\r\n"
               f"GET /echo/{token} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        r = c.read_response("CONNECT")
        assert_refused(r, 403, "tunnel_denied")
    assert upstream.connection_count == before
    assert upstream.requests_matching(token) == []


def test_curl_p_through_http_proxy(px, upstream, pki, token):
    r = curl("-p", "--proxy", f"http://127.0.0.1:{px.port}", "--cacert", str(pki.ca_file),
             f"https://localhost:{upstream.port}/echo/{token}")
    assert r.returncode == 0 and r.status == 200, r
    echo = r.json()
    assert echo["upstream"] == "main" and echo["target"] == f"/echo/{token}"
    assert header_values([tuple(h) for h in echo["headers"]], "Authorization") == []


def test_curl_p_denied_target(px, upstream, pki, token):
    r = curl("-p", "--proxy", f"http://127.0.0.1:{px.port}", "--cacert", str(pki.ca_file),
             f"https://127.0.0.1:{upstream.port}/echo/{token}")
    assert r.returncode != 0, r
    assert "403" in r.stderr, r
    assert upstream.requests_matching(token) == []


def test_tunnel_closed_by_client_leaves_proxy_healthy(px, upstream, pki):
    """A tunnel the client closes ends cleanly; the proxy keeps serving."""
    conn, resp = connect_tunnel(px.port, f"localhost:{upstream.port}")
    assert resp.status == 200
    tls_over(conn, pki.client_context())
    r = conn.request("GET", "/echo/gauge", [("Host", "localhost")])
    assert r.status == 200
    conn.close()
    # The proxy still serves new requests afterwards.
    assert fetch(px, upstream.url("/api/echo/after-tunnel")).status == 200


# -- clients and tunnels -----------------------------------------------------------------------

AUTH_CONF = """\
listen 127.0.0.1:0
ca-file {ca}
client alice {
  password env:ITEST_ALICE_PW
}
client bob {
  token env:ITEST_BOB_TOKEN
}
route localhost:{upstream_port} {
  tunnel
  allow alice
}
"""


def test_connect_needs_client_identification(proxy_factory, upstream, pki, token):
    px = proxy_factory(AUTH_CONF, env=POLICY_ENV)
    before = upstream.connection_count
    conn, resp = connect_tunnel(px.port, f"localhost:{upstream.port}")
    conn.close()
    assert_refused(resp, 407, "proxy_auth_required")
    assert resp.header("Proxy-Authenticate") == 'Basic realm="credproxy"'
    conn, resp = connect_tunnel(px.port, f"localhost:{upstream.port}", [basic("alice", "wrong")])
    conn.close()
    assert_refused(resp, 407, "proxy_auth_required")
    conn, resp = connect_tunnel(px.port, f"localhost:{upstream.port}", [bearer(BOB_TOKEN)])
    conn.close()
    assert_refused(resp, 403, "client_not_allowed")
    assert upstream.connection_count == before

    r = curl("-p", "--proxy", f"http://alice:{ALICE_PASSWORD}@127.0.0.1:{px.port}",
             "--cacert", str(pki.ca_file), f"https://localhost:{upstream.port}/echo/{token}")
    assert r.status == 200, r
    assert header_values([tuple(h) for h in r.json()["headers"]], "Proxy-Authorization") == []


# -- TLS listener --------------------------------------------------------------------------------

TLS_CONF = """\
listen 127.0.0.1:0 tls {listen_cert} {listen_key}
ca-file {ca}
connect-timeout 5s
request-timeout 30s
client alice {
  password env:ITEST_ALICE_PW
}
route localhost:{upstream_port}/api {
  auth bearer env:{env_bearer}
}
route localhost:{upstream_port} {
  tunnel
}
"""


@pytest.fixture(scope="module")
def tls_px(module_proxy_factory, pki):
    conf = (TLS_CONF.replace("{listen_cert}", str(pki.server.cert_path))
            .replace("{listen_key}", str(pki.server.key_path)))
    return module_proxy_factory(conf, env=POLICY_ENV, name="tls-listener")


def test_https_proxy_forwarding(tls_px, upstream, pki, token):
    r = curl("--proxy", f"https://localhost:{tls_px.port}", "--proxy-cacert", str(pki.ca_file),
             "--proxy-user", f"alice:{ALICE_PASSWORD}", upstream.url(f"/api/echo/{token}"))
    assert r.returncode == 0 and r.status == 200, r
    hs = [tuple(h) for h in r.json()["headers"]]
    assert header_values(hs, "Authorization") == [f"Bearer {secret_values.BEARER_TOKEN}"]
    assert header_values(hs, "Proxy-Authorization") == []


def test_https_proxy_tunnel(tls_px, upstream, pki, token):
    r = curl("--proxy", f"https://alice:{ALICE_PASSWORD}@localhost:{tls_px.port}",
             "--proxy-cacert", str(pki.ca_file), "--cacert", str(pki.ca_file),
             f"https://localhost:{upstream.port}/echo/{token}")
    assert r.returncode == 0 and r.status == 200, r
    echo = r.json()
    assert echo["target"] == f"/echo/{token}" and echo["sni"] == "localhost"
    assert header_values([tuple(h) for h in echo["headers"]], "Authorization") == []


def test_https_proxy_requires_trusting_its_certificate(tls_px, upstream, pki, token):
    # Without the test CA curl must refuse the listener's certificate.
    r = curl("--proxy", f"https://localhost:{tls_px.port}", upstream.url(f"/api/echo/{token}"))
    assert r.returncode != 0 and r.status == 0, r
    # With it but no credentials: 407 over TLS.
    r = curl("--proxy", f"https://localhost:{tls_px.port}", "--proxy-cacert", str(pki.ca_file),
             upstream.url(f"/api/echo/{token}"))
    assert r.status == 407, r
    assert upstream.requests_matching(token) == []


def test_plaintext_client_on_tls_listener_gets_nothing_forwarded(tls_px, upstream, token):
    with RawConnection(tls_px.port, timeout=5) as c:
        c.send(f"GET {upstream.url('/api/echo/' + token)} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        try:
            c.read_response(timeout=5)
        except Exception:  # noqa: BLE001 - a TLS alert or a close is the expected outcome
            pass
    assert upstream.requests_matching(token) == []
    assert tls_px.alive()


def test_refused_connect_says_why_in_its_status_line(px):
    """Clients show only the status line of a refused CONNECT (curl: 'CONNECT tunnel failed,
    response 403'; Python: 'Tunnel connection failed: 403 …'), so the reason goes there."""
    import subprocess

    with RawConnection(px.port) as c:
        c.send(b"CONNECT storage.googleapis.com:443 HTTP/1.1\r\nHost: storage.googleapis.com:443\r\n\r\n")
        head = c.read_head()
    assert head.status == 403, head
    line = head.raw_head.split(b"\r\n", 1)[0].decode()
    assert line.startswith("HTTP/1.1 403 tunnel_denied: no intercept or tunnel route for "), line
    assert "storage.googleapis.com:443" in line, line
    # Python's own client shows exactly that line to its user.
    code = (
        "import http.client,sys\n"
        f"c=http.client.HTTPSConnection('storage.googleapis.com', timeout=10)\n"
        f"c.set_tunnel('storage.googleapis.com', 443)\n"
        "c.host, c.port = '127.0.0.1', int(sys.argv[1])\n"
        "try:\n  c.connect()\nexcept OSError as e:\n  print(e)\n"
    )
    out = subprocess.run(["python3", "-c", code, str(px.port)], capture_output=True, text=True,
                         timeout=30).stdout
    assert "tunnel_denied: no intercept or tunnel route for" in out, out


def test_reload_reads_renewed_listener_certificates(proxy_factory, upstream, pki, token, tmp_path):
    """Certificates are renewed in place (certbot, cert-manager): a reload serves the new one to
    new connections, and a reload whose certificate cannot be read is refused, the running one
    kept."""
    import shutil
    import signal
    import socket
    import ssl
    import time

    from harness.certs import issue_server_cert

    first = issue_server_cert(pki.ca, tmp_path, "listener-1")
    second = issue_server_cert(pki.ca, tmp_path, "listener-2")
    cert, key = tmp_path / "listener.crt.pem", tmp_path / "listener.key.pem"
    shutil.copy(first.cert_path, cert)
    shutil.copy(first.key_path, key)
    conf = TLS_CONF.replace("{listen_cert}", str(cert)).replace("{listen_key}", str(key))
    px = proxy_factory(conf, env=POLICY_ENV, name="tls-renewal")

    def served() -> bytes:
        ctx = ssl.create_default_context(cafile=str(pki.ca_file))
        with socket.create_connection(("127.0.0.1", px.port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                return s.getpeercert(binary_form=True)

    def der(path) -> bytes:
        return ssl.PEM_cert_to_DER_cert(path.read_text())

    def sighup_and_wait(pattern: str, count: int) -> None:
        px.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 10
        while px.stderr_text().count(pattern) < count:
            assert time.time() < deadline, px.stderr_text()[-1500:]
            time.sleep(0.05)

    assert served() == der(first.cert_path)
    shutil.copy(second.cert_path, cert)
    shutil.copy(second.key_path, key)
    sighup_and_wait("credproxy: reloaded ", 1)
    assert served() == der(second.cert_path)
    r = curl("--proxy", f"https://localhost:{px.port}", "--proxy-cacert", str(pki.ca_file),
             "--proxy-user", f"alice:{ALICE_PASSWORD}", upstream.url(f"/api/echo/{token}"))
    assert r.status == 200, r

    key.write_text("not a key\n")
    sighup_and_wait("reload failed, keeping the running config", 1)
    assert f"listen 127.0.0.1:{px.port}" in px.stderr_text() or "listener.key.pem" in px.stderr_text()
    assert served() == der(second.cert_path)
