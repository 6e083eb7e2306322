"""Runners identified by their own OIDC tokens: `client NAME { oidc issuer URL audience A claim K V }`.
A local issuer (emulators/oidc_issuer.py) publishes discovery and a JWKS and signs tokens with
Python's `cryptography`; credproxy verifies them with libcrypto."""

from __future__ import annotations

import base64
import json
import threading
import time

import pytest

from emulators.oidc_issuer import OIDCIssuer, SigningKey, encode
from policy_support import assert_refused, basic, bearer, curl, fetch, read_audit

pytestmark = pytest.mark.timeout(90)

PASSWORD = "itest-oidc-ops-pw-7c1d0e"

CONF = """\
listen 127.0.0.1:0
ca-file {ca}
audit-log AUDIT
client deploy {
  oidc issuer ISSUER audience credproxy-itest claim repository myorg/deploy claim ref refs/heads/main
}
client tests {
  oidc issuer ISSUER audience credproxy-itest claim repository myorg/deploy
}
client edge {
  oidc issuer ES_ISSUER audience credproxy-itest
}
client ops {
  password env:ITEST_OIDC_OPS_PW
}
route localhost:{upstream_port}/deploy {
  auth none
  allow deploy
}
route localhost:{upstream_port}/tests {
  auth none
  allow deploy tests edge ops
}
"""


@pytest.fixture
def issuers():
    rs, es = OIDCIssuer("RS256").start(), OIDCIssuer("ES256").start()
    yield rs, es
    rs.stop()
    es.stop()


@pytest.fixture
def oidc_proxy(proxy, issuers, tmp_path):
    rs, es = issuers
    audit = tmp_path / "audit.jsonl"

    def start(extra_args: tuple = ()):
        conf = CONF.replace("ES_ISSUER", es.url).replace("ISSUER", rs.url)
        conf = conf.replace("AUDIT", str(audit))
        return proxy(conf, env={"ITEST_OIDC_OPS_PW": PASSWORD}, extra_args=extra_args)

    start.audit = audit
    return start


def good(issuer, **claims):
    base = {"aud": "credproxy-itest", "repository": "myorg/deploy", "ref": "refs/heads/main"}
    base.update(claims)
    return issuer.token(**base)


def test_good_token_identifies_the_client_and_audit_names_claims_not_the_token(
        oidc_proxy, issuers, upstream):
    rs, _ = issuers
    px = oidc_proxy()
    token = good(rs)
    r = fetch(px, upstream.url("/deploy/echo/ok"), [bearer(token)])
    assert r.status == 200, r
    # The token never reaches the upstream (Proxy-Authorization is hop-by-hop).
    assert token not in json.dumps(r.json())
    records = read_audit(oidc_proxy.audit, at_least=1)
    assert records[-1]["client"] == "deploy"
    assert records[-1]["client_claims"] == ["repository=myorg/deploy", "ref=refs/heads/main"]
    text = oidc_proxy.audit.read_text() + px.stderr_text()
    assert token not in text and token.split(".")[2] not in text
    # Discovery and JWKS once; the second request is served from the cached keys.
    assert fetch(px, upstream.url("/deploy/echo/again"), [bearer(good(rs))]).status == 200
    assert (rs.discovery_fetches, rs.jwks_fetches) == (1, 1)


def test_es256_token(oidc_proxy, issuers, upstream):
    _, es = issuers
    px = oidc_proxy()
    r = fetch(px, upstream.url("/tests/echo/es"), [bearer(es.token(aud="credproxy-itest"))])
    assert r.status == 200, r
    assert read_audit(oidc_proxy.audit, at_least=1)[-1]["client"] == "edge"


