"""Token endpoint failures as callers see them: retries the way google-auth does them, 503
``token_unavailable`` naming the credential and the endpoint's error, per-key backoff, recovery,
and 503 ``credential_unavailable`` for a credential that cannot work at all."""

from __future__ import annotations

import re
import time

import pytest

from google_support import (  # noqa: F401 - fixtures
    assert_error,
    assert_no_leaks,
    conf,
    creds,
    emu,
    fetch,
    fetch_json,
    fingerprint,
    genv,
    gtmp,
    gup,
    new_sa,
    non_loopback_ip,
    new_user,
    reset_emu,
    route,
    start_refresh_scenario_early,
    tokens_never_logged,
)

pytestmark = pytest.mark.timeout(60)


def _proxy(emu, gup, proxy_factory, genv, pki, name: str, source: str, env=None):
    px = proxy_factory(conf(
        pki.ca_file,
        creds(name, source),
        route(f"localhost:{gup.port}/oauth", "auth OAuth2", f"credentials {name}"),
        route(f"localhost:{gup.port}/oidc", "auth OIDC", f"credentials {name}"),
    ), env=genv(**(env or {})))
    return px


def _sa_proxy(emu, gup, proxy_factory, genv, pki, name: str):
    sa = new_sa(emu)
    return sa, _proxy(emu, gup, proxy_factory, genv, pki, name, f"source key-file {sa.path}")


def _timed(px, url, timeout=40.0):
    t0 = time.monotonic()
    r = fetch(px, url, timeout=timeout)
    return r, time.monotonic() - t0


def _recovers(emu, px, gup, path: str, within: float = 3.5) -> dict:
    """After the backoff the next request mints and succeeds."""
    deadline = time.monotonic() + within
    while True:
        r = fetch(px, gup.url(path))
        if r.status == 200:
            return r.json()["authorization"]
        assert r.status == 503, r
        assert time.monotonic() < deadline, f"no recovery within {within}s: {r!r}"
        time.sleep(0.25)


def test_500_past_the_retries_then_503_then_recovery(emu, gup, proxy_factory, genv, pki):
    sa, px = _sa_proxy(emu, gup, proxy_factory, genv, pki, "flaky-sa")
    emu.token.fail_next(3, "500")
    r, took = _timed(px, gup.url("/oauth/a"))
    assert_error(r, 503, "token_unavailable", "flaky-sa")
    assert "internal_failure" in r.text or "Emulated HTTP 500" in r.text, r.text
    assert "500" in r.text, r.text
    assert emu.token.stats()["mint_requests"] == 3, "3 attempts, as google-auth makes"
    assert 2.5 <= took < 10, f"retries should wait ~1 s then ~2 s; the request took {took:.1f}s"

    # Inside the 1 s backoff: refused at once, no new attempt.
    r2, took2 = _timed(px, gup.url("/oauth/b"))
    assert_error(r2, 503, "token_unavailable", "flaky-sa")
    assert took2 < 1.0 and emu.token.stats()["mint_requests"] == 3, (took2, emu.token.stats())

    a = _recovers(emu, px, gup, "/oauth/c")
    assert a["known"] and a["email"] == sa.email, a
    assert emu.token.stats()["mint_requests"] == 4
    assert_no_leaks("error bodies", r.text + r2.text, emu)


def test_fewer_failures_than_attempts_are_absorbed_by_retries(emu, gup, proxy_factory, genv, pki):
    sa, px = _sa_proxy(emu, gup, proxy_factory, genv, pki, "retry-sa")
    emu.token.fail_next(2, "503")
    r, took = _timed(px, gup.url("/oauth/x"))
    assert r.status == 200, r
    assert r.json()["authorization"]["email"] == sa.email
    assert emu.token.stats()["mint_requests"] == 3
    assert 2.5 <= took < 10, took


