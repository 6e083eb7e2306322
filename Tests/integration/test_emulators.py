"""Self-tests of the Google emulators (Tests/integration/emulators).

The assertions posted here are signed by the `openssl` CLI — neither by credproxy nor by the
emulators' own signing code — so the emulators' RS256 verification (Python `cryptography`) is checked
against an independent signer. ID tokens minted by the emulators are verified with `openssl` too.

Self-contained: fixtures live in this file, not in conftest.py.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from emulators import google as g  # noqa: E402

CP = g.CLOUD_PLATFORM_SCOPE
GCS = "https://www.googleapis.com/auth/devstorage.read_only"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
FLAVOR = {"Metadata-Flavor": "Google"}

# Never route loopback test traffic through an environment proxy.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def openssl_sign(key_path: Path, data: bytes) -> bytes:
    r = subprocess.run(
        ["openssl", "dgst", "-sha256", "-sign", str(key_path)], input=data, capture_output=True, check=True
    )
    return r.stdout


def openssl_verify(pub_path: Path, data: bytes, sig: bytes, tmp: Path) -> bool:
    sig_path = tmp / f"sig-{os.getpid()}-{time.monotonic_ns()}.bin"
    sig_path.write_bytes(sig)
    r = subprocess.run(
        ["openssl", "dgst", "-sha256", "-verify", str(pub_path), "-signature", str(sig_path)],
        input=data,
        capture_output=True,
    )
    return r.returncode == 0 and b"Verified OK" in r.stdout


def request(method, url, body=None, headers=None, timeout=5.0, context=None):
    """(status, headers, body bytes); HTTP errors are returned, not raised."""
    req = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    try:
        if context is not None:
            opener = urllib.request.build_opener(
                urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
            )
        else:
            opener = _OPENER
        with opener.open(req, timeout=timeout) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def post_form(url, fields, headers=None, **kw):
    body = urllib.parse.urlencode(fields).encode("ascii")
    return request("POST", url, body, {**FORM, **(headers or {})}, **kw)


def post_json(url, obj, headers=None, **kw):
    return request("POST", url, json.dumps(obj).encode(), {"Content-Type": "application/json", **(headers or {})}, **kw)


def make_assertion(sa, key_path, claims=None, header=None, drop=(), drop_header=(), sign_with=None):
    now = int(time.time())
    c = {"iss": sa.email, "scope": CP, "aud": g.GOOGLE_TOKEN_URI, "iat": now, "exp": now + 3600}
    c.update(claims or {})
    for k in drop:
        c.pop(k, None)
    h = {"alg": "RS256", "typ": "JWT", "kid": sa.kid}
    h.update(header or {})
    for k in drop_header:
        h.pop(k, None)
    signing_input = b64(json.dumps(h).encode()) + "." + b64(json.dumps(c).encode())
    sig = openssl_sign(sign_with or key_path, signing_input.encode("ascii"))
    return signing_input + "." + b64(sig)


def jwt_grant(emu, assertion, **kw):
    return post_form(emu.token_url, {"grant_type": g.JWT_BEARER_GRANT, "assertion": assertion}, **kw)


def as_json(body: bytes):
    return json.loads(body.decode("utf-8"))


# ---------------------------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("emulators")


@pytest.fixture(scope="module")
def emu(workdir):
    e = g.Emulators(workdir / "emu").start()
    yield e
    e.stop()


@pytest.fixture(autouse=True)
def _fresh(emu):
    emu.reset()
    yield
    emu.reset()


@pytest.fixture(scope="module")
def sa(emu):
    return emu.new_service_account("runner@credproxy-test.iam.gserviceaccount.com")


@pytest.fixture(scope="module")
def sa_key(sa, workdir) -> Path:
    """The service account's private key as a PEM file, for the openssl CLI."""
    info = json.loads(Path(sa.path).read_text())
    p = workdir / "sa-private.pem"
    p.write_text(info["private_key"])
    p.chmod(0o600)
    return p


@pytest.fixture(scope="module")
def other_key(workdir) -> Path:
    p = workdir / "other-private.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(p), "2048"], check=True, capture_output=True)
    return p


@pytest.fixture(scope="module")
def id_pub(emu, workdir) -> Path:
    p = workdir / "id-token-signing.pub.pem"
    p.write_text(emu.id_token_public_key_pem)
    return p


@pytest.fixture
def cp_token(emu, sa, sa_key) -> str:
    status, _, body = jwt_grant(emu, make_assertion(sa, sa_key))
    assert status == 200
    return as_json(body)["access_token"]


def openssl_verify_jwt(token: str, pub: Path, tmp: Path) -> dict:
    h, p, s = token.split(".")
    assert openssl_verify(pub, f"{h}.{p}".encode(), unb64(s), tmp), "openssl rejected the ID token signature"
    return json.loads(unb64(p))


# ---------------------------------------------------------------------------------------------
# key material
# ---------------------------------------------------------------------------------------------


