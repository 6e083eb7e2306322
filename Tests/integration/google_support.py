"""Shared pieces for the Google-credentials end-to-end tests (``test_google_*.py``).

- ``GoogleUpstream`` — an HTTPS upstream (test CA) that looks every bearer it receives up in the
  Google emulators and echoes what the token *is* (kind, scopes, audience, email, source,
  fingerprint), never the token itself. ``/protected…`` answers 401 ``invalid_token`` for a
  revoked/unknown/expired token; ``/always401…`` always does.
- Config builders (``creds``, ``route``, ``conf``) and ``google_env`` (an environment with no
  Google credentials anywhere unless a test adds them).
- ``fetch`` / ``fetch_many`` — clients through the proxy (raw sockets from the harness).
- Leak checks: every token the emulators issued, every refresh token / client secret / private key
  the tests created, must be absent from proxy stderr, error bodies and CLI output.
- Fixtures (import them into a test module): ``emu``, ``gup``, ``gtmp``, ``reset_emu``,
  ``tokens_never_logged``.
- ``RefreshScenario`` — the refresh-ahead scenario, started early in the session (see
  ``test_google_timed_refresh.py``) so its few seconds of waiting overlap other tests.
"""

from __future__ import annotations

import atexit
import hashlib
import http.server
import json
import os
import shutil
import socketserver
import ssl
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import pytest

from emulators import CLOUD_PLATFORM_SCOPE, Emulators, IssuedToken
from harness import secret_values
from harness.proxy import ProxyProcess, binary_path, clean_env
from harness.rawhttp import Response, get_via_proxy

CP = CLOUD_PLATFORM_SCOPE
RO = "https://www.googleapis.com/auth/devstorage.read_only"
USERINFO = "https://www.googleapis.com/auth/userinfo.email"
SERVERLESS = "X-Serverless-Authorization"


def fingerprint(token: str) -> str:
    """What the proxy logs instead of a token: the first 12 hex digits of its SHA-256."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]


# ---------------------------------------------------------------------------------------------
# The upstream
# ---------------------------------------------------------------------------------------------


@dataclass
class Seen:
    """One request as the upstream saw it."""

    method: str
    path: str
    headers: list[tuple[str, str]]
    authorization: dict | None
    serverless: dict | None
    status: int
    time: float = field(default_factory=time.monotonic)
    body_sha256: str = ""

    def header(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n.lower() == name.lower()]


class GoogleUpstream:
    """A threaded HTTPS server: every request is answered with JSON describing its bearer(s)."""

    def __init__(self, ssl_context: ssl.SSLContext | None, emulators: Iterable[Emulators]):
        self.ctx = ssl_context
        self.emulators = list(emulators)
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._httpd: socketserver.ThreadingTCPServer | None = None
        self._thread: threading.Thread | None = None

    # -- token facts -----------------------------------------------------------------------------

    def _lookup(self, token: str) -> tuple[Emulators, IssuedToken] | None:
        for e in self.emulators:
            rec = e.lookup(token)
            if rec is not None:
                return e, rec
        return None

    def describe(self, header_value: str | None) -> dict | None:
        """What a header's bearer token is. Never includes an issued token's value."""
        if header_value is None:
            return None
        scheme, _, tok = header_value.strip().partition(" ")
        tok = tok.strip()
        found = self._lookup(tok) if scheme.lower() == "bearer" and tok else None
        if found is None:
            # Not ours (e.g. the caller's own header): echo it, it is no emulator secret.
            return {"known": False, "raw": header_value}
        e, rec = found
        d: dict[str, Any] = {
            "known": True,
            "scheme": scheme,
            "kind": rec.kind,
            "scopes": list(rec.scopes),
            "audience": rec.audience,
            "email": rec.email,
            "client_id": rec.client_id,
            "source": rec.source,
            "server": rec.server,
            "delegates": list(rec.delegates),
            "source_identity": rec.source_identity,
            "fingerprint": fingerprint(tok),
            "expiry": rec.expiry,
            "expired": rec.expired(),
            "revoked": tok in e.registry._revoked,  # noqa: SLF001 - the emulator's own bookkeeping
        }
        if rec.kind == "id":
            try:
                e.verify_id_token(tok, audience=rec.audience)
                d["verified"] = True
            except ValueError as exc:
                d["verified"] = False
                d["verify_error"] = str(exc)
        return d

    # -- server ----------------------------------------------------------------------------------

    def start(self) -> "GoogleUpstream":
        upstream = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 60

            def log_message(self, *a):  # quiet
                pass

            def _serve(self):
                n = int(self.headers.get("Content-Length") or 0)
                data = self.rfile.read(n) if n else b""
                headers = [(k, v) for k, v in self.headers.items()]
                auth = upstream.describe(self.headers.get("Authorization"))
                sls = upstream.describe(self.headers.get(SERVERLESS))
                path = self.path
                status = 200
                extra: list[tuple[str, str]] = []
                if "/always401" in path:
                    status = 401
                elif "/protected" in path:
                    used = sls if (sls and sls.get("known")) else auth
                    if not used or not used.get("known") or used.get("revoked") or used.get("expired"):
                        status = 401
                if status == 401:
                    extra.append(("WWW-Authenticate", 'Bearer realm="itest", error="invalid_token", '
                                                      'error_description="The access token is invalid"'))
                seen = Seen(self.command, path, headers, auth, sls, status,
                            body_sha256=hashlib.sha256(data).hexdigest() if n else "")
                with upstream._lock:
                    upstream.seen.append(seen)
                body = json.dumps({"method": self.command, "path": path, "status": status,
                                   "authorization": auth, "serverless": sls,
                                   "authorization_headers": len(self.headers.get_all("Authorization") or [])}
                                  ).encode()
                self.send_response(status)
                for k, v in extra:
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _serve

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True
            request_queue_size = 1024
            block_on_close = False

            def server_bind(self):  # no reverse DNS
                socketserver.TCPServer.server_bind(self)
                self.server_name, self.server_port = self.server_address[:2]

            def get_request(self):
                sock, addr = self.socket.accept()
                if upstream.ctx is None:  # plain http (routes with `upstream http`)
                    return sock, addr
                return upstream.ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

            def handle_error(self, request, client_address):
                pass

        class TLSHandler(Handler):
            def setup(self):
                self.request.settimeout(15)
                self.request.do_handshake()
                super().setup()

        self._httpd = Server(("127.0.0.1", 0), TLSHandler if self.ctx is not None else Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="google-upstream", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    @property
    def port(self) -> int:
        assert self._httpd is not None
        return self._httpd.server_address[1]

    def url(self, path: str) -> str:
        """What a caller asks the proxy for: http://, the proxy goes out over https."""
        return f"http://localhost:{self.port}{path}"

    @property
    def origin(self) -> str:
        """The default OIDC audience for this upstream as the proxy sends to it."""
        return f"https://localhost:{self.port}"

    def matching(self, needle: str) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if needle in s.path]