@pytest.mark.parametrize("kind,needles", [
    ("invalid_grant", ["invalid_grant", "Invalid JWT Signature."]),
    ("error_200", ["invalid_grant", "Emulated error in a 200 response."]),
    ("garbage", ["invalid_response"]),
    ("missing_token", ["invalid_response"]),
])
def test_non_retryable_failures_fail_fast_then_recover(emu, gup, proxy_factory, genv, pki, kind, needles):
    name = f"bad-{kind.replace('_', '-')}"
    sa, px = _sa_proxy(emu, gup, proxy_factory, genv, pki, name)
    emu.token.fail_next(1, kind)
    r, took = _timed(px, gup.url("/oauth/a"))
    assert_error(r, 503, "token_unavailable", name, *needles)
    assert "token endpoint" in r.text, r.text
    assert emu.token.stats()["mint_requests"] == 1, f"{kind} is not retryable"
    assert took < 2.5, took
    assert "<html" not in r.text.lower(), "the endpoint's raw body is not passed through"
    a = _recovers(emu, px, gup, "/oauth/b")
    assert a["email"] == sa.email
    assert_no_leaks("error body", r.text, emu)


def test_backoff_grows_per_key(emu, gup, proxy_factory, genv, pki):
    sa, px = _sa_proxy(emu, gup, proxy_factory, genv, pki, "backoff-sa")
    emu.token.fail_next(2, "invalid_grant")
    assert fetch(px, gup.url("/oauth/1")).status == 503
    time.sleep(1.15)  # first backoff: 1 s
    assert fetch(px, gup.url("/oauth/2")).status == 503
    assert emu.token.stats()["mint_requests"] == 2
    # Second backoff: 2 s. After 1.2 s it still refuses without asking the endpoint.
    time.sleep(1.2)
    r = fetch(px, gup.url("/oauth/3"))
    assert_error(r, 503, "token_unavailable", "backoff-sa")
    assert emu.token.stats()["mint_requests"] == 2, "backoff must grow: 1 s, then 2 s"
    # Another key of the same credential is not held back by this one's backoff.
    i = fetch_json(px, gup.url("/oidc/other-key"))["authorization"]
    assert i["kind"] == "id", i
    time.sleep(1.0)
    assert _recovers(emu, px, gup, "/oauth/4")["email"] == sa.email


def test_metadata_timeout_is_retried(emu, gup, proxy_factory, genv, pki):
    px = _proxy(emu, gup, proxy_factory, genv, pki, "md-slow", "source metadata",
                env={"GCE_METADATA_HOST": emu.metadata_host})
    emu.metadata.behaviour.timeout_hold = 8.0
    emu.metadata.fail_next(1, "timeout")
    r, took = _timed(px, gup.url("/oauth/t"))
    assert r.status == 200, r
    assert r.json()["authorization"]["source"] == "metadata"
    assert emu.metadata.stats()["mint_requests"] == 2
    assert took >= 2.5, f"the metadata request should have timed out (~3 s) first; took {took:.1f}s"


def test_metadata_timeout_on_the_last_attempt_gives_503(emu, gup, proxy_factory, genv, pki):
    px = _proxy(emu, gup, proxy_factory, genv, pki, "md-timeout", "source metadata",
                env={"GCE_METADATA_HOST": emu.metadata_host})
    emu.metadata.behaviour.timeout_hold = 8.0
    emu.metadata.fail_next(2, "503")
    emu.metadata.fail_next(1, "timeout")
    r, took = _timed(px, gup.url("/oauth/t"))
    assert_error(r, 503, "token_unavailable", "md-timeout", "metadata server")
    assert re.search(r"time[d ]?out|timeout", r.text, re.I), r.text
    assert emu.metadata.stats()["mint_requests"] == 3
    assert 5 <= took < 15, took
    a = _recovers(emu, px, gup, "/oauth/again")
    assert a["source"] == "metadata"


def test_metadata_answer_without_flavor_header_is_not_trusted(emu, gup, proxy_factory, genv, pki):
    px = _proxy(emu, gup, proxy_factory, genv, pki, "md-flavor", "source metadata",
                env={"GCE_METADATA_HOST": emu.metadata_host})
    emu.metadata.fail_next(1, "no_flavor")
    r = fetch(px, gup.url("/oauth/f"), timeout=30)
    flavorless = emu.registry.issued(source="metadata")[-1]
    if r.status == 200:  # retried: the second answer was genuine
        a = r.json()["authorization"]
        assert a["fingerprint"] != fingerprint(flavorless.token), \
            "a token from an answer without Metadata-Flavor: Google was used"
    else:
        assert_error(r, 503, "token_unavailable", "md-flavor")
        assert "flavor" in r.text.lower(), r.text


