"""HTTPS interception (`intercept` routes): a CONNECT is terminated with a leaf from the local CA,
the requests inside take the plain path (route, policy, credential injected upstream over verified
TLS), and the caller never sees the credential. Real clients: curl, Python's requests and httpx,
raw sockets for the refusals (SNI mismatch, 421, clients)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness import secret_values as sv
from harness.rawhttp import RawConnection
from policy_support import (  # noqa: F401 - fixture
    ALICE_PASSWORD,
    admin_get,
    admin_port,
    BOB_TOKEN,
    POLICY_ENV,
    basic,
    connect_tunnel,
    curl,
    policy_secrets,
    tls_over,
)

pytestmark = pytest.mark.timeout(120)

CONF = """\
listen 127.0.0.1:0
admin 127.0.0.1:0
ca-file {ca}
ca-cert {ca_dir}/ca.pem
ca-key {ca_dir}/ca-key.pem
connect-timeout 5s
request-timeout 30s
route localhost:{upstream_port}/public {
  intercept
  auth none
}
route localhost:{upstream_port} {
  intercept
  auth bearer env:{env_bearer}
}
"""

CLIENTS_CONF = """\
listen 127.0.0.1:0
ca-file {ca}
ca-cert {ca_dir}/ca.pem
ca-key {ca_dir}/ca-key.pem
client alice {
  password env:ITEST_ALICE_PW
}
client bob {
  token env:ITEST_BOB_TOKEN
}
route localhost:{upstream_port} {
  intercept
  allow alice
  auth bearer env:{env_bearer}
}
"""


@pytest.fixture(scope="module")
def ca_dir(tmp_path_factory, credproxy_bin, secret_guard):
    d = tmp_path_factory.mktemp("local-ca")
    r = subprocess.run([str(credproxy_bin), "ca", "init", "--dir", str(d)], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    key = (d / "ca-key.pem").read_text()
    assert "PRIVATE KEY" in key
    assert oct((d / "ca-key.pem").stat().st_mode & 0o777) == "0o600"
    assert key not in r.stdout + r.stderr
    # The CA key must never appear in any proxy output either.
    for line in key.strip().splitlines()[1:-1]:
        secret_guard.add_secret("local CA key line", line)
    return d


@pytest.fixture(scope="module")
def px(module_proxy_factory, ca_dir):
    module_proxy_factory.values["ca_dir"] = ca_dir
    return module_proxy_factory(CONF, name="intercept")


def ca_context(ca_dir: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca_dir / "ca.pem"))
    return ctx


def client_env(px, ca_dir) -> dict:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(HTTPS_PROXY=f"http://127.0.0.1:{px.port}", https_proxy=f"http://127.0.0.1:{px.port}",
               REQUESTS_CA_BUNDLE=str(ca_dir / "ca.pem"), SSL_CERT_FILE=str(ca_dir / "ca.pem"),
               NO_PROXY="", no_proxy="")
    return env


def test_curl_gets_the_credential_injected_without_seeing_it(px, upstream, ca_dir, token):
    r = curl("--proxy", f"http://127.0.0.1:{px.port}", "--cacert", str(ca_dir / "ca.pem"),
             f"https://localhost:{upstream.port}/echo/{token}")
    assert r.status == 200, (r.stderr, r.body[:300])
    seen = upstream.requests_matching(token)
    assert [v for v in seen[-1].header_values("Authorization")] == [f"Bearer {sv.BEARER_TOKEN}"]
    # The caller's TLS was terminated by credproxy: the upstream saw credproxy's own connection.
    assert seen[-1].target == f"/echo/{token}"


def test_path_route_inside_the_tunnel_chooses_the_credential(px, upstream, ca_dir, token):
    r = curl("--proxy", f"http://127.0.0.1:{px.port}", "--cacert", str(ca_dir / "ca.pem"),
             f"https://localhost:{upstream.port}/public/echo/{token}")
    assert r.status == 200, r.stderr
    assert upstream.requests_matching(token)[-1].header_values("Authorization") == []


def test_requests_session_keeps_one_tunnel_for_many_requests(px, upstream, ca_dir, token):
    code = f"""
