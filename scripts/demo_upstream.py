#!/usr/bin/env python3
"""The demo's HTTPS upstream: reports what a request carried, never the token itself.

For each request it answers with the path, which header carried a bearer token, the token's
fingerprint (first 12 hex of SHA-256, as credproxy logs it) and what the local Google emulator
says it minted that token for (kind, scopes or audience, identity).
Usage: demo_upstream.py CERT KEY EMULATOR_CONTROL_URL  (prints its port, then serves)
"""
import hashlib
import http.server
import json
import ssl
import sys
import urllib.parse
import urllib.request

cert, key, control = sys.argv[1], sys.argv[2], sys.argv[3]


def describe(token):
    url = control.rstrip("/") + "/lookup?token=" + urllib.parse.quote(token, safe="")
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            rec = json.load(r)
    except Exception:
        return {"known_to_emulator": False}
    keep = ("kind", "source", "email", "scopes", "audience", "delegates", "source_identity")
    return {k: rec[k] for k in keep if rec.get(k)}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        report = {"path": self.path}
        for name in ("Authorization", "X-Serverless-Authorization"):
            value = self.headers.get(name, "")
            if not value:
                continue
            token = value[len("Bearer "):] if value.startswith("Bearer ") else value
            seen = {"fingerprint": hashlib.sha256(token.encode()).hexdigest()[:12]}
            minted = describe(token)
            seen.update(minted if minted.get("known_to_emulator", True) else
                        {"note": "not minted by Google: the caller's own header, passed through"})
            report[name] = seen
        body = (json.dumps(report, indent=2) + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
server.socket = ctx.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
