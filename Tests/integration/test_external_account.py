"""Workload identity federation (`external_account` credential files) end to end.

A test "external IdP" (an RSA key made here, issuer `https://token.actions.githubusercontent.com`)
signs subject tokens; the emulators' STS (``POST /v1/token``) verifies each one with
``cryptography`` (signature, issuer, audience, expiry) before it grants, and IAM Credentials
impersonates with the STS token. The same ADC files are handed to the real ``google-auth``
library and to credproxy: both must get a token from the same emulators, with the same exchange.
"""

from __future__ import annotations

import http.server
import json
import os
import secrets
import socketserver
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from emulators import CLOUD_PLATFORM_SCOPE, encode_jwt, generate_rsa_key
from google_support import (  # noqa: F401 - fixtures
    CP,
    SERVERLESS,
    assert_error,
    conf,
    creds,
    emu,
    fetch,
    fetch_json,
    fetch_many,
    genv,
    gtmp,
    gup,
    non_loopback_ip,
    reset_emu,
    route,
    start_refresh_scenario_early,
    tokens_never_logged,
    track_secret,
    wait_until,
)

pytestmark = pytest.mark.timeout(90)

ISSUER = "https://token.actions.githubusercontent.com"
POOL_AUDIENCE = "//iam.googleapis.com/projects/123456789/locations/global/workloadIdentityPools/ci/providers/github"
WORKFORCE_AUDIENCE = "//iam.googleapis.com/locations/global/workforcePools/staff/providers/idp"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"
IDP_KEY = generate_rsa_key()
OTHER_KEY = generate_rsa_key()
KID = "idp-key-1"
TARGET = "deployer@credproxy-test.iam.gserviceaccount.com"


@pytest.fixture(autouse=True)
def provider(emu):
    emu.token.add_workload_provider(POOL_AUDIENCE, ISSUER, IDP_KEY.public_key(), KID)
    emu.token.add_workload_provider(WORKFORCE_AUDIENCE, ISSUER, IDP_KEY.public_key(), KID)
    with emu.token._sts_lock:  # noqa: SLF001 - each test counts its own exchanges
        emu.token.sts_exchanges.clear()
    yield


def subject_token(sub: str = "repo:myorg/deploy:ref:refs/heads/main", *, aud: str | None = None,
                  iss: str = ISSUER, lifetime: int = 600, key=IDP_KEY, kid: str = KID) -> str:
    now = int(time.time())
    token = encode_jwt(key, {"iss": iss, "sub": sub, "aud": aud or "https:" + POOL_AUDIENCE,
                             "iat": now, "exp": now + lifetime, "repository": "myorg/deploy"}, kid=kid)
    track_secret(f"subject token for {sub}", token)
    track_secret(f"subject token signature for {sub}", token.rsplit(".", 1)[1])
    return token


def adc(path: Path, emu, source: dict, *, impersonate: str | None = None, audience: str = POOL_AUDIENCE,
        **extra: Any) -> Path:
    info: dict[str, Any] = {
        "type": "external_account",
        "audience": audience,
        "subject_token_type": JWT_TYPE,
        "token_url": emu.sts_url,
        "credential_source": source,
    }
    if impersonate:
        info["service_account_impersonation_url"] = emu.iam.access_token_url(impersonate)
    info.update(extra)
    path.write_text(json.dumps(info, indent=2))
    return path


def exchanges(emu) -> list[dict]:
    with emu.token._sts_lock:  # noqa: SLF001
        return list(emu.token.sts_exchanges)


def google_auth_token(path: Path) -> str:
    """What the real google-auth library gets from the same file and emulators."""
    import google.auth.transport.requests
    from google.auth import identity_pool, pluggable

    info = json.loads(path.read_text())
    # The type-specific loaders (the generic one also looks the project up on the network).
    loader = pluggable if "executable" in info["credential_source"] else identity_pool
    credentials = loader.Credentials.from_file(str(path), scopes=[CLOUD_PLATFORM_SCOPE])
    credentials.refresh(google.auth.transport.requests.Request())
    return credentials.token


def sts_access(d: dict) -> None:
    assert d and d["known"], f"upstream got no token the emulators issued: {d}"
    assert d["kind"] == "access" and d["source"] == "sts", d
    assert d["scopes"] == [CP], d


