"""A raw-socket HTTP/1.1 client: send exact bytes, read responses strictly, see when the peer closes.

Nothing here normalises anything: headers come back as ``[(name, value), …]`` in wire order.
"""

from __future__ import annotations

import hashlib
import json
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import Iterable, Iterator

DEFAULT_TIMEOUT = 15.0


class ResponseError(Exception):
    """The peer sent something that is not a well-formed HTTP/1.1 response, or went away."""


@dataclass
class Response:
    version: str
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    raw_head: bytes = b""
    # Interim (1xx) responses that came before this one.
    interim: list["Response"] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v
        return None

    def header_all(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n.lower() == name.lower()]

    def has_header(self, name: str) -> bool:
        return self.header(name) is not None

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.body)

    @property
    def error_code(self) -> str | None:
        return self.header("X-Credproxy-Error")

    def __repr__(self) -> str:  # short, for assertion messages
        body = self.body[:300]
        return f"<Response {self.status} {self.reason!r} headers={self.headers!r} body={body!r}>"


def build_request(
    method: str,
    target: str,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes | None = None,
    version: str = "HTTP/1.1",
) -> bytes:
    """Bytes of one request; adds Content-Length for a body unless a framing header is given."""
    headers = list(headers)
    names = {n.lower() for n, _ in headers}
    if body is not None and "content-length" not in names and "transfer-encoding" not in names:
        headers.append(("Content-Length", str(len(body))))
    head = f"{method} {target} {version}\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers) + "\r\n"
    return head.encode("latin-1") + (body or b"")


def chunked(pieces: Iterable[bytes]) -> Iterator[bytes]:
    for p in pieces:
        if p:
            yield b"%x\r\n" % len(p) + p + b"\r\n"
    yield b"0\r\n\r\n"


