"""Fleet-wide limits on a real Redis (`limits-store redis HOST:PORT …`): two credproxy replicas under
one `rate` pass at most the limit plus one burst together; a replica killed while holding
`max-concurrent` slots gives them back when its leases expire; with the store killed mid-run each
outage policy does what it says (`on-outage open`: local limits, `closed`: 503 limits_unavailable)
within the bounded wait, the store's health shows in /metrics and /status; a Redis restart
recovers (scripts reloaded after NOSCRIPT)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time

import pytest

from harness.rawhttp import RawConnection
from policy_support import (  # noqa: F401 - fixture
    admin_get,
    admin_port,
    fetch,
    parse_metrics,
    policy_secrets,
    wait_until,
)

pytestmark = pytest.mark.timeout(120)

REDIS = shutil.which("redis-server")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Redis:
    """A real redis-server on 127.0.0.1, no persistence; stop/start keep the port."""

    def __init__(self, workdir, password: str | None = None):
        self.port = free_port()
        self.workdir = workdir
        self.password = password
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Redis":
        args = [REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(self.workdir)]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     stdin=subprocess.DEVNULL)
        assert wait_until(lambda: self.ping(), 10), "redis-server did not start"
        return self

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def command(self, *args: str) -> bytes:
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
            out = b""
            cmds = ([("AUTH", self.password)] if self.password else []) + [args]
            for c in cmds:
                out += f"*{len(c)}\r\n".encode() + b"".join(
                    f"${len(a.encode())}\r\n".encode() + a.encode() + b"\r\n" for a in c)
            s.sendall(out)
            time.sleep(0.05)
            return s.recv(65536)

    def ping(self) -> bool:
        try:
            return b"PONG" in self.command("PING")
        except OSError:
            return False


@pytest.fixture
def redis(tmp_path):
    if REDIS is None:
        pytest.fail("redis-server is not installed (scripts/test installs it)")
    r = Redis(tmp_path).start()
    yield r
    r.kill()


def conf(redis: Redis, extra: str = "", route_extra: str = "  rate 20/s burst 5") -> str:
    return f"""\