def same_exchange(a: dict, b: dict) -> None:
    """google-auth and credproxy asked STS for the same thing (the subject token is not recorded)."""
    keys = ["grant_type", "audience", "scope", "requested_token_type", "subject_token_type", "options"]
    assert {k: a.get(k) for k in keys} == {k: b.get(k) for k in keys}, (a, b)
    assert a["claims"]["sub"] == b["claims"]["sub"]


class SubjectServer:
    """A GitHub-Actions-like token URL: GET with `Authorization: Bearer <request token>` answers
    `{"count": 1, "value": "<jwt>"}`; anything else is 401. Counts the requests it granted."""

    def __init__(self, token_fn):
        self.token_fn = token_fn
        self.request_token = "req-" + secrets.token_hex(16)
        track_secret("subject url request token", self.request_token)
        self.granted = 0
        self.refused = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):  # noqa: N802
                ok = self.headers.get("Authorization") == f"Bearer {outer.request_token}" and \
                    self.path.startswith("/token?audience=")
                body = json.dumps({"count": 1, "value": outer.token_fn()}).encode() if ok else b"{}"
                if ok:
                    outer.granted += 1
                else:
                    outer.refused += 1
                self.send_response(200 if ok else 401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

        self.httpd = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/token?audience=sts"

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def subject_server():
    holder: dict[str, str] = {"token": ""}
    server = SubjectServer(lambda: holder["token"])
    server.holder = holder  # type: ignore[attr-defined]
    yield server
    server.stop()


def executable(directory: Path, name: str, body: str) -> Path:
    path = directory / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return path


def exe_response(token: str, *, expires_in: int = 600, extra: str = "") -> str:
    exp = int(time.time()) + expires_in
    return (f'{{"version": 1, "success": true, "token_type": "{JWT_TYPE}", '
            f'"id_token": "{token}", "expiration_time": {exp}{extra}}}')


def ext_conf(pki, gup, *credential_lines: str, routes: tuple = ()) -> str:
    return conf(pki.ca_file, creds("wif", *credential_lines),
                route(f"localhost:{gup.port}/oauth", "auth OAuth2", "credentials wif"),
                *routes)


# ---------------------------------------------------------------------------------------------
# The three subject-token sources, each cross-checked against google-auth
# ---------------------------------------------------------------------------------------------


def test_file_text_source_via_adc_matches_google_auth(emu, gup, proxy_factory, genv, pki, tmp_path):
    (tmp_path / "subject.jwt").write_text(subject_token() + "\n")
    path = adc(tmp_path / "adc.json", emu, {"file": str(tmp_path / "subject.jwt")})

    theirs = google_auth_token(path)
    assert emu.lookup(theirs).source == "sts"

    px = proxy_factory(conf(pki.ca_file, route(f"localhost:{gup.port}/oauth", "auth OAuth2")),
                       env=genv(GOOGLE_APPLICATION_CREDENTIALS=str(path)))
    a = fetch_json(px, gup.url("/oauth/x"))["authorization"]
    sts_access(a)
    assert emu.lookup(theirs).token != a["fingerprint"]
    google_auth, ours = exchanges(emu)
    same_exchange(google_auth, ours)
    assert ours["claims"]["sub"] == "repo:myorg/deploy:ref:refs/heads/main"
    assert ours["client_authenticated"] is False


def test_file_json_source_via_key_file(emu, gup, proxy_factory, genv, pki, tmp_path):
    (tmp_path / "subject.json").write_text(json.dumps({"id_token": subject_token("json-sub"), "other": 1}))
    path = adc(tmp_path / "wif.json", emu, {"file": str(tmp_path / "subject.json"),
                                            "format": {"type": "json", "subject_token_field_name": "id_token"}})
    assert emu.lookup(google_auth_token(path)).source == "sts"
    px = proxy_factory(ext_conf(pki, gup, f"source key-file {path}"), env=genv())
    sts_access(fetch_json(px, gup.url("/oauth/x"))["authorization"])
    google_auth, ours = exchanges(emu)
    same_exchange(google_auth, ours)
    assert ours["claims"]["sub"] == "json-sub"


def test_url_source_with_headers_matches_google_auth(emu, gup, proxy_factory, genv, pki, tmp_path, subject_server):
    subject_server.holder["token"] = subject_token("url-sub")
    source = {"url": subject_server.url, "headers": {"Authorization": f"Bearer {subject_server.request_token}"},
              "format": {"type": "json", "subject_token_field_name": "value"}}
    path = adc(tmp_path / "wif.json", emu, source)
    assert emu.lookup(google_auth_token(path)).source == "sts"
    px = proxy_factory(ext_conf(pki, gup, f"source key-file {path}"), env=genv())
    sts_access(fetch_json(px, gup.url("/oauth/x"))["authorization"])
    google_auth, ours = exchanges(emu)
    same_exchange(google_auth, ours)
    assert subject_server.granted == 2 and subject_server.refused == 0


def test_url_source_refused_is_named(emu, gup, proxy_factory, genv, pki, tmp_path, subject_server):
    source = {"url": subject_server.url, "headers": {"Authorization": "Bearer wrong"}}
    path = adc(tmp_path / "wif.json", emu, source)
    px = proxy_factory(ext_conf(pki, gup, f"source key-file {path}"), env=genv())
    r = fetch(px, gup.url("/oauth/x"))
    assert_error(r, 503, "token_unavailable", f"subject token url {subject_server.url}", "HTTP 401")
    assert not exchanges(emu)


def test_executable_source_matches_google_auth(emu, gup, proxy_factory, genv, pki, tmp_path, monkeypatch):
    token = subject_token("exe-sub")
    env_dump = tmp_path / "exe-env.txt"
    exe = executable(tmp_path, "get-token", f"env > {env_dump}\necho '{exe_response(token)}'")
    path = adc(tmp_path / "wif.json", emu,
               {"executable": {"command": f"{exe} --flag 'two words'", "timeout_millis": 5000}})
    monkeypatch.setenv("GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES", "1")
    assert emu.lookup(google_auth_token(path)).source == "sts"
    px = proxy_factory(ext_conf(pki, gup, f"source key-file {path}"),
                       env=genv(GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES="1", ITEST_NOT_FOR_PROGRAMS="x"))
    sts_access(fetch_json(px, gup.url("/oauth/x"))["authorization"])
    google_auth, ours = exchanges(emu)
    same_exchange(google_auth, ours)
    env = dict(line.split("=", 1) for line in env_dump.read_text().splitlines() if "=" in line)
    assert env["GOOGLE_EXTERNAL_ACCOUNT_AUDIENCE"] == POOL_AUDIENCE
    assert env["GOOGLE_EXTERNAL_ACCOUNT_TOKEN_TYPE"] == JWT_TYPE
    assert env["GOOGLE_EXTERNAL_ACCOUNT_INTERACTIVE"] == "0"
    assert "ITEST_NOT_FOR_PROGRAMS" not in env and "GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES" not in env


def test_executable_needs_the_allow_variable(emu, gup, proxy_factory, genv, pki, tmp_path):
    exe = executable(tmp_path, "get-token", f"touch {tmp_path}/ran; echo '{exe_response(subject_token())}'")
    path = adc(tmp_path / "wif.json", emu, {"executable": {"command": str(exe)}})
    px = proxy_factory(ext_conf(pki, gup, f"source key-file {path}"), env=genv())
    r = fetch(px, gup.url("/oauth/x"))
    assert_error(r, 503, "credential_unavailable", "GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES=1")
    assert not (tmp_path / "ran").exists()


@pytest.mark.parametrize(
    "case, body, timeout_ms, needle",
    [
        ("fails", "echo '{resp}'; echo oops >&2; exit 4", 5000, "exited with status 4"),
        ("garbage", "echo 'not json {tok}'", 5000, "exited with status 0 but printed no JSON object"),
        ("unsuccessful", "echo '{{\"version\": 1, \"success\": false, \"code\": \"401\", \"message\": \"{tok}\"}}'",
         5000, "response says success: false"),
        ("expired", "echo '{expired}'", 5000, "response token has expired"),
        ("times-out", "echo '{resp}'; sleep 30", 5000, "timed out after 5 s and was killed"),
    ],
)
def test_executable_failures(emu, gup, proxy_factory, genv, pki, tmp_path, case, body, timeout_ms, needle):
    token = subject_token(f"exe-{case}")
    script = body.format(resp=exe_response(token), tok=token, expired=exe_response(token, expires_in=-60))
    exe = executable(tmp_path, f"exe-{case}", script)
    path = adc(tmp_path / "wif.json", emu, {"executable": {"command": str(exe), "timeout_millis": timeout_ms}})
    px = proxy_factory(ext_conf(pki, gup, f"source key-file {path}"),
                       env=genv(GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES="1"))
    started = time.monotonic()
    r = fetch(px, gup.url("/oauth/x"))
    assert_error(r, 503, "token_unavailable", f"executable {exe}", needle)
    assert token not in r.text and "oops" not in r.text
    if case == "times-out":
        assert time.monotonic() - started < 15
    assert not exchanges(emu)


def test_executable_output_file_is_reused_while_valid(emu, gup, proxy_factory, genv, pki, tmp_path):
    out = tmp_path / "cached.json"
    out.write_text(exe_response(subject_token("cached-sub")))
    exe = executable(tmp_path, "must-not-run", f"touch {tmp_path}/ran; exit 9")
    path = adc(tmp_path / "wif.json", emu, {"executable": {"command": str(exe), "output_file": str(out)}})
    px = proxy_factory(ext_conf(pki, gup, f"source key-file {path}"),
                       env=genv(GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES="1"))
    sts_access(fetch_json(px, gup.url("/oauth/x"))["authorization"])
    assert exchanges(emu)[0]["claims"]["sub"] == "cached-sub"
    assert not (tmp_path / "ran").exists()


# ---------------------------------------------------------------------------------------------
# Impersonation after STS, OIDC, workforce pools
# ---------------------------------------------------------------------------------------------


def test_impersonation_after_sts_access_and_id_tokens(emu, gup, proxy_factory, genv, pki, tmp_path):
    (tmp_path / "subject.jwt").write_text(subject_token("imp-sub"))
    path = adc(tmp_path / "wif.json", emu, {"file": str(tmp_path / "subject.jwt")}, impersonate=TARGET,
               service_account_impersonation={"token_lifetime_seconds": 1800})
    theirs = emu.lookup(google_auth_token(path))
    assert round(theirs.expiry - theirs.issued_at) == 1800
    assert theirs.source == "iam" and theirs.email == TARGET
    px = proxy_factory(ext_conf(
        pki, gup, f"source key-file {path}",
        routes=(route(f"localhost:{gup.port}/run", "auth OIDC", "credentials wif", f"auth-header {SERVERLESS}"),),
    ), env=genv())
    a = fetch_json(px, gup.url("/oauth/x"))["authorization"]
    assert a["known"] and a["source"] == "iam" and a["email"] == TARGET and a["scopes"] == [CP], a
    assert a["source_identity"].startswith("principal://iam.googleapis.com/projects/123456789/"), a
    assert a["source_identity"].endswith("/subject/imp-sub"), a
    assert 1700 < a["expiry"] - time.time() <= 1800, a  # token_lifetime_seconds, as google-auth asks
    s = fetch_json(px, gup.url("/run/x"))["serverless"]
    assert s["known"] and s["kind"] == "id" and s["verified"] and s["email"] == TARGET, s
    assert s["audience"] == gup.origin and s["source"] == "iam", s
    # One STS token paid for both IAM calls.
    assert len(exchanges(emu)) == 2  # google-auth's and credproxy's
    assert exchanges(emu)[1]["scope"] == CP


def test_oidc_without_impersonation_is_a_config_error(emu, gup, proxy_factory, genv, pki, tmp_path, cli):
    (tmp_path / "subject.jwt").write_text(subject_token())
    path = adc(tmp_path / "wif.json", emu, {"file": str(tmp_path / "subject.jwt")})
    text = conf(pki.ca_file, creds("wif", f"source key-file {path}"),
                route(f"localhost:{gup.port}/run", "auth OIDC", "credentials wif"))
    cfg = proxy_factory.config(text, name="oidc-wif.conf")
    out = cli("check", "--config", str(cfg))
    assert out.returncode == 2, out.stdout
    assert "an external_account without service_account_impersonation_url" in out.stderr, out.stderr
    assert f"{cfg}:" in out.stderr and "auth OIDC on route #1" in out.stderr
    out = cli("serve", "--config", str(cfg), env=genv(), timeout=20)
    assert out.returncode != 0 and "service_account_impersonation_url" in out.stderr, out.stderr


def test_workforce_pool_user_project_goes_in_options(emu, gup, proxy_factory, genv, pki, tmp_path):
    (tmp_path / "subject.jwt").write_text(subject_token("staff-1", aud="https:" + WORKFORCE_AUDIENCE))
    path = adc(tmp_path / "wif.json", emu, {"file": str(tmp_path / "subject.jwt")},
               audience=WORKFORCE_AUDIENCE, workforce_pool_user_project="billing-project-42")
    assert emu.lookup(google_auth_token(path)).source == "sts"
    px = proxy_factory(ext_conf(pki, gup, f"source key-file {path}"), env=genv())
    sts_access(fetch_json(px, gup.url("/oauth/x"))["authorization"])
    google_auth, ours = exchanges(emu)
    assert ours["options"] == {"userProject": "billing-project-42"}
    same_exchange(google_auth, ours)


# ---------------------------------------------------------------------------------------------
# STS refusals, refresh, bursts
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case, make, needle",
    [
        ("wrong-audience", lambda: subject_token(aud="https://elsewhere.example"), "does not match the expected audience"),
        ("wrong-issuer", lambda: subject_token(iss="https://evil.example"), "The issuer in ID Token"),
        ("bad-signature", lambda: subject_token(key=OTHER_KEY), "Invalid ID Token signature"),
        ("expired", lambda: subject_token(lifetime=-30), "ID Token has expired"),
    ],
)
def test_sts_verifies_the_subject_token(emu, gup, proxy_factory, genv, pki, tmp_path, case, make, needle):
    token = make()
    (tmp_path / "subject.jwt").write_text(token)
    path = adc(tmp_path / "wif.json", emu, {"file": str(tmp_path / "subject.jwt")})
    px = proxy_factory(ext_conf(pki, gup, f"source key-file {path}"), env=genv())
    r = fetch(px, gup.url("/oauth/x"))
    assert_error(r, 503, "token_unavailable", f"STS {emu.sts_url}", "invalid_grant", needle)
    assert token not in r.text and token.rsplit(".", 1)[1] not in px.stderr_text()
    assert not exchanges(emu)


