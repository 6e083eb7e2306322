"""Minted tokens as the admin listener shows them, and across reloads: the status page's token cache
(credential, scopes, fingerprint, expiry; never the token), /readyz's last mint state per
credential, the mint/cache-hit counters in /metrics, the audit log's credential and fingerprint,
and a SIGHUP that keeps the cached token of an unchanged credential."""

from __future__ import annotations

import re
import signal

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
from harness.proxy import render
from policy_support import (  # noqa: F401 - fixture
    admin_get,
    admin_port,
    find_secrets,
    parse_metrics,
    policy_secrets,
    read_audit,
)

pytestmark = pytest.mark.timeout(60)


def _cells(row: str) -> list[str]:
    return [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row, re.S)]


def expires_in(html: str, fingerprint: str) -> int:
    """The "expires in" cell of the token-cache row that shows ``fingerprint``."""
    rows = [_cells(r) for r in re.findall(r"<tr[^>]*>(.*?)</tr>", html, re.S)]
    header = next((r for r in rows if any("expires" in c.lower() for c in r)
                   and any("fingerprint" in c.lower() for c in r)), None)
    assert header, "no token-cache table with an expires-in column on the status page"
    col = next(i for i, c in enumerate(header) if "expires" in c.lower())
    row = next((r for r in rows if fingerprint in r), None)
    assert row, f"no token-cache row with fingerprint {fingerprint}"
    value = re.search(r"-?\d+", row[col])
    assert value, f"expires-in cell {row[col]!r}"
    return int(value.group(0))


def build(sa_path, port: int, extra_route: str = "") -> str:
    return conf(
        "{ca}",
        "admin 127.0.0.1:0\naudit-log audit.jsonl\n",
        creds("sa", f"source key-file {sa_path}"),
        creds("idle", f"source key-file {sa_path}"),
        route(f"localhost:{port}/g", f"auth OAuth2 scopes {RO} {CP}", "credentials sa"),
        route(f"localhost:{port}/never", f"auth OAuth2 scopes {CP}", "credentials idle"),
        extra_route,
    )


def test_token_cache_on_admin_pages_and_reload(emu, gup, proxy_factory, genv, tmp_path):
    sa = new_sa(emu)
    px = proxy_factory(build(sa.path, gup.port), env=genv())
    aport = admin_port(px)

    a1 = fetch_json(px, gup.url("/g/one"))["authorization"]
    a2 = fetch_json(px, gup.url("/g/two"))["authorization"]
    assert a1["known"] and a1["fingerprint"] == a2["fingerprint"], (a1, a2)
    fp = a1["fingerprint"]
    assert emu.mint_count(email=sa.email) == 1

    # /status: the cache entry with credential, scopes and fingerprint; never the token.
    html = admin_get(aport, "/status").text
    assert "sa" in html and fp in html, "the token's fingerprint is not on the status page"
    assert RO in html and CP in html, "the token's scopes are not on the status page"
    assert not find_token_leaks(html, emu), find_token_leaks(html, emu)
    assert not find_secrets(html)
    expires = expires_in(html, fp)
    assert 60 < expires <= 3600, f"expires-in of the cached token: {expires}"

    # /readyz: each credential's last mint state.
    ready = admin_get(aport, "/readyz")
    assert ready.status == 200, ready
    lines = ready.text.splitlines()
    sa_line = [ln for ln in lines if re.search(r"\bsa\b", ln) and "credential" in ln]
    idle_line = [ln for ln in lines if re.search(r"\bidle\b", ln)]
    assert sa_line and idle_line, ready.text
    assert sa_line[0] != idle_line[0].replace("idle", "sa"), \
        f"/readyz shows no difference between a minted and a never-used credential:\n{ready.text}"
    assert not find_token_leaks(ready.text, emu)

    # /metrics: one mint for `sa`, one cache hit.
    m = parse_metrics(admin_get(aport, "/metrics").text)
    assert m.total("credproxy_token_mints_total", credential="sa") == 1, m.series("credproxy_token_mints_total")
    assert m.total("credproxy_token_cache_hits_total") >= 1, m.series("credproxy_token_cache_hits_total")
    assert m.total("credproxy_token_mint_failures_total") == 0

    # The audit log names the credential block and the fingerprint.
    recs = [r for r in read_audit(px.workdir / "audit.jsonl", at_least=2) if r["path"].startswith("/g/")]
    assert len(recs) == 2, recs
    for r in recs:
        assert r["credential"] == "sa" and r["token_fingerprint"] == fp, r
    assert not find_token_leaks((px.workdir / "audit.jsonl").read_text(), emu)

    # Reload with an unrelated change: the cached token of `sa` survives (no new mint).
    px.config_path.write_text(render(build(sa.path, gup.port, route(f"localhost:{gup.port}/extra", "auth none")),
                                     proxy_factory.values))
    px.proc.send_signal(signal.SIGHUP)
    assert px.wait_for_stderr(r"credproxy: reloaded ", timeout=5), px.stderr_text()[-1500:]
    a3 = fetch_json(px, gup.url("/g/three"))["authorization"]
    assert a3["fingerprint"] == fp, "the reload dropped the cached token of an unchanged credential"
    assert emu.mint_count(email=sa.email) == 1
    html = admin_get(aport, "/status").text
    assert f"localhost:{gup.port}/extra" in html, "the status page still shows the old routes"
    assert fp in html
