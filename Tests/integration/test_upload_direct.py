"""A Content-Length body on a plain client connection is read by curl straight from the client's
socket (no copy through the connection's buffer): the body must arrive whole and exact, never a byte
of what follows it (the next pipelined request), in every way a client may split its writes."""

from __future__ import annotations

import hashlib
import json

import pytest

from harness import configs, data
from harness.rawhttp import RawConnection


@pytest.fixture(scope="module")
def px(module_proxy_factory):
    return module_proxy_factory(configs.STANDARD, name="upload-direct")


def head(upstream, size: int) -> bytes:
    return (f"PUT {upstream.url('/upload')} HTTP/1.1\r\nHost: {upstream.authority}\r\n"
            f"Content-Length: {size}\r\n\r\n").encode()


@pytest.mark.parametrize("size", [1, 70_000, 5 * 1024 * 1024 + 3])
def test_body_then_pipelined_request_in_one_write(px, upstream, token, size):
    body = b"".join(data.generate(size))
    nxt = (f"GET {upstream.url(f'/echo/{token}')} HTTP/1.1\r\nHost: {upstream.authority}\r\n\r\n").encode()
    with RawConnection(px.port, timeout=60) as c:
        c.send(head(upstream, size) + body + nxt)
        r1 = c.read_response("PUT", timeout=60)
        r2 = c.read_response(timeout=30)
    assert r1.status == 200, r1
    assert r1.json() == {"length": size, "sha256": hashlib.sha256(body).hexdigest()}
    assert r2.status == 200, r2
    assert json.loads(r2.body)["target"] == f"/echo/{token}"


def test_body_in_small_slow_pieces(px, upstream):
    size = 300_000
    body = b"".join(data.generate(size))
    with RawConnection(px.port, timeout=60) as c:
        c.send(head(upstream, size))
        for i in range(0, size, 7_001):
            c.send(body[i:i + 7_001])
        r = c.read_response("PUT", timeout=60)
    assert r.status == 200, r
    assert r.json() == {"length": size, "sha256": hashlib.sha256(body).hexdigest()}


def test_client_gone_mid_body_is_an_abort(px, upstream):
    with RawConnection(px.port, timeout=30) as c:
        c.send(head(upstream, 10 * 1024 * 1024) + b"x" * 100_000)
        c.abort()
    # The proxy is still healthy afterwards.
    with RawConnection(px.port, timeout=30) as c:
        c.send(head(upstream, 5) + b"hello")
        r = c.read_response("PUT", timeout=30)
    assert r.status == 200, r
    assert r.json()["length"] == 5
