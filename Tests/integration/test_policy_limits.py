"""Per-client limits: `rate N/s [burst M]` per client per route (429 `rate_limited` with
`Retry-After`), `max-concurrent N` per client on a route and in a client block across routes
(503 `too_many_concurrent`); limits free up again."""

from __future__ import annotations

import threading
import time

import pytest

from harness.rawhttp import RawConnection
from policy_support import (  # noqa: F401 - fixture
    ALICE_PASSWORD,
    BOB_TOKEN,
    POLICY_ENV,
    assert_refused,
    basic,
    bearer,
    fetch,
    policy_secrets,
    wait_until,
)

pytestmark = pytest.mark.timeout(60)

ALICE = [basic("alice", ALICE_PASSWORD)]
BOB = [bearer(BOB_TOKEN)]

CONF = """\
listen 127.0.0.1:0
ca-file {ca}
connect-timeout 5s
request-timeout 30s
client alice {
  password env:ITEST_ALICE_PW
}
client bob {
  token env:ITEST_BOB_TOKEN
  max-concurrent 1
}
route localhost:{upstream_port}/rated {
  auth none
  rate 1/s burst 3
}
route localhost:{upstream_port}/narrow {
  auth none
  max-concurrent 2
}
route localhost:{upstream_port}/single {
  auth none
  max-concurrent 1
}
route localhost:{upstream_port} {
  auth none
}
"""


@pytest.fixture(scope="module")
def px(module_proxy_factory):
    return module_proxy_factory(CONF, env=POLICY_ENV, name="limits")


def test_rate_limit_burst_then_429_then_recovers(px, upstream, token):
    url = upstream.url(f"/rated/echo/{token}")
    statuses = [fetch(px, f"{url}/{i}", ALICE).status for i in range(3)]
    assert statuses == [200, 200, 200], statuses
    r = fetch(px, f"{url}/over", ALICE)
    assert_refused(r, 429, "rate_limited")
    retry = r.header("Retry-After")
    assert retry is not None and retry.isdigit() and 1 <= int(retry) <= 2, r
    assert upstream.requests_matching(f"{token}/over") == [], "a rate-limited request was forwarded"

    # Another client has its own bucket on the same route.
    assert fetch(px, f"{url}/bob", BOB).status == 200
    # Other routes are not limited for alice.
    assert fetch(px, upstream.url(f"/echo/{token}/elsewhere"), ALICE).status == 200

    time.sleep(int(retry) + 0.1)
    r = fetch(px, f"{url}/after", ALICE)
    assert r.status == 200, f"still limited after waiting Retry-After: {r!r}"
    if int(retry) == 1:
        # About one token was refilled, not a new burst.
        r = fetch(px, f"{url}/again", ALICE)
        assert_refused(r, 429, "rate_limited")


class Held:
    """Requests held open on the upstream's /hang; released by closing the client side."""

    def __init__(self) -> None:
        self.conns: list[RawConnection] = []

    def open(self, px, upstream, url: str, headers, tag: str) -> None:
        c = RawConnection(px.port, timeout=15)
        self.conns.append(c)
        c.send_request("GET", url, [("Host", "x"), *headers])
        assert upstream.wait_event("hang_start", tag, timeout=10), \
            f"held request {tag} never reached the upstream"

    def release(self) -> None:
        for c in self.conns:
            c.abort()
        self.conns.clear()


def _hang_url(upstream, prefix: str, tag: str) -> str:
    return upstream.url(f"{prefix}/hang?id={tag}")


def test_route_max_concurrent(px, upstream, token):
    held = Held()
    try:
        for i in range(2):
            held.open(px, upstream, _hang_url(upstream, "/narrow", f"{token}-{i}"), ALICE, f"{token}-{i}")
        r = fetch(px, upstream.url(f"/narrow/echo/{token}/third"), ALICE, timeout=10)
        assert_refused(r, 503, "too_many_concurrent")
        assert upstream.requests_matching(f"{token}/third") == []
        # Per client: bob is not counted against alice.
        assert fetch(px, upstream.url(f"/narrow/echo/{token}/bob"), BOB).status == 200
        # Other routes are not limited.
        assert fetch(px, upstream.url(f"/echo/{token}/other"), ALICE).status == 200
    finally:
        held.release()
    assert wait_until(lambda: len(upstream.find_events("hang_disconnect", f"{token}-0"))
                      + len(upstream.find_events("hang_disconnect", f"{token}-1")) == 2, 10), \
        "the proxy did not abort the held upstream requests when their clients left"
    assert wait_until(
        lambda: fetch(px, upstream.url(f"/narrow/echo/{token}/after"), ALICE).status == 200, 5), \
        "the route's concurrency slots were not released"


def test_client_block_max_concurrent_across_routes(px, upstream, token):
    held = Held()
    try:
        held.open(px, upstream, _hang_url(upstream, "/narrow", f"{token}-bob"), BOB, f"{token}-bob")
        # bob's one slot is in use: any route refuses bob's second request.
        for prefix in ("", "/rated", "/narrow"):
            r = fetch(px, upstream.url(f"{prefix}/echo/{token}/second"), BOB, timeout=10)
            assert_refused(r, 503, "too_many_concurrent")
        assert upstream.requests_matching(f"{token}/second") == []
        # alice has no client-wide limit.
        assert fetch(px, upstream.url(f"/echo/{token}/alice"), ALICE).status == 200
    finally:
        held.release()
    assert wait_until(lambda: upstream.find_events("hang_disconnect", f"{token}-bob"), 10)
    assert wait_until(
        lambda: fetch(px, upstream.url(f"/echo/{token}/bob-after"), BOB).status == 200, 5), \
        "bob's client-wide slot was not released"


def test_answered_request_no_longer_counts(px, upstream, token):
    """A client that waits for each answer before sending the next request never has more than
    one request in flight, so a `max-concurrent 1` route must never refuse it. Fresh connections
    (they may land on any event loop) and a keep-alive connection."""
    refused: list[str] = []
    for i in range(1000):
        r = fetch(px, upstream.url(f"/single/echo/{token}/{i}"), ALICE)
        if r.status != 200:
            refused.append(f"fresh connection, request {i}: {r.status} {r.error_code}")
    with RawConnection(px.port) as c:
        for i in range(100):
            r = c.request("GET", upstream.url(f"/single/echo/{token}/k{i}"), [("Host", "x"), *ALICE])
            if r.status != 200:
                refused.append(f"keep-alive, request {i}: {r.status} {r.error_code}")
    assert not refused, (f"{len(refused)} of 1100 sequential requests refused although the previous "
                         f"answer had been received: {refused[:5]}")


def test_parallel_clients_within_limit(px, upstream, token):
    """Two threads, each sequential, on a `max-concurrent 2` route: never refused."""
    errors: list[str] = []

    def worker(i: int) -> None:
        for j in range(50):
            r = fetch(px, upstream.url(f"/narrow/echo/{token}/{i}/{j}"), ALICE)
            if r.status != 200:
                errors.append(f"{i}/{j}: {r.status} {r.error_code}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors[:5]
