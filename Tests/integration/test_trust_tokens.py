"""Minted tokens over plain http: decided on the address actually dialled, and `check`, `explain`
and the request path agree (a `connect-to` loopback address carries the token; an address off this
machine is refused with 403 insecure_upstream by all three)."""

from __future__ import annotations

import pytest

from google_support import (  # noqa: F401 - fixtures
    CP,
    GoogleUpstream,
    conf,
    creds,
    emu,
    fetch,
    fetch_json,
    genv,
    gtmp,
    new_sa,
    reset_emu,
    route,
    tokens_never_logged,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def plain_gup(emu):
    up = GoogleUpstream(None, [emu]).start()
    yield up
    up.stop()


def token_config(pki, sa, plain_port: int) -> str:
    return conf(
        pki.ca_file,
        creds("sa", f"source key-file {sa.path}"),
        route("emulated.itest.invalid:8080", "upstream http", f"connect-to 127.0.0.1:{plain_port}",
              f"auth OAuth2 scopes {CP}", "credentials sa"),
        route("192.0.2.10:8080", "upstream http", f"auth OAuth2 scopes {CP}", "credentials sa"),
    )


def test_connect_to_loopback_carries_the_token(emu, plain_gup, pki, proxy_factory, genv):
    sa = new_sa(emu)
    px = proxy_factory(token_config(pki, sa, plain_gup.port), env=genv())
    a = fetch_json(px, "http://emulated.itest.invalid:8080/x")["authorization"]
    assert a["known"] and a["kind"] == "access", a


def test_address_off_this_machine_is_refused_before_a_mint(emu, plain_gup, pki, proxy_factory, genv):
    sa = new_sa(emu)
    px = proxy_factory(token_config(pki, sa, plain_gup.port), env=genv())
    r = fetch(px, "http://192.0.2.10:8080/x")
    assert r.status == 403 and r.error_code == "insecure_upstream", r
    assert emu.mint_count(email=sa.email) == 0


def test_check_and_explain_agree_with_the_request_path(emu, plain_gup, pki, proxy_factory, cli, genv):
    sa = new_sa(emu)
    path = proxy_factory.config(token_config(pki, sa, plain_gup.port))
    env = genv()
    checked = cli("check", "--config", str(path), env=env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    warnings = [l for l in (checked.stdout + checked.stderr).splitlines() if "plain http" in l]
    assert len(warnings) == 1 and "route #2" in warnings[0], warnings
    assert "insecure_upstream" in warnings[0]

    ok = cli("explain", "http://emulated.itest.invalid:8080/x", "--config", str(path), env=env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "allowed: forwarded" in ok.stdout and "loopback connection" in ok.stdout, ok.stdout

    refused = cli("explain", "http://192.0.2.10:8080/x", "--config", str(path), env=env)
    assert refused.returncode == 0, refused.stderr  # explain explains; it exits 0 either way
    assert "refused: 403 insecure_upstream" in refused.stdout, refused.stdout