listen 127.0.0.1:0
ca-file {{ca}}
admin 127.0.0.1:0
connect-timeout 3s
limits-store redis 127.0.0.1:{redis.port} prefix itest: {extra}
route localhost:{{upstream_port}}/limited {{
  auth none
{route_extra}
}}
route localhost:{{upstream_port}} {{
  auth none
}}
"""


def metric(px, name: str) -> float:
    m = parse_metrics(admin_get(admin_port(px), "/metrics").text)
    return m.samples[(name, ())]


def hammer(ports: list[int], url: str, seconds: float, threads_per_port: int = 3):
    """Requests as fast as the threads can send them; returns (statuses, elapsed, slowest)."""
    statuses: list[tuple[int, str | None]] = []
    slowest = [0.0]
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def worker(port: int) -> None:
        while time.monotonic() < deadline:
            t0 = time.monotonic()
            r = fetch(port, url)
            took = time.monotonic() - t0
            with lock:
                statuses.append((r.status, r.error_code))
                slowest[0] = max(slowest[0], took)

    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(p,)) for p in ports
               for _ in range(threads_per_port)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return statuses, time.monotonic() - started, slowest[0]


def test_two_replicas_share_one_rate(redis, proxy_factory, upstream):
    a = proxy_factory(conf(redis))
    b = proxy_factory(conf(redis))
    assert wait_until(lambda: metric(a, "credproxy_limits_store_up") == 1
                      and metric(b, "credproxy_limits_store_up") == 1, 5)
    statuses, elapsed, _ = hammer([a.port, b.port], upstream.url("/limited/echo/x"), 3.0)
    ok = sum(1 for s, _ in statuses if s == 200)
    limited = sum(1 for s, c in statuses if s == 429 and c == "rate_limited")
    assert ok + limited == len(statuses), [s for s in statuses if s[0] not in (200, 429)][:5]
    # Together: at most 20/s over the run plus one burst of 5 (+1 for the request in flight at
    # the end). Each replica limiting alone would have let about twice as many through.
    assert ok <= 20 * elapsed + 5 + 1, (ok, elapsed, limited)
    assert ok >= 20 * elapsed * 0.6, f"far fewer passed than the rate allows: {ok} in {elapsed:.1f}s"
    assert limited > 0
    # Both replicas took part, and the bucket lives in Redis under the prefix.
    assert b"itest:rate:" in redis.command("KEYS", "itest:*")
    unlimited = fetch(a, upstream.url("/echo/free"))
    assert unlimited.status == 200


def test_crashed_replica_slots_come_back(redis, proxy_factory, upstream):
    cfg = conf(redis, extra="lease 2s", route_extra="  max-concurrent 2")
    a = proxy_factory(cfg)
    b = proxy_factory(cfg)
    assert wait_until(lambda: metric(a, "credproxy_limits_store_up") == 1
                      and metric(b, "credproxy_limits_store_up") == 1, 5)
    key = f"itest:conc:route:localhost:{upstream.port}/limited:"  # anonymous caller
    hung = []
    try:
        for i in range(2):
            c = RawConnection(a.port, timeout=30)
            c.send_request("GET", upstream.url(f"/limited/hang?id=crash{i}"),
                           [("Host", f"localhost:{upstream.port}")])
            hung.append(c)
            # One at a time: both must hold their lease before anyone else asks.
            assert wait_until(lambda: redis.command("ZCARD", key).startswith(b":%d" % (i + 1)), 5)
        # A's two requests hold both fleet-wide slots: B is refused.
        r = fetch(b, upstream.url("/limited/echo/1"))
        assert r.status == 503 and r.error_code == "too_many_concurrent", r
        # Held longer than the lease: A renews its leases, B is still refused.
        time.sleep(2.5)
        r = fetch(b, upstream.url("/limited/echo/2"))
        assert r.status == 503 and r.error_code == "too_many_concurrent", r
        # A dies without releasing anything; its leases expire and B gets the slots.
        a.proc.kill()
        a.proc.wait(5)
        proxy_factory.started.remove(a)
        t0 = time.monotonic()
        assert wait_until(lambda: fetch(b, upstream.url("/limited/echo/3")).status == 200, 6)
        assert time.monotonic() - t0 <= 4, "the dead replica's slots took longer than the lease"
    finally:
        for c in hung:
            c.close()
    # B's own finished requests released their leases; A's are gone.
    assert fetch(b, upstream.url("/limited/echo/4")).status == 200
    assert wait_until(lambda: redis.command("ZCARD", key).startswith(b":0"), 3)


@pytest.mark.parametrize("policy", ["open", "closed"])
def test_store_outage_policy_and_recovery(redis, proxy_factory, upstream, policy):
    px = proxy_factory(conf(redis, extra=f"on-outage {policy} timeout 150ms",
                            route_extra="  rate 50/s burst 3"))
    aport = admin_port(px)
    assert wait_until(lambda: metric(px, "credproxy_limits_store_up") == 1, 5)
    assert fetch(px, upstream.url("/limited/echo/before")).status == 200

    redis.kill()
    assert wait_until(lambda: metric(px, "credproxy_limits_store_up") == 0, 5)
    assert "DOWN" in admin_get(aport, "/status").text
    results = []
    for i in range(8):
        t0 = time.monotonic()
        r = fetch(px, upstream.url(f"/limited/echo/down{i}"))
        results.append((r.status, r.error_code, time.monotonic() - t0))
    assert all(took < 1.0 for *_, took in results), results
    if policy == "open":
        # Local limits: the burst of 3 passes, then the local bucket says 429.
        assert [s for s, *_ in results[:3]] == [200, 200, 200], results
        assert any(s == 429 and c == "rate_limited" for s, c, _ in results), results
    else:
        assert all(s == 503 and c == "limits_unavailable" for s, c, _ in results), results
        refused = fetch(px, upstream.url("/limited/echo/why"))
        assert b"limits store cannot answer: not connected (" in refused.body, refused.body
    # A route without limits does not depend on the store at all.
    assert fetch(px, upstream.url("/echo/free")).status == 200
    assert metric(px, "credproxy_limits_store_unavailable_total") >= 8

    # A store that accepts but does not answer: the wait is bounded by the timeout.
    redis.start()
    assert wait_until(lambda: metric(px, "credproxy_limits_store_up") == 1, 10)
    assert fetch(px, upstream.url("/limited/echo/after")).status == 200
    assert 'id="limits-store"><b>up</b>' in admin_get(aport, "/status").text
    assert b"itest:rate:" in redis.command("KEYS", "itest:*"), "the restarted store is not used"
    timeouts = metric(px, "credproxy_limits_store_timeouts_total")
    redis.command("CLIENT", "PAUSE", "1500", "ALL")
    t0 = time.monotonic()
    r = fetch(px, upstream.url("/limited/echo/paused"))
    took = time.monotonic() - t0
    assert took < 1.0, took
    assert r.status == (200 if policy == "open" else 503), r
    assert metric(px, "credproxy_limits_store_timeouts_total") > timeouts
    time.sleep(1.6)
    assert wait_until(lambda: fetch(px, upstream.url("/limited/echo/resumed")).status == 200, 5)


def test_password_and_config_errors(tmp_path, proxy_factory, upstream, cli):
    cases = {
        "limits-store memcached 127.0.0.1:1": '2:14: unknown limits store "memcached"; expected redis',
        "limits-store redis 127.0.0.1": '2:20: missing port in "127.0.0.1"; expected HOST:PORT',
        "limits-store redis 127.0.0.1:1 on-outage maybe": '2:42: invalid on-outage "maybe"; expected open',
        "limits-store redis 127.0.0.1:1 timeout 1h": "2:40: timeout 1h is out of range; expected 1ms to 10s",
        "limits-store redis 127.0.0.1:1 prefix": "2:32: prefix needs a value; expected limits-store redis",
        "limits-store redis 127.0.0.1:1 colour red": '2:32: unexpected "colour"; expected limits-store',
    }
    for line, message in cases.items():
        bad = tmp_path / "bad.conf"
        bad.write_text(f"listen 127.0.0.1:0\n{line}\nroute localhost:1 {{\n  auth none\n}}\n")
        res = cli("check", "--config", str(bad))
        assert res.returncode != 0, line
        assert f"bad.conf:{message}" in res.stderr + res.stdout, (line, res.stderr)
    good = tmp_path / "good.conf"
    good.write_text("listen 127.0.0.1:0\nlimits-store redis redis.internal:6379 prefix a: "
                    "on-outage closed timeout 50ms lease 10s\nroute localhost:1 {\n  auth none\n}\n")
    res = cli("check", "--config", str(good))
    assert res.returncode == 0, res.stderr

    r = Redis(tmp_path, password="itest-redis-pw-1").start()
    try:
        px = proxy_factory(conf(r, extra="password env:ITEST_REDIS_PW"),
                           env={"ITEST_REDIS_PW": "itest-redis-pw-1"})
        assert wait_until(lambda: metric(px, "credproxy_limits_store_up") == 1, 5)
        assert fetch(px, upstream.url("/limited/echo/auth")).status == 200
        assert "itest-redis-pw-1" not in admin_get(admin_port(px), "/status").text
        wrong = proxy_factory(conf(r, extra="password env:ITEST_REDIS_PW on-outage closed"),
                              env={"ITEST_REDIS_PW": "wrong"})
        time.sleep(0.5)
        assert metric(wrong, "credproxy_limits_store_up") == 0
        bad = fetch(wrong, upstream.url("/limited/echo/auth"))
        assert bad.status == 503 and bad.error_code == "limits_unavailable", bad
        assert "AUTH refused" in wrong.stderr_text()
        assert "wrong" not in wrong.stderr_text().replace("WRONGPASS", "")
        # A store that does not answer AUTH: requests behind it still wait only `timeout`.
        r.command("CLIENT", "PAUSE", "3000", "ALL")
        slow = proxy_factory(conf(r, extra="password env:ITEST_REDIS_PW timeout 150ms"),
                             env={"ITEST_REDIS_PW": "itest-redis-pw-1"})
        took: list[tuple[int, float]] = []

        def one(i: int) -> None:
            t0 = time.monotonic()
            r = fetch(slow, upstream.url(f"/limited/echo/paused-auth-{i}"))
            took.append((r.status, time.monotonic() - t0))

        # Staggered, so each waits behind the unanswered AUTH with its own deadline.
        waiters = [threading.Thread(target=one, args=(i,)) for i in range(4)]
        for t in waiters:
            t.start()
            time.sleep(0.06)
        for t in waiters:
            t.join()
        assert len(took) == 4 and all(s == 200 and d < 1.0 for s, d in took), took
    finally:
        r.kill()


def test_bodies_and_keep_alive_wait_for_the_store(redis, proxy_factory, upstream):
    """While the store decides, the request's body keeps arriving and is forwarded whole; the next
    request on the same keep-alive connection (sent right behind, pipelined) is answered too."""
    import hashlib
    import json

    px = proxy_factory(conf(redis, route_extra="  rate 100/s burst 50\n  max-concurrent 4"))
    assert wait_until(lambda: metric(px, "credproxy_limits_store_up") == 1, 5)
    body = bytes(range(256)) * 4096  # 1 MiB
    host = [("Host", f"localhost:{upstream.port}")]
    with RawConnection(px.port, timeout=20) as c:
        # Head and body in one write, then a second request behind it before any answer.
        c.send_request("POST", upstream.url("/limited/upload"),
                       host + [("Content-Length", str(len(body)))], body)
        c.send_request("GET", upstream.url("/limited/echo/second"), host)
        first = c.read_response("POST")
        second = c.read_response("GET")
    assert first.status == 200, first
    got = json.loads(first.body)
    assert got == {"length": len(body), "sha256": hashlib.sha256(body).hexdigest()}, got
    assert second.status == 200 and b"/limited/echo/second" in second.body, second
    # Both requests' leases were released when they ended.
    assert wait_until(lambda: b"itest:conc" not in redis.command("KEYS", "itest:conc*")
                      or redis.command("ZCARD", "itest:conc:route:localhost:%d/limited:" % upstream.port)
                      .startswith(b":0"), 3)


class HostileStore:
    """Speaks just enough of Redis's wire to be dialled: every command is answered with `reply`
    (bytes, or a callable writing to the socket), like a broken or hostile server would."""

    def __init__(self, reply):
        self.reply = reply
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c: socket.socket) -> None:
        try:
            while c.recv(65536):
                if callable(self.reply):
                    self.reply(c)
                else:
                    c.sendall(self.reply)
        except OSError:
            pass
        finally:
            c.close()

    def close(self) -> None:
        self.sock.close()


def endless(c: socket.socket) -> None:
    c.sendall(b"*4096\r\n")
    chunk = b"$1048576\r\n" + b"a" * (1 << 20) + b"\r\n"
    for _ in range(4096):
        c.sendall(chunk)


@pytest.mark.parametrize("reply", [b"*1\r\n" * 300_000, endless], ids=["nested", "endless"])
def test_a_hostile_store_reply_neither_crashes_nor_hangs_the_proxy(proxy_factory, upstream, reply):
    """A reply of arrays nested 300,000 deep overflowed the loop thread's stack (the process
    died); one growing towards 4 GiB was buffered whole. Now the reply is refused as a protocol
    error, the store counts as down, and requests follow the outage policy within the timeout."""
    store = HostileStore(reply)
    try:
        px = proxy_factory(conf(store, extra="timeout 500ms on-outage closed"))
        statuses = []
        for _ in range(6):
            t0 = time.monotonic()
            r = fetch(px.port, upstream.url("/limited/echo"))
            statuses.append((r.status, r.error_code, time.monotonic() - t0))
            assert px.alive(), px.stderr_text()[-3000:]
        assert all(s == 503 and c == "limits_unavailable" and took < 5 for s, c, took in statuses), statuses
        assert fetch(px.port, upstream.url("/free/echo")).status == 200
        assert "protocol error" in px.stderr_text(), px.stderr_text()[-2000:]
        assert px.rss_kib() < 200 * 1024, px.rss_kib()
        assert metric(px, "credproxy_limits_store_errors_total") >= 1
    finally:
        store.close()
