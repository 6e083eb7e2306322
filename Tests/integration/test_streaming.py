"""Bodies are streamed both ways with backpressure, never held whole: 256 MiB down and up, generated
on the fly and hashed at both ends, while the proxy's peak RSS (VmHWM) stays near its idle level."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from harness import configs, data
from harness.rawhttp import RawConnection, get_via_proxy, hash_body

BIG = 256 * 1024 * 1024
MEDIUM = 64 * 1024 * 1024
HWM_BUDGET_KIB = 64 * 1024  # growth over the idle baseline


@pytest.fixture(scope="module")
def px(module_proxy_factory):
    return module_proxy_factory(configs.STANDARD, name="streaming")


@pytest.fixture(scope="module")
def baseline_kib(px, upstream):
    # Warm up: one small exchange each way, so lazily allocated pools count as baseline.
    assert get_via_proxy(px.port, upstream.url("/echo/warmup"), method="POST", body=b"w" * 65536).status == 200
    assert get_via_proxy(px.port, upstream.url("/stream?bytes=1048576")).status == 200
    time.sleep(0.2)
    return px.hwm_kib()


def assert_memory_bounded(px, baseline_kib):
    growth = px.hwm_kib() - baseline_kib
    assert growth < HWM_BUDGET_KIB, (
        f"proxy peak RSS grew by {growth / 1024:.1f} MiB over its idle baseline "
        f"({baseline_kib / 1024:.1f} MiB): bodies are being buffered")


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("chunked,size", [(False, BIG), (True, MEDIUM)], ids=["content-length-256MiB", "chunked-64MiB"])
def test_download(px, upstream, baseline_kib, chunked, size):
    with RawConnection(px.port, timeout=60) as c:
        c.send_request("GET", upstream.url(f"/stream?bytes={size}&chunked={int(chunked)}"))
        resp = c.read_head()
        assert resp.status == 200, resp
        n, digest = hash_body(c, resp, timeout=150)
    assert n == size
    assert digest == data.expected_sha256(size)
    assert_memory_bounded(px, baseline_kib)


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("chunked,size", [(False, BIG), (True, MEDIUM)], ids=["content-length-256MiB", "chunked-64MiB"])
def test_upload(px, upstream, baseline_kib, chunked, size):
    with RawConnection(px.port, timeout=60) as c:
        framing = ("Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}")
        c.send((f"POST {upstream.url('/upload')} HTTP/1.1\r\nHost: {upstream.authority}\r\n"
                f"{framing}\r\n\r\n").encode())
        pieces = data.generate(size)
        if chunked:
            c.send_iter(b"%x\r\n" % len(p) + p + b"\r\n" for p in pieces)
            c.send(b"0\r\n\r\n")
        else:
            c.send_iter(pieces)
        r = c.read_response(timeout=120)
    assert r.status == 200, r
    assert r.json() == {"length": size, "sha256": data.expected_sha256(size)}
    assert_memory_bounded(px, baseline_kib)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_slow_reader_gets_backpressure_not_buffering(px, upstream, baseline_kib):
    """A client that stops reading: the proxy must stop reading the upstream, not buffer 128 MiB."""
    size = 128 * 1024 * 1024
    with RawConnection(px.port, timeout=60) as c:
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        c.send_request("GET", upstream.url(f"/stream?bytes={size}"))
        resp = c.read_head()
        assert resp.status == 200
        time.sleep(3)  # not reading: the upstream is far faster than this
        stalled_growth = px.rss_kib() - baseline_kib
        n, digest = hash_body(c, resp, timeout=100)
    assert (n, digest) == (size, data.expected_sha256(size))
    assert stalled_growth < HWM_BUDGET_KIB, (
        f"proxy RSS grew {stalled_growth / 1024:.1f} MiB while the client was not reading")
    assert_memory_bounded(px, baseline_kib)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_stalled_upstream_gets_backpressure_on_upload(px, upstream, baseline_kib, token):
    """The upstream stops reading for 3 s: the proxy must stop reading the client, not buffer."""
    size = 128 * 1024 * 1024
    c = RawConnection(px.port, timeout=60)
    outcome: dict = {}

    def send_all():
        try:
            c.send((f"POST {upstream.url(f'/upload?stall=3&id={token}')} HTTP/1.1\r\n"
                    f"Host: {upstream.authority}\r\nContent-Length: {size}\r\n\r\n").encode())
            c.send_iter(data.generate(size))
        except Exception as e:  # noqa: BLE001 - reported below
            outcome["error"] = repr(e)

    sender = threading.Thread(target=send_all, daemon=True)
    try:
        sender.start()
        assert upstream.wait_event("upload_stall", token, timeout=10), "the upload never reached the upstream"
        time.sleep(2.5)
        stalled_growth = px.rss_kib() - baseline_kib
        sender.join(timeout=60)
        assert not sender.is_alive() and "error" not in outcome, outcome
        r = c.read_response(timeout=60)
    finally:
        c.close()
    assert r.json() == {"length": size, "sha256": data.expected_sha256(size)}
    assert stalled_growth < HWM_BUDGET_KIB, (
        f"proxy RSS grew {stalled_growth / 1024:.1f} MiB while the upstream was not reading")
    assert_memory_bounded(px, baseline_kib)
