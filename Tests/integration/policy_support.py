"""Shared pieces for the policy / shared-egress end-to-end tests (``test_policy_*.py``).

- Client secrets (passwords, tokens), the admin token and the reload secrets, random per session,
  handed to the proxy through environment variables (``POLICY_ENV``) and registered with the
  harness's ``SecretGuard`` by the ``policy_secrets`` fixture (import it into every test module).
- Clients: raw requests with ``Proxy-Authorization`` (``basic``/``bearer``), ``curl`` through the
  proxy, CONNECT tunnels with TLS inside.
- The audit log (``read_audit``), the admin listener (``admin_port``, ``admin_get``), a strict
  Prometheus text-format parser (``parse_metrics``), a PNG checker (``check_png``) and the
  Chromium finder for the status-page screenshot.
"""

from __future__ import annotations

import base64
import json
import re
import secrets as _secrets
import shutil
import socket
import ssl
import struct
import subprocess
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import pytest

from harness import secret_values
from harness.proxy import ProxyProcess, clean_env
from harness.rawhttp import RawConnection, Response, get_via_proxy

_SUFFIX = _secrets.token_hex(10)

ALICE_PASSWORD = f"itest-alice-pw-{_SUFFIX}"
BOB_TOKEN = f"itest-bob-token-{_SUFFIX}"
CAROL_PASSWORD = f"itest-carol-pw-{_SUFFIX}"
ADMIN_TOKEN = f"itest-admin-token-{_SUFFIX}"
QUERY_SECRET = f"itest-query-secret-{_SUFFIX}"
RELOAD_SECRETS = [f"itest-reload-{i}-{_SUFFIX}" for i in range(6)]

POLICY_ENV = {
    "ITEST_ALICE_PW": ALICE_PASSWORD,
    "ITEST_BOB_TOKEN": BOB_TOKEN,
    "ITEST_CAROL_PW": CAROL_PASSWORD,
    "ITEST_ADMIN_TOKEN": ADMIN_TOKEN,
    **{f"ITEST_RELOAD_{i}": s for i, s in enumerate(RELOAD_SECRETS)},
}

# Every secret of these tests, in every form it could leak in (the harness's own are added).
POLICY_SECRETS = {
    "alice password": ALICE_PASSWORD,
    "alice basic credentials": base64.b64encode(f"alice:{ALICE_PASSWORD}".encode()).decode(),
    "bob token": BOB_TOKEN,
    "carol password": CAROL_PASSWORD,
    "carol basic credentials": base64.b64encode(f"carol:{CAROL_PASSWORD}".encode()).decode(),
    "admin token": ADMIN_TOKEN,
    "query secret": QUERY_SECRET,
    **{f"reload secret {i}": s for i, s in enumerate(RELOAD_SECRETS)},
}


def all_secrets() -> dict[str, str]:
    return {**secret_values.ALL, **POLICY_SECRETS}


def find_secrets(text: str) -> list[str]:
    """Labels of every secret (harness's and ours) found in ``text``; never the values."""
    return [label for label, value in all_secrets().items() if value and value in text]


@pytest.fixture(scope="module", autouse=True)
def policy_secrets(secret_guard):
    """Register this module's secrets with the harness's SecretGuard (it greps every proxy's
    stderr/stdout at the module's end)."""
    for label, value in POLICY_SECRETS.items():
        secret_guard.add_secret(label, value)
    yield


# ---------------------------------------------------------------------------------------------
# Clients
# ---------------------------------------------------------------------------------------------


def basic(name: str, password: str) -> tuple[str, str]:
    return ("Proxy-Authorization", "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode())


def bearer(token: str) -> tuple[str, str]:
    return ("Proxy-Authorization", f"Bearer {token}")


def fetch(px: ProxyProcess | int, url: str, headers: Iterable[tuple[str, str]] = (),
          method: str = "GET", body: bytes | None = None, timeout: float = 15.0) -> Response:
    port = px if isinstance(px, int) else px.port
    return get_via_proxy(port, url, list(headers), method=method, body=body, timeout=timeout)


def assert_refused(r: Response, status: int, code: str) -> None:
    assert r.status == status and r.error_code == code, f"expected {status} {code}, got {r!r}"


def echo_headers(r: Response) -> list[tuple[str, str]]:
    assert r.status == 200, r
    return [(n, v) for n, v in r.json()["headers"]]


def header_values(headers: list[tuple[str, str]], name: str) -> list[str]:
    return [v for n, v in headers if n.lower() == name.lower()]


@dataclass
class CurlResult:
    returncode: int
    status: int
    body: bytes
    stderr: str

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.body)

    def __repr__(self) -> str:
        return (f"<curl rc={self.returncode} status={self.status} body={self.body[:300]!r} "
                f"stderr={self.stderr[-500:]!r}>")


