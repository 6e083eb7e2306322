"""Google credentials and the command line: ``check`` refuses impossible combinations, ``explain
--mint`` describes a real token without printing it, the default proxy.conf starts on a machine
without Google credentials, and no token ever shows up in logs, error bodies or CLI output."""

from __future__ import annotations

import re
import threading
import time

import pytest

from google_support import (  # noqa: F401 - fixtures
    CP,
    RO,
    SERVERLESS,
    assert_error,
    assert_no_leaks,
    conf,
    creds,
    emu,
    fetch,
    fetch_json,
    find_token_leaks,
    fingerprint,
    genv,
    gtmp,
    gup,
    new_sa,
    new_user,
    reset_emu,
    route,
    start_refresh_scenario_early,
    tokens_never_logged,
    track_secret,
)
from harness.proxy import REPO_ROOT

pytestmark = pytest.mark.timeout(60)


def _write(tmp_path, text: str, name: str = "proxy.conf"):
    path = tmp_path / name
    path.write_text(text)
    return path


# -- check ---------------------------------------------------------------------------------------

def test_check_refuses_oidc_with_a_refresh_token(emu, gup, cli, genv, pki, tmp_path):
    user = new_user(emu)
    path = _write(tmp_path, conf(
        pki.ca_file,
        creds("rt", f"source refresh-token {user.path}"),
        route(f"localhost:{gup.port}/ok", "auth OAuth2", "credentials rt"),
        route(f"localhost:{gup.port}/run", "auth OIDC", "credentials rt"),
    ))
    r = cli("check", "--config", str(path), env=genv())
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    msg = r.stderr
    assert re.search(r"proxy\.conf:\d+:\d+:", msg), msg
    assert "OIDC" in msg and "rt" in msg, msg
    assert re.search(r"refresh.token", msg, re.I) and re.search(r"ID token", msg, re.I), \
        f"the error should say why (a refresh token cannot mint ID tokens): {msg}"
    assert_no_leaks("check output", r.stdout + r.stderr, emu)


def test_serve_refuses_oidc_with_a_refresh_token_too(emu, gup, genv, pki, tmp_path):
    from harness.proxy import run_cli
    user = new_user(emu)
    path = _write(tmp_path, conf(
        pki.ca_file,
        creds("rt", f"source refresh-token {user.path}"),
        route(f"localhost:{gup.port}", "auth OIDC", "credentials rt"),
    ))
    r = run_cli(["serve", "--config", str(path)], env=genv(), timeout=15)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert re.search(r"ID token", r.stderr, re.I), r.stderr


def test_check_accepts_google_config_and_prints_no_secrets(emu, gup, cli, genv, pki, tmp_path):
    sa = new_sa(emu)
    user = new_user(emu)
    cid, csec = emu.new_client()
    track_secret("literal client secret", csec)
    path = _write(tmp_path, conf(
        pki.ca_file,
        creds("sa", f"source key-file {sa.path}", "refresh-window 2m"),
        creds("rt", f"source refresh-token {user.path}"),
        creds("cc", f"source client-credentials token-url {emu.token_url} client-id {cid} "
                    f'client-secret "{csec}"'),
        creds("imp", f"source impersonate target@{emu.project_id}.iam.gserviceaccount.com via sa",
              f"iam-endpoint {emu.iam_url}"),
        route(f"localhost:{gup.port}/a", f"auth OAuth2 scopes {RO} {CP}", "credentials sa"),
        route(f"localhost:{gup.port}/b", "auth OIDC audience url", "credentials sa",
              f"auth-header {SERVERLESS}"),
        route(f"localhost:{gup.port}/c", "auth OAuth2", "credentials rt"),
        route(f"localhost:{gup.port}/d", "auth OAuth2", "credentials cc"),
        route(f"localhost:{gup.port}/e", "auth OIDC", "credentials imp"),
    ))
    r = cli("check", "--config", str(path), env=genv())
    assert r.returncode == 0, (r.stdout, r.stderr)
    out = r.stdout + r.stderr
    for name in ("sa", "rt", "cc", "imp"):
        assert re.search(rf"\b{name}\b", out), f"credential {name} not in the check summary:\n{out}"
    assert "inline secret" in out or "literal" in out.lower() or "prefer env" in out, out
    assert csec not in out
    assert_no_leaks("check output", out, emu)