def test_wrong_audience_expired_and_not_yet_valid_are_refused(oidc_proxy, issuers, upstream):
    rs, _ = issuers
    px = oidc_proxy()
    url = upstream.url("/tests/echo/x")
    assert_refused(fetch(px, url, [bearer(good(rs, aud="someone-else"))]), 407, "proxy_auth_required")
    now = int(time.time())
    assert_refused(fetch(px, url, [bearer(good(rs, exp=now - 120))]), 407, "proxy_auth_required")
    assert_refused(fetch(px, url, [bearer(good(rs, nbf=now + 120))]), 407, "proxy_auth_required")
    # Inside the 60 s skew: accepted.
    assert fetch(px, url, [bearer(good(rs, exp=now - 30))]).status == 200
    # An audience list containing ours is accepted.
    assert fetch(px, url, [bearer(good(rs, aud=["other", "credproxy-itest"]))]).status == 200


def test_bad_signature_alg_none_hs256_and_wrong_key_type_are_refused(oidc_proxy, issuers, upstream):
    rs, _ = issuers
    px = oidc_proxy()
    url = upstream.url("/tests/echo/x")
    assert fetch(px, url, [bearer(good(rs))]).status == 200  # keys are loaded
    claims = {"iss": rs.url, "aud": "credproxy-itest", "repository": "myorg/deploy",
              "exp": int(time.time()) + 300}
    # Same kid, another key: the signature does not verify.
    impostor = SigningKey("RS256", kid=rs.key.kid)
    forged = encode({"alg": "RS256", "kid": rs.key.kid}, claims, impostor.sign)
    r = fetch(px, url, [bearer(forged)])
    assert_refused(r, 407, "proxy_auth_required")
    assert "signature" in r.body.decode()
    # A real signature with one byte changed.
    token = good(rs)
    head, body, sig = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)))
    raw[10] ^= 1
    tampered = f"{head}.{body}.{base64.urlsafe_b64encode(bytes(raw)).rstrip(b'=').decode()}"
    assert_refused(fetch(px, url, [bearer(tampered)]), 407, "proxy_auth_required")
    # alg none, unsigned.
    r = fetch(px, url, [bearer(encode({"alg": "none"}, claims, None))])
    assert_refused(r, 407, "proxy_auth_required")
    assert "RS256 or ES256" in r.body.decode()
    # HS256 keyed with the issuer's public JWK text (the classic confusion attack).
    import hashlib, hmac
    secret = json.dumps(rs.key.jwk()).encode()
    hs = encode({"alg": "HS256", "kid": rs.key.kid}, claims,
                lambda data: hmac.new(secret, data, hashlib.sha256).digest())
    assert_refused(fetch(px, url, [bearer(hs)]), 407, "proxy_auth_required")
    # ES256 header naming the issuer's RSA kid: a key of the wrong type never verifies.
    ec_key = SigningKey("ES256", kid=rs.key.kid)
    wrong_type = encode({"alg": "ES256", "kid": rs.key.kid}, claims, ec_key.sign)
    assert_refused(fetch(px, url, [bearer(wrong_type)]), 407, "proxy_auth_required")


def test_unknown_kid_then_rotation_refetches_the_jwks_rate_limited(oidc_proxy, issuers, upstream):
    rs, _ = issuers
    px = oidc_proxy()
    url = upstream.url("/deploy/echo/rot")
    assert fetch(px, url, [bearer(good(rs))]).status == 200
    assert rs.jwks_fetches == 1
    rs.rotate()
    # Right after a fetch, an unknown kid does not make credproxy fetch again (rate limit).
    r = fetch(px, url, [bearer(good(rs))])
    assert_refused(r, 407, "proxy_auth_required")
    assert "kid unknown" in r.body.decode()
    assert rs.jwks_fetches == 1
    time.sleep(5.3)
    # Past the interval: the unknown kid triggers one fetch, which finds the rotated key.
    r = fetch(px, url, [bearer(good(rs))])
    assert r.status == 200, r
    assert rs.jwks_fetches == 2
    # A kid the issuer never published: refused, and no third fetch so soon.
    stranger = SigningKey("RS256")
    unknown = rs.token(key=stranger, aud="credproxy-itest", repository="myorg/deploy",
                       ref="refs/heads/main")
    assert_refused(fetch(px, url, [bearer(unknown)]), 407, "proxy_auth_required")
    assert rs.jwks_fetches == 2