def curl(*args: str, timeout: float = 20.0) -> CurlResult:
    """Run curl with a clean environment; the status is the last response's (0 if none)."""
    cmd = ["curl", "-sS", "--max-time", str(int(timeout - 5) if timeout > 10 else 5),
           "-w", "\n%{http_code}", *args]
    p = subprocess.run(cmd, capture_output=True, env=clean_env(), timeout=timeout,
                       stdin=subprocess.DEVNULL)
    out = p.stdout
    body, _, code = out.rpartition(b"\n")
    try:
        status = int(code.strip() or b"0")
    except ValueError:
        status = 0
    return CurlResult(p.returncode, status, body, p.stderr.decode("utf-8", "replace"))


def connect_tunnel(proxy_port: int, authority: str, headers: Iterable[tuple[str, str]] = (),
                   timeout: float = 10.0) -> tuple[RawConnection, Response]:
    """Send CONNECT and read the proxy's answer head; the connection is left open for the
    caller (it carries the tunnel when the status is 200)."""
    c = RawConnection(proxy_port, timeout=timeout)
    hs = [("Host", authority), *headers]
    c.send_request("CONNECT", authority, hs)
    resp = c.read_head(timeout)
    if resp.status != 200:
        resp.body = b"".join(c.iter_body(resp, "CONNECT", timeout))
    return c, resp


def tls_over(conn: RawConnection, ctx: ssl.SSLContext, server_hostname: str = "localhost",
             timeout: float = 10.0) -> RawConnection:
    """Start TLS on an established tunnel (nothing may be buffered ahead of the handshake)."""
    assert not conn.buf, f"bytes after the CONNECT answer, before TLS: {bytes(conn.buf[:100])!r}"
    conn.sock.settimeout(timeout)
    conn.sock = ctx.wrap_socket(conn.sock, server_hostname=server_hostname)
    return conn


def port_refuses(port: int, host: str = "127.0.0.1") -> bool:
    """True when a TCP connect to the port is refused right now."""
    try:
        s = socket.create_connection((host, port), timeout=1.0)
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    s.close()
    return False


