"""``metadata-server ADDR:PORT``: a GCE metadata-server stub that hands SDKs placeholder tokens.

Unmodified google-auth (Compute Engine credentials, ``google.auth.default()``, ID tokens from the
metadata identity endpoint) runs in a child process with the stub as its metadata server and the
proxy as ``HTTP_PROXY``: the upstream must see the route's real minted token, the client only
placeholders. A placeholder sent anywhere a Google-auth route does not replace it is refused.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from google_support import (  # noqa: F401 - fixtures
    SERVERLESS,
    assert_error,
    assert_no_leaks,
    conf,
    creds,
    emu,
    fetch,
    genv,
    gtmp,
    gup,
    new_sa,
    reset_emu,
    route,
    start_refresh_scenario_early,
    tokens_never_logged,
)
from harness.proxy import clean_env
from harness.rawhttp import RawConnection
from policy_support import admin_get, admin_port

pytestmark = pytest.mark.timeout(90)

META_RE = re.compile(r"credproxy: metadata server listening on (\S+):(\d+)\s*$", re.MULTILINE)
PREFIX = "credproxy-placeholder."

CLIENT = r"""
import json, sys
import google.auth
import google.auth.transport.requests as gar
from google.auth import jwt
from google.auth.compute_engine import Credentials, IDTokenCredentials

base, audience = sys.argv[1], sys.argv[2]
out = {}
creds, project = google.auth.default()
out["default_type"] = type(creds).__name__
out["project"] = project
r = gar.AuthorizedSession(creds).get(base + "/google/default")
out["default"] = {"status": r.status_code, "body": r.json()}
out["default_token"] = creds.token

compute = Credentials()
r = gar.AuthorizedSession(compute).get(base + "/google/compute")
out["compute"] = {"status": r.status_code, "body": r.json()}
out["compute_token"] = compute.token
out["email"] = compute.service_account_email