def test_subject_token_is_reread_at_refresh(emu, gup, proxy_factory, genv, pki, tmp_path):
    subject = tmp_path / "subject.jwt"
    subject.write_text(subject_token("first"))
    path = adc(tmp_path / "wif.json", emu, {"file": str(subject)})
    emu.token.set_lifetime(40)
    px = proxy_factory(ext_conf(pki, gup, f"source key-file {path}", "refresh-window 39s"), env=genv())
    first = fetch_json(px, gup.url("/oauth/1"))["authorization"]
    subject.write_text(subject_token("second"))  # the runner's token was rotated
    time.sleep(1.5)
    # Served from the cache while the refresh runs in the background with the new subject token.
    assert fetch_json(px, gup.url("/oauth/2"))["authorization"]["fingerprint"] == first["fingerprint"]
    assert wait_until(lambda: len(exchanges(emu)) == 2, 10), exchanges(emu)
    assert [e["claims"]["sub"] for e in exchanges(emu)] == ["first", "second"]
    assert wait_until(lambda: fetch_json(px, gup.url("/oauth/3"))["authorization"]["fingerprint"]
                      != first["fingerprint"], 5)


@pytest.mark.parametrize("kind", ["file", "url", "executable"])
def test_cold_burst_of_100_mints_once(emu, gup, proxy_factory, genv, pki, tmp_path, subject_server, kind):
    token = subject_token(f"burst-{kind}")
    runs = tmp_path / "runs"
    if kind == "file":
        (tmp_path / "subject.jwt").write_text(token)
        source: dict = {"file": str(tmp_path / "subject.jwt")}
    elif kind == "url":
        subject_server.holder["token"] = token
        source = {"url": subject_server.url, "headers": {"Authorization": f"Bearer {subject_server.request_token}"},
                  "format": {"type": "json", "subject_token_field_name": "value"}}
    else:
        exe = executable(tmp_path, "get-token", f"echo run >> {runs}; echo '{exe_response(token)}'")
        source = {"executable": {"command": str(exe)}}
    path = adc(tmp_path / "wif.json", emu, source, impersonate=TARGET)
    px = proxy_factory(ext_conf(pki, gup, f"source key-file {path}"),
                       env=genv(GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES="1"))
    emu.token.set_delay(0.5, count=1)
    iam_before = emu.registry.mint_count(kind="access", source="iam", email=TARGET)
    results = fetch_many(px, [gup.url(f"/oauth/burst-{i}") for i in range(100)])
    assert [getattr(r, "status", r) for r in results] == [200] * 100
    assert len({r.json()["authorization"]["fingerprint"] for r in results}) == 1
    assert len(exchanges(emu)) == 1
    assert emu.registry.mint_count(kind="access", source="iam", email=TARGET) == iam_before + 1
    if kind == "url":
        assert subject_server.granted == 1
    if kind == "executable":
        assert runs.read_text().splitlines() == ["run"]


