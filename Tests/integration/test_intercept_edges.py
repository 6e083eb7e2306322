"""Interception edge cases a hostile or unusual client tries: SNI spellings the router treats as
the same host, IP-literal targets, clients that stall or never start the handshake."""

from __future__ import annotations

import os
import socket
import ssl
import time

import pytest

from harness import secret_values as sv
from policy_support import connect_tunnel, tls_over
from test_intercept import ca_context, ca_dir  # noqa: F401 - fixture

pytestmark = pytest.mark.timeout(120)

CONF = """\
listen 127.0.0.1:0
ca-file {ca}
ca-cert {ca_dir}/ca.pem
ca-key {ca_dir}/ca-key.pem
header-timeout 2s
idle-timeout 30s
route localhost:{upstream_port} {
  intercept
  auth bearer env:{env_bearer}
}
route 127.0.0.1:{upstream_port} {
  intercept
  auth bearer env:{env_bearer}
}
"""


@pytest.fixture(scope="module")
def px(module_proxy_factory, ca_dir):  # noqa: F811
    module_proxy_factory.values["ca_dir"] = ca_dir
    return module_proxy_factory(CONF, name="intercept-edges")


@pytest.mark.parametrize("authority,sni", [
    ("localhost", "localhost."),      # an absolute name, as Python's ssl sends it when told so
    ("localhost", "LocalHost."),
    ("localhost.", "localhost."),     # a CONNECT to the absolute name the router reads as localhost
    ("LOCALHOST", "localhost"),
])
def test_sni_spelled_as_the_router_reads_it_is_the_same_host(px, upstream, ca_dir, token,  # noqa: F811
                                                             authority, sni):
    """The router reads `localhost.` and `LOCALHOST` as `localhost`; the SNI check must too, or a
    client naming the host in its absolute form cannot get through an intercept route."""
    conn, resp = connect_tunnel(px.port, f"{authority}:{upstream.port}")
    with conn:
        assert resp.status == 200, resp
        ctx = ca_context(ca_dir)
        ctx.check_hostname = False  # the leaf names `localhost`; the SNI spelling is under test
        tls_over(conn, ctx, server_hostname=sni)
        r = conn.request("GET", f"/echo/{token}-sni", [("Host", f"{authority}:{upstream.port}")])
        assert r.status == 200, r
    seen = upstream.requests_matching(f"{token}-sni")
    assert seen and seen[-1].header_values("Authorization") == [f"Bearer {sv.BEARER_TOKEN}"]


def test_no_sni_is_accepted_and_the_requests_stay_bound_to_the_connect(px, upstream, ca_dir,  # noqa: F811
                                                                       token):
    """A client that sends no SNI (IP literals never do; some clients omit it) still gets the
    target's leaf, and every request inside is bound to the CONNECT target, not to the SNI."""
    conn, resp = connect_tunnel(px.port, f"localhost:{upstream.port}")
    with conn:
        assert resp.status == 200
        ctx = ca_context(ca_dir)
        ctx.check_hostname = False
        conn.sock.settimeout(10)
        conn.sock = ctx.wrap_socket(conn.sock)  # no server_hostname: no SNI
        assert ("DNS", "localhost") in conn.sock.getpeercert()["subjectAltName"]
        r = conn.request("GET", f"/echo/{token}-nosni", [("Host", f"localhost:{upstream.port}")])
        assert r.status == 200, r
        r = conn.request("GET", f"/echo/{token}-other", [("Host", f"127.0.0.1:{upstream.port}")])
        assert r.status == 421 and r.error_code == "misdirected", r
    assert not upstream.requests_matching(f"{token}-other")


def test_sni_for_another_host_still_fails_in_any_spelling(px, upstream, ca_dir):  # noqa: F811
    for sni in ["localhost.evil.example", "evil.example.", "localhos"]:
        conn, resp = connect_tunnel(px.port, f"localhost:{upstream.port}")
        with conn:
            assert resp.status == 200
            ctx = ca_context(ca_dir)
            ctx.check_hostname = False
            with pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME"):
                tls_over(conn, ctx, server_hostname=sni)


