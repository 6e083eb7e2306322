"""Route-level Google auth: scope normalisation (one cache entry per scope *set*), OIDC audiences
(origin, url, fixed) and ``auth-header``."""

from __future__ import annotations

import re

import pytest

from google_support import (  # noqa: F401 - fixtures
    CP,
    RO,
    SERVERLESS,
    USERINFO,
    conf,
    creds,
    emu,
    fetch,
    fetch_json,
    fetch_many,
    genv,
    gtmp,
    gup,
    new_sa,
    reset_emu,
    route,
    start_refresh_scenario_early,
    tokens_never_logged,
)

pytestmark = pytest.mark.timeout(60)


def test_scope_spellings_share_one_token(emu, gup, proxy_factory, genv, pki):
    sa = new_sa(emu)
    p = gup.port
    spellings = {
        "quoted": f'auth OAuth2 scopes "{RO} {CP}"',
        "words": f"auth OAuth2 scopes {CP} {RO}",
        "comma-string": f'auth OAuth2 scopes "{RO},{CP}"',
        "comma-words": f"auth OAuth2 scopes {RO}, {CP}",
        "comma-space-string": f'auth OAuth2 scopes "{CP} , {RO}"',
        "dups-scope-keyword": f"auth OAuth2 scope {RO} {CP} {RO}",
        "dups-mixed": f'auth OAuth2 scopes "{CP}" {RO},{CP}',
    }
    blocks = [creds("sa", f"source key-file {sa.path}")]
    for name, line in spellings.items():
        blocks.append(route(f"localhost:{p}/{name}", line, "credentials sa"))
    blocks.append(route(f"localhost:{p}/only-cp", f"auth OAuth2 scopes {CP}", "credentials sa"))
    px = proxy_factory(conf(pki.ca_file, *blocks), env=genv())

    seen = []
    for name in spellings:
        a = fetch_json(px, gup.url(f"/{name}/x"))["authorization"]
        assert a["known"] and a["kind"] == "access", (name, a)
        assert a["scopes"] == sorted([CP, RO]), (name, a)
        seen.append(a["fingerprint"])
    assert len(set(seen)) == 1, f"different tokens for one scope set: {dict(zip(spellings, seen))}"
    assert emu.mint_count(email=sa.email) == 1, emu.registry.issued(email=sa.email)
    minted = re.findall(r"minted \S+ for (\S+)", px.stderr_text())
    assert len(minted) == 1, minted

    # A different set is a different token.
    a = fetch_json(px, gup.url("/only-cp/x"))["authorization"]
    assert a["scopes"] == [CP] and a["fingerprint"] != seen[0], a
    assert emu.mint_count(email=sa.email) == 2


def test_scope_spellings_through_concurrent_first_requests(emu, gup, proxy_factory, genv, pki):
    """Reordered scopes on different routes, all cold at once: still one mint."""
    sa = new_sa(emu)
    p = gup.port
    px = proxy_factory(conf(
        pki.ca_file,
        creds("sa", f"source key-file {sa.path}"),
        route(f"localhost:{p}/a", f"auth OAuth2 scopes {USERINFO} {RO} {CP}", "credentials sa"),
        route(f"localhost:{p}/b", f'auth OAuth2 scopes "{CP},{USERINFO},{RO}"', "credentials sa"),
        route(f"localhost:{p}/c", f"auth OAuth2 scopes {RO}, {CP}, {USERINFO}", "credentials sa"),
    ), env=genv())
    emu.token.set_delay(0.5, count=1)
    results = fetch_many(px, [gup.url(f"/{x}/{i}") for i in range(5) for x in "abc"])
    fps = set()
    for r in results:
        assert not isinstance(r, BaseException) and r.status == 200, r
        a = r.json()["authorization"]
        assert a["scopes"] == sorted([CP, RO, USERINFO]), a
        fps.add(a["fingerprint"])
    assert len(fps) == 1
    assert emu.mint_count(email=sa.email) == 1


def test_oidc_default_audience_is_upstream_origin(emu, gup, proxy_factory, genv, pki):
    sa = new_sa(emu)
    p = gup.port
    px = proxy_factory(conf(
        pki.ca_file,
        creds("sa", f"source key-file {sa.path}"),
        route(f"localhost:{p}/implicit", "auth OIDC", "credentials sa"),
        route(f"localhost:{p}/explicit", "auth OIDC audience origin", "credentials sa"),
    ), env=genv())
    fps = set()
    for path in ("/implicit/a/b?x=1", "/implicit/c", "/explicit/d?q=2", "/explicit/"):
        i = fetch_json(px, gup.url(path))["authorization"]
        assert i["kind"] == "id" and i["verified"], i
        assert i["audience"] == f"https://localhost:{p}" == gup.origin, i
        fps.add(i["fingerprint"])
    assert len(fps) == 1, "one origin, one ID token"
    assert emu.mint_count(email=sa.email, kind="id") == 1


