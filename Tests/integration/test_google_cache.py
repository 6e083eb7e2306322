"""The token cache seen from outside: single-flight under a cold stampede, a cached token through
an identity-provider outage, and evict-and-retry-once on a 401 ``invalid_token``."""

from __future__ import annotations

import hashlib
import threading

import pytest

from google_support import (  # noqa: F401 - fixtures
    CP,
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
    reset_emu,
    route,
    start_refresh_scenario_early,
    tokens_never_logged,
)
from harness.rawhttp import RawConnection

pytestmark = pytest.mark.timeout(60)


def _sa_proxy(emu, gup, proxy_factory, genv, pki, name="sa"):
    sa = new_sa(emu)
    px = proxy_factory(conf(
        pki.ca_file,
        creds(name, f"source key-file {sa.path}"),
        route(f"localhost:{gup.port}", "auth OAuth2", f"credentials {name}"),
    ), env=genv())
    return sa, px


def _token_for(emu, fp: str) -> str:
    for rec in emu.registry.issued():
        if fingerprint(rec.token) == fp:
            return rec.token
    raise AssertionError(f"no issued token with fingerprint {fp}")


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_200_concurrent_cold_requests_mint_once(emu, gup, proxy_factory, genv, pki):
    sa, px = _sa_proxy(emu, gup, proxy_factory, genv, pki)
    emu.token.set_delay(1.5, count=1)  # the one mint is slow: everyone piles up behind it
    n = 200
    conns: list[RawConnection] = []
    try:
        for _ in range(n):  # connect first, so the requests really are simultaneous
            conns.append(RawConnection(px.port, timeout=30))
        results: list = [None] * n
        barrier = threading.Barrier(n)

        def one(i: int) -> None:
            try:
                barrier.wait(timeout=20)
                results[i] = conns[i].request("GET", gup.url(f"/stampede/{i}"), timeout=30)
            except BaseException as exc:  # noqa: BLE001
                results[i] = exc

        threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(45)
    finally:
        for c in conns:
            c.close()

    failures = [(i, r) for i, r in enumerate(results) if isinstance(r, BaseException) or r is None or r.status != 200]
    assert not failures, f"{len(failures)} of {n} failed, e.g. {failures[:3]}"
    fps = {r.json()["authorization"]["fingerprint"] for r in results}
    assert len(fps) == 1, fps
    assert emu.mint_count(email=sa.email) == 1
    st = emu.token.stats()
    assert st["mint_requests"] == 1 and st["max_inflight"] <= 1, st
    assert len(gup.matching("/stampede/")) == n


def test_cached_token_survives_an_outage(emu, gup, proxy_factory, genv, pki):
    sa, px = _sa_proxy(emu, gup, proxy_factory, genv, pki)
    fp = fetch_json(px, gup.url("/before-outage"))["authorization"]["fingerprint"]
    requests_before = emu.token.stats()["requests"]
    emu.token.outage(True)
    try:
        for i in range(5):
            a = fetch_json(px, gup.url(f"/during-outage/{i}"))["authorization"]
            assert a["fingerprint"] == fp, a
    finally:
        emu.token.outage(False)
    assert emu.mint_count(email=sa.email) == 1
    assert emu.token.stats()["requests"] == requests_before, "a fresh token needs no token endpoint"


def test_401_invalid_token_evicts_and_retries_once(emu, gup, proxy_factory, genv, pki):
    sa, px = _sa_proxy(emu, gup, proxy_factory, genv, pki)
    first = fetch_json(px, gup.url("/protected/one"))["authorization"]
    assert emu.mint_count(email=sa.email) == 1
    emu.registry.revoke(_token_for(emu, first["fingerprint"]))

    r = fetch(px, gup.url("/protected/two"))
    assert r.status == 200, (r, px.stderr_text()[-2000:])
    second = r.json()["authorization"]
    assert second["fingerprint"] != first["fingerprint"] and not second["revoked"], second
    assert emu.mint_count(email=sa.email) == 2
    seen = gup.matching("/protected/two")
    assert [s.status for s in seen] == [401, 200], seen
    assert [s.authorization["fingerprint"] for s in seen] == [first["fingerprint"], second["fingerprint"]]

    # The new token is the cached one now.
    assert fetch_json(px, gup.url("/protected/three"))["authorization"]["fingerprint"] == second["fingerprint"]
    assert emu.mint_count(email=sa.email) == 2


def test_401_retry_happens_only_once(emu, gup, proxy_factory, genv, pki):
    sa, px = _sa_proxy(emu, gup, proxy_factory, genv, pki)
    fetch_json(px, gup.url("/warm"))
    r = fetch(px, gup.url("/always401/x"))
    assert r.status == 401, r
    assert 'invalid_token' in (r.header("WWW-Authenticate") or ""), r
    seen = gup.matching("/always401/x")
    assert len(seen) == 2, f"expected the request and exactly one retry, upstream saw {len(seen)}"
    assert seen[0].authorization["fingerprint"] != seen[1].authorization["fingerprint"]
    assert emu.mint_count(email=sa.email) == 2


def test_401_on_a_small_body_replays_the_kept_body(emu, gup, proxy_factory, genv, pki):
    """A body small enough to keep (up to 64 KiB) is safe to replay: one retry, same bytes."""
    sa, px = _sa_proxy(emu, gup, proxy_factory, genv, pki)
    first = fetch_json(px, gup.url("/protected/warm"))["authorization"]
    emu.registry.revoke(_token_for(emu, first["fingerprint"]))
    payload = b"small payload, kept and replayed " * 100
    r = fetch(px, gup.url("/protected/post"), [("Content-Type", "text/plain")], method="POST",
              body=payload)
    assert r.status == 200, (r, px.stderr_text()[-2000:])
    seen = gup.matching("/protected/post")
    assert [s.status for s in seen] == [401, 200], seen
    digest = hashlib.sha256(payload).hexdigest()
    assert [s.body_sha256 for s in seen] == [digest, digest], "the retry must carry the same body"
    assert seen[0].authorization["fingerprint"] != seen[1].authorization["fingerprint"]


def test_401_on_a_large_body_is_not_retried(emu, gup, proxy_factory, genv, pki):
    """A body too large to keep was streamed, not kept: it cannot be replayed, so no retry."""
    sa, px = _sa_proxy(emu, gup, proxy_factory, genv, pki)
    first = fetch_json(px, gup.url("/protected/warm-large"))["authorization"]
    emu.registry.revoke(_token_for(emu, first["fingerprint"]))
    r = fetch(px, gup.url("/protected/post-large"), [("Content-Type", "application/octet-stream")],
              method="POST", body=b"x" * (64 * 1024 + 1))
    assert r.status == 401, r
    assert len(gup.matching("/protected/post-large")) == 1


def test_expired_cached_token_is_never_injected(emu, gup, proxy_factory, genv, pki):
    """A token with less than 30 s left is not used: each request mints anew (lifetime 20 s)."""
    sa, px = _sa_proxy(emu, gup, proxy_factory, genv, pki)
    emu.token.set_lifetime(20)
    a = fetch_json(px, gup.url("/short/1"))["authorization"]
    b = fetch_json(px, gup.url("/short/2"))["authorization"]
    assert a["fingerprint"] != b["fingerprint"], "a token inside the 30 s margin was reused"
    assert emu.mint_count(email=sa.email) == 2