def test_check_rejects_plain_http_token_url_off_loopback(cli, genv, pki, tmp_path):
    path = _write(tmp_path, conf(
        pki.ca_file,
        creds("cc", "source client-credentials token-url http://auth.itest.invalid/token client-id x "
                    "client-secret env:NOPE"),
        route("api.itest.invalid", "auth OAuth2", "credentials cc"),
    ))
    r = cli("check", "--config", str(path), env=genv())
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "https" in r.stderr and "loopback" in r.stderr, r.stderr


# -- explain --mint --------------------------------------------------------------------------------

def _latest(emu, **kw):
    recs = emu.registry.issued(**kw)
    assert recs, f"nothing minted for {kw}"
    return recs[-1]


def test_explain_mint_exits_cleanly_every_time(emu, gup, cli, genv, pki, tmp_path):
    """`explain --mint` returned while its loop thread still tore down curl's TLS connection, and
    libcrypto's exit-time cleanup crashed it (SIGSEGV) about once in 150 runs: 120 runs, 8 at a
    time, all exit 0."""
    from concurrent.futures import ThreadPoolExecutor
    sa = new_sa(emu)
    path = _write(tmp_path, conf(
        pki.ca_file,
        creds("explain-sa", f"source key-file {sa.path}"),
        route(f"localhost:{gup.port}", f"auth OAuth2 scopes {CP}", "credentials explain-sa"),
    ))
    with ThreadPoolExecutor(8) as pool:
        runs = list(pool.map(
            lambda _: cli("explain", gup.url("/v1/x"), "--mint", "--config", str(path), env=genv(),
                          timeout=60),
            range(120)))
    crashed = [(r.returncode, r.stderr[-2000:]) for r in runs if r.returncode != 0]
    assert not crashed, f"{len(crashed)} of 120 runs failed; first: {crashed[0]}"


def test_explain_mint_oauth2(emu, gup, cli, genv, pki, tmp_path):
    sa = new_sa(emu)
    path = _write(tmp_path, conf(
        pki.ca_file,
        creds("explain-sa", f"source key-file {sa.path}"),
        route(f"localhost:{gup.port}", f"auth OAuth2 scopes {RO},{CP}", "credentials explain-sa"),
    ))
    r = cli("explain", gup.url("/v1/things?x=1"), "--mint", "--config", str(path), env=genv(), timeout=60)
    out = r.stdout + r.stderr
    assert r.returncode == 0, (r.returncode, out)
    rec = _latest(emu, email=sa.email)
    assert rec.kind == "access" and rec.scopes == sorted([CP, RO])
    assert re.search(r"access token|OAuth2", out, re.I), out
    assert "explain-sa" in out, out
    assert CP in out and RO in out, out
    assert fingerprint(rec.token) in out, f"fingerprint {fingerprint(rec.token)} not in:\n{out}"
    assert re.search(r"expir", out, re.I), out
    assert rec.token not in out
    assert_no_leaks("explain --mint output", out, emu)