def test_claims_choose_the_client_and_a_mismatch_is_refused(oidc_proxy, issuers, upstream):
    rs, _ = issuers
    px = oidc_proxy()
    # ref differs: not `deploy`, but `tests` (which does not look at ref) matches.
    dev = good(rs, ref="refs/heads/dev")
    assert_refused(fetch(px, upstream.url("/deploy/echo/x"), [bearer(dev)]), 403, "client_not_allowed")
    assert fetch(px, upstream.url("/tests/echo/x"), [bearer(dev)]).status == 200
    assert read_audit(oidc_proxy.audit, at_least=2)[-1]["client"] == "tests"
    # Another repository matches no client at all.
    r = fetch(px, upstream.url("/tests/echo/x"), [bearer(good(rs, repository="myorg/other"))])
    assert_refused(r, 407, "proxy_auth_required")
    assert "repository" in r.body.decode() and "myorg" not in r.body.decode()
    # A claim that is a prefix of the configured value does not match (exact comparison).
    r = fetch(px, upstream.url("/tests/echo/x"), [bearer(good(rs, repository="myorg/deplo"))])
    assert_refused(r, 407, "proxy_auth_required")


def test_proxy_url_form_name_and_token_as_basic(oidc_proxy, issuers, upstream):
    """Clients configured by a proxy URL (curl -x, HTTPS_PROXY) can only send Basic: the token
    goes as the password, the user names the client it must identify."""
    rs, _ = issuers
    px = oidc_proxy()
    token = good(rs)
    r = curl("-x", f"http://deploy:{token}@127.0.0.1:{px.port}", upstream.url("/deploy/echo/curl"))
    assert r.status == 200, r
    assert read_audit(oidc_proxy.audit, at_least=1)[-1]["client"] == "deploy"
    dev = good(rs, ref="refs/heads/dev")
    # Named `deploy`, but the ref is not main: refused, not silently another client.
    assert_refused(fetch(px, upstream.url("/tests/echo/x"), [basic("deploy", dev)]), 407,
                   "proxy_auth_required")
    assert fetch(px, upstream.url("/tests/echo/x"), [basic("tests", dev)]).status == 200
    assert token not in px.stderr_text()


def test_requests_wait_for_the_jwks_without_blocking_the_loop(oidc_proxy, issuers, upstream):
    rs, _ = issuers
    rs.delay = 2.0
    px = oidc_proxy(extra_args=("--threads", "1"))
    results: list = []

    def one(i: int) -> None:
        r = fetch(px, upstream.url(f"/deploy/echo/cold{i}"), [bearer(good(rs))], timeout=20)
        results.append(r.status)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    # While the JWKS is still being fetched, the one loop answers other callers at once.
    started = time.monotonic()
    r = fetch(px, upstream.url("/tests/echo/pw"), [basic("ops", PASSWORD)])
    elapsed = time.monotonic() - started
    assert r.status == 200
    assert elapsed < 1.0, f"a password client waited {elapsed:.2f}s behind the JWKS fetch"
    for t in threads:
        t.join()
    assert results == [200] * 20
    assert (rs.discovery_fetches, rs.jwks_fetches) == (1, 1)


def test_issuer_down_is_503_identity_unavailable(oidc_proxy, issuers, upstream):
    rs, _ = issuers
    rs.fail_status = 503
    px = oidc_proxy()
    r = fetch(px, upstream.url("/tests/echo/x"), [bearer(good(rs))])
    assert_refused(r, 503, "identity_unavailable")
    assert rs.url in r.body.decode()


