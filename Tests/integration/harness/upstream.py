"""A real HTTP/1.1 upstream for the proxy to talk to: threaded, keep-alive, TLS or plain.

It reads requests off the wire itself (not through ``http.server``'s header normalisation) so tests
can see exactly which header lines arrived, in which order, with which bytes.

Endpoints (any method unless noted; every request body is read, streamed and hashed):
- ``/echo…``            JSON: method, raw target, version, headers as ``[[name, value], …]`` in
                        arrival order, the raw header lines, body length and sha256, SNI, ALPN.
- ``/upload[?stall=S]`` JSON: body length and sha256 (nothing else); with ``stall``, waits S
                        seconds before reading the body (event ``upload_stall``).
- ``/stream?bytes=N[&chunked=1][&block=K]``
                        N bytes from ``data.generate`` with Content-Length, or chunked.
- ``/hang?id=X``        never answers; ends when the peer disconnects (event ``hang_disconnect``)
                        or when the server stops (``hang_released``).
- ``/status/NNN``       answers NNN (no body for 1xx/204/304 and for HEAD).
- ``/redirect``         302 with ``Location: https://localhost:PORT/echo/redirected``.
- ``/slow-stream?id=X[&chunks=N][&size=S][&interval=T]``
                        N×S bytes with Content-Length, S at a time every T seconds; records
                        ``slow_disconnect`` (with bytes sent) if the peer goes away, else
                        ``slow_complete``.
- ``/hop-response``     a 200 carrying hop-by-hop response headers that a proxy must drop.
- ``/no-length``        a body delimited by closing the connection (no Content-Length, no chunks).
- ``/truncate?id=X``    promises 100000 bytes, sends 1000, closes (event ``truncated``).
- ``/gzip``             a gzip-encoded body with ``Content-Encoding: gzip`` (must arrive undecoded).

Any path prefix before the first segment that names an endpoint is ignored (``/api/echo/x`` is
``/echo/x``), so a route's path prefix can sit in front of every endpoint.
"""

from __future__ import annotations

import gzip
import hashlib
import http
import json
import select
import socket
import socketserver
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from . import data

MAX_LINE = 256 * 1024


ENDPOINTS = ("echo", "upload", "stream", "hang", "status", "redirect", "slow-stream",
             "hop-response", "no-length", "truncate", "gzip")


def _endpoint_path(path: str) -> str:
    """The endpoint part of a path: from the first segment naming an endpoint, so routes can put
    their own prefix first (``/bearer/echo/x`` is the echo endpoint)."""
    segments = path.split("/")
    for i, seg in enumerate(segments):
        if seg in ENDPOINTS:
            return "/" + "/".join(segments[i:])
    return path


class _ClientGone(Exception):
    pass


class _BadRequest(Exception):
    pass


@dataclass
class RecordedRequest:
    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    raw_header_lines: list[str]
    conn_id: int
    sni: str | None
    alpn: str | None
    time: float
    body_length: int | None = None
    body_sha256: str | None = None

    def header_values(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n.lower() == name.lower()]


@dataclass
class Event:
    kind: str
    tag: str | None
    time: float
    info: dict[str, Any] = field(default_factory=dict)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 4096
    block_on_close = False

    upstream: "UpstreamServer"