def test_oidc_audience_url_drops_the_query(emu, gup, proxy_factory, genv, pki):
    sa = new_sa(emu)
    p = gup.port
    px = proxy_factory(conf(
        pki.ca_file,
        creds("sa", f"source key-file {sa.path}"),
        route(f"localhost:{p}/svc", "auth OIDC audience url", "credentials sa"),
    ), env=genv())
    i = fetch_json(px, gup.url("/svc/run/job?token=abc&x=1"))["authorization"]
    assert i["kind"] == "id" and i["verified"], i
    assert i["audience"] == f"https://localhost:{p}/svc/run/job", i
    j = fetch_json(px, gup.url("/svc/run/job?other=2"))["authorization"]
    assert j["fingerprint"] == i["fingerprint"], "same URL without query, same token"
    k = fetch_json(px, gup.url("/svc/other"))["authorization"]
    assert k["audience"] == f"https://localhost:{p}/svc/other", k
    assert emu.mint_count(email=sa.email, kind="id") == 2


def test_oidc_fixed_audience(emu, gup, proxy_factory, genv, pki):
    sa = new_sa(emu)
    aud = "https://fixed-audience.itest.invalid/service"
    px = proxy_factory(conf(
        pki.ca_file,
        creds("sa", f"source key-file {sa.path}"),
        route(f"localhost:{gup.port}", f'auth OIDC audience "{aud}"', "credentials sa"),
    ), env=genv())
    i = fetch_json(px, gup.url("/fixed/a?b=c"))["authorization"]
    assert i["kind"] == "id" and i["verified"] and i["audience"] == aud and i["email"] == sa.email, i


def test_auth_header_leaves_callers_authorization_alone(emu, gup, proxy_factory, genv, pki):
    sa = new_sa(emu)
    px = proxy_factory(conf(
        pki.ca_file,
        creds("sa", f"source key-file {sa.path}"),
        route(f"localhost:{gup.port}", "auth OIDC", f"auth-header {SERVERLESS}", "credentials sa"),
    ), env=genv())
    body = fetch_json(px, gup.url("/sls/with"), [("Authorization", "Bearer callers-own-app-token")])
    assert body["authorization"] == {"known": False, "raw": "Bearer callers-own-app-token"}, body
    assert body["authorization_headers"] == 1, body
    s = body["serverless"]
    assert s and s["known"] and s["kind"] == "id" and s["verified"], s
    assert s["scheme"] == "Bearer" and s["audience"] == gup.origin and s["email"] == sa.email, s

    # A caller's own X-Serverless-Authorization is replaced, and no Authorization is invented.
    body = fetch_json(px, gup.url("/sls/without"), [(SERVERLESS, "Bearer forged")])
    assert body["authorization"] is None, body
    assert body["serverless"]["known"] and body["serverless"]["fingerprint"] == s["fingerprint"], body
    sls_headers = [s for s in gup.matching("/sls/without")][0].header(SERVERLESS)
    assert len(sls_headers) == 1, sls_headers


def test_default_credential_and_explicit_default_block(emu, gup, proxy_factory, genv, pki):
    """`credentials default` replaces ADC for routes that name no credential."""
    sa = new_sa(emu)
    px = proxy_factory(conf(
        pki.ca_file,
        creds("default", f"source key-file {sa.path}"),
        route(f"localhost:{gup.port}", "auth OAuth2"),
    ), env=genv())
    a = fetch_json(px, gup.url("/dflt"))["authorization"]
    assert a["known"] and a["email"] == sa.email and a["scopes"] == [CP], a


def test_token_not_sent_on_other_routes(emu, gup, proxy_factory, genv, pki):
    sa = new_sa(emu)
    px = proxy_factory(conf(
        pki.ca_file,
        creds("sa", f"source key-file {sa.path}"),
        route(f"localhost:{gup.port}/google", "auth OAuth2", "credentials sa"),
        route(f"localhost:{gup.port}", "auth none"),
    ), env=genv())
    assert fetch_json(px, gup.url("/google/x"))["authorization"]["known"]
    r = fetch(px, gup.url("/plain/x"))
    assert r.status == 200 and r.json()["authorization"] is None, r
