"""Limits: request-line length (414), header block size and count (431), body size per route and
overall (413), header-read deadline against slowloris clients (408), idle keep-alive timeout."""

from __future__ import annotations

import select
import time

import pytest

from harness.rawhttp import RawConnection, get_via_proxy

CONFIG = """\
listen 127.0.0.1:0
ca-file {ca}
header-timeout 1s
idle-timeout 2s
max-body 1m
route localhost:{upstream_port}/small {
  max-body 1k
}
route localhost:{upstream_port} {
  auth none
}
"""


@pytest.fixture(scope="module")
def px(module_proxy_factory):
    return module_proxy_factory(CONFIG, name="limits")


def assert_error(resp, status):
    assert resp.status == status, resp
    assert resp.header("X-Credproxy-Error"), resp
    assert (resp.header("Content-Type") or "").startswith("text/plain"), resp


def send_and_read(port: int, payload: bytes, timeout: float = 10):
    c = RawConnection(port, timeout=timeout)
    try:
        c.send(payload)
    except OSError:
        pass
    return c, c.read_response()


def test_request_line_too_long_414(px, upstream, token):
    target = f"http://{upstream.authority}/echo/{token}/" + "a" * 20000
    c, r = send_and_read(px.port, f"GET {target} HTTP/1.1\r\nHost: {upstream.authority}\r\n\r\n".encode())
    with c:
        assert_error(r, 414)
        assert c.wait_closed(5)
    assert upstream.requests_matching(token) == []


def test_request_line_under_the_limit_passes(px, upstream, token):
    r = get_via_proxy(px.port, f"http://{upstream.authority}/echo/{token}/" + "a" * 4000)
    assert r.status == 200, r


def test_header_block_too_large_431(px, upstream, token):
    headers = "".join(f"X-Big-{i}: {'v' * 1000}\r\n" for i in range(80))  # ~80 KiB
    c, r = send_and_read(px.port, (
        f"GET http://{upstream.authority}/echo/{token} HTTP/1.1\r\nHost: {upstream.authority}\r\n"
        f"{headers}\r\n").encode())
    with c:
        assert_error(r, 431)
        assert c.wait_closed(5)
    assert upstream.requests_matching(token) == []


def test_too_many_headers_431(px, upstream, token):
    headers = "".join(f"X-N{i}: {i}\r\n" for i in range(1000))  # small block, many fields
    c, r = send_and_read(px.port, (
        f"GET http://{upstream.authority}/echo/{token} HTTP/1.1\r\nHost: {upstream.authority}\r\n"
        f"{headers}\r\n").encode())
    with c:
        assert_error(r, 431)
        assert c.wait_closed(5)


def test_single_huge_header_431(px, upstream, token):
    c, r = send_and_read(px.port, (
        f"GET http://{upstream.authority}/echo/{token} HTTP/1.1\r\nHost: {upstream.authority}\r\n"
        f"X-Huge: {'h' * 100_000}\r\n\r\n").encode())
    with c:
        assert r.status in (431, 400), r  # one field bigger than the block: either is fair
        assert r.header("X-Credproxy-Error")
        assert c.wait_closed(5)


def test_route_max_body_by_content_length_413_before_reading_body(px, upstream, token):
    with RawConnection(px.port, timeout=10) as c:
        # Only the head: the proxy must answer from Content-Length without waiting for the body.
        c.send((f"POST http://{upstream.authority}/small/echo/{token} HTTP/1.1\r\n"
                f"Host: {upstream.authority}\r\nContent-Length: 2048\r\n\r\n").encode())
        r = c.read_response(timeout=5)
        assert_error(r, 413)
        assert c.wait_closed(5)
    assert upstream.requests_matching(token) == []


def test_route_max_body_chunked_413(px, upstream, token):
    body = b"".join(b"258\r\n" + b"c" * 600 + b"\r\n" for _ in range(3)) + b"0\r\n\r\n"
    c, r = send_and_read(px.port, (
        f"POST http://{upstream.authority}/small/echo/{token} HTTP/1.1\r\nHost: {upstream.authority}\r\n"
        "Transfer-Encoding: chunked\r\n\r\n").encode() + body)
    with c:
        assert_error(r, 413)
        assert c.wait_closed(5)