def test_iam_permission_denied_names_the_iam_error(emu, gup, proxy_factory, genv, pki):
    src = new_sa(emu)
    target = f"denied@{emu.project_id}.iam.gserviceaccount.com"
    px = proxy_factory(conf(
        pki.ca_file,
        creds("base", f"source key-file {src.path}"),
        creds("imp-denied", f"source impersonate {target} via base", f"iam-endpoint {emu.iam_url}"),
        route(f"localhost:{gup.port}", "auth OAuth2", "credentials imp-denied"),
    ), env=genv())
    emu.iam.fail_next(1, "invalid_grant")
    r = fetch(px, gup.url("/imp"))
    assert_error(r, 503, "token_unavailable", "imp-denied", "PERMISSION_DENIED")
    assert "iam.serviceAccounts.getAccessToken" in r.text, r.text


def test_unreadable_key_file_is_credential_unavailable(emu, gup, proxy_factory, genv, pki, tmp_path):
    missing = tmp_path / "no-such-dir" / "key.json"
    px = _proxy(emu, gup, proxy_factory, genv, pki, "gone", f"source key-file {missing}")
    before = len(gup.matching("/oauth/x"))  # the upstream is shared by this module's tests
    for path in ("/oauth/x", "/oidc/y"):
        r = fetch(px, gup.url(path))
        assert_error(r, 503, "credential_unavailable", str(missing))
        assert "gone" in r.text, r.text
    assert len(gup.matching("/oauth/x")) == before, "nothing may reach the upstream without its credential"


def test_malformed_key_file_is_credential_unavailable(emu, gup, proxy_factory, genv, pki, tmp_path):
    bad = tmp_path / "bad-key.json"
    bad.write_text('{"type": "service_account", "client_email": "x@y.iam.gserviceaccount.com"}\n')
    px = _proxy(emu, gup, proxy_factory, genv, pki, "malformed", f"source key-file {bad}")
    r = fetch(px, gup.url("/oauth/x"))
    assert_error(r, 503, "credential_unavailable", str(bad))
    unknown = tmp_path / "external.json"
    unknown.write_text('{"type": "external_account", "audience": "//iam.googleapis.com/x"}\n')
    px2 = _proxy(emu, gup, proxy_factory, genv, pki, "external", f"source key-file {unknown}")
    r = fetch(px2, gup.url("/oauth/x"))
    # An external_account without its fields names the first one missing.
    assert_error(r, 503, "credential_unavailable", str(unknown), '"subject_token_type"')


@pytest.mark.parametrize("kind", ["service_account", "authorized_user", "impersonated_service_account"])
def test_key_file_endpoint_over_plain_http_off_loopback_is_refused(emu, gup, proxy_factory, genv, pki, kind):
    """Token URLs may be http only on loopback: a key file whose token_uri (or impersonation URL)
    is http:// to another address must not get an assertion, refresh token or bearer token sent
    there in cleartext."""
    from emulators import IAMServer, TokenServer
    ip = non_loopback_ip()
    if ip is None:
        pytest.skip("no non-loopback IPv4 address on this machine")
    cls = IAMServer if kind == "impersonated_service_account" else TokenServer
    server = cls(emu.registry, emu.signer, host="0.0.0.0").start()
    try:
        base = f"http://{ip}:{server.port}"
        if kind == "service_account":
            server.extra_audiences.add(base + "/token")
            path = new_sa(emu, token_uri=base + "/token").path
        elif kind == "authorized_user":
            path = new_user(emu, token_uri=base + "/token").path
        else:
            src = new_sa(emu)
            path = emu.new_impersonated(f"cleartext-imp@{emu.project_id}.iam.gserviceaccount.com", src)
            text = open(path).read().replace(emu.iam_url, base)
            open(path, "w").write(text)
        px = _proxy(emu, gup, proxy_factory, genv, pki, "cleartext", f"source key-file {path}")
        r = fetch(px, gup.url("/oauth/x"), timeout=30)
        sent = server.stats()["requests"]
        assert sent == 0, f"the proxy sent {sent} request(s) over plain http to {base} ({kind}): {r!r}"
        assert r.status == 503 and r.error_code in ("credential_unavailable", "token_unavailable"), r
        assert "https" in r.text, r.text
    finally:
        server.stop()
