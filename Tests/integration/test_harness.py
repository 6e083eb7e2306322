"""Self-tests of the harness, against the upstream directly (no proxy): if these fail, the proxy
tests' verdicts mean nothing."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from harness import data
from harness.proxy import ProxyProcess, ProxyStartError, clean_env, render
from harness.rawhttp import RawConnection, ResponseError, chunked, hash_body


def curl(*args: str, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-sS", "--max-time", "15", *args], capture_output=True,
                          timeout=timeout, env=clean_env())


def tls_conn(pki, upstream, **kw) -> RawConnection:
    return RawConnection(upstream.port, tls_context=pki.client_context(), **kw)


def test_curl_trusts_the_test_ca(pki, upstream, token):
    r = curl("--cacert", str(pki.ca_file), f"https://localhost:{upstream.port}/echo/{token}?q=1")
    assert r.returncode == 0, r.stderr
    body = json.loads(r.stdout)
    assert body["method"] == "GET"
    assert body["target"] == f"/echo/{token}?q=1"
    assert body["alpn"] == "http/1.1"
    assert upstream.requests_matching(token)


def test_certificate_covers_ip_and_connect_to_name(pki, upstream, token):
    r = curl("--cacert", str(pki.ca_file), f"https://127.0.0.1:{upstream.port}/echo/{token}")
    assert r.returncode == 0, r.stderr
    r = curl("--cacert", str(pki.ca_file), "--connect-to",
             f"upstream.itest.invalid:8443:127.0.0.1:{upstream.port}",
             f"https://upstream.itest.invalid:8443/echo/{token}-sni")
    assert r.returncode == 0, r.stderr
    body = json.loads(r.stdout)
    assert body["sni"] == "upstream.itest.invalid"
    assert ["Host", "upstream.itest.invalid:8443"] in body["headers"]


def test_rogue_upstream_is_not_trusted(pki, untrusted_upstream):
    r = curl("--cacert", str(pki.ca_file), f"https://localhost:{untrusted_upstream.port}/echo/x")
    assert r.returncode == 60, (r.returncode, r.stderr)  # CURLE_PEER_FAILED_VERIFICATION
    r = curl("--cacert", str(pki.rogue_ca.cert_path), f"https://localhost:{untrusted_upstream.port}/echo/x")
    assert r.returncode == 0, r.stderr


def test_closed_port_refuses(closed_port):
    r = curl(f"http://127.0.0.1:{closed_port}/")
    assert r.returncode == 7, (r.returncode, r.stderr)  # CURLE_COULDNT_CONNECT
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", closed_port), timeout=2)


def test_echo_keeps_raw_header_order_case_and_duplicates(pki, upstream, token):
    headers = [("Host", upstream.authority), ("X-B", "2"), ("x-a", "one  two"),
               ("X-B", "3"), ("ACCEPT", "*/*")]
    with tls_conn(pki, upstream) as c:
        resp = c.request("GET", f"/echo/{token}", headers)
    assert resp.status == 200, resp
    assert resp.json()["headers"] == [list(h) for h in headers]
    assert resp.json()["raw_header_lines"] == [f"{n}: {v}" for n, v in headers]


def test_uploads_content_length_and_chunked(pki, upstream, token):
    body = b"".join(data.generate(3 * 1024 * 1024 + 17))
    with tls_conn(pki, upstream) as c:
        r1 = c.request("POST", "/upload", [("Host", upstream.authority)], body)
        c.send_request("PUT", f"/echo/{token}", [("Host", upstream.authority),
                                                 ("Transfer-Encoding", "chunked")])
        c.send_iter(chunked(data.generate(1_000_003, 65536)))
        r2 = c.read_response()
    assert r1.json() == {"length": len(body), "sha256": data.sha256_hex(body)}
    assert r2.json()["body_length"] == 1_000_003
    assert r2.json()["body_sha256"] == data.expected_sha256(1_000_003)
    # curl with a file, Expect: 100-continue and all
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"itest-upload-{token}")
    with open(path, "wb") as f:
        f.write(body)
    try:
        r = curl("--cacert", str(pki.ca_file), "--data-binary", f"@{path}",
                 f"https://localhost:{upstream.port}/upload")
    finally:
        os.unlink(path)
    assert json.loads(r.stdout) == {"length": len(body), "sha256": data.sha256_hex(body)}


@pytest.mark.parametrize("chunk_flag", ["0", "1"])
def test_stream_content_length_and_chunked(pki, upstream, chunk_flag):
    n = 5 * data.BLOCK + 12345
    with tls_conn(pki, upstream) as c:
        c.send_request("GET", f"/stream?bytes={n}&chunked={chunk_flag}", [("Host", upstream.authority)])
        resp = c.read_head()
        assert resp.status == 200
        assert (resp.header("Transfer-Encoding") == "chunked") == (chunk_flag == "1")
        assert hash_body(c, resp) == (n, data.expected_sha256(n))
        # keep-alive: the connection still works
        assert c.request("GET", "/status/200", [("Host", upstream.authority)]).status == 200


def test_generated_data_blocks_differ():
    pieces = list(data.generate(2 * data.BLOCK))
    assert len(pieces) == 2 and pieces[0] != pieces[1]
    assert sum(len(p) for p in data.generate(1000, 64)) == 1000
    assert data.expected_sha256(1000) == data.sha256_hex(b"".join(data.generate(1000, 64)))


def test_status_head_204_304_have_no_body_and_keep_alive(pki, upstream):
    host = [("Host", upstream.authority)]
    with tls_conn(pki, upstream) as c:
        c.send(b"".join([
            f"HEAD /echo/h HTTP/1.1\r\nHost: {upstream.authority}\r\n\r\n".encode(),
            f"GET /status/204 HTTP/1.1\r\nHost: {upstream.authority}\r\n\r\n".encode(),
            f"GET /status/304 HTTP/1.1\r\nHost: {upstream.authority}\r\n\r\n".encode(),
            f"GET /status/418 HTTP/1.1\r\nHost: {upstream.authority}\r\n\r\n".encode(),
        ]))
        head = c.read_response("HEAD")
        assert head.status == 200 and int(head.header("Content-Length")) > 0 and head.body == b""
        assert c.read_response().status == 204
        assert c.read_response().status == 304
        r = c.read_response()
        assert (r.status, r.body) == (418, b"status 418\n")
        assert c.request("GET", "/redirect?id=r1", host).header("Location") == \
            f"https://localhost:{upstream.port}/echo/redirected/r1"


def test_hang_reports_the_peer_disconnecting(pki, upstream, token):
    c = tls_conn(pki, upstream)
    c.send_request("GET", f"/hang?id={token}", [("Host", upstream.authority)])
    assert upstream.wait_event("hang_start", token, timeout=5)
    assert c.is_open_after(0.3)
    c.close()
    assert upstream.wait_event("hang_disconnect", token, timeout=5)


def test_slow_stream_reports_disconnect(pki, upstream, token):
    c = tls_conn(pki, upstream)
    c.send_request("GET", f"/slow-stream?id={token}&chunks=400&size=4096&interval=0.01",
                   [("Host", upstream.authority)])
    resp = c.read_head()
    assert resp.status == 200
    got = 0
    for piece in c.iter_body(resp):
        got += len(piece)
        if got > 20000:
            break
    c.abort()
    ev = upstream.wait_event("slow_disconnect", token, timeout=10)
    assert ev is not None
    assert ev.info["sent"] < 400 * 4096


def test_slow_stream_completes(pki, upstream, token):
    with tls_conn(pki, upstream) as c:
        c.send_request("GET", f"/slow-stream?id={token}&chunks=5&size=1000&interval=0.01",
                       [("Host", upstream.authority)])
        resp = c.read_head()
        assert hash_body(c, resp) == (5000, data.expected_sha256(5000))
    assert upstream.wait_event("slow_complete", token, timeout=5)


def test_plain_upstream_and_no_length(plain_upstream, token):
    with RawConnection(plain_upstream.port) as c:
        r = c.request("GET", f"/echo/{token}", [("Host", plain_upstream.authority)])
        assert r.json()["upstream"] == "plain"
        r = c.request("GET", "/no-length", [("Host", plain_upstream.authority)])
        assert r.status == 200 and r.body.endswith(b"close\n") and len(r.body) > 1000
        assert c.wait_closed(2)


def test_hop_response_headers(plain_upstream):
    with RawConnection(plain_upstream.port) as c:
        r = c.request("GET", "/hop-response", [("Host", plain_upstream.authority)])
    assert r.header("X-Resp-Drop") and r.header("Keep-Alive") and r.header("Upgrade")
    assert r.header_all("Set-Cookie") == ["a=1; Path=/", "b=2; Path=/"]


def test_raw_client_reports_truncated_body(plain_upstream):
    # A response whose Content-Length promises more than arrives must not parse as complete.
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    c = RawConnection(port, timeout=3)
    peer, _ = srv.accept()
    peer.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    peer.close()
    srv.close()
    with pytest.raises(ResponseError):
        c.read_response()


def test_render_substitutes_known_names_only():
    out = render("route localhost:{upstream_port} {\n  auth none\n}\n{other}", {"upstream_port": 8443})
    assert out == "route localhost:8443 {\n  auth none\n}\n{other}"


FAKE_PROXY = textwrap.dedent("""\
    #!{python}
    import signal, socket, sys
    s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(8)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    print("credproxy: listening on 127.0.0.1:%d" % s.getsockname()[1], file=sys.stderr, flush=True)
    while True:
        c, _ = s.accept()
        c.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok")
        c.close()
    """)


def test_proxy_process_harness_with_a_fake_binary(tmp_path):
    fake = tmp_path / "fake-credproxy"
    fake.write_text(FAKE_PROXY.replace("{python}", sys.executable))
    fake.chmod(0o755)
    conf = tmp_path / "proxy.conf"
    conf.write_text("listen 127.0.0.1:0\n")
    p = ProxyProcess(fake, conf, tmp_path, clean_env(), name="fake").start(timeout=10)
    try:
        assert p.port > 0 and p.alive()
        assert p.rss_kib() > 0 and p.hwm_kib() >= p.rss_kib() - 1024
        with RawConnection(p.port) as c:
            assert c.request("GET", "/").body == b"ok"
    finally:
        assert p.stop() == 0
    assert not p.alive()

    dead = tmp_path / "dead-credproxy"
    dead.write_text(f"#!{sys.executable}\nimport sys\nprint('boom', file=sys.stderr)\nsys.exit(3)\n")
    dead.chmod(0o755)
    t0 = time.monotonic()
    with pytest.raises(ProxyStartError, match="status 3"):
        ProxyProcess(dead, conf, tmp_path, clean_env(), name="dead").start(timeout=10)
    assert time.monotonic() - t0 < 5


def test_secret_guard_catches_a_leak(tmp_path):
    from harness import secret_values
    from harness.secret_values import SecretGuard

    leaky = tmp_path / "leaky-credproxy"
    leaky.write_text(FAKE_PROXY.replace("{python}", sys.executable).replace(
        'print("credproxy: listening',
        f'print("Authorization: Bearer {secret_values.BEARER_TOKEN}", file=sys.stderr)\nprint("credproxy: listening'))
    leaky.chmod(0o755)
    conf = tmp_path / "proxy.conf"
    conf.write_text("listen 127.0.0.1:0\n")
    guard = SecretGuard()
    p = ProxyProcess(leaky, conf, tmp_path, clean_env(), name="leaky").start(timeout=10)
    guard.proxies.append(("test", p))
    p.stop()
    leaks = guard.leaks()
    assert leaks and "bearer token" in leaks[0]
    assert secret_values.BEARER_TOKEN not in "".join(leaks), "the report itself must not print the secret"


def test_proxy_process_reports_crash_and_ignored_sigterm(tmp_path):
    conf = tmp_path / "proxy.conf"
    conf.write_text("listen 127.0.0.1:0\n")
    crash = tmp_path / "crashing-credproxy"
    crash.write_text(f"#!{sys.executable}\nimport sys, time\n"
                     "print('credproxy: listening on 127.0.0.1:1', file=sys.stderr, flush=True)\n"
                     "time.sleep(0.2)\nsys.exit(134)\n")
    crash.chmod(0o755)
    p = ProxyProcess(crash, conf, tmp_path, clean_env(), name="crash").start(timeout=10)
    time.sleep(0.5)
    p.stop()
    assert "status 134" in (p.problem() or "")

    stubborn = tmp_path / "stubborn-credproxy"
    stubborn.write_text(f"#!{sys.executable}\nimport signal, sys, time\n"
                        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                        "print('credproxy: listening on 127.0.0.1:1', file=sys.stderr, flush=True)\n"
                        "time.sleep(60)\n")
    stubborn.chmod(0o755)
    p = ProxyProcess(stubborn, conf, tmp_path, clean_env(), name="stubborn").start(timeout=10)
    p.stop(timeout=0.5)
    assert "SIGTERM" in (p.problem() or "")
    assert not p.alive()