def test_route_max_body_exact_limit_passes(px, upstream, token):
    r = get_via_proxy(px.port, f"http://{upstream.authority}/small/echo/{token}", method="POST",
                      body=b"k" * 1024)
    assert r.status == 200, r
    assert r.json()["body_length"] == 1024


def test_global_max_body_413(px, upstream, token):
    with RawConnection(px.port, timeout=10) as c:
        c.send((f"POST http://{upstream.authority}/echo/{token} HTTP/1.1\r\n"
                f"Host: {upstream.authority}\r\nContent-Length: {2 * 1024 * 1024}\r\n\r\n").encode())
        r = c.read_response(timeout=5)
        assert_error(r, 413)


def test_global_max_body_allows_smaller(px, upstream, token):
    r = get_via_proxy(px.port, f"http://{upstream.authority}/echo/{token}", method="POST",
                      body=b"m" * (512 * 1024))
    assert r.status == 200, r


def _trickle_until_answer(c: RawConnection, payload: bytes, interval: float, limit: float) -> float:
    """Send ``payload`` one byte every ``interval`` s until the proxy answers; return elapsed s."""
    start = time.monotonic()
    for i in range(len(payload)):
        if time.monotonic() - start > limit:
            break
        try:
            c.sock.send(payload[i : i + 1])
        except OSError:
            break
        r, _, _ = select.select([c.sock], [], [], interval)
        if r:
            break
    else:
        select.select([c.sock], [], [], limit)
    return time.monotonic() - start


@pytest.mark.timeout(30)
def test_slowloris_header_timeout_408(px, upstream, token):
    payload = (f"GET http://{upstream.authority}/echo/{token} HTTP/1.1\r\nHost: {upstream.authority}\r\n"
               + "".join(f"X-Slow-{i}: {i}\r\n" for i in range(50)) + "\r\n").encode()
    with RawConnection(px.port, timeout=10) as c:
        elapsed = _trickle_until_answer(c, payload, 0.1, 8)
        assert elapsed < 5, f"no answer within {elapsed:.1f}s though header-timeout is 1s"
        r = c.read_response(timeout=5)
        assert_error(r, 408)
        assert c.wait_closed(5)
    assert elapsed >= 0.8, f"408 after {elapsed:.2f}s, before the 1s header-timeout"
    assert upstream.requests_matching(token) == []


@pytest.mark.timeout(30)
def test_partial_request_line_then_silence_408(px, upstream):
    with RawConnection(px.port, timeout=10) as c:
        c.send(b"GET http://loc")
        start = time.monotonic()
        r = c.read_response(timeout=6)
        elapsed = time.monotonic() - start
        assert_error(r, 408)
        assert c.wait_closed(5)
    assert 0.8 <= elapsed < 5, elapsed


@pytest.mark.timeout(30)
def test_idle_keepalive_connection_closed_after_idle_timeout(px, upstream, token):
    with RawConnection(px.port, timeout=10) as c:
        assert c.request("GET", f"http://{upstream.authority}/echo/{token}").status == 200
        start = time.monotonic()
        assert c.is_open_after(1.0), "closed well before the 2s idle-timeout"
        assert c.wait_closed(6), "an idle keep-alive connection was not closed"
        elapsed = time.monotonic() - start
    assert 1.5 <= elapsed < 6, elapsed


@pytest.mark.timeout(30)
def test_connection_without_any_request_is_not_kept_forever(px):
    with RawConnection(px.port, timeout=10) as c:
        assert c.wait_closed(8), "a silent connection was kept past idle-timeout"


@pytest.mark.timeout(30)
def test_active_slow_transfer_outlives_idle_and_header_timeouts(px, upstream, token):
    # 3 s of streaming, longer than idle-timeout (2s) and header-timeout (1s): must complete.
    with RawConnection(px.port, timeout=15) as c:
        c.send_request("GET", f"http://{upstream.authority}/slow-stream?id={token}&chunks=30&size=1000&interval=0.1")
        r = c.read_head(timeout=10)
        assert r.status == 200
        body = b"".join(c.iter_body(r, timeout=15))
    assert len(body) == 30000
    assert upstream.wait_event("slow_complete", token, timeout=5)


@pytest.mark.timeout(30)
def test_keepalive_reuse_within_idle_timeout(px, upstream, token):
    with RawConnection(px.port, timeout=10) as c:
        for i in range(3):
            assert c.request("GET", f"http://{upstream.authority}/echo/{token}/{i}").status == 200
            time.sleep(0.5)