def test_service_account_file_format(sa, sa_key, workdir):
    raw = Path(sa.path).read_text()
    info = json.loads(raw)
    assert info["type"] == "service_account"
    for k in ("project_id", "private_key_id", "private_key", "client_email", "client_id", "token_uri", "universe_domain"):
        assert info[k], k
    assert info["client_email"] == sa.email
    assert re.fullmatch(r"[0-9a-f]{40}", info["private_key_id"])
    assert info["private_key"].startswith("-----BEGIN PRIVATE KEY-----\n")  # PKCS#8
    assert "\\n" in raw  # newlines escaped inside the JSON string
    assert info["universe_domain"] == "googleapis.com"
    assert oct(os.stat(sa.path).st_mode & 0o777) == "0o600"
    # The public key returned matches the private key, as openssl derives it.
    derived = subprocess.run(
        ["openssl", "pkey", "-in", str(sa_key), "-pubout"], check=True, capture_output=True, text=True
    ).stdout
    assert derived.strip() == sa.public_key_pem.strip()


def test_make_service_account_standalone(tmp_path):
    path, pub = g.make_service_account("x@proj-1.iam.gserviceaccount.com", "http://127.0.0.1:1/token", tmp_path)
    info = json.loads(Path(path).read_text())
    assert info["project_id"] == "proj-1"
    assert info["token_uri"] == "http://127.0.0.1:1/token"
    assert pub.startswith("-----BEGIN PUBLIC KEY-----")
    reg = g.Registry()
    key = reg.register_service_account_file(path)
    assert key.kid == info["private_key_id"] and key.public_key_pem == pub


def test_authorized_user_and_impersonated_files(emu, sa, tmp_path):
    user = emu.new_authorized_user(tmp_path)
    info = json.loads(Path(user.path).read_text())
    assert info["type"] == "authorized_user"
    assert (info["client_id"], info["client_secret"], info["refresh_token"]) == (
        user.client_id,
        user.client_secret,
        user.refresh_token,
    )
    assert info["token_uri"] == emu.token_url
    target = "target@credproxy-test.iam.gserviceaccount.com"
    delegate = "projects/-/serviceAccounts/mid@credproxy-test.iam.gserviceaccount.com"
    imp = json.loads(Path(emu.new_impersonated(target, sa, delegates=[delegate], dir=tmp_path)).read_text())
    assert imp["type"] == "impersonated_service_account"
    assert imp["service_account_impersonation_url"] == (
        f"{emu.iam_url}/v1/projects/-/serviceAccounts/{target}:generateAccessToken"
    )
    assert imp["delegates"] == [delegate]
    assert imp["source_credentials"]["type"] == "service_account"
    assert imp["source_credentials"]["client_email"] == sa.email


# ---------------------------------------------------------------------------------------------
# token endpoint: jwt-bearer
# ---------------------------------------------------------------------------------------------


def test_jwt_bearer_access_token(emu, sa, sa_key):
    status, headers, body = jwt_grant(emu, make_assertion(sa, sa_key, {"scope": f"{GCS} {CP}"}))
    assert status == 200, body
    assert headers["Content-Type"].startswith("application/json")
    resp = as_json(body)
    assert set(resp) == {"access_token", "expires_in", "token_type"}
    assert resp["access_token"].startswith("ya29.")
    assert resp["expires_in"] == 3599 and resp["token_type"] == "Bearer"
    rec = emu.lookup(resp["access_token"])
    assert rec.kind == "access" and rec.source == "jwt-bearer" and rec.email == sa.email
    assert rec.scopes == sorted([GCS, CP])
    assert abs(rec.expiry - (time.time() + 3599)) < 5
    assert emu.mint_count("access", scopes=[CP, GCS]) == 1
    assert emu.counts() == {("access", " ".join(sorted([CP, GCS]))): 1}
    assert emu.valid_access_token(resp["access_token"]) is rec
    assert emu.lookup_bearer("Bearer " + resp["access_token"]) is rec
    assert emu.lookup_bearer("Basic " + resp["access_token"]) is None
    assert emu.lookup("ya29.not-issued") is None


def test_jwt_bearer_accepts_own_token_url_as_audience(emu, sa, sa_key):
    # golang/oauth2 puts the key file's token_uri in `aud`; Go also backdates iat by 10 s.
    now = int(time.time())
    a = make_assertion(sa, sa_key, {"aud": emu.token_url, "iat": now - 10, "exp": now - 10 + 3600})
    status, _, body = jwt_grant(emu, a)
    assert status == 200, body