request = gar.Request()
idc = IDTokenCredentials(request, audience, use_metadata_identity_endpoint=True)
idc.refresh(request)
out["id_token"] = idc.token
out["id_claims"] = jwt.decode(idc.token, verify=False)
out["id_expiry"] = idc.expiry.isoformat()
print(json.dumps(out))
"""


def meta_port(px) -> int:
    m = px.wait_for_stderr(META_RE, timeout=5)
    assert m, "no 'metadata server listening' line:\n" + px.stderr_text()[-2000:]
    assert m.group(1) == "127.0.0.1"
    return int(m.group(2))


def meta_get(port: int, path: str, headers=(("Metadata-Flavor", "Google"),), method: str = "GET"):
    with RawConnection(port, timeout=10) as c:
        return c.request(method, path, [("Host", f"127.0.0.1:{port}"), *headers], timeout=10)


@pytest.fixture(scope="module")
def setup(emu, gup, pki, module_proxy_factory, gtmp, closed_port, secret_guard):
    from google_support import google_env

    sa = new_sa(emu)
    p = gup.port
    text = conf(
        pki.ca_file,
        "metadata-server 127.0.0.1:0\nadmin 127.0.0.1:0\n",
        creds("default", f"source key-file {sa.path}"),
        route(f"localhost:{p}/google", "auth OAuth2"),
        route(f"localhost:{p}/run", "auth OIDC", f"auth-header {SERVERLESS}"),
        route(f"localhost:{p}/bearer", "auth bearer env:{env_bearer}"),
        route(f"localhost:{p}/plain", "auth none"),
        route(f"localhost:{p}", "tunnel"),
    )
    px = module_proxy_factory(text, env=google_env(gtmp, closed_port))
    return {"px": px, "sa": sa, "meta": meta_port(px), "admin": admin_port(px),
            "guard": secret_guard}


def placeholder(setup, kind="access", audience="https://aud.example") -> str:
    port = setup["meta"]
    if kind == "access":
        r = meta_get(port, "/computeMetadata/v1/instance/service-accounts/default/token")
        assert r.status == 200, r
        tok = r.json()["access_token"]
    else:
        r = meta_get(port, f"/computeMetadata/v1/instance/service-accounts/default/identity?audience={audience}")
        assert r.status == 200, r
        tok = r.text
    setup["guard"].add_secret(f"placeholder {tok[:30]}", tok)
    return tok


def test_google_auth_sdk_gets_placeholders_upstream_gets_real_tokens(setup, emu, gup, tmp_path):
    px, sa = setup["px"], setup["sa"]
    home = tmp_path / "home"
    home.mkdir()
    env = clean_env({
        "HOME": str(home), "CLOUDSDK_CONFIG": str(home / "gcloud"),
        "GCE_METADATA_HOST": f"127.0.0.1:{setup['meta']}",
        "GCE_METADATA_IP": f"127.0.0.1:{setup['meta']}",
        "HTTP_PROXY": f"http://127.0.0.1:{px.port}", "http_proxy": f"http://127.0.0.1:{px.port}",
        "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1",
    })
    env.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
    audience = "https://svc-abc.a.run.app"
    run = subprocess.run([sys.executable, "-c", CLIENT, f"http://localhost:{gup.port}", audience],
                         env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout)
    for key in ("default_token", "compute_token", "id_token"):
        setup["guard"].add_secret(f"sdk {key}", out[key])

    assert out["default_type"] == "Credentials", out
    assert out["project"] == json.loads(Path(sa.path).read_text())["project_id"]
    assert out["email"] == sa.email
    for which in ("default", "compute"):
        assert out[f"{which}_token"].startswith(PREFIX), which
        got = out[which]
        assert got["status"] == 200, got
        a = got["body"]["authorization"]
        # The upstream saw the route's real token, minted for the configured key.
        assert a["known"] and a["kind"] == "access" and a["email"] == sa.email, a
        assert got["body"]["authorization_headers"] == 1
    # The client never held a real token: the upstream's description has no token, and the
    # placeholders are not any token the emulators issued.
    issued = {r.token for r in emu.registry.issued()}
    assert out["default_token"] not in issued and out["compute_token"] not in issued
    assert_no_leaks("client output", run.stdout + run.stderr, emu)

    claims = out["id_claims"]
    assert claims["aud"] == audience and claims["iss"] == "https://accounts.google.com", claims
    assert claims["email"] == sa.email and claims["exp"] - claims["iat"] == 3600, claims
    header = json.loads(__import__("base64").urlsafe_b64decode(out["id_token"].split(".")[0] + "=="))
    assert header == {"alg": "RS256", "typ": "JWT", "kid": "credproxy-placeholder"}

    # The same ID-token placeholder on an OIDC route with auth-header: the real token goes in
    # X-Serverless-Authorization, and the caller's Authorization placeholder is dropped.
    r = fetch(px, gup.url("/run/x"), [("Authorization", "Bearer " + out["id_token"])])
    assert r.status == 200, r
    body = r.json()
    assert body["serverless"]["known"] and body["serverless"]["kind"] == "id", body
    assert body["authorization"] is None and body["authorization_headers"] == 0, body
    # A placeholder in the injected header itself is replaced too.
    r = fetch(px, gup.url("/run/y"), [(SERVERLESS, "Bearer " + out["id_token"]),
                                      ("Authorization", "Bearer " + out["default_token"])])
    assert r.status == 200, r
    body = r.json()
    assert body["serverless"]["known"] and body["serverless"]["kind"] == "id", body
    assert body["authorization"] is None and body["authorization_headers"] == 0, body


def test_metadata_checks_like_the_real_server(setup):
    port = setup["meta"]
    r = meta_get(port, "/", headers=())
    assert r.status == 403 and r.header("Metadata-Flavor") == "Google", r
    r = meta_get(port, "/computeMetadata/v1/instance/service-accounts/default/token", headers=())
    assert r.status == 403 and PREFIX not in r.text, r
    r = meta_get(port, "/", headers=(("Metadata-Flavor", "Google"), ("X-Forwarded-For", "10.0.0.1")))
    assert r.status == 403, r
    r = meta_get(port, "/computeMetadata/v1/instance/service-accounts/default/token",
                 headers=(("Metadata-Flavor", "Google"), ("X-Forwarded-For", "10.0.0.1")))
    assert r.status == 403 and PREFIX not in r.text, r
    r = meta_get(port, "/computeMetadata/v1/instance/service-accounts/default/token", method="POST",
                 headers=(("Metadata-Flavor", "Google"), ("Content-Length", "0")))
    assert r.status == 405, r
    for path in ("/", "/computeMetadata/v1/"):
        r = meta_get(port, path)
        assert r.status == 200 and r.header("Metadata-Flavor") == "Google", (path, r)

    base = "/computeMetadata/v1/instance/service-accounts/default/"
    info = meta_get(port, base + "?recursive=true")
    assert info.status == 200 and info.header("Content-Type") == "application/json", info
    assert info.json()["email"] == setup["sa"].email and "default" in info.json()["aliases"]
    assert meta_get(port, base + "email").text == setup["sa"].email
    assert "https://www.googleapis.com/auth/cloud-platform" in meta_get(port, base + "scopes").text.split("\n")
    assert "default/" in meta_get(port, "/computeMetadata/v1/instance/service-accounts/").text
    assert meta_get(port, "/computeMetadata/v1/project/numeric-project-id").text.isdigit()
    tok = meta_get(port, base + "token?scopes=a,b").json()
    assert tok["expires_in"] == 3599 and tok["token_type"] == "Bearer"
    assert re.fullmatch(r"credproxy-placeholder\.[A-Za-z0-9_-]{43}", tok["access_token"])
    setup["guard"].add_secret("placeholder from checks", tok["access_token"])
    assert meta_get(port, base + "identity").status == 400
    assert meta_get(port, "/computeMetadata/v1/nope").status == 404


def test_directories_sdks_probe_are_listed(setup):
    """Node's gcp-metadata decides "on GCE or not" with GET /computeMetadata/v1/instance (no
    slash): anything but a 200 with `Metadata-Flavor: Google` and a body makes google-auth-library
    give up before it asks for a token. The stub lists the directories it serves, as the real
    server does."""
    port = setup["meta"]
    for path, entry in [("/computeMetadata/v1/instance", "service-accounts/"),
                        ("/computeMetadata/v1/instance/", "service-accounts/"),
                        ("/computeMetadata/v1/project", "project-id"),
                        ("/computeMetadata/v1/project/", "project-id")]:
        r = meta_get(port, path)
        assert r.status == 200 and r.header("Metadata-Flavor") == "Google", (path, r)
        assert entry in r.text.split("\n"), (path, r.text)
        assert meta_get(port, path, headers=()).status == 403


@pytest.mark.parametrize("where", [
    ("/plain", "Authorization", "Bearer {t}"),
    ("/plain", "X-Api-Key", "{t}"),
    ("/bearer", "Authorization", "Bearer {t}"),
    ("/bearer", "X-Other", "token={t}; x"),
    ("/google", "X-Goog-Extra", "Bearer {t}"),
    ("/run", SERVERLESS + "-Copy", "Bearer {t}"),
])
@pytest.mark.parametrize("kind", ["access", "id"])
def test_placeholder_elsewhere_is_refused_and_never_forwarded(setup, gup, token, where, kind):
    prefix, name, value = where
    t = placeholder(setup, kind)
    r = fetch(setup["px"], gup.url(f"{prefix}/{token}"), [(name, value.format(t=t))])
    assert_error(r, 403, "placeholder_credential", name)
    assert t not in r.text
    assert gup.matching(token) == [], "the upstream saw a refused request"


@pytest.mark.parametrize("prefix", ["/plain", "/google"])
@pytest.mark.parametrize("encode", [False, True])
@pytest.mark.parametrize("kind", ["access", "id"])
def test_placeholder_in_the_query_is_refused_and_never_forwarded(setup, gup, token, prefix, encode, kind):
    # Google APIs read `?access_token=`; nothing replaces a token in the query, on any route.
    t = placeholder(setup, kind)
    q = "".join(f"%{b:02X}" for b in t.encode()) if encode else t
    r = fetch(setup["px"], gup.url(f"{prefix}/{token}?alt=json&access_token={q}"))
    assert_error(r, 403, "placeholder_credential", "request target")
    assert t not in r.text
    assert gup.matching(token) == [], "the upstream saw a refused request"


def test_placeholder_in_connect_is_refused(setup, gup):
    t = placeholder(setup)
    with RawConnection(setup["px"].port, timeout=10) as c:
        r = c.request("CONNECT", f"localhost:{gup.port}",
                      [("Host", f"localhost:{gup.port}"), ("Authorization", "Bearer " + t)], timeout=10)
    assert r.status == 403 and "placeholder_credential" in (r.header("X-Credproxy-Error") or ""), r


def test_lookalike_not_handed_out_passes(setup, gup, token):
    fake = PREFIX + "A" * 43
    r = fetch(setup["px"], gup.url(f"/plain/{token}"), [("Authorization", "Bearer " + fake)])
    assert r.status == 200, r
    assert r.json()["authorization"] == {"known": False, "raw": "Bearer " + fake}


def test_placeholders_and_tokens_absent_from_logs_metrics_status(setup, emu, gup, token):
    t = placeholder(setup)
    r = fetch(setup["px"], gup.url(f"/google/{token}"), [("Authorization", "Bearer " + t)])
    assert r.status == 200 and r.json()["authorization"]["known"], r
    fetch(setup["px"], gup.url(f"/plain/{token}"), [("Authorization", "Bearer " + t)])
    for path in ("/metrics", "/status"):
        page = admin_get(setup["admin"], path)
        assert page.status == 200
        assert PREFIX not in page.text and Placeholder_jwt_header() not in page.text, path
        assert_no_leaks(path, page.text, emu)
    assert PREFIX not in setup["px"].stderr_text()
    assert "placeholder_credential" in setup["px"].stderr_text()


def Placeholder_jwt_header() -> str:  # noqa: N802
    import base64
    raw = b'{"alg":"RS256","typ":"JWT","kid":"credproxy-placeholder"}'
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")