import requests, sys
s = requests.Session()
for i in range(40):
    r = s.get("https://localhost:{upstream.port}/echo/{token}-" + str(i))
    assert r.status_code == 200, r.status_code
    assert "Bearer" in r.text
print("ok")
"""
    before = len(px.stderr_text())
    out = subprocess.run([sys.executable, "-c", code], env=client_env(px, ca_dir),
                         capture_output=True, text=True, timeout=90)
    assert out.stdout.strip() == "ok", out.stderr[-2000:]
    seen = upstream.requests_matching(token)
    assert len(seen) == 40
    log = px.stderr_text()[before:]
    connects = [l for l in log.splitlines() if "CONNECT" in l and f"localhost:{upstream.port}" in l]
    inner = [l for l in log.splitlines() if f"/echo/{token}-" in l]
    assert len(inner) == 40 and all("via=intercept" in l for l in inner), inner[:2]
    assert 1 <= len(connects) <= 2, connects


def test_httpx_through_intercept(px, upstream, ca_dir, token):
    pytest.importorskip("httpx", reason="installed by scripts/test")
    code = f"""
import httpx
with httpx.Client(proxy="http://127.0.0.1:{px.port}", verify="{ca_dir / 'ca.pem'}") as c:
    for i in range(5):
        r = c.get("https://localhost:{upstream.port}/echo/{token}-httpx")
        assert r.status_code == 200
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "ok", out.stderr[-2000:]
    assert len(upstream.requests_matching(f"{token}-httpx")) == 5


def test_pipelined_requests_inside_the_tunnel(px, upstream, ca_dir, token):
    conn, resp = connect_tunnel(px.port, f"localhost:{upstream.port}")
    with conn:
        assert resp.status == 200
        tls_over(conn, ca_context(ca_dir))
        host = [("Host", f"localhost:{upstream.port}")]
        payload = b"".join(
            f"GET /echo/{token}-p{i} HTTP/1.1\r\nHost: localhost:{upstream.port}\r\n\r\n".encode()
            for i in range(5))
        conn.send(payload)
        for i in range(5):
            r = conn.read_response()
            assert r.status == 200 and r.json()["target"].endswith(f"-p{i}"), r
        r = conn.request("GET", f"/echo/{token}-last", host)
        assert r.status == 200


