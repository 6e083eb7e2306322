"""The local CA for `intercept` routes, through the real binary: `credproxy ca init|export|leaf` and
`credproxy trust`, checked with `openssl verify`, `openssl x509 -text`, Python's `ssl` (a TLS server
in the test serving a minted leaf), and bash evaluating `trust --shell`."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import threading
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(60)

CONSTRAINED = """\
listen 127.0.0.1:0
route *.googleapis.com api.example.com {
  intercept
  auth none
}
route localhost 127.0.0.1 {
  intercept
}
route other.example.org {
  auth none
}
"""

OPEN = """\
listen 127.0.0.1:0
route api.example.com {
  intercept
}
route * {
  intercept
}
"""


def openssl(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=30, cwd=cwd)


def key_lines(path: Path) -> list[str]:
    """The base64 lines of a PEM key: none of them may appear in any output."""
    return [l for l in path.read_text().splitlines() if l and not l.startswith("-----")]


def assert_no_key(outputs: list[str], key: Path) -> None:
    text = "\n".join(outputs)
    for line in key_lines(key):
        assert line not in text, "the CA key appeared in command output"


@pytest.fixture
def ca(cli, tmp_path):
    """`ca init` in a directory with a name-constrained config; returns (dir, outputs)."""
    (tmp_path / "proxy.conf").write_text(CONSTRAINED)
    r = cli("ca", "init", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    d = tmp_path / "credproxy-ca"
    return d, [r.stdout, r.stderr]


def mint(cli, cwd: Path, host: str) -> tuple[Path, Path, list[str]]:
    r = cli("ca", "leaf", host, "--out", "leaves", cwd=cwd)
    assert r.returncode == 0, r.stdout + r.stderr
    return cwd / "leaves" / f"{host}.pem", cwd / "leaves" / f"{host}-key.pem", [r.stdout, r.stderr]


def test_init_writes_a_0600_key_and_a_name_constrained_ca(ca, cli):
    d, outputs = ca
    key = d / "ca-key.pem"
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    assert "PRIVATE KEY" in key.read_text()
    text = openssl("x509", "-in", str(d / "ca.pem"), "-noout", "-text").stdout
    assert "CA:TRUE, pathlen:0" in text
    assert "X509v3 Basic Constraints: critical" in text
    assert "X509v3 Key Usage: critical" in text and "Certificate Sign, CRL Sign" in text
    assert "X509v3 Subject Key Identifier" in text
    assert "X509v3 Name Constraints: critical" in text
    permitted = text.split("Permitted:")[1].split("Signature Algorithm")[0].split()
    assert permitted == ["DNS:.googleapis.com", "DNS:api.example.com", "DNS:localhost",
                         "IP:127.0.0.1/255.255.255.255"]
    assert "ecdsa-with-SHA256" in text and "prime256v1" in text
    assert "Subject: O = credproxy, CN = credproxy local CA (" in text
    assert "key: credproxy-ca/ca-key.pem (mode 0600; never printed)" in outputs[0]
    assert_no_key(outputs, key)


def test_leaves_verify_inside_the_constraints_and_fail_outside(ca, cli):
    d, outputs = ca
    cwd = d.parent
    for host in ["storage.googleapis.com", "api.example.com", "localhost", "127.0.0.1"]:
        leaf, _, out = mint(cli, cwd, host)
        outputs += out
        r = openssl("verify", "-CAfile", str(d / "ca.pem"), str(leaf))
        assert r.returncode == 0 and f"{leaf}: OK" in r.stdout, (host, r.stdout, r.stderr)
        text = openssl("x509", "-in", str(leaf), "-noout", "-text").stdout
        san = "IP Address:127.0.0.1" if host == "127.0.0.1" else f"DNS:{host}"
        assert f"X509v3 Subject Alternative Name: \n                {san}" in text, text
        assert "TLS Web Server Authentication" in text and "CA:FALSE" in text
        assert "verifies against the CA: yes" in out[0]
    for host in ["evil.com", "googleapis.com", "10.0.0.1"]:
        leaf, _, out = mint(cli, cwd, host)
        outputs += out
        r = openssl("verify", "-CAfile", str(d / "ca.pem"), str(leaf))
        assert r.returncode != 0, (host, r.stdout)
        assert "permitted subtree violation" in r.stdout + r.stderr
        assert "verifies against the CA: no (permitted subtree violation)" in out[0]
    assert_no_key(outputs, d / "ca-key.pem")


def serve_once(leaf_chain: Path, key: Path) -> tuple[int, threading.Thread, list]:
    """A one-connection TLS server presenting the leaf (with the CA as chain)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(leaf_chain), str(key))
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    errors: list = []

    def run():
        with listener:
            conn, _ = listener.accept()
            try:
                with ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(b"hello")
            except (ssl.SSLError, OSError) as e:  # the client refused the certificate
                errors.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return port, t, errors