class RawConnection:
    """One client connection to ``host:port`` (plain, or TLS when ``tls_context`` is given)."""

    def __init__(
        self,
        port: int,
        host: str = "127.0.0.1",
        timeout: float = DEFAULT_TIMEOUT,
        tls_context: ssl.SSLContext | None = None,
        server_hostname: str = "localhost",
    ):
        self.timeout = timeout
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls_context is not None:
            sock = tls_context.wrap_socket(sock, server_hostname=server_hostname)
        self.sock = sock
        self.buf = bytearray()
        self.eof = False

    # -- context manager -------------------------------------------------------------------------

    def __enter__(self) -> "RawConnection":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def abort(self) -> None:
        """Close with RST (SO_LINGER 0): an abrupt client disconnect."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        except OSError:
            pass
        self.close()

    # -- sending ---------------------------------------------------------------------------------

    def send(self, payload: bytes) -> None:
        self.sock.sendall(payload)

    def send_request(self, method: str, target: str, headers: Iterable[tuple[str, str]] = (),
                     body: bytes | None = None, version: str = "HTTP/1.1") -> None:
        self.send(build_request(method, target, headers, body, version))

    def send_iter(self, pieces: Iterable[bytes]) -> int:
        n = 0
        for p in pieces:
            self.sock.sendall(p)
            n += len(p)
        return n

    # -- receiving -------------------------------------------------------------------------------

    def _fill(self, deadline: float) -> bool:
        """Read more into the buffer; False on EOF/reset."""
        if self.eof:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("timed out waiting for the peer")
        self.sock.settimeout(min(remaining, self.timeout))
        try:
            chunk = self.sock.recv(256 * 1024)
        except socket.timeout:
            raise TimeoutError("timed out waiting for the peer") from None
        except (ConnectionResetError, BrokenPipeError, ssl.SSLEOFError):
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def _read_until(self, marker: bytes, deadline: float, limit: int = 1 << 20) -> bytes:
        while True:
            i = self.buf.find(marker)
            if i >= 0:
                out = bytes(self.buf[: i + len(marker)])
                del self.buf[: i + len(marker)]
                return out
            if len(self.buf) > limit:
                raise ResponseError(f"no {marker!r} within {limit} bytes")
            if not self._fill(deadline):
                raise ResponseError(f"connection closed before {marker!r}; got {bytes(self.buf[:200])!r}")

    def _read_exact(self, n: int, deadline: float) -> bytes:
        while len(self.buf) < n:
            if not self._fill(deadline):
                raise ResponseError(f"connection closed with {n - len(self.buf)} body bytes missing")
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def _iter_exact(self, n: int, deadline: float) -> Iterator[bytes]:
        while n:
            if not self.buf and not self._fill(deadline):
                raise ResponseError(f"connection closed with {n} body bytes missing")
            take = min(n, len(self.buf))
            out = bytes(self.buf[:take])
            del self.buf[:take]
            n -= take
            yield out

    def read_head(self, timeout: float | None = None) -> Response:
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        interim: list[Response] = []
        while True:
            raw = self._read_until(b"\r\n\r\n", deadline)
            lines = raw[:-4].split(b"\r\n")
            status_line = lines[0].decode("latin-1")
            parts = status_line.split(" ", 2)
            if len(parts) < 2 or not parts[0].startswith("HTTP/"):
                raise ResponseError(f"bad status line {status_line!r}")
            headers = []
            for line in lines[1:]:
                name, colon, value = line.partition(b":")
                if not colon:
                    raise ResponseError(f"bad header line {line!r}")
                headers.append((name.decode("latin-1"), value.strip(b" \t").decode("latin-1")))
            resp = Response(
                version=parts[0], status=int(parts[1]), reason=parts[2] if len(parts) > 2 else "",
                headers=headers, raw_head=raw,
            )
            if 100 <= resp.status < 200 and resp.status != 101:
                interim.append(resp)
                continue
            resp.interim = interim
            return resp

    def iter_body(self, resp: Response, request_method: str = "GET",
                  timeout: float | None = None) -> Iterator[bytes]:
        """Yield the body of ``resp`` piece by piece (for huge bodies)."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        if request_method == "HEAD" or resp.status in (204, 304) or 100 <= resp.status < 200:
            return
        te = ",".join(resp.header_all("Transfer-Encoding")).lower()
        if "chunked" in te:
            while True:
                line = self._read_until(b"\r\n", deadline)
                size = int(line[:-2].split(b";")[0].strip(), 16)
                if size == 0:
                    while self._read_until(b"\r\n", deadline) != b"\r\n":
                        pass
                    return
                yield from self._iter_exact(size, deadline)
                if self._read_exact(2, deadline) != b"\r\n":
                    raise ResponseError("chunk data not followed by CRLF")
            return
        cls = resp.header_all("Content-Length")
        if cls:
            if len(set(cls)) != 1:
                raise ResponseError(f"conflicting Content-Length {cls}")
            yield from self._iter_exact(int(cls[0]), deadline)
            return
        # Close-delimited.
        while True:
            if self.buf:
                out = bytes(self.buf)
                self.buf.clear()
                yield out
            if not self._fill(deadline):
                return

    def read_response(self, request_method: str = "GET", timeout: float | None = None) -> Response:
        resp = self.read_head(timeout)
        resp.body = b"".join(self.iter_body(resp, request_method, timeout))
        return resp

    def request(self, method: str, target: str, headers: Iterable[tuple[str, str]] = (),
                body: bytes | None = None, version: str = "HTTP/1.1",
                timeout: float | None = None) -> Response:
        self.send_request(method, target, headers, body, version)
        return self.read_response(method, timeout)

    def wait_closed(self, timeout: float = 5.0) -> bool:
        """True once the peer has closed (EOF or reset), discarding any bytes that still arrive."""
        deadline = time.monotonic() + timeout
        self.buf.clear()
        while True:
            try:
                if not self._fill(deadline):
                    return True
            except TimeoutError:
                return False
            self.buf.clear()

    def is_open_after(self, seconds: float) -> bool:
        """True if the peer has neither closed nor sent anything within ``seconds``."""
        deadline = time.monotonic() + seconds
        try:
            if not self._fill(deadline):
                return False
        except TimeoutError:
            return True
        return True  # it sent bytes: open (the caller can look at self.buf)


def get_via_proxy(proxy_port: int, url: str, headers: Iterable[tuple[str, str]] = (),
                  method: str = "GET", body: bytes | None = None,
                  timeout: float = DEFAULT_TIMEOUT) -> Response:
    """One absolute-form request through the proxy on a fresh connection."""
    with RawConnection(proxy_port, timeout=timeout) as c:
        return c.request(method, url, headers, body, timeout=timeout)


def hash_body(conn: RawConnection, resp: Response, method: str = "GET",
              timeout: float | None = None) -> tuple[int, str]:
    h = hashlib.sha256()
    n = 0
    for piece in conn.iter_body(resp, method, timeout):
        h.update(piece)
        n += len(piece)
    return n, h.hexdigest()