def test_streams_100_mib_each_way(px, upstream, ca_dir):
    size = 100 * 1024 * 1024
    code = f"""
import hashlib, requests
s = requests.Session()
class Body:
    def __init__(self): self.left = {size}; self.h = hashlib.sha256()
    def __iter__(self):
        block = bytes(range(256)) * 256
        while self.left > 0:
            piece = block[: min(len(block), self.left)]
            self.left -= len(piece); self.h.update(piece)
            yield piece
b = Body()
r = s.post("https://localhost:{upstream.port}/upload", data=b)  # chunked: length unknown
assert r.status_code == 200, r.status_code
assert r.json()["length"] == {size}, r.text
assert r.json()["sha256"] == b.h.hexdigest()
r = s.get("https://localhost:{upstream.port}/stream?bytes={size}", stream=True)
n = 0
for chunk in r.iter_content(1 << 20): n += len(chunk)
assert n == {size}, n
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], env=client_env(px, ca_dir),
                         capture_output=True, text=True, timeout=110)
    assert out.stdout.strip() == "ok", out.stderr[-2000:]


def test_sni_for_another_host_fails_the_handshake(px, upstream, ca_dir):
    conn, resp = connect_tunnel(px.port, f"localhost:{upstream.port}")
    with conn:
        assert resp.status == 200
        ctx = ca_context(ca_dir)
        ctx.check_hostname = False
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            tls_over(conn, ctx, server_hostname="evil.example.com")
            conn.request("GET", "/echo/sni", [("Host", f"localhost:{upstream.port}")])


def test_inner_request_for_another_host_is_421_and_not_forwarded(px, upstream, ca_dir, token):
    conn, resp = connect_tunnel(px.port, f"localhost:{upstream.port}")
    with conn:
        assert resp.status == 200
        tls_over(conn, ca_context(ca_dir))
        for host in ["evil.example.com", f"localhost:{upstream.port + 1}", "127.0.0.1"]:
            r = conn.request("GET", f"/echo/{token}-421", [("Host", host)])
            assert r.status == 421 and r.error_code == "misdirected", r
    assert not upstream.requests_matching(f"{token}-421")


def test_leaf_is_for_the_target_and_chains_to_the_local_ca(px, upstream, ca_dir):
    conn, resp = connect_tunnel(px.port, f"localhost:{upstream.port}")
    with conn:
        tls_over(conn, ca_context(ca_dir))  # verifies chain and hostname
        cert = conn.sock.getpeercert()
        assert ("DNS", "localhost") in cert["subjectAltName"]


def test_clients_identified_by_the_connect(proxy_factory, upstream, ca_dir, token):
    proxy_factory.values["ca_dir"] = ca_dir
    px = proxy_factory(CLIENTS_CONF, env=POLICY_ENV)
    # No identification: 407 on the CONNECT itself.
    _, resp = connect_tunnel(px.port, f"localhost:{upstream.port}")
    assert resp.status == 407
    # bob is identified but not allowed.
    _, resp = connect_tunnel(px.port, f"localhost:{upstream.port}",
                             [("Proxy-Authorization", f"Bearer {BOB_TOKEN}")])
    assert resp.status == 403 and resp.error_code == "client_not_allowed", resp
    # alice: the CONNECT identifies her for every request inside (which carry no Proxy-Authorization).
    conn, resp = connect_tunnel(px.port, f"localhost:{upstream.port}",
                                [basic("alice", ALICE_PASSWORD)])
    with conn:
        assert resp.status == 200, resp
        tls_over(conn, ca_context(ca_dir))
        r = conn.request("GET", f"/echo/{token}-alice", [("Host", f"localhost:{upstream.port}")])
        assert r.status == 200, r
        assert "Proxy-Authorization" not in json.dumps(r.json()["headers"])
    line = [l for l in px.stderr_text().splitlines() if f"{token}-alice" in l][-1]
    assert "via=intercept" in line


GO_CLIENT = r"""
package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
)