def test_explain_mint_oidc(emu, gup, cli, genv, pki, tmp_path):
    sa = new_sa(emu)
    path = _write(tmp_path, conf(
        pki.ca_file,
        creds("explain-oidc", f"source key-file {sa.path}"),
        route(f"localhost:{gup.port}", "auth OIDC", "credentials explain-oidc"),
    ))
    r = cli("explain", gup.url("/svc/path?q=1"), "--mint", "--config", str(path), env=genv(), timeout=60)
    out = r.stdout + r.stderr
    assert r.returncode == 0, (r.returncode, out)
    rec = _latest(emu, email=sa.email, kind="id")
    assert rec.audience == gup.origin, rec
    assert re.search(r"ID token|OIDC", out), out
    assert "explain-oidc" in out and gup.origin in out, out
    assert fingerprint(rec.token) in out, out
    assert re.search(r"expir", out, re.I), out
    assert_no_leaks("explain --mint output", out, emu)
    # The JWT's payload alone would reveal it too.
    assert rec.token.split(".")[1] not in out


def test_explain_mint_failure_names_the_cause_and_exits_nonzero(emu, gup, cli, genv, pki, tmp_path):
    sa = new_sa(emu)
    path = _write(tmp_path, conf(
        pki.ca_file,
        creds("explain-bad", f"source key-file {sa.path}"),
        route(f"localhost:{gup.port}", "auth OAuth2", "credentials explain-bad"),
    ))
    emu.token.fail_next(1, "invalid_grant")
    r = cli("explain", gup.url("/x"), "--mint", "--config", str(path), env=genv(), timeout=60)
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert "explain-bad" in out and "invalid_grant" in out, out


def test_explain_without_mint_names_the_credential_only(emu, gup, cli, genv, pki, tmp_path):
    sa = new_sa(emu)
    before = emu.mint_count()
    path = _write(tmp_path, conf(
        pki.ca_file,
        creds("named-cred", f"source key-file {sa.path}"),
        route(f"localhost:{gup.port}", "auth OAuth2", "credentials named-cred"),
    ))
    r = cli("explain", gup.url("/x"), "--config", str(path), env=genv())
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "named-cred" in r.stdout, r.stdout
    assert emu.mint_count() == before, "explain without --mint must not mint"


# -- the default proxy.conf ----------------------------------------------------------------------------