def wait_until(pred: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


# ---------------------------------------------------------------------------------------------
# Audit log
# ---------------------------------------------------------------------------------------------

AUDIT_FIELDS = ("time", "client", "source", "method", "scheme", "host", "port", "path", "route",
                "decision", "reason", "credential", "token_fingerprint", "status", "bytes_in",
                "bytes_out", "duration_ms")


def read_audit(path: Path, at_least: int = 0, timeout: float = 5.0) -> list[dict]:
    """The JSON lines of an audit log; waits until there are ``at_least`` complete lines."""
    lines: list[str] = []

    def ready() -> bool:
        nonlocal lines
        try:
            text = path.read_text()
        except FileNotFoundError:
            return False
        lines = [ln for ln in text.split("\n")[:-1] if ln.strip()]  # complete lines only
        return len(lines) >= at_least

    wait_until(ready, timeout)
    out = []
    for ln in lines:
        try:
            out.append(json.loads(ln))
        except json.JSONDecodeError as e:
            raise AssertionError(f"audit line is not JSON ({e}): {ln!r}") from None
    return out


def audit_for(records: list[dict], needle: str) -> list[dict]:
    """Records whose path contains ``needle`` (tests put a unique token in paths)."""
    return [r for r in records if needle in (r.get("path") or "")]


# ---------------------------------------------------------------------------------------------
# Admin listener
# ---------------------------------------------------------------------------------------------

ADMIN_RE = re.compile(r"credproxy: admin listening on (\S+):(\d+)\s*$", re.MULTILINE)


def admin_port(px: ProxyProcess, timeout: float = 5.0) -> int:
    m = px.wait_for_stderr(ADMIN_RE, timeout=timeout)
    assert m, ("no 'credproxy: admin listening on ADDR:PORT' line on stderr; stderr:\n"
               + px.stderr_text()[-2000:])
    assert m.group(1) == "127.0.0.1", m.group(0)
    return int(m.group(2))


def admin_get(port: int, path: str, token: str | None = None, method: str = "GET",
              extra: Iterable[tuple[str, str]] = (), timeout: float = 10.0) -> Response:
    headers = [("Host", f"127.0.0.1:{port}"), ("Connection", "close"), *extra]
    if token is not None:
        headers.append(("Authorization", f"Bearer {token}"))
    with RawConnection(port, timeout=timeout) as c:
        return c.request(method, path, headers, timeout=timeout)


# ---------------------------------------------------------------------------------------------
# Prometheus text format 0.0.4
# ---------------------------------------------------------------------------------------------

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL_VALUE = r'"(?:[^"\\\n]|\\\\|\\"|\\n)*"'
_LABEL = rf"[a-zA-Z_][a-zA-Z0-9_]*={_LABEL_VALUE}"
_VALUE = r"(?:[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|[+-]?Inf|NaN)"
SAMPLE_RE = re.compile(rf"^({_NAME})(?:\{{((?:{_LABEL})(?:,{_LABEL})*,?)?\}})? ({_VALUE})(?: -?\d+)?$")
LABEL_RE = re.compile(rf"([a-zA-Z_][a-zA-Z0-9_]*)=({_LABEL_VALUE})")


@dataclass
class Metrics:
    help: dict[str, str] = field(default_factory=dict)
    type: dict[str, str] = field(default_factory=dict)
    # (name, sorted label tuple) -> value, in order of appearance
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = field(default_factory=dict)
    order: list[tuple[str, tuple[tuple[str, str], ...]]] = field(default_factory=list)

    def get(self, name: str, **labels: str) -> float | None:
        return self.samples.get((name, tuple(sorted(labels.items()))))

    def series(self, name: str) -> list[tuple[dict[str, str], float]]:
        return [(dict(k[1]), v) for k, v in self.samples.items() if k[0] == name]

    def total(self, name: str, **match: str) -> float:
        """Sum over the series of ``name`` whose labels include ``match``."""
        return sum(v for labels, v in self.series(name)
                   if all(labels.get(k) == want for k, want in match.items()))


def _unescape(v: str) -> str:
    return v[1:-1].replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")


def _family(name: str, types: dict[str, str]) -> str | None:
    if name in types:
        return name
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and types.get(name[: -len(suffix)]) in ("histogram", "summary"):
            return name[: -len(suffix)]
    return None


def parse_metrics(text: str) -> Metrics:
    """Parse strictly: every line is a comment (``# HELP``/``# TYPE``), blank, or
    ``name{labels} value``; every sample belongs to a family with HELP and TYPE given before it."""
    m = Metrics()
    assert text.endswith("\n"), "the exposition must end with a newline"
    for n, line in enumerate(text.split("\n")[:-1], 1):
        if line == "":
            continue
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[1] == "HELP":
                assert re.fullmatch(_NAME, parts[2]), f"line {n}: bad HELP name: {line!r}"
                assert parts[2] not in m.help, f"line {n}: second HELP for {parts[2]}"
                m.help[parts[2]] = parts[3] if len(parts) > 3 else ""
            elif len(parts) >= 3 and parts[1] == "TYPE":
                assert len(parts) == 4 and parts[3] in (
                    "counter", "gauge", "histogram", "summary", "untyped"), f"line {n}: {line!r}"
                assert parts[2] not in m.type, f"line {n}: second TYPE for {parts[2]}"
                m.type[parts[2]] = parts[3]
            continue
        match = SAMPLE_RE.match(line)
        assert match, f"line {n} is not `name{{labels}} value`: {line!r}"
        name, labels_text, value = match.groups()
        labels = tuple(sorted((k, _unescape(v)) for k, v in LABEL_RE.findall(labels_text or "")))
        fam = _family(name, m.type)
        assert fam, f"line {n}: sample {name} without a # TYPE before it"
        assert fam in m.help, f"line {n}: family {fam} has no # HELP"
        key = (name, labels)
        assert key not in m.samples, f"line {n}: duplicate series {line!r}"
        m.samples[key] = float(value)
        m.order.append(key)
    return m


def check_histogram(m: Metrics, name: str) -> None:
    """Buckets cumulative and sorted by ``le``, ending in +Inf equal to ``_count``; ``_sum``≥0."""
    assert m.type.get(name) == "histogram", m.type.get(name)
    groups: dict[tuple, list[tuple[float, float]]] = {}
    for key in m.order:
        if key[0] != name + "_bucket":
            continue
        labels = dict(key[1])
        le = labels.pop("le")
        rest = tuple(sorted(labels.items()))
        groups.setdefault(rest, []).append((float(le.replace("+Inf", "inf")), m.samples[key]))
    assert groups, f"{name} has no buckets"
    for rest, buckets in groups.items():
        les = [b[0] for b in buckets]
        assert les == sorted(les), f"{name}{rest}: le not increasing: {les}"
        assert les[-1] == float("inf"), f"{name}{rest}: no +Inf bucket"
        counts = [b[1] for b in buckets]
        assert all(a <= b for a, b in zip(counts, counts[1:])), f"{name}{rest}: not cumulative: {counts}"
        count = m.samples.get((name + "_count", rest))
        total = m.samples.get((name + "_sum", rest))
        assert count is not None and total is not None, f"{name}{rest}: missing _count or _sum"
        assert counts[-1] == count, f"{name}{rest}: +Inf bucket {counts[-1]} != _count {count}"
        assert total >= 0


# ---------------------------------------------------------------------------------------------
# Chromium and PNG
# ---------------------------------------------------------------------------------------------


def chromium_binary() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def chromium(args: list[str], profile: Path, timeout: float = 60.0) -> subprocess.CompletedProcess:
    binary = chromium_binary()
    assert binary
    cmd = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--no-first-run", "--no-default-browser-check", "--disable-extensions",
           f"--user-data-dir={profile}", *args]
    env = clean_env({"HOME": str(profile)})
    return subprocess.run(cmd, capture_output=True, timeout=timeout, env=env,
                          stdin=subprocess.DEVNULL)


