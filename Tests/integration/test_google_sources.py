"""Every Google credential source end to end: the proxy mints from the emulators (which verify
each RS256 assertion with ``cryptography``) and the HTTPS upstream reports which token arrived."""

from __future__ import annotations

import secrets

import pytest

from google_support import (  # noqa: F401 - fixtures
    CP,
    RO,
    USERINFO,
    conf,
    creds,
    emu,
    fetch_json,
    genv,
    gtmp,
    gup,
    new_sa,
    new_user,
    reset_emu,
    route,
    start_refresh_scenario_early,
    tokens_never_logged,
    track_key_file,
    track_secret,
)

pytestmark = pytest.mark.timeout(60)


def access(d: dict, *, email=None, source=None, scopes=None, client_id=None) -> None:
    assert d and d["known"], f"upstream got no token the emulators issued: {d}"
    assert d["kind"] == "access", d
    assert d["scheme"] == "Bearer", d
    if email is not None:
        assert d["email"] == email, d
    if source is not None:
        assert d["source"] == source, d
    if scopes is not None:
        assert d["scopes"] == sorted(set(scopes)), d
    if client_id is not None:
        assert d["client_id"] == client_id, d


def id_token(d: dict, *, email=None, source=None, audience=None) -> None:
    assert d and d["known"], f"upstream got no token the emulators issued: {d}"
    assert d["kind"] == "id", d
    assert d["scheme"] == "Bearer", d
    assert d.get("verified"), d
    if email is not None:
        assert d["email"] == email, d
    if source is not None:
        assert d["source"] == source, d
    if audience is not None:
        assert d["audience"] == audience, d


def logged(px, d: dict) -> None:
    """The proxy logs the mint with the token's fingerprint (never the token)."""
    assert px.wait_for_stderr(rf"minted \S+ for .* fingerprint={d['fingerprint']}", timeout=3), \
        px.stderr_text()[-2000:]


def test_key_file_service_account_oauth2_and_oidc(emu, gup, proxy_factory, genv, pki):
    sa = new_sa(emu)
    px = proxy_factory(conf(
        pki.ca_file,
        creds("sa", f"source key-file {sa.path}"),
        route(f"localhost:{gup.port}/oauth", "auth OAuth2", "credentials sa"),
        route(f"localhost:{gup.port}/scoped", f"auth OAuth2 scopes {RO}", "credentials sa"),
        route(f"localhost:{gup.port}/oidc", "auth OIDC", "credentials sa"),
    ), env=genv())
    a = fetch_json(px, gup.url("/oauth/x"))["authorization"]
    access(a, email=sa.email, source="jwt-bearer", scopes=[CP])
    logged(px, a)
    s = fetch_json(px, gup.url("/scoped/x"))["authorization"]
    access(s, email=sa.email, source="jwt-bearer", scopes=[RO])
    i = fetch_json(px, gup.url("/oidc/y"))["authorization"]
    id_token(i, email=sa.email, source="jwt-bearer", audience=gup.origin)
    logged(px, i)
    # Cached: a second round mints nothing.
    assert fetch_json(px, gup.url("/oauth/again"))["authorization"]["fingerprint"] == a["fingerprint"]
    assert fetch_json(px, gup.url("/oidc/again"))["authorization"]["fingerprint"] == i["fingerprint"]
    assert emu.mint_count(email=sa.email) == 3


def test_caller_authorization_is_replaced_not_merged(emu, gup, proxy_factory, genv, pki):
    sa = new_sa(emu)
    px = proxy_factory(conf(
        pki.ca_file,
        creds("sa", f"source key-file {sa.path}"),
        route(f"localhost:{gup.port}", "auth OAuth2", "credentials sa"),
    ), env=genv())
    body = fetch_json(px, gup.url("/replace"), [("Authorization", "Bearer callers-own-token")])
    access(body["authorization"], email=sa.email)
    assert body["authorization_headers"] == 1, body


def test_key_file_authorized_user(emu, gup, proxy_factory, genv, pki):
    user = new_user(emu)
    px = proxy_factory(conf(
        pki.ca_file,
        creds("user", f"source key-file {user.path}"),
        route(f"localhost:{gup.port}", f"auth OAuth2 scopes {CP} {RO}", "credentials user"),
    ), env=genv())
    a = fetch_json(px, gup.url("/user"))["authorization"]
    access(a, source="refresh_token", client_id=user.client_id, scopes=[CP, RO], email="user@example.com")
    logged(px, a)


