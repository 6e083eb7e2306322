"""A Cloud Storage stand-in for ``storage.googleapis.com``: ``gcp-storage-emulator`` (plain http,
in memory, in this process) behind a small TLS front.

The front is an HTTP-level reverse proxy: it terminates TLS with a certificate for
``storage.googleapis.com`` from the test PKI (credproxy trusts it through ``ca-file``), records
every request head it sees, forwards the request to the emulator and returns the answer.

The emulator builds ``Location`` / ``mediaLink`` / ``selfLink`` URLs as ``http://<Host>``; the
front passes ``Host: storage.googleapis.com`` through and rewrites ``http://storage.googleapis.com``
to ``https://…`` in the ``Location`` header and in JSON bodies, so an SDK follows those URLs back to
the default https endpoint (through the proxy) as it would against the real service.

A record never holds a token's value: the ``Authorization`` header is reduced at once to what the
token *is* (looked up in the Google emulators) and whether it was a credproxy placeholder.
"""

from __future__ import annotations

import hashlib
import http.client
import http.server
import logging
import socketserver
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

HOST = "storage.googleapis.com"
PLACEHOLDER = "credproxy-placeholder."

_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer",
        "upgrade", "expect", "content-length"}


def _fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:12]


@dataclass
class FrontRecord:
    """One request as the front saw it (no token values)."""

    method: str
    path: str
    host: str
    header_names: list[str]
    authorization_count: int
    auth: dict | None          # what the bearer is, per the emulators; None when absent
    placeholder_headers: list[str]  # names of headers that carried a placeholder
    body_length: int
    status: int = 0
    time: float = field(default_factory=time.monotonic)


class StorageEmulator:
    """``gcp-storage-emulator`` in memory on 127.0.0.1, a free port."""

    def __init__(self) -> None:
        from gcp_storage_emulator.server import create_server

        logging.getLogger("gcp_storage_emulator").setLevel(logging.WARNING)
        self.server = create_server("127.0.0.1", 0, in_memory=True)

    def start(self) -> "StorageEmulator":
        self.server.start()
        return self

    @property
    def port(self) -> int:
        return self.server._api._httpd.server_address[1]  # noqa: SLF001 - no public accessor

    def stop(self) -> None:
        self.server.stop()


class GCSFront:
    """Threaded TLS front; ``records`` lists every request in arrival order."""

    def __init__(self, ssl_context: ssl.SSLContext, backend_port: int, emulators: Iterable[Any]):
        self.ctx = ssl_context
        self.backend_port = backend_port
        self.emulators = list(emulators)
        self.records: list[FrontRecord] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._backend_lock = threading.Lock()  # the emulator serves one request at a time
        self._httpd: socketserver.ThreadingTCPServer | None = None

    def describe(self, value: str | None) -> dict | None:
        if value is None:
            return None
        scheme, _, tok = value.strip().partition(" ")
        tok = tok.strip()
        if tok.startswith(PLACEHOLDER):
            return {"known": False, "placeholder": True, "scheme": scheme}
        for e in self.emulators:
            rec = e.lookup(tok) if scheme.lower() == "bearer" and tok else None
            if rec is not None:
                return {"known": True, "placeholder": False, "scheme": scheme, "kind": rec.kind,
                        "scopes": sorted(rec.scopes), "email": rec.email,
                        "fingerprint": _fingerprint(tok), "expired": rec.expired()}
        return {"known": False, "placeholder": False, "scheme": scheme, "fingerprint": _fingerprint(tok)}

    def start(self) -> "GCSFront":
        front = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 60

            def log_message(self, *a):  # quiet
                pass

            def setup(self):
                self.request.settimeout(30)
                self.request.do_handshake()
                super().setup()

            def _read_body(self) -> bytes:
                if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                    parts = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            break
                        parts.append(self.rfile.read(size))
                        self.rfile.readline()
                    return b"".join(parts)
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def _serve(self):
                body = self._read_body()
                items = list(self.headers.items())
                rec = FrontRecord(
                    method=self.command, path=self.path, host=self.headers.get("Host") or "",
                    header_names=[k for k, _ in items],
                    authorization_count=len(self.headers.get_all("Authorization") or []),
                    auth=front.describe(self.headers.get("Authorization")),
                    placeholder_headers=[k for k, v in items if PLACEHOLDER in v],
                    body_length=len(body),
                )
                with front._lock:
                    front.records.append(rec)
                fwd = [(k, v) for k, v in items if k.lower() not in _HOP]
                try:
                    with front._backend_lock:
                        conn = http.client.HTTPConnection("127.0.0.1", front.backend_port, timeout=60)
                        conn.putrequest(self.command, self.path, skip_host=True,
                                        skip_accept_encoding=True)
                        for k, v in fwd:
                            conn.putheader(k, v)
                        conn.putheader("Content-Length", str(len(body)))
                        conn.endheaders(body)
                        resp = conn.getresponse()
                        data = resp.read()
                        status, reason, rheaders = resp.status, resp.reason, resp.getheaders()
                        conn.close()
                except Exception as exc:  # noqa: BLE001 - reported by the test
                    with front._lock:
                        front.errors.append(f"{self.command} {self.path}: {exc!r}")
                    status, reason, rheaders, data = 502, "Bad Gateway", [], b"front: backend failed"
                rec.status = status
                ctype = ""
                out_headers = []
                for k, v in rheaders:
                    kl = k.lower()
                    if kl in _HOP or kl in ("date", "server"):
                        continue
                    if kl == "content-type":
                        ctype = v
                    if kl == "location":
                        v = v.replace(f"http://{HOST}", f"https://{HOST}")
                    out_headers.append((k, v))
                if "json" in ctype:
                    data = data.replace(f"http://{HOST}".encode(), f"https://{HOST}".encode())
                self.send_response(status, reason)
                for k, v in out_headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _serve

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True
            block_on_close = False

            def server_bind(self):  # no reverse DNS
                socketserver.TCPServer.server_bind(self)
                self.server_name, self.server_port = self.server_address[:2]

            def get_request(self):
                sock, addr = self.socket.accept()
                return front.ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

            def handle_error(self, request, client_address):
                pass

        self._httpd = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                         name="gcs-front", daemon=True).start()
        return self

    @property
    def port(self) -> int:
        assert self._httpd is not None
        return self._httpd.server_address[1]

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def since(self, n: int) -> list[FrontRecord]:
        with self._lock:
            return list(self.records[n:])

    def count(self) -> int:
        with self._lock:
            return len(self.records)