@pytest.mark.parametrize("where", ["signature", "payload"])
def test_tampered_assertion_is_invalid_signature(emu, sa, sa_key, where):
    h, p, s = make_assertion(sa, sa_key).split(".")
    if where == "signature":
        sig = bytearray(unb64(s))
        sig[len(sig) // 2] ^= 0x01
        s = b64(bytes(sig))
    else:
        claims = json.loads(unb64(p))
        claims["scope"] = GCS
        p = b64(json.dumps(claims).encode())
    status, _, body = jwt_grant(emu, f"{h}.{p}.{s}")
    assert status == 400
    assert as_json(body) == {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
    assert emu.mint_count() == 0


def test_assertion_signed_by_another_key(emu, sa, sa_key, other_key):
    status, _, body = jwt_grant(emu, make_assertion(sa, sa_key, sign_with=other_key))
    assert status == 400 and as_json(body)["error_description"] == "Invalid JWT Signature."


def test_wrong_audience(emu, sa, sa_key):
    status, _, body = jwt_grant(emu, make_assertion(sa, sa_key, {"aud": "https://www.googleapis.com/oauth2/v4/token"}))
    assert status == 400
    resp = as_json(body)
    assert resp["error"] == "invalid_grant" and "audience" in resp["error_description"]


def test_unknown_kid_and_missing_kid(emu, sa, sa_key):
    status, _, body = jwt_grant(emu, make_assertion(sa, sa_key, header={"kid": "0" * 40}))
    assert status == 400 and as_json(body)["error"] == "invalid_grant"
    status, _, body = jwt_grant(emu, make_assertion(sa, sa_key, drop_header=("kid",)))
    assert status == 400 and as_json(body)["error"] == "invalid_grant"


def test_unknown_issuer(emu, sa, sa_key):
    a = make_assertion(sa, sa_key, {"iss": "nobody@credproxy-test.iam.gserviceaccount.com"})
    status, _, body = jwt_grant(emu, a)
    assert status == 400
    assert as_json(body) == {"error": "invalid_grant", "error_description": "Invalid grant: account not found"}


def test_removed_key_is_rejected(emu, tmp_path):
    sa2 = emu.new_service_account(dir=tmp_path)
    key = tmp_path / "k.pem"
    key.write_text(json.loads(Path(sa2.path).read_text())["private_key"])
    assert jwt_grant(emu, make_assertion(sa2, key))[0] == 200
    emu.registry.remove_key(sa2.email, sa2.kid)
    status, _, body = jwt_grant(emu, make_assertion(sa2, key))
    assert status == 400 and as_json(body)["error_description"] == "Invalid JWT Signature."


@pytest.mark.parametrize(
    "iat_delta,exp_delta",
    [
        (0, 3601),  # longer than an hour
        (600, 600 + 3600),  # iat 10 min in the future
        (-4000, -400),  # expired
        (-400, 3000),  # iat outside the 5 min skew
        (0, 0),  # exp == iat
    ],
)
def test_assertion_time_checks(emu, sa, sa_key, iat_delta, exp_delta):
    now = int(time.time())
    a = make_assertion(sa, sa_key, {"iat": now + iat_delta, "exp": now + exp_delta})
    status, _, body = jwt_grant(emu, a)
    assert status == 400
    resp = as_json(body)
    assert resp["error"] == "invalid_grant" and "iat and exp" in resp["error_description"]


def test_header_checks(emu, sa, sa_key):
    for header in ({"alg": "RS512"}, {"typ": "JWS"}):
        status, _, body = jwt_grant(emu, make_assertion(sa, sa_key, header=header))
        assert status == 400 and as_json(body)["error"] == "invalid_grant", header


def test_padded_base64_is_rejected(emu, sa, sa_key):
    h, p, s = make_assertion(sa, sa_key).split(".")
    padded = s + "=" * (-len(s) % 4) if len(s) % 4 else s + "=="  # any '=' is wrong
    status, _, body = jwt_grant(emu, f"{h}.{p}.{padded}")
    assert status == 400 and as_json(body)["error"] == "invalid_grant"
    status, _, body = jwt_grant(emu, "not-a-jwt")
    assert status == 400 and as_json(body)["error"] == "invalid_grant"


def test_scope_and_target_audience_both_or_neither(emu, sa, sa_key):
    both = make_assertion(sa, sa_key, {"target_audience": "https://svc.run.app"})
    status, _, body = jwt_grant(emu, both)
    assert status == 400 and as_json(body)["error"] == "invalid_request"
    neither = make_assertion(sa, sa_key, drop=("scope",))
    status, _, body = jwt_grant(emu, neither)
    assert status == 400 and as_json(body)["error"] == "invalid_request"


@pytest.mark.parametrize("scope", [f"{CP},{GCS}", f"{CP}  {GCS}", f" {CP}", f"{CP}\t{GCS}"])
def test_scope_must_be_single_space_joined(emu, sa, sa_key, scope):
    status, _, body = jwt_grant(emu, make_assertion(sa, sa_key, {"scope": scope}))
    assert status == 400 and as_json(body)["error"] == "invalid_scope"


def test_form_checks(emu, sa, sa_key):
    a = make_assertion(sa, sa_key)
    status, _, body = post_json(emu.token_url, {"grant_type": g.JWT_BEARER_GRANT, "assertion": a})
    assert status == 400 and as_json(body)["error"] == "invalid_request"
    status, _, body = post_form(emu.token_url, {"grant_type": "password"})
    assert status == 400 and as_json(body)["error"] == "unsupported_grant_type"
    status, _, body = post_form(emu.token_url, {"grant_type": g.JWT_BEARER_GRANT})
    assert status == 400 and as_json(body)["error"] == "invalid_request"


def test_id_token_from_assertion(emu, sa, sa_key, id_pub, tmp_path):
    aud = "https://hello-abc123-uc.a.run.app"
    status, _, body = jwt_grant(emu, make_assertion(sa, sa_key, {"target_audience": aud}, drop=("scope",)))
    assert status == 200, body
    resp = as_json(body)
    assert set(resp) == {"id_token"}
    token = resp["id_token"]
    claims = emu.verify_id_token(token, audience=aud)  # cryptography
    assert openssl_verify_jwt(token, id_pub, tmp_path) == claims  # and independently, openssl
    assert claims["iss"] == "https://accounts.google.com"
    assert claims["email"] == sa.email and claims["email_verified"] is True
    assert claims["sub"] == sa.unique_id
    assert claims["exp"] - claims["iat"] == 3600
    header = json.loads(unb64(token.split(".")[0]))
    assert header == {"alg": "RS256", "typ": "JWT", "kid": emu.id_token_kid}
    rec = emu.lookup(token)
    assert rec.kind == "id" and rec.audience == aud and rec.email == sa.email
    assert emu.mint_count("id", audience=aud) == 1
    with pytest.raises(ValueError):
        emu.verify_id_token(token, audience="https://other.example")
    h, p, s = token.split(".")
    with pytest.raises(ValueError):
        emu.verify_id_token(f"{h}.{p}.{s[:-4]}AAAA")
    # JWKS serves the same key.
    status, _, body = request("GET", emu.jwks_url)
    jwk = as_json(body)["keys"][0]
    assert status == 200 and jwk["kid"] == emu.id_token_kid and jwk["alg"] == "RS256"


def test_keep_alive_and_chunked_body(emu, sa, sa_key):
    conn = http.client.HTTPConnection("127.0.0.1", emu.token.port, timeout=5)
    try:
        for chunked in (False, True):
            body = urllib.parse.urlencode({"grant_type": g.JWT_BEARER_GRANT, "assertion": make_assertion(sa, sa_key)})
            if chunked:
                conn.request("POST", "/token", body=iter([body[:50].encode(), body[50:].encode()]), headers=FORM, encode_chunked=True)
            else:
                conn.request("POST", "/token", body=body, headers=FORM)
            r = conn.getresponse()
            data = r.read()
            assert r.status == 200, data
    finally:
        conn.close()
    assert emu.mint_count() == 2


def test_tokeninfo(emu, cp_token):
    status, _, body = request("GET", emu.tokeninfo_url + "?access_token=" + urllib.parse.quote(cp_token))
    assert status == 200
    info = as_json(body)
    assert info["scope"] == CP and info["email"].startswith("runner@")
    assert 3500 < int(info["expires_in"]) <= 3599
    status, _, body = request("GET", emu.tokeninfo_url + "?access_token=ya29.bogus")
    assert status == 400 and as_json(body)["error_description"] == "Invalid Value"


# ---------------------------------------------------------------------------------------------
# token endpoint: refresh_token and client_credentials
# ---------------------------------------------------------------------------------------------


def test_refresh_token_grant(emu, tmp_path):
    user = emu.new_authorized_user(tmp_path, scopes=[CP, GCS, "openid"])
    base = {"grant_type": "refresh_token", "client_id": user.client_id, "client_secret": user.client_secret}
    status, _, body = post_form(emu.token_url, {**base, "refresh_token": user.refresh_token, "scope": f"{GCS} {CP}"})
    assert status == 200, body
    resp = as_json(body)
    assert resp["token_type"] == "Bearer" and resp["access_token"].startswith("ya29.")
    assert resp["scope"] == " ".join(sorted([CP, GCS]))
    rec = emu.lookup(resp["access_token"])
    assert rec.source == "refresh_token" and rec.client_id == user.client_id and rec.scopes == sorted([CP, GCS])
    # Without scope: the scopes granted to the refresh token.
    status, _, body = post_form(emu.token_url, {**base, "refresh_token": user.refresh_token})
    assert status == 200 and emu.lookup(as_json(body)["access_token"]).scopes == sorted([CP, GCS, "openid"])
    # A scope not granted.
    status, _, body = post_form(
        emu.token_url, {**base, "refresh_token": user.refresh_token, "scope": "https://www.googleapis.com/auth/gmail.send"}
    )
    assert status == 400 and as_json(body)["error"] == "invalid_scope"
    # Wrong refresh token.
    status, _, body = post_form(emu.token_url, {**base, "refresh_token": "1//wrong"})
    assert status == 400 and as_json(body) == {"error": "invalid_grant", "error_description": "Bad Request"}
    # Wrong secret / unknown client: 401 invalid_client, as Google answers.
    status, _, body = post_form(emu.token_url, {**base, "client_secret": "nope", "refresh_token": user.refresh_token})
    assert status == 401 and as_json(body)["error"] == "invalid_client"
    status, _, body = post_form(emu.token_url, {**base, "client_id": "nope", "refresh_token": user.refresh_token})
    assert status == 401 and as_json(body)["error"] == "invalid_client"
    assert emu.mint_count(source="refresh_token") == 2


def test_client_credentials_grant(emu):
    cid, csec = emu.new_client("svc:client id", "s3cr:et+/=")  # characters that need form-encoding
    # RFC 6749 §2.3.1: Basic over the form-urlencoded id and secret.
    basic = base64.b64encode(
        (urllib.parse.quote_plus(cid) + ":" + urllib.parse.quote_plus(csec)).encode()
    ).decode()
    status, _, body = post_form(
        emu.token_url, {"grant_type": "client_credentials", "scope": "read write"}, {"Authorization": "Basic " + basic}
    )
    assert status == 200, body
    resp = as_json(body)
    rec = emu.lookup(resp["access_token"])
    assert rec.source == "client_credentials" and rec.client_id == cid and rec.scopes == ["read", "write"]
    # Credentials in the body.
    status, _, body = post_form(emu.token_url, {"grant_type": "client_credentials", "client_id": cid, "client_secret": csec})
    assert status == 200, body
    # Wrong secret.
    bad = base64.b64encode(f"{urllib.parse.quote_plus(cid)}:wrong".encode()).decode()
    status, headers, body = post_form(emu.token_url, {"grant_type": "client_credentials"}, {"Authorization": "Basic " + bad})
    assert status == 401 and as_json(body)["error"] == "invalid_client"
    assert headers["WWW-Authenticate"].startswith("Basic")
    # Both methods at once.
    status, _, body = post_form(
        emu.token_url,
        {"grant_type": "client_credentials", "client_id": cid, "client_secret": csec},
        {"Authorization": "Basic " + basic},
    )
    assert status == 400 and as_json(body)["error"] == "invalid_request"
    assert emu.mint_count(source="client_credentials") == 2


# ---------------------------------------------------------------------------------------------
# metadata server
# ---------------------------------------------------------------------------------------------


def test_metadata_flavor(emu):
    base = f"http://{emu.metadata_host}"
    status, headers, _ = request("GET", base + "/", headers=FLAVOR)
    assert status == 200 and headers["Metadata-Flavor"] == "Google"
    for hdrs in ({}, {"Metadata-Flavor": "google"}, {**FLAVOR, "X-Forwarded-For": "10.0.0.1"}):
        status, headers, body = request("GET", emu.metadata_url + "instance/service-accounts/default/token", headers=hdrs)
        assert status == 403, hdrs
        assert headers["Metadata-Flavor"] == "Google"
    assert emu.mint_count() == 0


def test_metadata_access_token(emu):
    scopes = ",".join(urllib.parse.quote(s, safe="") for s in (GCS, CP))
    status, headers, body = request(
        "GET", emu.metadata_url + "instance/service-accounts/default/token?scopes=" + scopes, headers=FLAVOR
    )
    assert status == 200 and headers["Metadata-Flavor"] == "Google"
    resp = as_json(body)
    assert set(resp) == {"access_token", "expires_in", "token_type"} and resp["token_type"] == "Bearer"
    rec = emu.lookup(resp["access_token"])
    assert rec.source == "metadata" and rec.email == emu.metadata_email and rec.scopes == sorted([CP, GCS])
    # No scopes: the instance's default scopes.
    status, _, body = request("GET", emu.metadata_url + "instance/service-accounts/default/token", headers=FLAVOR)
    assert emu.lookup(as_json(body)["access_token"]).scopes == [CP]
    # The account can be named by email, too; unknown accounts are 404.
    status, _, _ = request("GET", emu.metadata_url + f"instance/service-accounts/{emu.metadata_email}/token", headers=FLAVOR)
    assert status == 200
    status, _, _ = request("GET", emu.metadata_url + "instance/service-accounts/other@x.com/token", headers=FLAVOR)
    assert status == 404


def test_metadata_identity_and_email(emu, id_pub, tmp_path):
    aud = "https://svc-abc.a.run.app/path?x=1"
    url = emu.metadata_url + "instance/service-accounts/default/identity?audience=" + urllib.parse.quote(aud, safe="")
    status, headers, body = request("GET", url + "&format=full", headers=FLAVOR)
    assert status == 200 and headers["Metadata-Flavor"] == "Google"
    token = body.decode()
    claims = emu.verify_id_token(token, audience=aud)
    assert openssl_verify_jwt(token, id_pub, tmp_path) == claims
    assert claims["email"] == emu.metadata_email and "google" in claims
    assert emu.lookup(token).audience == aud
    status, _, body = request("GET", url, headers=FLAVOR)  # format=standard: no email
    assert status == 200 and "email" not in emu.verify_id_token(body.decode())
    status, _, _ = request("GET", emu.metadata_url + "instance/service-accounts/default/identity", headers=FLAVOR)
    assert status == 400
    status, _, body = request("GET", emu.metadata_url + "instance/service-accounts/default/email", headers=FLAVOR)
    assert status == 200 and body.decode() == emu.metadata_email


def test_metadata_failures(emu):
    url = emu.metadata_url + "instance/service-accounts/default/token"
    emu.metadata.fail_next(1, "503")
    emu.metadata.fail_next(1, "no_flavor")
    status, headers, _ = request("GET", url, headers=FLAVOR)
    assert status == 503 and headers["Metadata-Flavor"] == "Google"
    status, headers, body = request("GET", url, headers=FLAVOR)
    assert status == 200 and headers.get("Metadata-Flavor") is None and "access_token" in as_json(body)
    emu.metadata.fail_next(1, "garbage")
    status, _, body = request("GET", url, headers=FLAVOR)
    assert status == 200
    with pytest.raises(ValueError):
        json.loads(body)
    emu.metadata.fail_next(1, "missing_token")
    status, _, body = request("GET", url, headers=FLAVOR)
    assert status == 200 and "access_token" not in as_json(body)
    emu.metadata.outage(True)
    assert request("GET", f"http://{emu.metadata_host}/", headers=FLAVOR)[0] == 503
    emu.metadata.outage(False)
    assert request("GET", f"http://{emu.metadata_host}/", headers=FLAVOR)[0] == 200
    assert emu.metadata.stats()["failures_served"] == 4


# ---------------------------------------------------------------------------------------------
# IAM Credentials
# ---------------------------------------------------------------------------------------------

TARGET = "target@credproxy-test.iam.gserviceaccount.com"
DELEGATE = "projects/-/serviceAccounts/middle@credproxy-test.iam.gserviceaccount.com"


def test_iam_requires_a_valid_bearer(emu, sa, sa_key):
    url = emu.iam.access_token_url(TARGET)
    body = {"scope": [CP], "lifetime": "3600s", "delegates": []}
    status, headers, resp = post_json(url, body)
    assert status == 401 and as_json(resp)["error"]["status"] == "UNAUTHENTICATED"
    assert headers["WWW-Authenticate"].startswith("Bearer")
    status, _, resp = post_json(url, body, {"Authorization": "Bearer ya29.forged"})
    assert status == 401 and as_json(resp)["error"]["code"] == 401
    # A valid token without cloud-platform scope.
    status, _, r = jwt_grant(emu, make_assertion(sa, sa_key, {"scope": GCS}))
    narrow = as_json(r)["access_token"]
    status, _, resp = post_json(url, body, {"Authorization": "Bearer " + narrow})
    err = as_json(resp)["error"]
    assert status == 403 and err == {"code": 403, "message": err["message"], "status": "PERMISSION_DENIED"}
    # An expired one.
    emu.token.set_lifetime(0)
    status, _, r = jwt_grant(emu, make_assertion(sa, sa_key))
    expired = as_json(r)["access_token"]
    status, _, resp = post_json(url, body, {"Authorization": "Bearer " + expired})
    assert status == 401
    # An ID token is not an access token.
    emu.token.set_lifetime(None)
    _, _, r = jwt_grant(emu, make_assertion(sa, sa_key, {"target_audience": "https://a"}, drop=("scope",)))
    status, _, resp = post_json(url, body, {"Authorization": "Bearer " + as_json(r)["id_token"]})
    assert status == 401
    assert emu.mint_count(source="iam") == 0


def test_iam_generate_access_token(emu, sa, cp_token):
    url = emu.iam.access_token_url(TARGET).replace("@", "%40")  # an encoded email works too
    status, _, resp = post_json(
        url, {"scope": [GCS, CP], "lifetime": "1800s", "delegates": [DELEGATE]}, {"Authorization": "Bearer " + cp_token}
    )
    assert status == 200, resp
    out = as_json(resp)
    assert set(out) == {"accessToken", "expireTime"} and out["accessToken"].startswith("ya29.")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", out["expireTime"])
    rec = emu.lookup(out["accessToken"])
    assert rec.source == "iam" and rec.email == TARGET and rec.scopes == sorted([CP, GCS])
    assert rec.delegates == [DELEGATE] and rec.source_identity == sa.email
    assert abs(rec.expiry - (time.time() + 1800)) < 5
    # Validation: lifetime too long, delegates not in resource form, unknown field, no scope.
    auth = {"Authorization": "Bearer " + cp_token}
    for bad in (
        {"scope": [CP], "lifetime": "7200s"},
        {"scope": [CP], "lifetime": "3600"},
        {"scope": [CP], "delegates": ["middle@credproxy-test.iam.gserviceaccount.com"]},
        {"scope": [CP], "scopes": [CP]},
        {"scope": []},
    ):
        status, _, resp = post_json(url, bad, auth)
        assert status == 400 and as_json(resp)["error"]["status"] == "INVALID_ARGUMENT", bad
    # Permission denied on the target.
    emu.iam.allowed_targets = {"someone-else@x.iam.gserviceaccount.com"}
    try:
        status, _, resp = post_json(url, {"scope": [CP]}, auth)
        assert status == 403 and as_json(resp)["error"]["status"] == "PERMISSION_DENIED"
    finally:
        emu.iam.allowed_targets = None


def test_iam_generate_id_token(emu, sa, cp_token, id_pub, tmp_path):
    aud = "https://svc-xyz.a.run.app"
    status, _, resp = post_json(
        emu.iam.id_token_url(TARGET),
        {"audience": aud, "includeEmail": True, "delegates": [DELEGATE]},
        {"Authorization": "Bearer " + cp_token},
    )
    assert status == 200, resp
    token = as_json(resp)["token"]
    claims = emu.verify_id_token(token, audience=aud)
    assert openssl_verify_jwt(token, id_pub, tmp_path) == claims
    assert claims["email"] == TARGET
    rec = emu.lookup(token)
    assert rec.kind == "id" and rec.delegates == [DELEGATE] and rec.source_identity == sa.email
    status, _, resp = post_json(emu.iam.id_token_url(TARGET), {"includeEmail": True}, {"Authorization": "Bearer " + cp_token})
    assert status == 400


def test_iam_accepts_metadata_tokens(emu):
    _, _, body = request("GET", emu.metadata_url + "instance/service-accounts/default/token", headers=FLAVOR)
    tok = as_json(body)["access_token"]
    status, _, resp = post_json(emu.iam.access_token_url(TARGET), {"scope": [CP]}, {"Authorization": "Bearer " + tok})
    assert status == 200 and emu.lookup(as_json(resp)["accessToken"]).source_identity == emu.metadata_email


def test_iam_failures(emu, cp_token):
    url = emu.iam.access_token_url(TARGET)
    auth = {"Authorization": "Bearer " + cp_token}
    emu.iam.fail_next(1, "503")
    status, _, resp = post_json(url, {"scope": [CP]}, auth)
    assert status == 503 and as_json(resp)["error"]["status"] == "UNAVAILABLE"
    emu.iam.fail_next(1, "missing_token")
    status, _, resp = post_json(url, {"scope": [CP]}, auth)
    assert status == 200 and "accessToken" not in as_json(resp)
    status, _, resp = post_json(url, {"scope": [CP]}, auth)
    assert status == 200 and "accessToken" in as_json(resp)


# ---------------------------------------------------------------------------------------------
# failure switches on the token endpoint
# ---------------------------------------------------------------------------------------------


def test_fail_next_500_then_success(emu, sa, sa_key):
    emu.token.fail_next(2, "500")
    for _ in range(2):
        status, _, body = jwt_grant(emu, make_assertion(sa, sa_key))
        assert status == 500 and as_json(body)["error"] == "internal_failure"
    status, _, body = jwt_grant(emu, make_assertion(sa, sa_key))
    assert status == 200
    st = emu.token.stats()
    assert (st["mint_requests"], st["mints"], st["failures_served"]) == (3, 1, 2)
    assert emu.mint_count() == 1


def test_fail_garbage_missing_token_error_200_invalid_grant(emu, sa, sa_key):
    emu.token.fail_next(1, "garbage")
    status, headers, body = jwt_grant(emu, make_assertion(sa, sa_key))
    assert status == 200 and not headers["Content-Type"].startswith("application/json")
    with pytest.raises(ValueError):
        json.loads(body)
    emu.token.fail_next(1, "missing_token")
    status, _, body = jwt_grant(emu, make_assertion(sa, sa_key))
    assert status == 200 and "access_token" not in as_json(body)
    emu.token.fail_next(1, "error_200")
    status, _, body = jwt_grant(emu, make_assertion(sa, sa_key))
    assert status == 200 and "error" in as_json(body)
    emu.token.fail_next(1, "invalid_grant")
    status, _, body = jwt_grant(emu, make_assertion(sa, sa_key))
    assert status == 400 and as_json(body)["error"] == "invalid_grant"
    assert emu.mint_count() == 0
    with pytest.raises(ValueError):
        emu.token.fail_next(1, "bogus")


def test_outage(emu, sa, sa_key):
    emu.token.outage(True)
    status, _, body = jwt_grant(emu, make_assertion(sa, sa_key))
    assert status == 503 and as_json(body)["error"] == "temporarily_unavailable"
    assert request("GET", emu.jwks_url)[0] == 503  # every request
    emu.token.outage(False)
    assert jwt_grant(emu, make_assertion(sa, sa_key))[0] == 200


def test_timeout_and_reset(emu, sa, sa_key):
    emu.token.behaviour.timeout_hold = 3
    emu.token.fail_next(1, "timeout")
    t0 = time.monotonic()
    with pytest.raises((TimeoutError, socket.timeout, urllib.error.URLError)):
        jwt_grant(emu, make_assertion(sa, sa_key), timeout=0.5)
    assert time.monotonic() - t0 < 2.5
    emu.token.fail_next(1, "reset")
    with pytest.raises((ConnectionError, http.client.HTTPException, urllib.error.URLError)):
        jwt_grant(emu, make_assertion(sa, sa_key))
    # The server is still healthy afterwards.
    assert jwt_grant(emu, make_assertion(sa, sa_key))[0] == 200


def test_lifetime_and_string_expires_in(emu, sa, sa_key):
    emu.token.set_lifetime(40)
    _, _, body = jwt_grant(emu, make_assertion(sa, sa_key))
    assert as_json(body)["expires_in"] == 40
    _, _, body = jwt_grant(emu, make_assertion(sa, sa_key, {"target_audience": "https://a"}, drop=("scope",)))
    claims = emu.verify_id_token(as_json(body)["id_token"])
    assert claims["exp"] - claims["iat"] == 40
    emu.token.behaviour.expires_in_as_string = True
    _, _, body = jwt_grant(emu, make_assertion(sa, sa_key))
    assert as_json(body)["expires_in"] == "40"


def test_delay_makes_concurrent_mints_overlap(emu, sa, sa_key):
    assertions = [make_assertion(sa, sa_key) for _ in range(8)]
    emu.token.set_delay(1.0, count=1)  # only the first mint is slow
    results = []
    first = threading.Thread(target=lambda: results.append(jwt_grant(emu, assertions[0])[0]))
    first.start()
    time.sleep(0.2)
    t0 = time.monotonic()
    rest = [threading.Thread(target=lambda a=a: results.append(jwt_grant(emu, a)[0])) for a in assertions[1:]]
    for t in rest:
        t.start()
    for t in rest:
        t.join()
    fast = time.monotonic() - t0
    first.join()
    assert results == [200] * 8
    assert fast < 0.7  # only one request was delayed
    assert emu.token.stats()["max_inflight"] >= 2  # and it overlapped the others


def test_control_api(emu, sa, sa_key):
    base = emu.token.base_url + "/__emulator/"
    status, _, _ = post_json(base + "control", {"fail_next": {"n": 1, "kind": "503"}, "lifetime": 40})
    assert status == 200
    assert jwt_grant(emu, make_assertion(sa, sa_key))[0] == 503
    _, _, body = jwt_grant(emu, make_assertion(sa, sa_key))
    tok = as_json(body)["access_token"]
    status, _, body = request("GET", base + "lookup?token=" + urllib.parse.quote(tok))
    info = as_json(body)
    assert status == 200 and info["email"] == sa.email and info["scopes"] == [CP] and "token" not in info
    status, _, body = request("GET", base + "stats")
    assert status == 200 and as_json(body)["behaviour"]["failures_served"] == 1


# ---------------------------------------------------------------------------------------------
# HTTPS and standalone
# ---------------------------------------------------------------------------------------------


def test_https_token_endpoint(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )
    with g.Emulators(tmp_path / "emu", tls=(str(cert), str(key))) as e:
        assert e.token_url.startswith("https://") and e.iam_url.startswith("https://")
        assert e.metadata_url.startswith("http://")
        s = e.new_service_account()
        pem = tmp_path / "sa.pem"
        pem.write_text(json.loads(Path(s.path).read_text())["private_key"])
        ctx = ssl.create_default_context(cafile=str(cert))
        status, _, body = post_form(
            e.token_url, {"grant_type": g.JWT_BEARER_GRANT, "assertion": make_assertion(s, pem, {"aud": e.token_url})}, context=ctx
        )
        assert status == 200, body
        tok = as_json(body)["access_token"]
        status, _, body = post_json(e.iam.access_token_url(TARGET), {"scope": [CP]}, {"Authorization": "Bearer " + tok}, context=ctx)
        assert status == 200, body


def _start_standalone(cmd, cwd, tmp_path):
    err_path = tmp_path / "stderr.txt"
    with open(err_path, "w") as err:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=err, text=True)
    holder = []
    reader = threading.Thread(target=lambda: holder.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(30)
    if not holder or not holder[0]:
        proc.kill()
        proc.wait()
        proc.stdout.close()
        raise AssertionError("standalone emulator printed nothing: " + err_path.read_text()[-2000:])
    return proc, json.loads(holder[0])


@pytest.mark.parametrize("launcher", ["module", "run.py"])
def test_standalone(tmp_path, launcher):
    d = tmp_path / "demo"
    if launcher == "module":
        cmd, cwd = [sys.executable, "-m", "emulators", "--dir", str(d), "--info-file", str(tmp_path / "info.json")], HERE
    else:
        cmd, cwd = [sys.executable, str(HERE / "emulators" / "run.py"), "--dir", str(d)], HERE.parent.parent
    proc, info = _start_standalone(cmd, cwd, tmp_path)
    try:
        for k in ("token_url", "metadata_host", "iam_url", "service_account_key", "authorized_user", "impersonated",
                  "client_credentials", "id_token_public_key", "pid"):
            assert info[k], k
        if launcher == "module":
            assert json.loads((tmp_path / "info.json").read_text()) == info
        status, headers, _ = request("GET", f"http://{info['metadata_host']}/", headers=FLAVOR)
        assert status == 200 and headers["Metadata-Flavor"] == "Google"
        key_info = json.loads(Path(info["service_account_key"]).read_text())
        assert key_info["token_uri"] == info["token_url"]
        pem = tmp_path / "k.pem"
        pem.write_text(key_info["private_key"])
        s = g.ServiceAccountKey(info["service_account_key"], key_info["client_email"], key_info["private_key_id"], "", "", "")
        status, _, body = post_form(info["token_url"], {"grant_type": g.JWT_BEARER_GRANT, "assertion": make_assertion(s, pem)})
        assert status == 200, body
        tok = as_json(body)["access_token"]
        status, _, body = request("GET", info["control"]["token"] + "lookup?token=" + urllib.parse.quote(tok))
        assert status == 200 and as_json(body)["email"] == key_info["client_email"]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
    assert rc == 0, (tmp_path / "stderr.txt").read_text()[-2000:]