def client_hello(ca_dir) -> bytes:  # noqa: F811
    """The first flight of a real TLS client for `localhost`."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ca_context(ca_dir).wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


def seconds_until_closed(sock: socket.socket, limit: float, dribble: bytes = b"") -> float:
    """Sends `dribble` one byte every 0.25 s (then nothing) until the proxy closes the socket."""
    started = time.monotonic()
    sock.settimeout(0.25)
    sent = 0
    while time.monotonic() - started < limit:
        if sent < len(dribble) - 1:  # never the last byte: the handshake must not complete
            try:
                sock.sendall(dribble[sent:sent + 1])
            except OSError:
                return time.monotonic() - started
            sent += 1
        try:
            if sock.recv(4096) == b"":
                return time.monotonic() - started
        except socket.timeout:
            continue
        except OSError:
            return time.monotonic() - started
    return limit


@pytest.mark.parametrize("how", ["silent", "dribbled ClientHello"])
def test_handshake_must_finish_within_the_header_timeout(px, upstream, ca_dir, how):  # noqa: F811
    """After `200 Connection established` the ClientHello plays the part of a request head: a
    caller that never sends it, or sends it a byte at a time, is cut off at `header-timeout`
    (2 s here), not kept for the whole `idle-timeout` (30 s)."""
    conn, resp = connect_tunnel(px.port, f"localhost:{upstream.port}")
    with conn:
        assert resp.status == 200
        dribble = client_hello(ca_dir) if how != "silent" else b""
        waited = seconds_until_closed(conn.sock, 15, dribble)
    assert waited < 8, f"the proxy kept a stalled handshake open {waited:.1f} s"


def test_garbage_instead_of_a_client_hello_is_closed_and_the_proxy_goes_on(px, upstream, ca_dir,  # noqa: F811
                                                                           token):
    for junk in [b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", b"\x16\x03\x01\xff\xff" + b"A" * 600,
                 bytes(range(256)) * 8]:
        conn, resp = connect_tunnel(px.port, f"localhost:{upstream.port}")
        with conn:
            assert resp.status == 200
            conn.sock.sendall(junk)
            assert seconds_until_closed(conn.sock, 5) < 5
    conn, resp = connect_tunnel(px.port, f"localhost:{upstream.port}")
    with conn:
        tls_over(conn, ca_context(ca_dir))
        assert conn.request("GET", f"/echo/{token}", [("Host", f"localhost:{upstream.port}")]).status == 200
    assert px.alive(), px.stderr_text()[-2000:]


def s_client(px, upstream, ca_dir, *args, stdin: str = "", seconds: float = 3.0) -> str:  # noqa: F811
    """openssl s_client through the proxy's CONNECT (`-proxy`), fed `stdin` slowly."""
    import subprocess

    import tempfile

    with tempfile.NamedTemporaryFile("wb", delete=False) as f:
        f.write(stdin.encode())
    script = f"sleep 1; cat {f.name}; sleep {seconds}"
    p = subprocess.run(
        ["bash", "-c", f"({script}) | openssl s_client -proxy 127.0.0.1:{px.port} "
         f"-connect localhost:{upstream.port} -servername localhost -CAfile {ca_dir / 'ca.pem'} "
         + " ".join(args) + " 2>&1"], capture_output=True, text=True, timeout=30)
    os.unlink(f.name)
    return p.stdout


def test_tls12_works_and_client_renegotiation_is_refused(px, upstream, ca_dir, token):  # noqa: F811
    """TLS 1.2 clients are served; a renegotiation they start mid-connection is refused (it would
    re-run a handshake under an exchange, and it is a known CPU sink)."""
    get = f"GET /echo/{token}-tls12 HTTP/1.1\r\nHost: localhost:{upstream.port}\r\n\r\n"
    out = s_client(px, upstream, ca_dir, "-tls1_2", stdin=get)
    assert "Protocol  : TLSv1.2" in out or "TLSv1.2" in out, out[-1500:]
    assert '"target": "/echo/' in out, out[-1500:]
    out = s_client(px, upstream, ca_dir, "-tls1_2", stdin="R\n")
    assert "RENEGOTIATING" in out and "no renegotiation" in out, out[-1500:]


