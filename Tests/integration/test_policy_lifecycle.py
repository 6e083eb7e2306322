"""Reload and shutdown under real traffic: SIGHUP several times while client threads keep sending
requests (zero failures; the new route secret is what the upstream sees afterwards; an in-flight
request finishes), a bad config is rejected and the old one keeps serving, and SIGTERM drains
(the slow request completes 200, new connections are refused, exit 0)."""

from __future__ import annotations

import re
import signal
import threading
import time

import pytest

from harness.proxy import render
from harness.rawhttp import RawConnection
from policy_support import (  # noqa: F401 - fixture
    POLICY_ENV,
    RELOAD_SECRETS,
    fetch,
    find_secrets,
    policy_secrets,
    port_refuses,
    wait_until,
)

pytestmark = pytest.mark.timeout(90)

RELOAD_TEMPLATE = """\
# reload test, generation {generation}
listen 127.0.0.1:0
ca-file {ca}
connect-timeout 5s
request-timeout 30s
shutdown-timeout 20s
route localhost:{upstream_port}/reload {
  auth bearer env:ITEST_RELOAD_{k}
}
route localhost:{upstream_port} {
  auth none
}
"""


def reload_conf(k: int, generation: int) -> str:
    return RELOAD_TEMPLATE.replace("{k}", str(k)).replace("{generation}", str(generation))


def write_config(px, proxy_factory, text: str) -> None:
    px.config_path.write_text(render(text, proxy_factory.values))


def authorization_of(r) -> str | None:
    vals = [v for n, v in r.json()["headers"] if n.lower() == "authorization"]
    assert len(vals) <= 1, vals
    return vals[0] if vals else None


class Load:
    """Client threads sending real requests until stopped: half on fresh connections, half on
    keep-alive connections; every answer must be 200 with one of the reload secrets."""

    def __init__(self, px, upstream, token: str, threads: int = 4):
        self.px = px
        self.upstream = upstream
        self.token = token
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.ok = 0
        self.failures: list[str] = []
        self.secrets_seen: set[str] = set()
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True) for i in range(threads)]

    def record(self, i: int, n: int, r) -> None:
        if r.status != 200:
            with self.lock:
                self.failures.append(f"thread {i} request {n}: {r!r}")
            return
        auth = authorization_of(r)
        valid = {f"Bearer {s}" for s in RELOAD_SECRETS}
        with self.lock:
            if auth not in valid:
                self.failures.append(f"thread {i} request {n}: Authorization {auth!r} is no reload secret")
            else:
                self.secrets_seen.add(auth)
                self.ok += 1

    def run(self, i: int) -> None:
        n = 0
        keep: RawConnection | None = None
        while not self.stop.is_set():
            n += 1
            url = self.upstream.url(f"/reload/echo/{self.token}/{i}/{n}")
            try:
                if i % 2 == 0:
                    r = fetch(self.px, url, timeout=15)
                else:
                    if keep is None:
                        keep = RawConnection(self.px.port, timeout=15)
                    r = keep.request("GET", url, [("Host", "x")])
                    if (r.header("Connection") or "").lower() == "close":
                        keep.close()
                        keep = None
                self.record(i, n, r)
            except Exception as e:  # noqa: BLE001 - every failure is reported
                with self.lock:
                    self.failures.append(f"thread {i} request {n}: {e!r}")
                if keep is not None:
                    keep.close()
                    keep = None
        if keep is not None:
            keep.close()

    def __enter__(self) -> "Load":
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(20)


def reloads_done(px) -> int:
    return len(re.findall(r"credproxy: reloaded ", px.stderr_text()))


def test_reload_under_load(proxy_factory, upstream, token):
    px = proxy_factory(reload_conf(0, 0), env=POLICY_ENV)
    first = fetch(px, upstream.url(f"/reload/echo/{token}/first"))
    assert authorization_of(first) == f"Bearer {RELOAD_SECRETS[0]}"

    # An in-flight request started under generation 0 must finish across the reloads.
    inflight: dict = {}

    def slow():
        try:
            inflight["r"] = fetch(px, upstream.url(
                f"/reload/slow-stream?id={token}-slow&chunks=25&size=2000&interval=0.1"), timeout=30)
        except Exception as e:  # noqa: BLE001
            inflight["r"] = e

    slow_thread = threading.Thread(target=slow)
    with Load(px, upstream, token) as load:
        slow_thread.start()
        assert upstream.wait_event("slow_start", f"{token}-slow", timeout=10)
        time.sleep(0.3)
        for generation in range(1, 5):
            write_config(px, proxy_factory, reload_conf(generation, generation))
            px.proc.send_signal(signal.SIGHUP)
            assert wait_until(lambda: reloads_done(px) >= generation, 5), \
                f"reload {generation} not confirmed on stderr:\n{px.stderr_text()[-1500:]}"
            # A new request after the reload carries the new secret.
            r = fetch(px, upstream.url(f"/reload/echo/{token}/check{generation}"))
            assert r.status == 200, r
            assert authorization_of(r) == f"Bearer {RELOAD_SECRETS[generation]}", \
                f"after reload {generation} the upstream saw another secret"
            time.sleep(0.3)
        time.sleep(0.3)
    slow_thread.join(30)

    assert not load.failures, f"{len(load.failures)} failed requests during reloads: {load.failures[:5]}"
    assert load.ok >= 40, f"only {load.ok} requests completed: the load was not real"
    assert len(load.secrets_seen) >= 3, load.secrets_seen
    r = inflight.get("r")
    assert not isinstance(r, Exception) and r is not None, r
    assert r.status == 200 and len(r.body) == 25 * 2000, r
    assert px.alive()
    assert not find_secrets(px.stderr_text())