def test_check_shows_the_oidc_client_and_rejects_a_plain_http_issuer(cli, proxy_factory):
    path = proxy_factory.config("""\
client runner {
  oidc issuer http://issuer.example.com audience a
}
""")
    r = cli("check", "--config", str(path))
    assert r.returncode == 2
    assert "oidc issuer must use https" in r.stderr + r.stdout
    path = proxy_factory.config("""\
client runner {
  oidc issuer https://token.actions.githubusercontent.com audience credproxy claim repository myorg/deploy
}
""")
    r = cli("check", "--config", str(path))
    assert r.returncode == 0, r.stderr
    assert "oidc issuer https://token.actions.githubusercontent.com audience credproxy claim repository myorg/deploy" in r.stdout


def test_intercepted_tunnel_keeps_the_connects_oidc_identity(proxy, issuers, upstream, tmp_path,
                                                             credproxy_bin):
    import subprocess
    rs, _ = issuers
    ca = tmp_path / "ca"
    r = subprocess.run([str(credproxy_bin), "ca", "init", "--dir", str(ca)], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    audit = tmp_path / "audit.jsonl"
    conf = """\
listen 127.0.0.1:0
ca-file {ca}
ca-cert CADIR/ca.pem
ca-key CADIR/ca-key.pem
audit-log AUDIT
client deploy {
  oidc issuer ISSUER audience credproxy-itest claim repository myorg/deploy
}
route localhost:{upstream_port} {
  intercept
  allow deploy
  auth none
}
""".replace("CADIR", str(ca)).replace("AUDIT", str(audit)).replace("ISSUER", rs.url)
    px = proxy(conf)
    token = good(rs)
    r = curl("-x", f"http://deploy:{token}@127.0.0.1:{px.port}", "--cacert", str(ca / "ca.pem"),
             f"https://localhost:{upstream.port}/echo/intercepted")
    assert r.status == 200, r
    records = [x for x in read_audit(audit, at_least=2) if x.get("via") == "intercept"]
    assert records and records[-1]["client"] == "deploy"
    assert records[-1]["client_claims"] == ["repository=myorg/deploy"]
    assert token not in audit.read_text()


def raw_token(header_json: str, claims_json: str, sign, pad: bool = False) -> str:
    """A compact JWS from JSON text as given (duplicate members survive); ``pad`` keeps the
    base64 ``=`` padding JOSE forbids."""
    def b64(data: bytes) -> str:
        text = base64.urlsafe_b64encode(data).decode()
        return text if pad else text.rstrip("=")
    h, c = b64(header_json.encode()), b64(claims_json.encode())
    return f"{h}.{c}.{b64(sign(f'{h}.{c}'.encode()))}"


def test_duplicate_json_members_in_header_or_claims_are_refused(oidc_proxy, issuers, upstream):
    """JSON parsers disagree on a repeated member (first wins, last wins, error): a token whose
    meaning depends on the parser is refused, even though the issuer signed it."""
    rs, _ = issuers
    px = oidc_proxy()
    url = upstream.url("/deploy/echo/dup")
    assert fetch(px, url, [bearer(good(rs))]).status == 200  # keys are loaded
    kid, now = rs.key.kid, int(time.time())
    head = f'{{"alg":"RS256","kid":"{kid}"}}'
    body = (f'{{"iss":"{rs.url}","aud":"credproxy-itest","exp":{now + 300},'
            f'"ref":"refs/heads/main","repository":"myorg/deploy"}}')
    assert fetch(px, url, [bearer(raw_token(head, body, rs.key.sign))]).status == 200
    repeated_claim = body.replace('"repository"', '"repository":"myorg/other","repository"')
    escaped_repeat = body.replace('"repository"', '"repository":"myorg/other","repo\\u0073itory"')
    repeated_alg = f'{{"alg":"none","kid":"{kid}","alg":"RS256"}}'
    for h, c in [(head, repeated_claim), (head, escaped_repeat), (repeated_alg, body)]:
        r = fetch(px, url, [bearer(raw_token(h, c, rs.key.sign))])
        assert_refused(r, 407, "proxy_auth_required")
        assert "malformed" in r.body.decode(), r


def test_padded_or_non_canonical_base64url_is_refused(oidc_proxy, issuers, upstream):
    """JWS segments are unpadded base64url (RFC 7515 §2): padding, and spare bits that are not
    zero, would give one signature many spellings."""
    rs, _ = issuers
    px = oidc_proxy()
    url = upstream.url("/deploy/echo/b64")
    token = good(rs)
    assert fetch(px, url, [bearer(token)]).status == 200
    head, body, sig = token.split(".")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    # A 256-byte signature leaves 4 spare bits in its last character: flip one.
    respelled = sig[:-1] + alphabet[alphabet.index(sig[-1]) ^ 1]
    now = int(time.time())
    signed_padded = raw_token(
        f'{{"alg":"RS256","kid":"{rs.key.kid}"}}',
        f'{{"iss":"{rs.url}","aud":"credproxy-itest","exp":{now + 300},'
        f'"repository":"myorg/deploy","ref":"refs/heads/main"}}', rs.key.sign, pad=True)
    assert "=" in signed_padded
    for bad in [f"{head}.{body}.{sig}==", f"{head}.{body}.{respelled}", signed_padded]:
        r = fetch(px, url, [bearer(bad)])
        assert_refused(r, 407, "proxy_auth_required")
        assert "malformed" in r.body.decode(), r


def test_a_token_without_kid_needs_an_issuer_with_one_key_of_its_type(oidc_proxy, issuers,
                                                                     upstream):
    """Without a `kid` the token does not say which key signed it: with one key of the type that
    key decides; with several, the token is refused (as jose does), not tried against each."""
    rs, _ = issuers
    px = oidc_proxy()
    url = upstream.url("/deploy/echo/nokid")
    claims = {"iss": rs.url, "aud": "credproxy-itest", "repository": "myorg/deploy",
              "ref": "refs/heads/main", "exp": int(time.time()) + 300}
    assert fetch(px, url, [bearer(encode({"alg": "RS256"}, claims, rs.key.sign))]).status == 200
    first = rs.key
    with rs.lock:
        rs.keys = [first, SigningKey("RS256")]
    time.sleep(5.3)  # past the refetch interval, so an unknown kid fetches the two-key JWKS
    assert fetch(px, url, [bearer(good(rs))]).status == 200
    assert rs.jwks_fetches == 2
    for key in rs.keys:
        r = fetch(px, url, [bearer(encode({"alg": "RS256"}, claims, key.sign))])
        assert_refused(r, 407, "proxy_auth_required")
        assert "kid" in r.body.decode(), r
    # Each key still works with its kid.
    assert fetch(px, url, [bearer(rs.token(key=first, aud="credproxy-itest",
                                           repository="myorg/deploy",
                                           ref="refs/heads/main"))]).status == 200


def test_es256_signature_in_der_form_is_refused(oidc_proxy, issuers, upstream):
    """JOSE's ES256 signature is r||s, 64 bytes; the DER form other APIs produce is not a JWS."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    _, es = issuers
    px = oidc_proxy()
    url = upstream.url("/tests/echo/der")
    assert fetch(px, url, [bearer(es.token(aud="credproxy-itest"))]).status == 200
    claims = {"iss": es.url, "aud": "credproxy-itest", "exp": int(time.time()) + 300}
    der = encode({"alg": "ES256", "kid": es.key.kid}, claims,
                 lambda data: es.key.key.sign(data, ec.ECDSA(hashes.SHA256())))
    r = fetch(px, url, [bearer(der)])
    assert_refused(r, 407, "proxy_auth_required")
    assert "signature" in r.body.decode()


def test_time_claims_must_be_numbers_and_exp_is_required(oidc_proxy, issuers, upstream):
    rs, _ = issuers
    px = oidc_proxy()
    url = upstream.url("/tests/echo/time")
    now = int(time.time())
    assert fetch(px, url, [bearer(good(rs, exp=now + 300.5))]).status == 200  # NumericDate
    for claims in [{"exp": str(now + 300)}, {"exp": True}, {"exp": None}, {"exp": [now + 300]},
                   {"nbf": str(now)}, {"nbf": True}]:
        r = fetch(px, url, [bearer(good(rs, **claims))])
        assert_refused(r, 407, "proxy_auth_required")
    key = rs.key
    no_exp = encode({"alg": "RS256", "kid": key.kid},
                    {"iss": rs.url, "aud": "credproxy-itest", "repository": "myorg/deploy"},
                    key.sign)
    r = fetch(px, url, [bearer(no_exp)])
    assert_refused(r, 407, "proxy_auth_required")
    assert "exp" in r.body.decode()
    # A claim that is an array holding the configured value is not that value.
    r = fetch(px, url, [bearer(good(rs, repository=["myorg/deploy"]))])
    assert_refused(r, 407, "proxy_auth_required")


def test_discovery_must_name_the_issuer_and_a_secure_jwks_uri(oidc_proxy, issuers, upstream):
    rs, _ = issuers
    px = oidc_proxy()
    url = upstream.url("/tests/echo/disco")
    rs.discovery_overrides = {"issuer": rs.url + "/"}
    r = fetch(px, url, [bearer(good(rs))])
    assert_refused(r, 503, "identity_unavailable")
    assert "names another issuer" in r.body.decode()
    assert rs.jwks_fetches == 0
    time.sleep(5.3)
    rs.discovery_overrides = {"jwks_uri": "http://192.0.2.10/jwks"}
    r = fetch(px, url, [bearer(good(rs))])
    assert_refused(r, 503, "identity_unavailable")
    assert "jwks_uri http://192.0.2.10/jwks must be an https:// URL" in r.body.decode()
    assert rs.jwks_fetches == 0


def test_two_proxy_authorization_headers_are_refused(oidc_proxy, issuers, upstream):
    """One request, one caller: with two credentials, which one counts would depend on who
    reads the head (a front proxy may take the last), so neither does."""
    rs, _ = issuers
    px = oidc_proxy()
    dev = good(rs, ref="refs/heads/dev")  # `tests`, not `deploy`
    main = good(rs)  # `deploy`
    url = upstream.url("/deploy/echo/two")
    for pair in [[bearer(dev), bearer(main)], [bearer(main), bearer(dev)],
                 [basic("ops", PASSWORD), bearer(main)]]:
        r = fetch(px, url, pair)
        assert_refused(r, 400, "bad_request")
        assert "Proxy-Authorization" in r.body.decode()
    assert not upstream.requests_matching("/deploy/echo/two")
    assert fetch(px, url, [bearer(main)]).status == 200


def test_a_token_verified_once_is_still_checked_on_every_request(oidc_proxy, issuers, upstream):
    """A runner sends the same token on every keep-alive request; its signature is verified once
    per loop, but expiry and the config's claims are checked on every request: a reload that no
    longer accepts the claims refuses the same token, and it expires on time."""
    import signal
    rs, _ = issuers
    px = oidc_proxy()
    url = upstream.url("/deploy/echo/cached")
    token = good(rs, exp=int(time.time()) - 57)  # inside the 60 s skew for about 3 more seconds
    for _ in range(3):
        assert fetch(px, url, [bearer(token)]).status == 200
    time.sleep(3.5)
    r = fetch(px, url, [bearer(token)])
    assert_refused(r, 407, "proxy_auth_required")
    assert "expired" in r.body.decode(), r

    fresh = good(rs)
    assert fetch(px, url, [bearer(fresh)]).status == 200
    px.config_path.write_text(px.config_path.read_text().replace("myorg/deploy", "myorg/other"))
    px.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 10
    while "credproxy: reloaded " not in px.stderr_text():
        assert time.time() < deadline, px.stderr_text()[-1500:]
        time.sleep(0.05)
    r = fetch(px, url, [bearer(fresh)])
    assert_refused(r, 407, "proxy_auth_required")
    assert "matches no client" in r.body.decode(), r
    assert (rs.discovery_fetches, rs.jwks_fetches) == (1, 1)