def client_handshake(port: int, ca_file: Path, server_hostname: str) -> bytes:
    ctx = ssl.create_default_context(cafile=str(ca_file))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=server_hostname) as tls:
            return tls.recv(5)


def test_python_ssl_accepts_the_leaf_for_its_host_and_rejects_it_for_another(ca, cli):
    d, _ = ca
    leaf, key, _ = mint(cli, d.parent, "api.example.com")
    chain = leaf.with_name("api.example.com-chain.pem")
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    port, t, _ = serve_once(chain, key)
    assert client_handshake(port, d / "ca.pem", "api.example.com") == b"hello"
    t.join(5)

    port, t, _ = serve_once(chain, key)
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        client_handshake(port, d / "ca.pem", "www.example.net")
    t.join(5)

    # A leaf outside the name constraints is refused even for its own name.
    leaf, key, _ = mint(cli, d.parent, "evil.com")
    port, t, _ = serve_once(leaf.with_name("evil.com-chain.pem"), key)
    with pytest.raises(ssl.SSLCertVerificationError, match="permitted subtree violation"):
        client_handshake(port, d / "ca.pem", "evil.com")
    t.join(5)


def test_init_refuses_to_overwrite_unless_forced(ca, cli):
    d, _ = ca
    before = (d / "ca.pem").read_text(), (d / "ca-key.pem").read_text()
    r = cli("ca", "init", cwd=d.parent)
    assert r.returncode == 1
    assert "already exists" in r.stderr and "--force" in r.stderr
    assert ((d / "ca.pem").read_text(), (d / "ca-key.pem").read_text()) == before
    r = cli("ca", "init", "--force", cwd=d.parent)
    assert r.returncode == 0, r.stderr
    assert (d / "ca.pem").read_text() != before[0]
    assert oct((d / "ca-key.pem").stat().st_mode & 0o777) == "0o600"
    assert_no_key([r.stdout, r.stderr], d / "ca-key.pem")


def test_export_prints_the_certificate_only(ca, cli):
    d, _ = ca
    r = cli("ca", "export", cwd=d.parent)
    assert r.returncode == 0, r.stderr
    assert r.stdout == (d / "ca.pem").read_text()
    assert "PRIVATE" not in r.stdout + r.stderr