def test_key_file_impersonated_service_account(emu, gup, proxy_factory, genv, pki):
    src = new_sa(emu)
    target = f"imp-target-{secrets.token_hex(3)}@{emu.project_id}.iam.gserviceaccount.com"
    delegate = f"imp-delegate-{secrets.token_hex(3)}@{emu.project_id}.iam.gserviceaccount.com"
    path = emu.new_impersonated(target, src, delegates=[f"projects/-/serviceAccounts/{delegate}"])
    track_key_file(path)
    px = proxy_factory(conf(
        pki.ca_file,
        creds("imp", f"source key-file {path}"),
        route(f"localhost:{gup.port}/oauth", f"auth OAuth2 scopes {RO}", "credentials imp"),
        route(f"localhost:{gup.port}/oidc", "auth OIDC", "credentials imp"),
    ), env=genv())
    a = fetch_json(px, gup.url("/oauth/imp"))["authorization"]
    access(a, email=target, source="iam", scopes=[RO])
    assert a["source_identity"] == src.email, a
    assert a["delegates"] == [f"projects/-/serviceAccounts/{delegate}"], a
    i = fetch_json(px, gup.url("/oidc/imp"))["authorization"]
    id_token(i, email=target, source="iam", audience=gup.origin)
    assert i["source_identity"] == src.email and i["delegates"] == a["delegates"], i
    # The source's cloud-platform token was minted once and reused for both IAM calls.
    assert emu.mint_count(email=src.email, kind="access", scopes=[CP]) == 1


def test_metadata_oauth2_and_oidc(emu, gup, proxy_factory, genv, pki):
    px = proxy_factory(conf(
        pki.ca_file,
        creds("md", "source metadata"),
        route(f"localhost:{gup.port}/oauth", f"auth OAuth2 scopes {RO},{USERINFO}", "credentials md"),
        route(f"localhost:{gup.port}/oidc", "auth OIDC audience https://md-audience.itest.invalid",
              "credentials md"),
    ), env=genv(GCE_METADATA_HOST=emu.metadata_host))
    a = fetch_json(px, gup.url("/oauth/md"))["authorization"]
    access(a, email=emu.metadata_email, source="metadata", scopes=[RO, USERINFO])
    i = fetch_json(px, gup.url("/oidc/md"))["authorization"]
    id_token(i, email=emu.metadata_email, source="metadata", audience="https://md-audience.itest.invalid")
    logged(px, i)


def test_impersonate_via_another_credential_with_delegates(emu, gup, proxy_factory, genv, pki):
    src = new_sa(emu)
    target = f"via-target-{secrets.token_hex(3)}@{emu.project_id}.iam.gserviceaccount.com"
    d1 = f"via-d1-{secrets.token_hex(3)}@{emu.project_id}.iam.gserviceaccount.com"
    d2 = f"via-d2-{secrets.token_hex(3)}@{emu.project_id}.iam.gserviceaccount.com"
    px = proxy_factory(conf(
        pki.ca_file,
        creds("base", f"source key-file {src.path}"),
        creds("deployer", f"source impersonate {target} via base delegates {d1} {d2}",
              f"iam-endpoint {emu.iam_url}"),
        route(f"localhost:{gup.port}/oauth", f"auth OAuth2 scopes {CP} {RO}", "credentials deployer"),
        route(f"localhost:{gup.port}/oidc", "auth OIDC", "credentials deployer"),
    ), env=genv())
    a = fetch_json(px, gup.url("/oauth/via"))["authorization"]
    access(a, email=target, source="iam", scopes=[CP, RO])
    want = [f"projects/-/serviceAccounts/{d1}", f"projects/-/serviceAccounts/{d2}"]
    assert a["delegates"] == want and a["source_identity"] == src.email, a
    i = fetch_json(px, gup.url("/oidc/via"))["authorization"]
    id_token(i, email=target, source="iam", audience=gup.origin)
    assert i["delegates"] == want and i["source_identity"] == src.email, i
    logged(px, a)
    assert emu.mint_count(email=src.email) == 1  # base's token paid for both