def test_default_config_without_google_credentials(proxy_factory, genv, closed_port):
    text = (REPO_ROOT / "proxy.conf").read_text()
    text, n = re.subn(r"(?m)^listen\s+127\.0\.0\.1:8080\b", "listen 127.0.0.1:0", text)
    assert n == 1, "the default proxy.conf should listen on 127.0.0.1:8080"
    if not re.search(r"(?mi)^route\s+\*\.googleapis\.com", text):
        pytest.fail("the default proxy.conf has no *.googleapis.com route (spec: OAuth2 via default ADC)")
    env = genv()
    px = proxy_factory(text, env=env)
    results: dict[str, object] = {}

    def get(label, url):
        t0 = time.monotonic()
        results[label] = (fetch(px, url, timeout=40), time.monotonic() - t0)

    threads = [threading.Thread(target=get, args=("googleapis", "http://storage.googleapis.com/storage/v1/b?project=p")),
               threading.Thread(target=get, args=("run.app", "http://hello-abc123-uc.a.run.app/"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(45)
    for label in ("googleapis", "run.app"):
        r, took = results[label]
        assert r.status == 503, (label, r)
        assert r.error_code in ("token_unavailable", "credential_unavailable"), (label, r)
        body = r.text
        # It describes the ADC search: the variable, the gcloud file it looked for, the metadata server.
        assert "GOOGLE_APPLICATION_CREDENTIALS" in body, (label, body)
        assert env["CLOUDSDK_CONFIG"] in body and "application_default_credentials.json" in body, (label, body)
        assert re.search(r"metadata", body, re.I) and f"127.0.0.1:{closed_port}" in body, (label, body)
        assert "default" in body, (label, body)
    assert px.alive()


# -- no token anywhere ------------------------------------------------------------------------------

def test_no_token_in_logs_error_bodies_or_cli_output(emu, gup, proxy_factory, cli, genv, pki, tmp_path):
    sa = new_sa(emu)
    user = new_user(emu)
    cid, csec = emu.new_client()
    track_secret("cc secret", csec)
    p = gup.port
    text = conf(
        pki.ca_file,
        creds("sa", f"source key-file {sa.path}"),
        creds("rt", f"source refresh-token {user.path}"),
        creds("md", "source metadata"),
        creds("cc", f"source client-credentials token-url {emu.token_url} client-id {cid} "
                    "client-secret env:ITEST_GOOGLE_CC_SECRET"),
        creds("imp", f"source impersonate leak-target@{emu.project_id}.iam.gserviceaccount.com via sa",
              f"iam-endpoint {emu.iam_url}"),
        route(f"localhost:{p}/sa", "auth OAuth2", "credentials sa"),
        route(f"localhost:{p}/sa-id", "auth OIDC", "credentials sa", f"auth-header {SERVERLESS}"),
        route(f"localhost:{p}/rt", f"auth OAuth2 scopes {RO}", "credentials rt"),
        route(f"localhost:{p}/md", "auth OAuth2", "credentials md"),
        route(f"localhost:{p}/md-id", "auth OIDC audience url", "credentials md"),
        route(f"localhost:{p}/cc", "auth OAuth2", "credentials cc"),
        route(f"localhost:{p}/imp", "auth OAuth2", "credentials imp"),
        route(f"localhost:{p}/imp-id", "auth OIDC", "credentials imp"),
    )
    env = genv(GCE_METADATA_HOST=emu.metadata_host, ITEST_GOOGLE_CC_SECRET=csec)
    px = proxy_factory(text, env=env)
    paths = ["/sa/x", "/sa-id/x", "/rt/x", "/md/x", "/md-id/x", "/cc/x", "/imp/x", "/imp-id/x"]
    fps = []
    for path in paths:
        body = fetch_json(px, gup.url(path + "?access_token=not-a-real-one"))
        d = body["serverless"] if path.startswith("/sa-id") else body["authorization"]
        assert d and d["known"], (path, body)
        fps.append(d["fingerprint"])

    error_bodies = []
    # 401 evict-and-retry.
    first = emu.registry.issued(email=sa.email, kind="access")[-1]
    emu.registry.revoke(first.token)
    assert fetch(px, gup.url("/sa/protected")).status == 200
    # A failing mint on a new key (a new URL audience), then a refusal during the backoff.
    emu.metadata.fail_next(1, "invalid_grant")
    for i in range(2):
        r = fetch(px, gup.url("/md-id/new-audience"))
        assert_error(r, 503, "token_unavailable", "md")
        error_bodies.append(r.text)
    emu.iam.fail_next(1, "invalid_grant")
    r = fetch(px, gup.url("/imp-id/x"))  # cached ID token: no IAM call, still fine
    assert r.status == 200, r
    emu.iam.clear_failures()

    cfg = _write(tmp_path, text, "leak.conf")
    outputs = []
    c = cli("check", "--config", str(cfg), env=env)
    outputs.append(c.stdout + c.stderr)
    for path in paths:
        e = cli("explain", gup.url(path), "--config", str(cfg), env=env)
        outputs.append(e.stdout + e.stderr)
        m = cli("explain", gup.url(path), "--mint", "--config", str(cfg), env=env, timeout=60)
        assert m.returncode == 0, (path, m.stdout, m.stderr)
        outputs.append(m.stdout + m.stderr)

    px.stop()
    stderr = px.stderr_text() + px.stdout_text()
    # Positive control: the mints were logged, by fingerprint.
    for fp in fps:
        assert fp in stderr, f"fingerprint {fp} not logged"
    assert len(emu.registry.issued()) >= 2 * len(paths)
    leaks = {
        "proxy stderr/stdout": find_token_leaks(stderr, emu),
        "error bodies": find_token_leaks("\n".join(error_bodies), emu),
        "check/explain output": find_token_leaks("\n".join(outputs), emu),
    }
    assert not any(leaks.values()), leaks
