"""Connection behaviour: keep-alive reuse, pipelining (responses in order), Connection: close, and a
client that disconnects mid-transfer aborting only its own upstream transfer."""

from __future__ import annotations

import threading
import time

import pytest

from harness import configs, data
from harness.rawhttp import RawConnection, build_request, get_via_proxy, hash_body


@pytest.fixture(scope="module")
def px(module_proxy_factory):
    return module_proxy_factory(configs.STANDARD, name="connections")


def test_keepalive_many_requests_on_one_socket(px, upstream, token):
    with RawConnection(px.port) as c:
        for i in range(10):
            method = "POST" if i % 2 else "GET"
            body = (b"b" * i) if method == "POST" else None
            r = c.request(method, upstream.url(f"/echo/{token}/{i}"), body=body)
            assert r.status == 200, r
            assert r.json()["target"] == f"/echo/{token}/{i}"
            assert r.json()["method"] == method
            assert not any(v.lower() == "close" for v in r.header_all("Connection"))
    assert len(upstream.requests_matching(token)) == 10


def test_pipelined_requests_answered_in_order(px, upstream, token):
    payload = b"".join([
        build_request("GET", upstream.url(f"/echo/{token}/1")),
        build_request("POST", upstream.url(f"/echo/{token}/2"), body=b"0123456789"),
        build_request("GET", upstream.url(f"/status/204")),
        build_request("PUT", upstream.url(f"/echo/{token}/3"), [("Transfer-Encoding", "chunked")],
                      b"3\r\nabc\r\n0\r\n\r\n"),
    ])
    with RawConnection(px.port) as c:
        c.send(payload)  # one write
        r1, r2, r3, r4 = (c.read_response() for _ in range(4))
    assert r1.json()["target"] == f"/echo/{token}/1"
    assert (r2.json()["target"], r2.json()["body_length"]) == (f"/echo/{token}/2", 10)
    assert r3.status == 204
    assert (r4.json()["target"], r4.json()["body_length"]) == (f"/echo/{token}/3", 3)


def test_pipelining_keeps_order_when_first_response_is_slow(px, upstream, token):
    payload = (build_request("GET", upstream.url(f"/slow-stream?id={token}&chunks=10&size=100&interval=0.1"))
               + build_request("GET", upstream.url(f"/echo/{token}/fast")))
    with RawConnection(px.port) as c:
        c.send(payload)
        slow = c.read_response()
        fast = c.read_response()
    assert slow.status == 200 and len(slow.body) == 1000
    assert slow.body == b"".join(data.generate(1000, 100))
    assert fast.json()["target"] == f"/echo/{token}/fast"


def test_two_requests_in_one_write_even_the_second_split_later(px, upstream, token):
    first = build_request("GET", upstream.url(f"/echo/{token}/a"))
    second = build_request("GET", upstream.url(f"/echo/{token}/b"))
    with RawConnection(px.port) as c:
        c.send(first + second[:10])
        time.sleep(0.2)
        c.send(second[10:])
        assert c.read_response().json()["target"].endswith("/a")
        assert c.read_response().json()["target"].endswith("/b")


def test_connection_close_honoured(px, upstream, token):
    with RawConnection(px.port) as c:
        r = c.request("GET", upstream.url(f"/echo/{token}"), [("Connection", "close")])
        assert r.status == 200
        assert c.wait_closed(5)


@pytest.mark.timeout(60)
def test_client_abort_mid_download(px, upstream, token):
    """Client A disconnects mid-stream: the upstream sees its connection closed; client B, streaming
    at the same time, gets every byte; the proxy still serves new requests."""
    chunks, size = 60, 8192  # 60 × 50 ms ≈ 3 s per stream
    url_a = upstream.url(f"/slow-stream?id={token}-a&chunks={chunks}&size={size}&interval=0.05")
    url_b = upstream.url(f"/slow-stream?id={token}-b&chunks={chunks}&size={size}&interval=0.05")
    result: dict = {}

    def client_b():
        try:
            with RawConnection(px.port, timeout=30) as c:
                c.send_request("GET", url_b)
                resp = c.read_head()
                result["b"] = (resp.status, hash_body(c, resp, timeout=30))
        except Exception as e:  # reported below
            result["b_error"] = repr(e)

    tb = threading.Thread(target=client_b, daemon=True)
    tb.start()

    a = RawConnection(px.port, timeout=15)
    a.send_request("GET", url_a)
    resp = a.read_head()
    assert resp.status == 200
    got = 0
    for piece in a.iter_body(resp):
        got += len(piece)
        if got >= 4 * size:
            break
    a.abort()  # RST, mid-body
    aborted_at = time.monotonic()

    ev = upstream.wait_event("slow_disconnect", f"{token}-a", timeout=10)
    assert ev is not None, "the upstream never saw the aborted client's transfer closed"
    assert ev.time - aborted_at < 5
    assert ev.info["sent"] < chunks * size

    tb.join(timeout=40)
    assert "b_error" not in result, result.get("b_error")
    status, (n, digest) = result["b"]
    assert status == 200
    assert (n, digest) == (chunks * size, data.expected_sha256(chunks * size))
    assert upstream.wait_event("slow_complete", f"{token}-b", timeout=5)

    assert px.alive()
    r = get_via_proxy(px.port, upstream.url(f"/echo/{token}/after"))
    assert r.status == 200


@pytest.mark.timeout(60)
def test_client_abort_mid_upload(px, upstream, token):
    """A client that disconnects halfway through a body: the upstream must not get a complete
    request, and the proxy keeps serving."""
    total = 8 * 1024 * 1024
    c = RawConnection(px.port, timeout=15)
    c.send((f"POST {upstream.url(f'/echo/{token}/upload')} HTTP/1.1\r\n"
            f"Host: {upstream.authority}\r\nContent-Length: {total}\r\n\r\n").encode())
    sent = 0
    for piece in data.generate(total // 4, 65536):
        c.send(piece)
        sent += len(piece)
    time.sleep(0.2)
    c.abort()
    recs = upstream.requests_matching(f"{token}/upload")
    if recs:
        # Wait for the upstream's side of that connection to end one way or the other.
        closed = upstream.wait_for(
            lambda: any(e.info.get("conn") == recs[0].conn_id for e in upstream.find_events("close")),
            timeout=10)
        assert closed, "the upstream transfer outlived the aborted client"
        assert recs[0].body_length is None, \
            f"the upstream got a complete body of {recs[0].body_length} bytes from an aborted upload"
    assert px.alive()
    assert get_via_proxy(px.port, upstream.url(f"/echo/{token}/after")).status == 200


def test_hang_released_when_client_goes_away(px, upstream, token):
    c = RawConnection(px.port, timeout=10)
    c.send_request("GET", upstream.url(f"/hang?id={token}"))
    assert upstream.wait_event("hang_start", token, timeout=10), "the request never reached /hang"
    c.abort()
    assert upstream.wait_event("hang_disconnect", token, timeout=10), \
        "the upstream transfer outlived its client"