def test_bad_reload_keeps_old_config(proxy_factory, upstream, token):
    px = proxy_factory(reload_conf(1, 1), env=POLICY_ENV)
    assert authorization_of(fetch(px, upstream.url(f"/reload/echo/{token}/a"))) == f"Bearer {RELOAD_SECRETS[1]}"
    bad = reload_conf(2, 2).replace("  auth bearer env:ITEST_RELOAD_2\n", "  auth oauth-please env:ITEST_RELOAD_2\n")
    with Load(px, upstream, token, threads=2) as load:
        time.sleep(0.3)
        mark = len(px.stderr_text())
        write_config(px, proxy_factory, bad)
        px.proc.send_signal(signal.SIGHUP)
        m = px.wait_for_stderr(r"reload failed, keeping the running config", timeout=5, start=mark)
        assert m, px.stderr_text()[-1500:]
        loc = px.wait_for_stderr(r"proxy\.conf:8:\d+: [^\n]*oauth-please", timeout=2, start=mark)
        assert loc, f"no file:line:col diagnostic for the bad line:\n{px.stderr_text()[mark:]}"
        time.sleep(0.5)
    assert not load.failures, load.failures[:5]
    assert load.ok > 5
    # Still the old config: old secret.
    r = fetch(px, upstream.url(f"/reload/echo/{token}/after-bad"))
    assert authorization_of(r) == f"Bearer {RELOAD_SECRETS[1]}"
    assert reloads_done(px) == 0

    # A good config afterwards is taken.
    write_config(px, proxy_factory, reload_conf(3, 3))
    px.proc.send_signal(signal.SIGHUP)
    assert wait_until(lambda: reloads_done(px) == 1, 5), px.stderr_text()[-1500:]
    r = fetch(px, upstream.url(f"/reload/echo/{token}/after-good"))
    assert authorization_of(r) == f"Bearer {RELOAD_SECRETS[3]}"
    assert px.alive()


def test_reload_removing_a_route(proxy_factory, upstream, token):
    px = proxy_factory(reload_conf(0, 0), env=POLICY_ENV)
    assert fetch(px, upstream.url(f"/echo/{token}/before")).status == 200
    only = reload_conf(0, 1).replace("route localhost:{upstream_port} {\n  auth none\n}\n", "")
    write_config(px, proxy_factory, only)
    px.proc.send_signal(signal.SIGHUP)
    assert wait_until(lambda: reloads_done(px) == 1, 5), px.stderr_text()[-1500:]
    r = fetch(px, upstream.url(f"/echo/{token}/after"))
    assert r.status == 403 and r.error_code == "no_route", r


# -- SIGTERM ------------------------------------------------------------------------------------

DRAIN_CONF = """\
listen 127.0.0.1:0
ca-file {ca}
shutdown-timeout 20s
route localhost:{upstream_port} {
  auth none
}
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_drains_in_flight_requests(proxy_factory, upstream, token, sig):
    px = proxy_factory(DRAIN_CONF)
    port = px.port
    # An idle keep-alive connection: it must not hold the drain up.
    idle = RawConnection(port)
    assert idle.request("GET", upstream.url(f"/echo/{token}/idle"), [("Host", "x")]).status == 200

    result: dict = {}

    def slow():
        try:
            result["r"] = fetch(px, upstream.url(
                f"/slow-stream?id={token}&chunks=25&size=4000&interval=0.1"), timeout=30)
        except Exception as e:  # noqa: BLE001
            result["r"] = e

    t = threading.Thread(target=slow)
    t.start()
    assert upstream.wait_event("slow_start", token, timeout=10)
    started = time.monotonic()
    px.proc.send_signal(sig)

    assert wait_until(lambda: port_refuses(port), 3, interval=0.05), \
        "new connections are still accepted after the signal"
    t.join(30)
    r = result.get("r")
    assert not isinstance(r, Exception) and r is not None, f"the in-flight request failed: {r!r}"
    assert r.status == 200 and len(r.body) == 25 * 4000, r
    assert upstream.wait_event("slow_complete", token, timeout=5), upstream.find_events(tag=token)
    code = px.proc.wait(timeout=15)
    assert code == 0, f"exit status {code}; stderr:\n{px.stderr_text()[-1500:]}"
    assert time.monotonic() - started < 15, "draining took longer than the slow request"
    assert idle.wait_closed(1), "the idle keep-alive connection was left open"
    idle.close()


def test_shutdown_timeout_bounds_the_drain(proxy_factory, upstream, token):
    px = proxy_factory(DRAIN_CONF.replace("shutdown-timeout 20s", "shutdown-timeout 1s"))
    c = RawConnection(px.port, timeout=15)
    c.send_request("GET", upstream.url(f"/hang?id={token}"), [("Host", "x")])
    assert upstream.wait_event("hang_start", token, timeout=10)
    started = time.monotonic()
    px.proc.send_signal(signal.SIGTERM)
    code = px.proc.wait(timeout=10)
    elapsed = time.monotonic() - started
    c.close()
    assert code == 0, px.stderr_text()[-1500:]
    assert 0.8 <= elapsed < 5, f"exit after {elapsed:.1f}s with shutdown-timeout 1s"