# ---------------------------------------------------------------------------------------------
# Config and environment
# ---------------------------------------------------------------------------------------------


def block(kind: str, name: str, *lines: str) -> str:
    return f"{kind} {name} {{\n" + "".join(f"  {ln}\n" for ln in lines if ln) + "}\n"


def creds(name: str, *lines: str) -> str:
    return block("credentials", name, *lines)


def route(pattern: str, *lines: str) -> str:
    return block("route", pattern, *lines)


def conf(ca: Any, *blocks: str) -> str:
    return (
        "# credproxy Google-credentials test config\n"
        "listen 127.0.0.1:0\n"
        f"ca-file {ca}\n"
        "connect-timeout 5s\n"
        "request-timeout 30s\n\n" + "\n".join(blocks)
    )


def google_env(base: Path, closed_port: int, **extra: str) -> dict[str, str]:
    """No Google credentials anywhere: empty HOME and CLOUDSDK_CONFIG, no
    GOOGLE_APPLICATION_CREDENTIALS, metadata host a closed port. ``extra`` overrides."""
    home = base / "home-empty"
    sdk = base / "gcloud-empty"
    home.mkdir(parents=True, exist_ok=True)
    sdk.mkdir(parents=True, exist_ok=True)
    env = {
        "HOME": str(home),
        "CLOUDSDK_CONFIG": str(sdk),
        "GOOGLE_APPLICATION_CREDENTIALS": "",
        "GCE_METADATA_HOST": f"127.0.0.1:{closed_port}",
    }
    env.update(extra)
    return env


# ---------------------------------------------------------------------------------------------
# Clients
# ---------------------------------------------------------------------------------------------


def fetch(px: ProxyProcess, url: str, headers: Iterable[tuple[str, str]] = (), method: str = "GET",
          body: bytes | None = None, timeout: float = 30.0) -> Response:
    return get_via_proxy(px.port, url, list(headers), method=method, body=body, timeout=timeout)