@dataclass
class PNGInfo:
    width: int
    height: int
    bit_depth: int
    color_type: int
    distinct_colors: int
    non_background_fraction: float
    # The rightmost column (on the sampled rows) holding a pixel that is not the background: a page
    # wider than the window reaches the last column.
    content_right: int = -1


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def check_png(data: bytes, sample_rows: int = 120) -> PNGInfo:
    """Validate a PNG (signature, chunk CRCs, IHDR, IDAT zlib stream, scanline filters) and
    measure how much of it is not the background colour (decoding every scanline, counting
    colours on ``sample_rows`` rows spread over the image)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    pos = 8
    ihdr = None
    idat = bytearray()
    seen_iend = False
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        ctype = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert zlib.crc32(ctype + body) & 0xFFFFFFFF == crc, f"bad CRC in {ctype!r} chunk"
        if ctype == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif ctype == b"IDAT":
            idat += body
        elif ctype == b"IEND":
            seen_iend = True
            break
        pos += 12 + length
    assert ihdr, "no IHDR"
    assert seen_iend, "no IEND"
    width, height, depth, color, _comp, _filt, interlace = ihdr
    assert depth == 8 and color in (2, 6) and interlace == 0, f"unexpected PNG format {ihdr}"
    bpp = 3 if color == 2 else 4
    raw = zlib.decompress(bytes(idat))
    stride = width * bpp
    assert len(raw) == height * (stride + 1), f"IDAT holds {len(raw)} bytes, expected {height * (stride + 1)}"
    wanted = {int(i * (height - 1) / max(1, sample_rows - 1)) for i in range(sample_rows)}
    prev = bytearray(stride)
    colours: dict[bytes, int] = {}
    sampled_lines: list[bytes] = []
    sampled = 0
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        if f == 0:
            pass
        elif f == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif f == 2:
            line = bytearray((a + b) & 0xFF for a, b in zip(line, prev))
        elif f == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
        elif f == 4:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                upleft = prev[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + _paeth(left, prev[i], upleft)) & 0xFF
        else:
            raise AssertionError(f"row {y}: unknown filter type {f}")
        if y in wanted:
            for x in range(0, stride, bpp):
                px = bytes(line[x:x + bpp])
                colours[px] = colours.get(px, 0) + 1
            sampled += width
            sampled_lines.append(bytes(line))
        prev = line
    background = max(colours.values())
    bg = max(colours, key=colours.get)
    right = -1
    for line in sampled_lines:
        for x in range(width - 1, right, -1):
            if line[x * bpp:(x + 1) * bpp] != bg:
                right = x
                break
    return PNGInfo(width, height, depth, color, len(colours), 1 - background / sampled, right)