def test_trust_shell_evals_and_the_bundle_has_system_roots_and_the_ca(ca, cli, tmp_path):
    d, _ = ca
    r = cli("trust", "--shell", cwd=d.parent)
    assert r.returncode == 0, r.stderr
    assert all(l.startswith("export ") for l in r.stdout.splitlines()), r.stdout
    script = r.stdout + 'printf "%s\\n" "$SSL_CERT_FILE" "$REQUESTS_CA_BUNDLE" "$CURL_CA_BUNDLE" ' \
        '"$NODE_EXTRA_CA_CERTS" "$GIT_SSL_CAINFO"\n'
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=10,
                         env={"PATH": os.environ["PATH"]})
    assert out.returncode == 0, out.stderr
    bundle = str(d / "ca-bundle.pem")
    assert out.stdout.splitlines() == [bundle, bundle, bundle, str(d / "ca.pem"), bundle]
    text = Path(bundle).read_text()
    system = Path("/etc/ssl/certs/ca-certificates.crt")
    if system.exists():
        assert text.startswith(system.read_text().rstrip("\n"))
        assert text.count("BEGIN CERTIFICATE") == system.read_text().count("BEGIN CERTIFICATE") + 1
    assert text.rstrip().endswith((d / "ca.pem").read_text().rstrip())
    # The bundle works for a client that only reads it (SSL_CERT_FILE replaces the store).
    leaf, key, _ = mint(cli, d.parent, "api.example.com")
    port, t, _ = serve_once(leaf.with_name("api.example.com-chain.pem"), key)
    assert client_handshake(port, Path(bundle), "api.example.com") == b"hello"
    t.join(5)

    out_dir = tmp_path / "elsewhere"
    r = cli("trust", "--out", str(out_dir), cwd=d.parent)
    assert r.returncode == 0, r.stderr
    assert (out_dir / "ca-bundle.pem").exists()
    for needle in ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS",
                   "GIT_SSL_CAINFO", "gcloud config set core/custom_ca_certs_file",
                   "keytool -importcert", "JAVA_TOOL_OPTIONS=", "-Djavax.net.ssl.trustStore=",
                   "/usr/local/share/ca-certificates/credproxy.crt", "update-ca-certificates"]:
        assert needle in r.stdout, needle
    assert_no_key([r.stdout, r.stderr], d / "ca-key.pem")


def test_ca_cert_and_key_from_the_config_and_load_errors(cli, tmp_path):
    shared = tmp_path / "shared"
    conf = tmp_path / "proxy.conf"
    conf.write_text(f"ca-cert {shared}/cert.pem\nca-key {shared}/key.pem\n" + CONSTRAINED)
    r = cli("ca", "init", "--config", str(conf))
    assert r.returncode == 0, r.stderr
    assert (shared / "cert.pem").exists() and oct((shared / "key.pem").stat().st_mode & 0o777) == "0o600"
    r = cli("ca", "export", "--config", str(conf))
    assert r.stdout == (shared / "cert.pem").read_text()

    # A key that does not belong to the certificate: a clear error naming both files.
    other = tmp_path / "other"
    assert cli("ca", "init", "--dir", str(other)).returncode == 0
    conf.write_text(f"ca-cert {shared}/cert.pem\nca-key {other}/ca-key.pem\n" + CONSTRAINED)
    r = cli("ca", "export", "--config", str(conf))
    assert r.returncode == 1
    assert f"CA key {other}/ca-key.pem does not match the CA certificate {shared}/cert.pem" in r.stderr
    conf.write_text(f"ca-cert {shared}/missing.pem\nca-key {shared}/key.pem\n" + CONSTRAINED)
    r = cli("trust", "--config", str(conf))
    assert r.returncode == 1
    assert f"CA certificate (ca-cert) {shared}/missing.pem: cannot read: No such file" in r.stderr
    assert_no_key([r.stdout, r.stderr], shared / "key.pem")


def test_check_requires_both_and_warns_when_constraints_are_impossible(cli, tmp_path):
    conf = tmp_path / "proxy.conf"
    conf.write_text("ca-cert ca.pem\n" + CONSTRAINED)
    r = cli("check", "--config", str(conf))
    assert r.returncode == 2
    assert f"{conf}:1:1: ca-cert without ca-key" in r.stderr
    conf.write_text("route a.example.com {\n  tunnel\n  intercept\n}\n")
    r = cli("check", "--config", str(conf))
    assert r.returncode == 2 and "cannot have both tunnel and intercept" in r.stderr

    conf.write_text(OPEN)
    r = cli("check", "--config", str(conf))
    assert r.returncode == 0, r.stderr
    assert f"{conf}:5:1: route #2 intercepts *, which cannot be name-constrained" in r.stdout + r.stderr
    r = cli("ca", "init", "--config", str(conf), "--dir", str(tmp_path / "ca"))
    assert r.returncode == 0, r.stderr
    assert "name constraints: none (route #2 (line 5) intercepts *, which cannot be name-constrained)" \
        in r.stdout
    text = openssl("x509", "-in", str(tmp_path / "ca" / "ca.pem"), "-noout", "-text").stdout
    assert "Name Constraints" not in text