def fetch_json(px: ProxyProcess, url: str, headers: Iterable[tuple[str, str]] = (), **kw) -> dict:
    r = fetch(px, url, headers, **kw)
    assert r.status == 200, f"{url}: {r!r}\nproxy stderr tail:\n{px.stderr_text()[-3000:]}"
    return r.json()


def fetch_many(px: ProxyProcess, urls: list[str], timeout: float = 30.0) -> list[Response | BaseException]:
    """All at once (one thread each, released together); results in order."""
    results: list[Response | BaseException | None] = [None] * len(urls)
    barrier = threading.Barrier(len(urls))

    def one(i: int, url: str) -> None:
        try:
            barrier.wait(timeout=timeout)
            results[i] = fetch(px, url, timeout=timeout)
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            results[i] = exc

    threads = [threading.Thread(target=one, args=(i, u), daemon=True) for i, u in enumerate(urls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout + 10)
    return results  # type: ignore[return-value]


def mints(emu: Emulators, *, kind: str | None = None, email: str | None = None, client_id: str | None = None,
          audience: str | None = None, source: str | None = None) -> list[IssuedToken]:
    out = emu.registry.issued(kind=kind, audience=audience, source=source, email=email)
    if client_id is not None:
        out = [r for r in out if r.client_id == client_id]
    return out


def wait_until(pred: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def non_loopback_ip() -> str | None:
    """This machine's outgoing IPv4 address (not loopback), or None."""
    import socket
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect(("10.255.255.255", 1))  # no packet is sent; just picks the outgoing address
        ip = s.getsockname()[0]
    except OSError:
        return None
    finally:
        s.close()
    return None if ip.startswith("127.") or ip == "0.0.0.0" else ip


def assert_error(r: Response, status: int, code: str | tuple[str, ...], *needles: str) -> None:
    codes = (code,) if isinstance(code, str) else code
    assert r.status == status, r
    assert r.error_code in codes, r
    for n in needles:
        assert n in r.text, f"{n!r} not in error body {r.text!r}"


# ---------------------------------------------------------------------------------------------
# Leak checks
# ---------------------------------------------------------------------------------------------

_EXTRA_SECRETS: dict[str, str] = {}


def track_secret(label: str, value: str) -> None:
    """A secret the tests created (refresh token, client secret, private-key bytes)."""
    if value:
        _EXTRA_SECRETS[label] = value


def track_key_file(path: str | os.PathLike) -> None:
    """Track the private key of a key file (a 40-char piece of its base64 body)."""
    info = json.loads(Path(path).read_text())
    for p in (info, info.get("source_credentials") or {}):
        pem = p.get("private_key")
        if pem:
            body = "".join(ln for ln in pem.splitlines() if not ln.startswith("-----"))
            track_secret(f"private key of {p.get('client_email')}", body[100:140])
        if p.get("refresh_token"):
            track_secret(f"refresh token of {p.get('client_id')}", p["refresh_token"])
        if p.get("client_secret"):
            track_secret(f"client secret of {p.get('client_id')}", p["client_secret"])


def secret_table(*emus: Emulators) -> dict[str, str]:
    """Every issued token (and its distinctive part) plus every tracked secret."""
    table = dict(_EXTRA_SECRETS)
    for e in emus:
        for i, rec in enumerate(e.registry.issued()):
            label = f"{rec.kind} token #{i} ({rec.source}, {rec.email or rec.client_id})"
            table[label] = rec.token
            if rec.kind == "id":
                table[label + " signature"] = rec.token.rsplit(".", 1)[-1]
            elif rec.token.startswith("ya29."):
                table[label + " body"] = rec.token[5:]
    return table


def find_token_leaks(text: str, *emus: Emulators) -> list[str]:
    return [label for label, value in secret_table(*emus).items() if value and value in text]


def assert_no_leaks(what: str, text: str, *emus: Emulators) -> None:
    leaks = find_token_leaks(text, *emus)
    assert not leaks, f"secrets found in {what}: {leaks}"


# ---------------------------------------------------------------------------------------------
# Fixtures (import into test modules)
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gtmp(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("google")


@pytest.fixture(scope="module")
def emu(gtmp):
    e = Emulators(gtmp / "emu").start()
    yield e
    e.stop()


@pytest.fixture(scope="module")
def gup(pki, emu):
    up = GoogleUpstream(pki.server.server_context(), [emu]).start()
    yield up
    up.stop()


@pytest.fixture(autouse=True)
def reset_emu(request):
    """Every test starts with healthy emulators (issued tokens are kept for the leak checks)."""
    if "emu" in request.fixturenames:
        e = request.getfixturevalue("emu")
        for s in e.servers:
            s.reset()
    yield


@pytest.fixture(scope="module", autouse=True)
def tokens_never_logged(secret_guard, emu):
    """At the module's end, hand every issued token and created secret to the harness's
    SecretGuard, which then greps the stderr/stdout of every proxy the module started."""
    yield
    for label, value in secret_table(emu).items():
        secret_guard.add_secret(label, value)


@pytest.fixture
def genv(tmp_path, closed_port):
    """``genv(**overrides)`` → a no-Google-credentials environment for a proxy or CLI run."""
    return lambda **kw: google_env(tmp_path, closed_port, **kw)


def new_sa(emu: Emulators, name: str | None = None, **kw):
    sa = emu.new_service_account(name, **kw)
    track_key_file(sa.path)
    return sa


def new_user(emu: Emulators, **kw):
    user = emu.new_authorized_user(**kw)
    track_secret(f"refresh token of {user.client_id}", user.refresh_token)
    track_secret(f"client secret of {user.client_id}", user.client_secret)
    return user


# ---------------------------------------------------------------------------------------------
# Refresh-ahead scenario (long: see test_google_timed_refresh.py)
# ---------------------------------------------------------------------------------------------

# Spec constants: tokens are never injected within 30 s of expiry; an explicit `refresh-window` is
# honoured as written (only the default is capped at a quarter of the lifetime). A token is served
# from its refresh window while exp - window <= now < exp - 30: lifetime 45 s with
# refresh-window 40s gives the stale-serve interval [5 s, 15 s) after the mint.
REFRESH_LIFETIME = 45
REFRESH_WINDOW = 40
REFRESH_AT = REFRESH_LIFETIME - REFRESH_WINDOW  # 105 s after the mint
REFRESH_STALE_END = REFRESH_LIFETIME - 30  # 110 s after the mint


class RefreshScenario:
    """Its own emulators, upstream and proxy; the first token is minted as soon as it starts."""

    _instance: "RefreshScenario | None" = None
    _lock = threading.Lock()

    @classmethod
    def get(cls, pki, closed_port: int) -> "RefreshScenario":
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls(pki, closed_port)
                atexit.register(cls._instance.stop)
            return cls._instance

    def __init__(self, pki, closed_port: int):
        self.dir = Path(tempfile.mkdtemp(prefix="credproxy-refresh-"))
        self.emu = Emulators(self.dir / "emu").start()
        self.emu.token.set_lifetime(REFRESH_LIFETIME)
        self.up = GoogleUpstream(pki.server.server_context(), [self.emu]).start()
        self.sa = new_sa(self.emu, f"refresh-sa@{self.emu.project_id}.iam.gserviceaccount.com")
        text = conf(
            pki.ca_file,
            creds("ahead", f"source key-file {self.sa.path}", f"refresh-window {REFRESH_WINDOW}s"),
            route(f"localhost:{self.up.port}", "auth OAuth2", "credentials ahead"),
        )
        cfg = self.dir / "proxy.conf"
        cfg.write_text(text)
        env = clean_env({**secret_values.proxy_env(), **google_env(self.dir, closed_port)})
        self.px = ProxyProcess(binary_path(), cfg, self.dir, env, name="refresh-ahead")
        self.error: str | None = None
        self.first: dict | None = None
        self.first_mint: IssuedToken | None = None
        try:
            self.px.start(timeout=10)
            r = fetch(self.px, self.up.url("/first"), timeout=30)
            if r.status != 200:
                self.error = f"first request failed: {r!r}\n{self.px.stderr_text()[-2000:]}"
            else:
                self.first = r.json()["authorization"]
                self.first_mint = self.emu.registry.issued()[0]
        except Exception as exc:  # noqa: BLE001 - reported by the test
            self.error = f"could not start the refresh-ahead scenario: {exc}"

    def stop(self) -> None:
        try:
            self.px.stop()
        finally:
            self.up.stop()
            self.emu.stop()
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module", autouse=True)
def start_refresh_scenario_early(request):
    """Kept for the modules that import it. The refresh scenario now takes seconds (an explicit
    refresh-window is honoured as written), so the timed test starts its own clock."""
    yield
