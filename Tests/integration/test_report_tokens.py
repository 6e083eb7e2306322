"""`credproxy report` lists the OAuth2 scope sets and OIDC audiences minted: the audit log records
them for requests that carried a minted token (from the local Google token emulator, which
verifies the RS256 assertions with `cryptography`), and the report counts them per client and
route, never showing a token."""

from __future__ import annotations

import json
import subprocess

import pytest

from google_support import (  # noqa: F401 - fixtures
    CP,
    RO,
    conf,
    creds,
    emu,
    fetch_json,
    find_token_leaks,
    genv,
    gtmp,
    gup,
    new_sa,
    reset_emu,
    route,
    tokens_never_logged,
)
from harness.proxy import binary_path
from policy_support import read_audit

pytestmark = pytest.mark.timeout(60)


def test_report_shows_scopes_and_audiences_minted(emu, gup, proxy_factory, genv):
    sa = new_sa(emu)
    px = proxy_factory(conf(
        "{ca}",
        "audit-log audit.jsonl\n",
        creds("sa", f"source key-file {sa.path}"),
        route(f"localhost:{gup.port}/g", f"auth OAuth2 scopes {RO} {CP}", "credentials sa"),
        route(f"localhost:{gup.port}/run", "auth OIDC audience https://svc.example", "credentials sa"),
    ), env=genv())
    for i in range(3):
        fetch_json(px, gup.url(f"/g/storage/v1/b/b{i}/o"))
    fetch_json(px, gup.url("/run/hello"))
    audit = px.workdir / "audit.jsonl"
    records = read_audit(audit, at_least=4)
    scoped = [r for r in records if r["path"].startswith("/g/")]
    assert [r["scopes"] for r in scoped] == [f"{CP} {RO}"] * 3, scoped
    assert all("audience" not in r for r in scoped)
    oidc = [r for r in records if r["path"].startswith("/run/")]
    assert [r["audience"] for r in oidc] == ["https://svc.example"] and "scopes" not in oidc[0]

    out = subprocess.run([str(binary_path()), "report", "--config", "proxy.conf", "--format", "json",
                          "audit.jsonl"], cwd=px.workdir, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    routes = {r["route"]: r for r in json.loads(out.stdout)["clients"][0]["routes"]}
    assert routes[1]["oauth2_scope_sets"] == {f"{CP} {RO}": 3} and routes[1]["oidc_audiences"] == {}
    assert routes[2]["oidc_audiences"] == {"https://svc.example": 1}
    text = subprocess.run([str(binary_path()), "report", "--config", "proxy.conf", "audit.jsonl"],
                          cwd=px.workdir, capture_output=True, text=True, timeout=30).stdout
    assert f"OAuth2 scopes: {CP} {RO}  (3)" in text and "OIDC audience: https://svc.example  (1)" in text
    assert not find_token_leaks(text + out.stdout + audit.read_text(), emu)
