"""Many clients at once: 500 keep-alive connections open together, each doing a few requests."""

from __future__ import annotations

import resource
import threading
import time

import pytest

from harness import configs, secret_values as sv
from harness.rawhttp import RawConnection, get_via_proxy

CLIENTS = 500
REQUESTS_EACH = 3


@pytest.fixture(scope="module")
def px(module_proxy_factory):
    return module_proxy_factory(configs.STANDARD, name="concurrency")


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_500_concurrent_keepalive_clients(px, upstream, token):
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    # Our client sockets + the upstream's accepted sockets live in this process.
    assert soft == resource.RLIM_INFINITY or soft >= 4 * CLIENTS, (
        f"RLIMIT_NOFILE is {soft}: raise the hard limit (ulimit -Hn) to run {CLIENTS} clients")
    barrier = threading.Barrier(CLIENTS, timeout=60)
    errors: list[str] = []
    done = [0]
    lock = threading.Lock()

    def client(i: int) -> None:
        conn = None
        try:
            conn = RawConnection(px.port, timeout=60)
            barrier.wait()  # every connection is open before anyone sends
            for j in range(REQUESTS_EACH):
                path = f"/bearer/echo/{token}/{i}/{j}" if j == 1 else f"/echo/{token}/{i}/{j}"
                body = f"client {i} request {j}".encode() if j == 2 else None
                r = conn.request("POST" if body else "GET", upstream.url(path), body=body, timeout=60)
                if r.status != 200:
                    raise AssertionError(f"status {r.status}: {r.body[:200]!r}")
                got = r.json()
                if got["target"] != path:
                    raise AssertionError(f"asked for {path}, got the response for {got['target']}")
                auth = [v for n, v in got["headers"] if n.lower() == "authorization"]
                if (j == 1) != (auth == [f"Bearer {sv.BEARER_TOKEN}"]):
                    raise AssertionError(f"wrong Authorization on {path}: {auth}")
                if body is not None and got["body_length"] != len(body):
                    raise AssertionError(f"body length {got['body_length']} != {len(body)}")
            with lock:
                done[0] += 1
        except Exception as e:  # noqa: BLE001 - collected and reported
            with lock:
                errors.append(f"client {i}: {e!r}")
            try:
                barrier.abort()
            except Exception:  # noqa: BLE001
                pass
        finally:
            if conn is not None:
                conn.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(CLIENTS)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max(1.0, 130 - (time.monotonic() - start)))
    elapsed = time.monotonic() - start
    stuck = sum(t.is_alive() for t in threads)
    assert not errors, f"{len(errors)} clients failed; first ones:\n" + "\n".join(errors[:10])
    assert stuck == 0, f"{stuck} clients still running after {elapsed:.0f}s"
    assert done[0] == CLIENTS
    assert len(upstream.requests_matching(token)) == CLIENTS * REQUESTS_EACH
    assert px.alive()
    # Still healthy afterwards.
    assert get_via_proxy(px.port, upstream.url(f"/echo/{token}/after")).status == 200


@pytest.mark.timeout(60)
def test_connections_are_released(px, upstream, token):
    """After the crowd leaves, the proxy's file descriptors come back down (no leak per client)."""
    before = px.open_fds()
    conns = [RawConnection(px.port, timeout=20) for _ in range(100)]
    try:
        for i, c in enumerate(conns):
            assert c.request("GET", upstream.url(f"/echo/{token}/{i}")).status == 200
        during = px.open_fds()
    finally:
        for c in conns:
            c.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and px.open_fds() > before + 50:
        time.sleep(0.2)
    after = px.open_fds()
    assert after <= before + 50, f"fds: {before} before, {during} with 100 clients, {after} after"