def test_tickets_never_allow_early_data(px, upstream, ca_dir, token, tmp_path):  # noqa: F811
    """Session tickets are issued, with max_early_data 0: 0-RTT data (replayable) is never
    accepted, so a resumed client cannot have a request replayed through the proxy."""
    sess = tmp_path / "sess.pem"
    get = f"GET /echo/{token}-first HTTP/1.1\r\nHost: localhost:{upstream.port}\r\n\r\n"
    out = s_client(px, upstream, ca_dir, "-tls1_3", "-sess_out", str(sess), stdin=get)
    assert "Max Early Data: 0" in out, out[-1500:]
    early = tmp_path / "early.txt"
    early.write_text(f"GET /echo/{token}-early HTTP/1.1\r\nHost: localhost:{upstream.port}\r\n\r\n")
    out = s_client(px, upstream, ca_dir, "-tls1_3", "-sess_in", str(sess), "-early_data", str(early))
    assert "Reused, TLSv1.3" in out and "Early data was not sent" in out, out[-1500:]
    assert not upstream.requests_matching(f"{token}-early")


FLOOD_CONF = """\
listen 127.0.0.1:0
admin 127.0.0.1:0
ca-cert {ca_dir}/ca.pem
ca-key {ca_dir}/ca-key.pem
route *.example.com {
  intercept
  auth none
}
"""


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_flood_of_new_names_keeps_the_leaf_cache_small(proxy_factory, ca_dir):  # noqa: F811
    """Every CONNECT to a new name under `*.example.com` mints a leaf and a TLS context (about
    17 KiB). With 10,000 kept, a client naming 10,000 hosts grew the proxy by 170 MiB, past the
    shipped sidecar's 128 MiB limit. At most 2,000 are kept (oldest evicted first)."""
    import concurrent.futures

    from policy_support import admin_get, admin_port

    proxy_factory.values["ca_dir"] = ca_dir
    px = proxy_factory(FLOOD_CONF)

    def connect(i: int) -> bytes:
        with socket.create_connection(("127.0.0.1", px.port), timeout=10) as s:
            s.sendall(f"CONNECT h{i}.example.com:443 HTTP/1.1\r\nHost: h{i}.example.com:443\r\n\r\n".encode())
            return s.recv(64)[:12]

    base = px.rss_kib()
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = set(pool.map(connect, range(6_000)))
    assert answers == {b"HTTP/1.1 200"}, answers
    grown = px.rss_kib() - base
    text = admin_get(admin_port(px), "/metrics").body.decode()
    values = {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
              if line.startswith("credproxy_intercept_")}
    assert values["credproxy_intercept_leaf_mints_total"] == 6_000, values
    assert values["credproxy_intercept_leaf_cache_entries"] == 2_000, values
    assert grown < 56 * 1024, f"the proxy grew {grown // 1024} MiB"


def test_inner_requests_naming_anything_else_are_never_forwarded(px, upstream, ca_dir, token):  # noqa: F811
    """Inside one tunnel, pipelined: a second CONNECT, absolute-form to another host, another
    port, userinfo. Each is refused (421, or 400 and the connection closed); only the requests
    for the CONNECT's own host reach the upstream, in order."""
    up = upstream.port
    conn, resp = connect_tunnel(px.port, f"localhost:{up}")
    with conn:
        assert resp.status == 200
        tls_over(conn, ca_context(ca_dir))
        conn.sock.sendall((
            f"CONNECT 127.0.0.1:{up} HTTP/1.1\r\nHost: 127.0.0.1:{up}\r\n\r\n"
            f"GET https://127.0.0.1:{up}/echo/{token}-abs HTTP/1.1\r\nHost: localhost:{up}\r\n\r\n"
            f"GET /echo/{token}-ok1 HTTP/1.1\r\nHost: localhost:{up}\r\n\r\n"
            f"GET /echo/{token}-port HTTP/1.1\r\nHost: localhost:{up + 1}\r\n\r\n"
            f"GET /echo/{token}-ok2 HTTP/1.1\r\nHost: LOCALHOST.:{up}\r\n\r\n"
            f"GET /echo/{token}-ui HTTP/1.1\r\nHost: user@localhost:{up}\r\n\r\n"
            f"GET /echo/{token}-after HTTP/1.1\r\nHost: localhost:{up}\r\n\r\n").encode())
        got = [conn.read_response(10) for _ in range(6)]
        assert [(r.status, r.error_code) for r in got] == [
            (421, "misdirected"), (421, "misdirected"), (200, None), (421, "misdirected"),
            (200, None), (400, "bad_request")], got
        assert conn.wait_closed(5), "a 400 in the tunnel must end the connection"
    seen = [r.target for r in upstream.requests_matching(token)]
    assert seen == [f"/echo/{token}-ok1", f"/echo/{token}-ok2"], seen