// Go's net/http on its own: HTTPS_PROXY from the environment, SSL_CERT_FILE for the local CA.
func main() {
	client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyFromEnvironment}}
	for i := 0; i < 5; i++ {
		resp, err := client.Get(os.Args[1])
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		fmt.Println(resp.StatusCode)
	}
}
"""


def test_go_net_http_through_intercept(px, upstream, ca_dir, token, tmp_path):
    import shutil

    go = shutil.which("go")
    if go is None:
        pytest.fail("go is needed (scripts/test installs golang-go)")
    src = tmp_path / "main.go"
    src.write_text(GO_CLIENT)
    env = client_env(px, ca_dir)
    env.update(GOCACHE=str(tmp_path / "gocache"), HOME=str(tmp_path), GO111MODULE="off",
               GOFLAGS="", GOPROXY="off")
    # Go's ProxyFromEnvironment never proxies localhost; name the target through a route alias.
    out = subprocess.run([go, "run", str(src), f"https://localhost.:{upstream.port}/echo/{token}-go"],
                         env=env, capture_output=True, text=True, timeout=110)
    assert out.stdout.split() == ["200"] * 5, out.stdout + out.stderr[-2000:]
    seen = upstream.requests_matching(f"{token}-go")
    assert len(seen) == 5
    assert all(r.header_values("Authorization") == [f"Bearer {sv.BEARER_TOKEN}"] for r in seen)


def test_leaf_cache_counters_in_metrics(px, upstream, ca_dir, token):
    for i in range(3):
        r = curl("--proxy", f"http://127.0.0.1:{px.port}", "--cacert", str(ca_dir / "ca.pem"),
                 f"https://localhost:{upstream.port}/echo/{token}-m{i}")
        assert r.status == 200, r.stderr
    text = admin_get(admin_port(px), "/metrics").body.decode()
    values = {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
              if line.startswith("credproxy_intercept_")}
    # One host intercepted by every test of this module: one leaf, then cache hits.
    assert values["credproxy_intercept_leaf_mints_total"] == 1, values
    assert values["credproxy_intercept_leaf_cache_hits_total"] >= 2, values
    assert values["credproxy_intercept_leaf_cache_entries"] == 1, values


RESUME_CONF = """\
listen 127.0.0.1:0
ca-file {ca}
ca-cert {ca_dir}/ca.pem
ca-key {ca_dir}/ca-key.pem
route localhost:{upstream_port} {
  intercept
  auth bearer env:{env_bearer}
}
route 127.0.0.1:{upstream_port} {
  intercept
  auth bearer env:{env_bearer}
}
"""


def test_session_resumption_is_per_host(proxy_factory, upstream, ca_dir, token):
    """credproxy sends one TLS 1.3 ticket per handshake. A client resumes with it on the same host
    (an abbreviated handshake, the credential still injected), but a ticket from one intercepted
    host never resumes a session for another: each host's context has its own ticket keys, so the
    binding of CONNECT target, SNI and leaf holds for resumed sessions too."""
    proxy_factory.values["ca_dir"] = ca_dir
    px = proxy_factory(RESUME_CONF)
    ctx = ca_context(ca_dir)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3

    def one(authority: str, host: str, session=None):
        conn, resp = connect_tunnel(px.port, authority)
        with conn:
            assert resp.status == 200, resp
            conn.sock.settimeout(10)
            conn.sock = ctx.wrap_socket(conn.sock, server_hostname=host, session=session)
            r = conn.request("GET", f"/echo/{token}-{host}", [("Host", authority)])
            assert r.status == 200, r
            # TLS 1.3 tickets arrive after the handshake: the response has been read by now.
            return conn.sock.session, conn.sock.session_reused

    first, reused = one(f"localhost:{upstream.port}", "localhost")
    assert not reused and first is not None and first.has_ticket
    _, reused = one(f"localhost:{upstream.port}", "localhost", first)
    assert reused, "a ticket from this host should resume a session on it"
    _, reused = one(f"127.0.0.1:{upstream.port}", "127.0.0.1", first)
    assert not reused, "a ticket minted for localhost resumed a session for 127.0.0.1"
    seen = upstream.requests_matching(token)
    assert len(seen) == 3
    assert all(r.header_values("Authorization") == [f"Bearer {sv.BEARER_TOKEN}"] for r in seen)


def test_reload_uses_a_ca_replaced_in_place(proxy_factory, upstream, credproxy_bin, tmp_path, token,
                                             secret_guard):
    """A reload keeps the leaf cache while the CA files hold the same CA, but a CA replaced at the
    same paths (rotated, a Kubernetes Secret updated) is used from that reload on: clients that
    trust only the new CA must not be served leaves of the old one."""
    d = tmp_path / "rotating-ca"

    def ca_init(*extra: str) -> str:
        r = subprocess.run([str(credproxy_bin), "ca", "init", "--dir", str(d), *extra],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stdout + r.stderr
        for line in (d / "ca-key.pem").read_text().strip().splitlines()[1:-1]:
            secret_guard.add_secret("rotating CA key line", line)
        return (d / "ca.pem").read_text()

    old_pem = ca_init()
    old_ca = tmp_path / "old-ca.pem"
    old_ca.write_text(old_pem)
    proxy_factory.values["ca_dir"] = d
    px = proxy_factory(CONF, name="rotating-ca")
    authority = f"localhost:{upstream.port}"

    def fetch_with(cafile: Path, tag: str) -> None:
        conn, resp = connect_tunnel(px.port, authority)
        with conn:
            assert resp.status == 200, resp
            tls_over(conn, ssl.create_default_context(cafile=str(cafile)))
            r = conn.request("GET", f"/echo/{token}-{tag}", [("Host", authority)])
            assert r.status == 200, r

    def mints() -> float:
        text = admin_get(admin_port(px), "/metrics").body.decode()
        return next(float(l.split()[1]) for l in text.splitlines()
                    if l.startswith("credproxy_intercept_leaf_mints_total "))

    def reload(n: int) -> None:
        px.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 10
        while px.stderr_text().count("credproxy: reloaded ") < n:
            assert time.time() < deadline, px.stderr_text()[-1500:]
            time.sleep(0.05)

    fetch_with(old_ca, "before")
    assert mints() == 1
    reload(1)  # same files, same CA: the cached leaf is kept
    fetch_with(old_ca, "same-ca")
    assert mints() == 1

    new_pem = ca_init("--force")
    assert new_pem != old_pem
    reload(2)
    fetch_with(d / "ca.pem", "new-ca")
    with pytest.raises(ssl.SSLCertVerificationError):
        fetch_with(old_ca, "old-ca-refused")


JAVA_CONF = """\
listen 127.0.0.1:0
ca-file {ca}
ca-cert {ca_dir}/ca.pem
ca-key {ca_dir}/ca-key.pem
route upstream.itest.invalid {
  intercept
  connect-to 127.0.0.1:{upstream_port}
  auth bearer env:{env_bearer}
}
"""

JAVA_FETCH = """\
import java.net.URL;
import javax.net.ssl.HttpsURLConnection;