def test_refresh_token_source(emu, gup, proxy_factory, genv, pki):
    user = new_user(emu, scopes=[CP, RO, USERINFO])
    px = proxy_factory(conf(
        pki.ca_file,
        creds("rt", f"source refresh-token {user.path}"),
        route(f"localhost:{gup.port}", f"auth OAuth2 scopes {USERINFO}", "credentials rt"),
    ), env=genv())
    a = fetch_json(px, gup.url("/rt"))["authorization"]
    access(a, source="refresh_token", client_id=user.client_id, scopes=[USERINFO])


def test_client_credentials_source(emu, gup, proxy_factory, genv, pki):
    cid, csec = emu.new_client(scopes=["api.read", "api.write"])
    track_secret("client-credentials secret", csec)
    px = proxy_factory(conf(
        pki.ca_file,
        creds("cc", f"source client-credentials token-url {emu.token_url} client-id {cid} "
                    "client-secret env:ITEST_GOOGLE_CC_SECRET scopes api.write api.read"),
        route(f"localhost:{gup.port}", "auth OAuth2", "credentials cc"),
    ), env=genv(ITEST_GOOGLE_CC_SECRET=csec))
    a = fetch_json(px, gup.url("/cc"))["authorization"]
    access(a, source="client_credentials", client_id=cid, scopes=["api.read", "api.write"])
    logged(px, a)
    assert csec not in px.stderr_text()


def test_adc_google_application_credentials(emu, gup, proxy_factory, genv, pki):
    sa = new_sa(emu)
    before_md = emu.mint_count(source="metadata")
    # No credentials block at all: `default` is ADC.
    px = proxy_factory(conf(
        pki.ca_file,
        route(f"localhost:{gup.port}/oauth", "auth OAuth2"),
        route(f"localhost:{gup.port}/oidc", "auth OIDC"),
    ), env=genv(GOOGLE_APPLICATION_CREDENTIALS=sa.path, GCE_METADATA_HOST=emu.metadata_host))
    access(fetch_json(px, gup.url("/oauth/gac"))["authorization"], email=sa.email, source="jwt-bearer",
           scopes=[CP])
    id_token(fetch_json(px, gup.url("/oidc/gac"))["authorization"], email=sa.email, source="jwt-bearer",
             audience=gup.origin)
    assert emu.mint_count(source="metadata") == before_md  # the explicit file wins


def test_adc_cloudsdk_config_well_known_file(emu, gup, proxy_factory, genv, pki, tmp_path):
    sdk = tmp_path / "gcloud"
    user = new_user(emu, dir=sdk, filename="application_default_credentials.json")
    before_md = emu.mint_count(source="metadata")
    px = proxy_factory(conf(
        pki.ca_file,
        creds("default", "source adc"),
        route(f"localhost:{gup.port}", "auth OAuth2"),
    ), env=genv(CLOUDSDK_CONFIG=str(sdk), GCE_METADATA_HOST=emu.metadata_host))
    access(fetch_json(px, gup.url("/sdk"))["authorization"], source="refresh_token",
           client_id=user.client_id, scopes=[CP])
    assert emu.mint_count(source="metadata") == before_md  # the file wins over the metadata server


def test_adc_home_gcloud_well_known_file(emu, gup, proxy_factory, genv, pki, tmp_path):
    home = tmp_path / "home-with-gcloud"
    user = new_user(emu, dir=home / ".config" / "gcloud", filename="application_default_credentials.json")
    env = genv(HOME=str(home))
    del env["CLOUDSDK_CONFIG"]
    env["CLOUDSDK_CONFIG"] = ""
    px = proxy_factory(conf(pki.ca_file, route(f"localhost:{gup.port}", "auth OAuth2")), env=env)
    access(fetch_json(px, gup.url("/home"))["authorization"], source="refresh_token",
           client_id=user.client_id, scopes=[CP])


def test_adc_metadata_server(emu, gup, proxy_factory, genv, pki):
    px = proxy_factory(conf(
        pki.ca_file,
        route(f"localhost:{gup.port}/oauth", "auth OAuth2"),
        route(f"localhost:{gup.port}/oidc", "auth OIDC"),
    ), env=genv(GCE_METADATA_HOST=emu.metadata_host))
    access(fetch_json(px, gup.url("/oauth/md"))["authorization"], email=emu.metadata_email,
           source="metadata", scopes=[CP])
    id_token(fetch_json(px, gup.url("/oidc/md"))["authorization"], email=emu.metadata_email,
             source="metadata", audience=gup.origin)
