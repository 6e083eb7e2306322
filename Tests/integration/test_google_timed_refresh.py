"""Refresh-ahead, in real time.

A token is never injected within 30 s of its expiry, and an explicit ``refresh-window`` is honoured
as written, so a token is served from its refresh window while ``exp - window <= now < exp - 30``:
with a lifetime of 45 s and ``refresh-window 40s`` the token enters its window 5 s after the mint
and stops being served at 15 s.

The scenario (its own emulators, upstream and proxy; see ``google_support.RefreshScenario``) starts
with this test.
"""

from __future__ import annotations

import time

import pytest

from google_support import (  # noqa: F401 - fixtures
    REFRESH_AT,
    REFRESH_STALE_END,
    RefreshScenario,
    fetch,
    fetch_many,
    find_token_leaks,
    fingerprint,
    start_refresh_scenario_early,
)


@pytest.mark.slow
@pytest.mark.timeout(REFRESH_AT + 60)
def test_refresh_ahead_serves_old_token_while_one_background_mint_runs(pki, closed_port):
    sc = RefreshScenario.get(pki, closed_port)
    assert sc.error is None, sc.error
    emu, up, px = sc.emu, sc.up, sc.px
    first = sc.first
    t_mint = sc.first_mint.issued_at
    fp1 = first["fingerprint"]
    assert first["known"] and first["email"] == sc.sa.email

    def fp(r):
        assert r.status == 200, (r, px.stderr_text()[-2000:])
        return r.json()["authorization"]["fingerprint"]

    # Long before the window: served from memory.
    assert fp(fetch(px, up.url("/early"))) == fp1
    assert emu.mint_count() == 1

    wait = t_mint + REFRESH_AT + 1.0 - time.time()
    if wait > 0:
        time.sleep(wait)
    now = time.time() - t_mint
    if now > REFRESH_STALE_END - 2.5:
        pytest.fail(f"reached the refresh window too late ({now:.1f}s after the mint; the stale-serve "
                    f"interval ends at {REFRESH_STALE_END}s) — the run was held up")

    # Inside the window: the old token is served while exactly one background mint runs (slowed to
    # 1.5 s so that every request below overlaps it).
    emu.token.set_delay(1.5, count=1)
    results = fetch_many(px, [up.url(f"/stale/{i}") for i in range(10)], timeout=10)
    for r in results:
        assert not isinstance(r, BaseException), r
    assert {fp(r) for r in results} == {fp1}, "inside the refresh window the old token is still served"
    time.sleep(0.5)
    assert fp(fetch(px, up.url("/stale/after"), timeout=5)) == fp1
    st = emu.token.stats()
    assert st["mint_requests"] == 2, f"exactly one background refresh expected: {st}"

    # Soon after, requests carry the new token.
    deadline = time.monotonic() + 5
    while emu.mint_count() < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert emu.mint_count() == 2
    new = emu.registry.issued()[-1]
    assert fingerprint(new.token) != fp1
    fp2 = None
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        fp2 = fp(fetch(px, up.url("/fresh"), timeout=5))
        if fp2 != fp1:
            break
        time.sleep(0.1)
    assert fp2 == fingerprint(new.token), "after the background refresh the new token is used"
    assert emu.mint_count() == 2 and emu.token.stats()["mint_requests"] == 2

    # Logged by fingerprint, never by value.
    text = px.stderr_text()
    assert fp1 in text and fp2 in text, text[-2000:]
    assert not find_token_leaks(text, emu), find_token_leaks(text, emu)