def test_check_shows_the_ca_and_warns_about_hosts_it_cannot_sign_for(ca, cli, tmp_path):
    d, _ = ca
    conf = tmp_path / "proxy.conf"  # the config the CA was made (and name-constrained) for
    r = cli("check", "--config", str(conf), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "interception: 2 routes terminate CONNECT with leaves from the local CA " \
           "(ca-cert credproxy-ca/ca.pem, ca-key credproxy-ca/ca-key.pem)" in out
    assert "local CA:\n  subject: CN=credproxy local CA" in out
    assert "name constraints: Permitted: DNS:.googleapis.com" in out
    assert "signs for: every intercepted pattern (4 checked with a test leaf)" in out
    assert "metadata-server: off" in out
    assert "warning:" not in out and out.rstrip().endswith(", 0 warnings")
    policy = out[out.index("route policy:"):]
    assert "intercept" in policy.splitlines()[2]

    # The config grows a host the CA was not made for: check says clients will reject its leaf.
    conf.write_text(CONSTRAINED + "route storage.example.net {\n  intercept\n  auth none\n}\n"
                    "metadata-server 127.0.0.1:0\n")
    r = cli("check", "--config", str(conf), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "signs for: 4 of 5 intercepted patterns (see the warnings)" in r.stdout
    assert "warning: route #4 (line 12) intercepts storage.example.net, but a leaf the local CA signs " \
           "for storage.example.net does not verify (permitted subtree violation): clients will reject it" \
           in r.stdout
    assert "metadata-server: 127.0.0.1:0 (GCE metadata stub: placeholder tokens only" in r.stdout
    assert_no_key([r.stdout, r.stderr], d / "ca-key.pem")

    # No CA at all: check names the missing files instead of failing.
    r = cli("check", "--config", str(conf), cwd=tmp_path / "credproxy-ca")
    assert r.returncode == 0, r.stderr
    assert "ca-cert credproxy-ca/ca.pem cannot be read; serve refuses to start without the local CA " \
           "(make one with: credproxy ca init)" in r.stdout


def test_explain_says_how_an_https_client_reaches_the_route(cli, tmp_path):
    conf = tmp_path / "proxy.conf"
    conf.write_text(CONSTRAINED + "route tunnelled.example.org {\n  tunnel\n}\n")
    r = cli("explain", "--config", str(conf), "https://storage.googleapis.com/b/x")
    assert r.returncode == 0, r.stderr
    assert "a client using https:// with HTTPS_PROXY sends CONNECT to port 443: intercepted by route #1" \
        in r.stdout
    r = cli("explain", "--config", str(conf), "https://other.example.org/x")
    assert "sends CONNECT to port 443: refused (403 tunnel_denied); only an absolute-form http:// request " \
           "gets this answer" in r.stdout
    r = cli("explain", "--config", str(conf), "--method", "CONNECT", "https://api.example.com")
    assert "allowed: intercept" in r.stdout
    assert "auth: chosen by each inner request's route, never by the CONNECT" in r.stdout
    assert "bound to api.example.com:443 (another authority gets 421 misdirected)" in r.stdout
    r = cli("explain", "--config", str(conf), "--method", "CONNECT", "https://tunnelled.example.org")
    assert "allowed: tunnel" in r.stdout and "no credential is added" in r.stdout
