"""The inbound parser's vector table, through a raw socket: each malformed request gets its status,
a text/plain one-line body with ``X-Credproxy-Error``, the connection is closed after it, and nothing
of it reaches the upstream."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from harness import configs
from harness.rawhttp import RawConnection


@pytest.fixture(scope="module")
def px(module_proxy_factory):
    return module_proxy_factory(configs.STANDARD, name="parser")


@dataclass
class Vector:
    id: str
    # Request bytes, from a template with {url} (absolute URL of the echo endpoint on the upstream),
    # {small} (same on the 1k max-body route), {auth} (the upstream's host:port).
    template: bytes
    expect: tuple[int, ...]
    # Head errors must never reach the upstream; body errors may have started a transfer.
    head_error: bool = True


def head(lines: list[str], body: bytes = b"", url: str = "{url}", method: str = "POST") -> bytes:
    text = f"{method} {url} HTTP/1.1\r\nHost: {{auth}}\r\n" + "".join(l + "\r\n" for l in lines) + "\r\n"
    return text.encode("latin-1") + body


VECTORS = [
    Vector("cl-and-te", head(["Content-Length: 4", "Transfer-Encoding: chunked"], b"4\r\nabcd\r\n0\r\n\r\n"), (400,)),
    Vector("te-and-cl", head(["Transfer-Encoding: chunked", "Content-Length: 4"], b"4\r\nabcd\r\n0\r\n\r\n"), (400,)),
    Vector("two-cl-same", head(["Content-Length: 4", "Content-Length: 4"], b"abcd"), (400,)),
    Vector("two-cl-different", head(["Content-Length: 4", "Content-Length: 5"], b"abcde"), (400,)),
    Vector("cl-list", head(["Content-Length: 4, 4"], b"abcd"), (400,)),
    Vector("cl-plus", head(["Content-Length: +4"], b"abcd"), (400,)),
    Vector("cl-minus", head(["Content-Length: -1"], b"abcd"), (400,)),
    Vector("cl-two-numbers", head(["Content-Length: 4 4"], b"abcd"), (400,)),
    Vector("cl-hex", head(["Content-Length: 0x4"], b"abcd"), (400,)),
    Vector("cl-overflow", head(["Content-Length: 99999999999999999999999"], b"abcd"), (400,)),
    Vector("te-chunked-identity", head(["Transfer-Encoding: chunked, identity"], b"4\r\nabcd\r\n0\r\n\r\n"), (400, 501)),
    Vector("te-xchunked", head(["Transfer-Encoding: xchunked"], b"4\r\nabcd\r\n0\r\n\r\n"), (400, 501)),
    Vector("te-identity", head(["Transfer-Encoding: identity"], b"abcd"), (400, 501)),
    Vector("te-gzip-chunked", head(["Transfer-Encoding: gzip, chunked"], b"4\r\nabcd\r\n0\r\n\r\n"), (400, 501)),
    Vector("te-chunked-twice", head(["Transfer-Encoding: chunked", "Transfer-Encoding: chunked"], b"0\r\n\r\n"), (400, 501)),
    Vector("space-before-colon", head(["X-Test : 1"]), (400,)),
    Vector("tab-before-colon", head(["X-Test\t: 1"]), (400,)),
    Vector("space-before-colon-cl", head(["Content-Length : 4"], b"abcd"), (400,)),
    Vector("obs-fold", head(["X-Test: a", " folded"]), (400,)),
    Vector("obs-fold-tab", head(["X-Test: a", "\tfolded"]), (400,)),
    Vector("leading-whitespace-first-header", b"POST {url} HTTP/1.1\r\n Host: {auth}\r\n\r\n", (400,)),
    Vector("bare-lf-everywhere", b"GET {url} HTTP/1.1\nHost: {auth}\n\n", (400,)),
    Vector("bare-lf-one-header", b"GET {url} HTTP/1.1\r\nHost: {auth}\r\nX-Test: 1\n\r\n", (400,)),
    Vector("bare-cr-in-value", head(["X-Test: a\rb"]), (400,)),
    Vector("nul-in-value", head(["X-Test: a\x00b"]), (400,)),
    Vector("ctl-in-value", head(["X-Test: a\x01b"]), (400,)),
    Vector("non-token-name-parens", head(["X(Bad): 1"]), (400,)),
    Vector("non-token-name-at", head(["Bad@Name: 1"]), (400,)),
    Vector("empty-header-name", head([": nameless"]), (400,)),
    Vector("header-without-colon", head(["NoColonHere"]), (400,)),
    Vector("two-hosts", b"GET /echo/{token} HTTP/1.1\r\nHost: {auth}\r\nHost: {auth}\r\n\r\n", (400,)),
    Vector("http11-origin-form-without-host", b"GET /echo/{token} HTTP/1.1\r\nX-Test: 1\r\n\r\n", (400,)),
    Vector("double-space-request-line", b"GET  {url} HTTP/1.1\r\nHost: {auth}\r\n\r\n", (400,)),
    Vector("bad-version-token", b"GET {url} HTTP/1.x\r\nHost: {auth}\r\n\r\n", (400,)),
    Vector("lowercase-version", b"GET {url} http/1.1\r\nHost: {auth}\r\n\r\n", (400,)),
    Vector("unsupported-version", b"GET {url} HTTP/3.0\r\nHost: {auth}\r\n\r\n", (505,)),
    Vector("space-in-target", b"GET http://{auth}/echo/a b HTTP/1.1\r\nHost: {auth}\r\n\r\n", (400,)),
    Vector("chunk-size-non-hex", head(["Transfer-Encoding: chunked"], b"zz\r\nabcd\r\n0\r\n\r\n"), (400,), False),
    Vector("chunk-size-0x-prefix", head(["Transfer-Encoding: chunked"], b"0x4\r\nabcd\r\n0\r\n\r\n"), (400,), False),
    Vector("chunk-size-empty", head(["Transfer-Encoding: chunked"], b"\r\nabcd\r\n0\r\n\r\n"), (400,), False),
    Vector("chunk-size-overflow", head(["Transfer-Encoding: chunked"], b"FFFFFFFFFFFFFFFFFFFFFF\r\nabcd\r\n0\r\n\r\n"), (400, 413), False),
    Vector("chunk-data-not-crlf-terminated", head(["Transfer-Encoding: chunked"], b"4\r\nabcdXX0\r\n\r\n"), (400,), False),
    Vector("chunk-over-route-max-body", head(["Transfer-Encoding: chunked"], b"800\r\n" + b"a" * 0x800 + b"\r\n0\r\n\r\n", url="{small}"), (413,), False),
]


def render(template: bytes, upstream, token: str) -> bytes:
    out = template.decode("latin-1")
    out = out.replace("{url}", f"http://{upstream.authority}/echo/{token}")
    out = out.replace("{small}", f"http://{upstream.authority}/small/echo/{token}")
    out = out.replace("{auth}", upstream.authority)
    out = out.replace("{token}", token)
    return out.encode("latin-1")


def send_and_read(port: int, payload: bytes):
    c = RawConnection(port, timeout=10)
    try:
        c.send(payload)
    except OSError:
        pass  # the proxy may answer and close before reading everything we sent
    return c, c.read_response()


def assert_error_shape(resp, status_set):
    assert resp.status in status_set, resp
    assert resp.header("X-Credproxy-Error"), f"no X-Credproxy-Error header: {resp}"
    if resp.status == 400:
        assert resp.error_code == "bad_request", resp
    assert (resp.header("Content-Type") or "").startswith("text/plain"), resp
    text = resp.body.decode("utf-8", "replace")
    assert text.strip() and "\n" not in text.strip(), f"error body is not one line: {text!r}"


@pytest.mark.parametrize("vector", VECTORS, ids=[v.id for v in VECTORS])
def test_malformed_request_rejected(px, upstream, token, vector):
    c, resp = send_and_read(px.port, render(vector.template, upstream, token))
    try:
        assert_error_shape(resp, vector.expect)
        assert c.wait_closed(5), "the connection stayed open after a framing error"
    finally:
        c.close()
    if vector.head_error:
        assert upstream.requests_matching(token) == [], "a malformed request reached the upstream"
    assert px.alive()


def test_connect_without_a_tunnel_route_is_refused(px, upstream, token):
    """CONNECT passes only on a route that says `tunnel`; the standard routes do not."""
    before = upstream.connection_count
    with RawConnection(px.port) as c:
        c.send(f"CONNECT {upstream.authority} HTTP/1.1\r\nHost: {upstream.authority}\r\n\r\n".encode())
        resp = c.read_response()
    assert resp.status == 403, resp
    assert resp.header("X-Credproxy-Error") == "tunnel_denied", resp
    assert resp.body.strip(), "403 without a reason"
    assert upstream.connection_count == before, "CONNECT made the proxy dial the upstream"


def test_smuggling_attempt_does_not_reach_upstream(px, upstream, token):
    """CL.TE desync: were the body framed by Content-Length, the smuggled request would run."""
    smuggled = f"GET /echo/{token}-smuggled HTTP/1.1\r\nHost: {upstream.authority}\r\n\r\n"
    body = f"0\r\n\r\n{smuggled}".encode()
    payload = render(
        head(["Transfer-Encoding: chunked", f"Content-Length: {len(body)}"], body), upstream, token)
    c, resp = send_and_read(px.port, payload)
    c.close()
    assert resp.status == 400
    assert upstream.requests_matching(f"{token}-smuggled") == []


def test_valid_requests_still_work_after_the_table(px, upstream, token):
    with RawConnection(px.port) as c:
        r = c.request("POST", f"http://{upstream.authority}/echo/{token}",
                      [("Transfer-Encoding", "chunked")], b"4\r\nabcd\r\n0\r\n\r\n")
    assert r.status == 200, r
    assert r.json()["body_length"] == 4


def test_chunk_extensions_and_trailers_accepted(px, upstream, token):
    body = b"4;name=value\r\nabcd\r\n3\r\nefg\r\n0\r\nX-Trailer: t\r\n\r\n"
    with RawConnection(px.port) as c:
        r = c.request("POST", f"http://{upstream.authority}/echo/{token}",
                      [("Transfer-Encoding", "chunked")], body)
        assert r.status == 200, r
        assert r.json()["body_length"] == 7
        # framing stayed in sync: the connection still serves requests
        assert c.request("GET", f"http://{upstream.authority}/echo/{token}/2").status == 200