class UpstreamServer:
    def __init__(self, name: str, ssl_context: ssl.SSLContext | None = None, io_timeout: float = 60.0):
        self.name = name
        self.ssl_context = ssl_context
        self.io_timeout = io_timeout
        self.release = threading.Event()
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._conn_counter = 0
        self.requests: list[RecordedRequest] = []
        self.events: list[Event] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        if ssl_context is not None:
            def _sni(sslsock, server_name, _ctx):  # noqa: ANN001 - ssl callback signature
                try:
                    sslsock.itest_sni = server_name
                except AttributeError:
                    pass
                return None

            ssl_context.sni_callback = _sni

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> "UpstreamServer":
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.upstream = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
            name=f"upstream-{self.name}", daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.server_address[1]

    @property
    def scheme(self) -> str:
        return "https" if self.ssl_context is not None else "http"

    @property
    def authority(self) -> str:
        return f"localhost:{self.port}"

    def url(self, path: str) -> str:
        """The URL a client asks the proxy for (always http://, the proxy upgrades to TLS)."""
        return f"http://localhost:{self.port}{path}"

    # -- records ---------------------------------------------------------------------------------

    def _next_conn_id(self) -> int:
        with self._lock:
            self._conn_counter += 1
            return self._conn_counter

    @property
    def connection_count(self) -> int:
        with self._lock:
            return self._conn_counter

    def _record_request(self, req: RecordedRequest) -> None:
        with self._cond:
            self.requests.append(req)
            self._cond.notify_all()

    def record_event(self, kind: str, tag: str | None = None, **info: Any) -> None:
        with self._cond:
            self.events.append(Event(kind=kind, tag=tag, time=time.monotonic(), info=info))
            self._cond.notify_all()

    def requests_matching(self, needle: str) -> list[RecordedRequest]:
        """Requests whose raw target contains ``needle`` (tests put a unique token in paths)."""
        with self._lock:
            return [r for r in self.requests if needle in r.target]

    def find_events(self, kind: str | None = None, tag: str | None = None) -> list[Event]:
        with self._lock:
            return [
                e for e in self.events
                if (kind is None or e.kind == kind) and (tag is None or e.tag == tag)
            ]

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                self._cond.release()
                try:
                    ok = predicate()
                finally:
                    self._cond.acquire()
                if ok:
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.1))

    def wait_event(self, kind: str, tag: str | None = None, timeout: float = 10.0) -> Event | None:
        found: list[Event] = []

        def pred() -> bool:
            found[:] = self.find_events(kind, tag)
            return bool(found)

        return found[0] if self.wait_for(pred, timeout) else None


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def setup(self) -> None:
        self.up = self.server.upstream
        self.conn_id = self.up._next_conn_id()
        self.sock: socket.socket | None = None
        self.sni: str | None = None
        self.alpn: str | None = None
        raw: socket.socket = self.request
        raw.settimeout(self.up.io_timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.up.ssl_context is not None:
            try:
                s = self.up.ssl_context.wrap_socket(raw, server_side=True)
            except (ssl.SSLError, OSError) as e:
                self.up.record_event("tls_error", None, conn=self.conn_id, error=str(e))
                return
            self.sni = getattr(s, "itest_sni", None)
            self.alpn = s.selected_alpn_protocol()
            self.sock = s
        else:
            self.sock = raw
        self.rfile = self.sock.makefile("rb", buffering=64 * 1024)
        self.up.record_event("connect", None, conn=self.conn_id, sni=self.sni, alpn=self.alpn)

    def finish(self) -> None:
        if self.sock is None:
            return
        try:
            self.rfile.close()
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass
        self.up.record_event("close", None, conn=self.conn_id)

    def handle(self) -> None:
        if self.sock is None:
            return
        try:
            while True:
                req = self._read_head()
                if req is None:
                    return
                if not self._dispatch(req):
                    return
        except _BadRequest as e:
            self.up.record_event("bad_request", None, conn=self.conn_id, error=str(e))
            try:
                self._respond(400, [("Content-Type", "text/plain")], b"bad request\n", close=True)
            except OSError:
                pass
        except (_ClientGone, OSError, ssl.SSLError, ValueError) as e:
            self.up.record_event("conn_error", None, conn=self.conn_id, error=repr(e))

    # -- reading ---------------------------------------------------------------------------------

    def _readline(self) -> bytes:
        line = self.rfile.readline(MAX_LINE)
        if not line:
            raise _ClientGone("eof")
        if not line.endswith(b"\r\n"):
            raise _BadRequest(f"line without CRLF: {line[:80]!r}")
        return line[:-2]

    def _read_head(self) -> RecordedRequest | None:
        first = self.rfile.readline(MAX_LINE)
        if not first:
            return None
        if not first.endswith(b"\r\n"):
            raise _BadRequest(f"request line without CRLF: {first[:80]!r}")
        parts = first[:-2].split(b" ")
        if len(parts) != 3:
            raise _BadRequest(f"bad request line: {first[:80]!r}")
        method, target, version = (p.decode("latin-1") for p in parts)
        headers: list[tuple[str, str]] = []
        raw_lines: list[str] = []
        while True:
            line = self._readline()
            if line == b"":
                break
            raw_lines.append(line.decode("latin-1"))
            name, colon, value = line.partition(b":")
            if not colon:
                raise _BadRequest(f"header without colon: {line[:80]!r}")
            headers.append((name.decode("latin-1"), value.strip(b" \t").decode("latin-1")))
        req = RecordedRequest(
            method=method, target=target, version=version, headers=headers,
            raw_header_lines=raw_lines, conn_id=self.conn_id, sni=self.sni, alpn=self.alpn,
            time=time.monotonic(),
        )
        self.up._record_request(req)
        return req

    def _body_pieces(self, req: RecordedRequest) -> Iterator[bytes]:
        te = ",".join(req.header_values("Transfer-Encoding")).lower()
        if any(v.lower() == "100-continue" for v in req.header_values("Expect")):
            self.sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        if "chunked" in te:
            while True:
                size_line = self._readline()
                size_text = size_line.split(b";", 1)[0].strip()
                try:
                    size = int(size_text, 16)
                except ValueError:
                    raise _BadRequest(f"bad chunk size {size_line[:40]!r}") from None
                if size == 0:
                    while self._readline() != b"":
                        pass
                    return
                remaining = size
                while remaining:
                    piece = self.rfile.read(min(remaining, 1 << 20))
                    if not piece:
                        raise _ClientGone("eof in chunk")
                    remaining -= len(piece)
                    yield piece
                if self._readline() != b"":
                    raise _BadRequest("chunk not followed by CRLF")
        else:
            cls = req.header_values("Content-Length")
            if not cls:
                return
            remaining = int(cls[0])
            while remaining:
                piece = self.rfile.read(min(remaining, 1 << 20))
                if not piece:
                    raise _ClientGone("eof in body")
                remaining -= len(piece)
                yield piece

    def _consume_body(self, req: RecordedRequest) -> None:
        h = hashlib.sha256()
        n = 0
        for piece in self._body_pieces(req):
            h.update(piece)
            n += len(piece)
        req.body_length = n
        req.body_sha256 = h.hexdigest()

    # -- writing ---------------------------------------------------------------------------------

    def _head_bytes(self, status: int, headers: list[tuple[str, str]]) -> bytes:
        try:
            reason = http.HTTPStatus(status).phrase
        except ValueError:
            reason = "Status"
        lines = [f"HTTP/1.1 {status} {reason}"] + [f"{n}: {v}" for n, v in headers]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _respond(
        self, status: int, headers: list[tuple[str, str]], body: bytes, close: bool = False,
        head_only: bool = False,
    ) -> None:
        headers = list(headers)
        if status >= 200 and status not in (204, 304):
            headers.append(("Content-Length", str(len(body))))
        if close:
            headers.append(("Connection", "close"))
        out = self._head_bytes(status, headers)
        if not head_only and status >= 200 and status not in (204, 304):
            out += body
        self.sock.sendall(out)

    @staticmethod
    def _wants_close(req: RecordedRequest) -> bool:
        tokens = {t.strip().lower() for v in req.header_values("Connection") for t in v.split(",")}
        if req.version == "HTTP/1.0":
            return "keep-alive" not in tokens
        return "close" in tokens

    # -- endpoints -------------------------------------------------------------------------------

    def _dispatch(self, req: RecordedRequest) -> bool:
        """Answer one request; return whether the connection stays open."""
        split = urllib.parse.urlsplit(req.target)
        path = _endpoint_path(split.path)
        query = dict(urllib.parse.parse_qsl(split.query))
        close = self._wants_close(req)
        head = req.method == "HEAD"

        if path.startswith("/hang"):
            self._consume_body(req)
            return self._hang(query.get("id"))

        if path.startswith("/stream"):
            self._consume_body(req)
            self._stream(int(query.get("bytes", "0")), query.get("chunked") == "1",
                         int(query.get("block", str(data.BLOCK))), close, head)
            return not close

        if path.startswith("/slow-stream"):
            self._consume_body(req)
            return self._slow_stream(query, close)

        if path.startswith("/truncate"):
            self._consume_body(req)
            self.sock.sendall(self._head_bytes(200, [("Content-Type", "application/octet-stream"),
                                                     ("Content-Length", "100000")]))
            self.sock.sendall(b"x" * 1000)
            time.sleep(0.1)
            self.up.record_event("truncated", query.get("id"), conn=self.conn_id)
            return False

        if path.startswith("/no-length"):
            self._consume_body(req)
            body = b"no-length body, delimited by close\n" * 100
            self.sock.sendall(self._head_bytes(200, [("Content-Type", "text/plain"),
                                                     ("Connection", "close")]))
            if not head:
                self.sock.sendall(body)
            return False

        if path == "/upload" and "stall" in query:
            # Read nothing for a while: the proxy must stop reading its client, not buffer.
            self.up.record_event("upload_stall", query.get("id"), conn=self.conn_id)
            self.up.release.wait(float(query["stall"]))
        self._consume_body(req)

        if path.startswith("/echo"):
            payload = {
                "upstream": self.up.name,
                "method": req.method,
                "target": req.target,
                "path": req.target,
                "version": req.version,
                "headers": [[n, v] for n, v in req.headers],
                "raw_header_lines": req.raw_header_lines,
                "body_length": req.body_length,
                "body_sha256": req.body_sha256,
                "sni": self.sni,
                "alpn": self.alpn,
                "conn_id": self.conn_id,
            }
            body = json.dumps(payload).encode()
            self._respond(200, [("Content-Type", "application/json")], body, close, head)
        elif path == "/upload":
            body = json.dumps({"length": req.body_length, "sha256": req.body_sha256}).encode()
            self._respond(200, [("Content-Type", "application/json")], body, close, head)
        elif path.startswith("/status/"):
            status = int(path.split("/")[2])
            headers = [("Content-Type", "text/plain")]
            if status == 304:
                headers = [("ETag", '"itest-etag"')]
            self._respond(status, headers, f"status {status}\n".encode(), close, head)
        elif path == "/redirect":
            loc = f"{self.up.scheme}://localhost:{self.up.port}/echo/redirected/{query.get('id', 'x')}"
            self._respond(302, [("Location", loc), ("Content-Type", "text/plain")],
                          b"redirecting\n", close, head)
        elif path == "/gzip":
            body = gzip.compress(b"credproxy must not decode this\n" * 64, mtime=0)
            self._respond(200, [("Content-Type", "text/plain"), ("Content-Encoding", "gzip")],
                          body, close, head)
        elif path == "/hop-response":
            headers = [
                ("Content-Type", "text/plain"),
                ("Connection", "keep-alive, X-Resp-Drop"),
                ("X-Resp-Drop", "must-not-reach-client"),
                ("Keep-Alive", "timeout=30"),
                ("Proxy-Connection", "keep-alive"),
                ("Upgrade", "h2c"),
                ("Trailer", "X-Resp-Trailer"),
                ("X-Resp-Keep", "kept value"),
                ("Set-Cookie", "a=1; Path=/"),
                ("Set-Cookie", "b=2; Path=/"),
            ]
            self._respond(200, headers, b"hop\n", close, head)
        else:
            self._respond(404, [("Content-Type", "text/plain")], b"no such endpoint\n", close, head)
        return not close

    def _stream(self, total: int, chunked: bool, block: int, close: bool, head: bool) -> None:
        headers = [("Content-Type", "application/octet-stream")]
        if chunked:
            headers.append(("Transfer-Encoding", "chunked"))
        else:
            headers.append(("Content-Length", str(total)))
        if close:
            headers.append(("Connection", "close"))
        self.sock.sendall(self._head_bytes(200, headers))
        if head:
            return
        for piece in data.generate(total, block):
            if chunked:
                self.sock.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
            else:
                self.sock.sendall(piece)
        if chunked:
            self.sock.sendall(b"0\r\n\r\n")

    def _peer_closed(self, wait: float) -> bool:
        """True if the peer closed (or reset) the connection; waits up to ``wait`` seconds."""
        assert self.sock is not None
        r, _, _ = select.select([self.sock], [], [], wait)
        if not r:
            return False
        old = self.sock.gettimeout()
        try:
            self.sock.settimeout(0.05)
            got = self.sock.recv(1)
            return got == b""
        except (socket.timeout, ssl.SSLWantReadError):
            return False
        except (OSError, ssl.SSLError):
            return True
        finally:
            try:
                self.sock.settimeout(old)
            except OSError:
                pass

    def _hang(self, tag: str | None) -> bool:
        self.up.record_event("hang_start", tag, conn=self.conn_id)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if self.up.release.is_set():
                self.up.record_event("hang_released", tag, conn=self.conn_id)
                return False
            if self._peer_closed(0.05):
                self.up.record_event("hang_disconnect", tag, conn=self.conn_id)
                return False
        return False

    def _slow_stream(self, query: dict[str, str], close: bool) -> bool:
        tag = query.get("id")
        chunks = int(query.get("chunks", "200"))
        size = int(query.get("size", "16384"))
        interval = float(query.get("interval", "0.05"))
        headers = [("Content-Type", "application/octet-stream"), ("Content-Length", str(chunks * size))]
        if close:
            headers.append(("Connection", "close"))
        sent = 0
        self.up.record_event("slow_start", tag, conn=self.conn_id)
        try:
            self.sock.sendall(self._head_bytes(200, headers))
            pieces = data.generate(chunks * size, size)
            for piece in pieces:
                if self.up.release.is_set():
                    self.up.record_event("slow_released", tag, conn=self.conn_id, sent=sent)
                    return False
                self.sock.sendall(piece)
                sent += len(piece)
                time.sleep(interval)
        except (OSError, ssl.SSLError) as e:
            self.up.record_event("slow_disconnect", tag, conn=self.conn_id, sent=sent, error=repr(e))
            return False
        self.up.record_event("slow_complete", tag, conn=self.conn_id, sent=sent)
        return not close