public class Fetch {
    public static void main(String[] args) throws Exception {
        HttpsURLConnection c = (HttpsURLConnection) new URL(args[0]).openConnection();
        System.out.println(c.getResponseCode());
        System.out.write(c.getInputStream().readAllBytes());
        System.out.flush();
    }
}
"""


@pytest.mark.skipif(not shutil.which("java") or not shutil.which("keytool"),
                    reason="no JDK (java and keytool) on this machine")
def test_java_trusts_the_ca_the_way_trust_prints(proxy_factory, upstream, credproxy_bin, ca_dir,
                                                  token, tmp_path):
    """The Java lines `credproxy trust` prints, run as printed (copy the JDK's store, keytool,
    JAVA_TOOL_OPTIONS), then an unmodified HttpsURLConnection with https.proxyHost: the request
    is intercepted and the upstream sees the route's token."""
    proxy_factory.values["ca_dir"] = ca_dir
    px = proxy_factory(JAVA_CONF, name="java")
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower() and k != "JAVA_HOME"}
    r = subprocess.run([str(credproxy_bin), "trust", "--dir", str(ca_dir), "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=30, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith("Java"))
    java_lines = [l.strip() for l in lines[start + 1:start + 4]]
    assert java_lines[0].startswith("cp ") and "$JAVA_HOME" not in java_lines[0], java_lines
    assert java_lines[1].startswith("keytool ") and java_lines[2].startswith("export JAVA_TOOL_OPTIONS=")
    script = "\n".join(["set -e", *java_lines, 'printf %s "$JAVA_TOOL_OPTIONS"'])
    setup = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120,
                           env=env)
    assert setup.returncode == 0, setup.stdout + setup.stderr
    (tmp_path / "Fetch.java").write_text(JAVA_FETCH)
    run = subprocess.run(
        ["java", f"-Dhttps.proxyHost=127.0.0.1", f"-Dhttps.proxyPort={px.port}", "Fetch.java",
         f"https://upstream.itest.invalid/echo/{token}-java"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env=dict(env, JAVA_TOOL_OPTIONS=setup.stdout))
    assert run.returncode == 0, run.stdout + run.stderr
    status, _, body = run.stdout.partition("\n")
    assert status == "200", run.stdout
    echo = json.loads(body)
    auth = [v for n, v in echo["headers"] if n.lower() == "authorization"]
    assert auth == [f"Bearer {sv.BEARER_TOKEN}"], echo["headers"]
    assert sv.BEARER_TOKEN not in run.stdout.replace(body, "") + run.stderr
