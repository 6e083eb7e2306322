"""A plain-HTTP upstream that misbehaves on purpose, for the security tests.

Every request line and its ``Authorization``/``X-Api-Key`` values are recorded, so a test can prove
that a request never arrived (smuggling) or what the credential headers were. Behaviour by path:

- ``/early/NNN``      answers NNN at once, without reading the request body, then closes.
- ``/echo…``          reads the body, answers 200 with a JSON body describing the request.
- ``/h101``           an unrequested ``101 Switching Protocols`` followed by raw bytes.
- ``/clte``           ``Content-Length`` together with ``Transfer-Encoding: chunked``.
- ``/twocl``          two different ``Content-Length`` fields.
- ``/conncl``         ``Connection: content-length`` and a 5-byte body (framing named hop-by-hop).
- ``/readclose``      reads the whole body, then closes without answering.
- ``/sleep/S``        waits S seconds, then answers 200.
- anything else       200 ``ok``.
"""

from __future__ import annotations

import json
import socket
import socketserver
import threading
import time


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class HostileUpstream:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.credentials: list[tuple[str, str, str]] = []  # (request line, header name, value)
        self.lock = threading.Lock()
        owner = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:  # noqa: D401 - socketserver API
                owner._serve(self.request)

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> "HostileUpstream":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def seen(self, needle: str) -> list[str]:
        with self.lock:
            return [line for line in self.lines if needle in line]

    # -- one connection ---------------------------------------------------------------------

    def _serve(self, sock: socket.socket) -> None:
        sock.settimeout(30)
        f = sock.makefile("rb")
        try:
            while True:
                line = f.readline(65536)
                if not line:
                    return
                request_line = line.decode("latin-1").rstrip("\r\n")
                headers: list[tuple[str, str]] = []
                while True:
                    h = f.readline(65536)
                    if h in (b"\r\n", b"\n", b""):
                        break
                    name, _, value = h.decode("latin-1").partition(":")
                    headers.append((name.strip(), value.strip()))
                with self.lock:
                    self.lines.append(request_line)
                    for name, value in headers:
                        if name.lower() in ("authorization", "x-api-key", "x_api_key"):
                            self.credentials.append((request_line, name, value))
                if not self._answer(sock, f, request_line, headers):
                    return
        except (OSError, ValueError):
            return
        finally:
            try:
                sock.close()
            except OSError:
                pass

    @staticmethod
    def _body(f, headers) -> bytes:
        lower = {n.lower(): v for n, v in headers}
        if "content-length" in lower:
            return f.read(int(lower["content-length"]))
        if lower.get("transfer-encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(f.readline().split(b";")[0], 16)
                if size == 0:
                    while f.readline() not in (b"\r\n", b""):
                        pass
                    return out
                out += f.read(size)
                f.readline()
        return b""

    def _answer(self, sock: socket.socket, f, request_line: str, headers) -> bool:
        parts = request_line.split(" ")
        target = parts[1] if len(parts) > 1 else "/"
        path = target.split("?")[0]
        if path.startswith("/early/"):
            status = int(path.split("/")[2])
            extra = "Location: /elsewhere\r\n" if 300 <= status < 400 else ""
            sock.sendall(f"HTTP/1.1 {status} Early\r\n{extra}Content-Length: 0\r\n\r\n".encode())
            time.sleep(0.5)  # let the proxy relay it before the close
            return False
        if path == "/h101":
            sock.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n"
                         b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nINJECT!")
            time.sleep(0.5)
            return False
        if path == "/clte":
            self._body(f, headers)
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"a\r\n0123456789\r\n0\r\n\r\n")
            return True
        if path == "/twocl":
            self._body(f, headers)
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!")
            return True
        if path == "/conncl":
            self._body(f, headers)
            sock.sendall(b"HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: 5\r\n\r\nhello")
            return True
        if path == "/readclose":
            self._body(f, headers)
            return False
        if path.startswith("/sleep/"):
            self._body(f, headers)
            time.sleep(float(path.split("/")[2]))
        body = self._body(f, headers)
        payload = json.dumps({"line": request_line, "headers": headers, "body_length": len(body)}).encode()
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                     + str(len(payload)).encode() + b"\r\n\r\n" + payload)
        return True