def test_explain_mint_and_check(emu, gup, proxy_factory, genv, pki, tmp_path, cli):
    token = subject_token("explain-sub")
    (tmp_path / "subject.jwt").write_text(token)
    path = adc(tmp_path / "wif.json", emu, {"file": str(tmp_path / "subject.jwt")}, impersonate=TARGET)
    cfg = proxy_factory.config(conf(pki.ca_file, route(f"localhost:{gup.port}/oauth", "auth OAuth2")),
                               name="explain.conf")
    env = genv(GOOGLE_APPLICATION_CREDENTIALS=str(path))
    assert cli("check", "--config", str(cfg), env=env).returncode == 0
    out = cli("explain", gup.url("/oauth/x"), "--mint", "--config", str(cfg), env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f'credential "default" (ADC: GOOGLE_APPLICATION_CREDENTIALS={path})' in out.stdout, out.stdout
    assert "fingerprint: " in out.stdout
    assert exchanges(emu)[0]["claims"]["sub"] == "explain-sub"
    for text in (out.stdout, out.stderr):
        assert token not in text and token.rsplit(".", 1)[1] not in text


def test_sts_error_quoting_the_subject_token_never_shows_it(emu, gup, proxy_factory, genv, pki,
                                                            tmp_path):
    """An STS refusal that quotes the subject token in full (a GitHub Actions token is over 1 KB,
    longer than an error is ever shown): no piece of it reaches the caller or the log."""
    token = subject_token()
    (tmp_path / "subject.jwt").write_text(token)
    path = adc(tmp_path / "wif.json", emu, {"file": str(tmp_path / "subject.jwt")})
    px = proxy_factory(ext_conf(pki, gup, f"source key-file {path}"), env=genv())
    emu.token.fail_next(1, "echo_credential")
    r = fetch(px, gup.url("/oauth/x"))
    assert_error(r, 503, "token_unavailable", f"STS {emu.sts_url}", "invalid_grant", "[redacted]")
    for part in [token[:40], *token.split(".")]:
        assert part not in r.text and part not in px.stderr_text()


@pytest.mark.parametrize("field", ["token_url", "service_account_impersonation_url",
                                   "credential_source.url"])
def test_plain_http_endpoint_off_loopback_gets_nothing(emu, gup, proxy_factory, genv, pki,
                                                       tmp_path, field):
    """The one rule for where credentials go: https, or http to loopback. A subject token, an STS
    token or a url source's request token must never cross the network in clear."""
    ip = non_loopback_ip()
    if ip is None:
        pytest.skip("no non-loopback IPv4 address on this machine")
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def _any(self):  # noqa: N802
            seen.append(self.path)
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = _any

    server = socketserver.ThreadingTCPServer(("0.0.0.0", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://{ip}:{server.server_address[1]}"
        (tmp_path / "subject.jwt").write_text(subject_token())
        source: dict = {"file": str(tmp_path / "subject.jwt")}
        extra: dict = {}
        if field == "token_url":
            extra["token_url"] = base + "/v1/token"
        elif field == "service_account_impersonation_url":
            extra["service_account_impersonation_url"] = (
                f"{base}/v1/projects/-/serviceAccounts/{TARGET}:generateAccessToken")
        else:
            source = {"url": base + "/token", "headers": {"Authorization": "Bearer req-secret-1234"}}
        path = adc(tmp_path / "wif.json", emu, source, **extra)
        px = proxy_factory(ext_conf(pki, gup, f"source key-file {path}"), env=genv())
        r = fetch(px, gup.url("/oauth/x"), timeout=30)
        assert seen == [], f"sent over plain http to {base}: {seen}"
        assert_error(r, 503, ("credential_unavailable", "token_unavailable"), field, "https")
        assert not exchanges(emu)
    finally:
        server.shutdown()
        server.server_close()
