"""The HTTP plumbing the OIDC issuer and GitHub API emulators share: a threaded server on
127.0.0.1 with a backlog large enough for a cold burst, and a handler that answers JSON."""

from __future__ import annotations

import http.server
import json
import threading
from typing import Any, Dict


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512  # read when the socket starts listening: a cold burst must not overflow it


class JSONHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def send_json(self, status: int, body: Dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def serve(handler: type) -> Server:
    """Starts ``handler`` on a free port of 127.0.0.1 in a daemon thread."""
    server = Server(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def stop(server: Server | None) -> None:
    if server:
        server.shutdown()
        server.server_close()
