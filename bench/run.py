#!/usr/bin/env python3
"""credproxy's benchmark: every comparison measured in one run, on loopback, printed as one table.

Run it through scripts/bench (which installs the tools and builds the release binary). Directly:

    python3 bench/run.py --bin .build/release/credproxy [--quick] [--keep]

Workloads (see bench/README.md): 1 small keep-alive requests vs nginx as a forward proxy and vs the
upstream hit directly; 2 the same with a minted OAuth2 token; 3 plain-HTTP forwarding vs squid and
tinyproxy; 4 a cold burst of 1,000 first requests for one OIDC audience; 5 streaming 1 GiB up and
down vs direct curl; 6 10,000 idle keep-alive clients; 7 keep-alive GETs inside an intercepted
CONNECT tunnel vs the plain path; 8 a CONNECT and TLS handshake per request vs mitmproxy; 9 the
leaf cache: 1,000 new hosts, then the same again. Progress goes to stderr; the Markdown table
goes to stdout and to bench/last-result.md.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
LUA = os.path.join(HERE, "absolute.lua")
CLIENTS = os.path.join(HERE, "clients.py")
EMULATOR_DIR = os.path.join(REPO, "Tests", "integration")

STATIC_TOKEN = "bench-static-token-0123456789abcdef"
OAUTH_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
OIDC_AUDIENCE = "https://bench.example"
SMALL_BODY = ("credproxy benchmark: a small static response body of exactly one hundred bytes."
              .ljust(99, ".") + "\n")
assert len(SMALL_BODY) == 100
MiB = 1 << 20
T0 = time.monotonic()


def log(msg: str) -> None:
    sys.stderr.write(f"[bench {time.monotonic() - T0:6.1f}s] {msg}\n")
    sys.stderr.flush()


class BenchError(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------------


class Procs:
    """Every server this run starts, each in its own process group; all stopped at exit."""

    def __init__(self, workdir: str) -> None:
        self.workdir = workdir
        self.live: List[subprocess.Popen] = []
        self.problems: List[str] = []
        self.pidfile = os.path.join(workdir, "pids")

    def start(self, name: str, argv: List[str], env=None, cwd=None, stdin=None, stdout=None) -> subprocess.Popen:
        logf = open(os.path.join(self.workdir, f"{name}.log"), "ab")
        p = subprocess.Popen(
            argv, env=env, cwd=cwd, stdin=stdin if stdin is not None else subprocess.DEVNULL,
            stdout=stdout if stdout is not None else logf, stderr=logf, start_new_session=True)
        p.bench_name = name  # type: ignore[attr-defined]
        p.bench_log = logf.name  # type: ignore[attr-defined]
        self.live.append(p)
        self._write_pids()
        return p

    def _write_pids(self) -> None:
        """Live process-group ids, for scripts/bench's backstop trap."""
        with open(self.pidfile + ".tmp", "w") as fh:
            fh.write("".join(f"{p.pid}\n" for p in self.live))
        os.replace(self.pidfile + ".tmp", self.pidfile)

    def stop(self, p: subprocess.Popen, grace: float = 5.0) -> None:
        """SIGTERM to the process group, SIGKILL after `grace` s. A credproxy that exits badly (or
        late) is remembered in self.problems: the table reports it."""
        name = getattr(p, "bench_name", "?")
        if name.startswith("credproxy"):
            grace = max(grace, 10.0)
        if p.poll() is not None:
            if name.startswith("credproxy") and p in self.live:
                self.problems.append(f"`{name}` had exited by itself ({describe_rc(p.returncode)}) before "
                                     f"the benchmark stopped it: {tail(p.bench_log, 3).replace(chr(10), ' / ')}")
        else:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                p.wait(grace)
                if name.startswith("credproxy") and p.returncode != 0:
                    self.problems.append(f"`{name}` exited with {describe_rc(p.returncode)} on SIGTERM: "
                                         f"{tail(p.bench_log, 3).replace(chr(10), ' / ')}")
            except subprocess.TimeoutExpired:
                if name.startswith("credproxy"):
                    self.problems.append(f"`{name}` did not exit within {grace:g} s of SIGTERM (killed)")
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(5)
        if p in self.live:
            self.live.remove(p)
            self._write_pids()

    def stop_all(self) -> None:
        for p in reversed(list(self.live)):
            self.stop(p)


def describe_rc(rc: Optional[int]) -> str:
    if rc is not None and rc < 0:
        try:
            return f"signal {signal.Signals(-rc).name}"
        except ValueError:
            return f"signal {-rc}"
    return f"exit status {rc}"


def tail(path: str, n: int = 15) -> str:
    try:
        with open(path, "rb") as fh:
            return "\n".join(fh.read().decode("utf-8", "replace").splitlines()[-n:])
    except OSError:
        return ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: Optional[subprocess.Popen] = None, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise BenchError(f"{proc.bench_name} exited ({proc.returncode}):\n{tail(proc.bench_log)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise BenchError(f"nothing listens on 127.0.0.1:{port} after {timeout:g} s")


def run(argv: List[str], timeout: float = 60, check: bool = True, **kw) -> subprocess.CompletedProcess:
    cp = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    if check and cp.returncode != 0:
        raise BenchError(f"{' '.join(argv)} failed ({cp.returncode}): {cp.stderr.strip()[-800:]}")
    return cp


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _tree(pid: int) -> List[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/children") as fh:
                    todo.extend(int(c) for c in fh.read().split())
        except OSError:
            pass
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, its threads and its descendants (live and reaped)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in _tree(pid):
        try:
            with open(f"/proc/{p}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
        except (OSError, IndexError, ValueError):
            pass
    return total / tick


def system_busy_seconds() -> float:
    """CPU time all cores spent busy since boot (/proc/stat: everything but idle and iowait)."""
    with open("/proc/stat") as fh:
        f = [int(x) for x in fh.readline().split()[1:9]]
    return (f[0] + f[1] + f[2] + f[5] + f[6] + f[7]) / os.sysconf("SC_CLK_TCK")


class Interference:
    """CPU used during measured runs by processes that are not part of the benchmark."""

    upstream_pid: Optional[int] = None
    worst = 0.0  # cores
    where = ""

    @classmethod
    def record(cls, name: str, foreign_cpu_s: float, seconds: float) -> None:
        cores = max(0.0, foreign_cpu_s / seconds)
        if cores > cls.worst:
            cls.worst, cls.where = cores, name


class Accounted:
    """Charges a measured step's CPU to the benchmark (children reaped meanwhile, the upstream, the
    given process trees) and records what the rest of the machine used meanwhile."""

    def __init__(self, name: str, pids: List[int]) -> None:
        self.name, self.pids = name, [p for p in pids if p]
        self.enabled = True
        self.foreign_cores = 0.0

    def _ours(self) -> float:
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        me = resource.getrusage(resource.RUSAGE_SELF)
        up = cpu_seconds(Interference.upstream_pid) if Interference.upstream_pid else 0.0
        return (ru.ru_utime + ru.ru_stime + me.ru_utime + me.ru_stime + up
                + sum(cpu_seconds(p) for p in self.pids))

    def __enter__(self) -> "Accounted":
        self.t0, self.busy0, self.ours0 = time.monotonic(), system_busy_seconds(), self._ours()
        return self

    def __exit__(self, *exc) -> None:
        seconds = time.monotonic() - self.t0
        if self.enabled and seconds > 0.2:
            foreign = (system_busy_seconds() - self.busy0) - (self._ours() - self.ours0)
            self.foreign_cores = max(0.0, foreign / seconds)
            Interference.record(self.name, foreign, seconds)


class RssSampler:
    """Samples VmRSS of one process every 50 ms in a thread; .peak in KiB."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, rss_kib(self.pid))
            except OSError:
                return
            self._stop.wait(0.05)

    def __enter__(self) -> "RssSampler":
        self.peak = rss_kib(self.pid)
        self._t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, rss_kib(self.pid))


# ---------------------------------------------------------------------------------------------
# Setup: certificates, files, servers
# ---------------------------------------------------------------------------------------------


def make_certs(d: str) -> Dict[str, str]:
    ca_key, ca, key, csr, crt, ext = (os.path.join(d, n) for n in
                                      ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem", "san.ext"))
    run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", ca_key, "-out", ca, "-days", "2", "-subj", "/CN=credproxy bench CA",
         "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
    run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", key, "-out", csr, "-subj", "/CN=localhost"])
    with open(ext, "w") as fh:
        fh.write("subjectAltName=DNS:localhost,DNS:*.bench.test,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                 "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n")
    run(["openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
         "-out", crt, "-days", "2", "-extfile", ext])
    return {"ca": ca, "cert": crt, "key": key}


def nginx_common(d: str, name: str, workers: int = 2) -> str:
    user = "user root;\n" if os.geteuid() == 0 else ""
    return f"""{user}worker_processes {workers};
daemon off;
pid {d}/{name}.pid;
error_log {d}/{name}-error.log warn;
worker_rlimit_nofile 20000;
events {{ worker_connections 16000; }}
"""


def upstream_nginx_conf(d: str, shm: str, certs, tls_port: int, plain_port: int) -> str:
    locations = f"""
    location = /small {{ default_type text/plain; return 200 "{SMALL_BODY[:-1]}\\n"; }}
    location = /auth-echo {{ default_type text/plain; return 200 "$http_authorization"; }}
    location = /large {{ alias {shm}/large.bin; default_type application/octet-stream; }}
    location /upload/ {{ root {shm}/dav; dav_methods PUT; create_full_put_path on; }}
"""
    return nginx_common(d, "upstream") + f"""http {{
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_timeout 600s;
  keepalive_requests 100000000;
  client_max_body_size 0;
  client_body_buffer_size 1m;
  client_body_temp_path {shm}/body;
  http2_max_concurrent_streams 256;
  server {{
    listen 127.0.0.1:{tls_port} ssl http2;
    ssl_certificate {certs['cert']};
    ssl_certificate_key {certs['key']};
    ssl_protocols TLSv1.2 TLSv1.3;
    {locations}
  }}
  server {{
    listen 127.0.0.1:{plain_port};
    {locations}
  }}
}}
"""


def forward_nginx_conf(d: str, certs, listen_port: int, tls_port: int, workers: int = 2,
                       name: str = "nginx-proxy") -> str:
    """nginx as the forward proxy teams use today: static header, verified TLS, upstream keepalive."""
    return nginx_common(d, name, workers) + f"""http {{
  access_log off;
  keepalive_timeout 600s;
  keepalive_requests 100000000;
  upstream bench_upstream {{
    server 127.0.0.1:{tls_port};
    keepalive 64;
    keepalive_requests 100000000;
    keepalive_timeout 600s;
  }}
  server {{
    listen 127.0.0.1:{listen_port};
    server_name localhost;
    location / {{
      proxy_pass https://bench_upstream;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_set_header Authorization "Bearer {STATIC_TOKEN}";
      proxy_ssl_verify on;
      proxy_ssl_trusted_certificate {certs['ca']};
      proxy_ssl_name localhost;
      proxy_ssl_server_name on;
      proxy_ssl_protocols TLSv1.2 TLSv1.3;
      proxy_ssl_session_reuse on;
    }}
  }}
}}
"""


def squid_conf(d: str, port: int) -> str:
    return f"""http_port 127.0.0.1:{port}
http_access allow localhost
http_access deny all
cache deny all
cache_mem 0 MB
access_log none
cache_store_log none
cache_log {d}/cache.log
pid_filename {d}/squid.pid
coredump_dir {d}
max_filedescriptors 16384
shutdown_lifetime 0 seconds
client_persistent_connections on
server_persistent_connections on
visible_hostname credproxy-bench
dns_nameservers 127.0.0.1
"""


def tinyproxy_conf(d: str, port: int) -> str:
    return f"""Port {port}
Listen 127.0.0.1
Timeout 600
MaxClients 1000
LogFile "{d}/tinyproxy.log"
LogLevel Critical
PidFile "{d}/tinyproxy.pid"
Allow 127.0.0.1
DisableViaHeader Yes
"""


def credproxy_conf(ca: str, tls_port: int, plain_port: int, idle_timeout: Optional[str] = None,
                   auth: str = f"auth bearer env:BENCH_TOKEN", credentials: str = "",
                   upstream_http: Optional[str] = None) -> str:
    idle = f"idle-timeout {idle_timeout}\n" if idle_timeout else ""
    if upstream_http:
        auth = f"upstream-http {upstream_http}\n  {auth}"
    return f"""listen 127.0.0.1:0
ca-file {ca}
access-log off
{idle}{credentials}
route localhost:{tls_port} {{
  connect-to 127.0.0.1:{tls_port}
  {auth}
}}
route 127.0.0.1:{plain_port} {{
  upstream http
  auth none
}}
"""


@dataclass
class Credproxy:
    proc: subprocess.Popen
    port: int

    @property
    def pid(self) -> int:
        return self.proc.pid


def start_credproxy(procs: Procs, binary: str, name: str, conf_text: str, d: str, env_extra=None) -> Credproxy:
    path = os.path.join(d, f"{name}.conf")
    with open(path, "w") as fh:
        fh.write(conf_text)
    env = dict(os.environ, BENCH_TOKEN=STATIC_TOKEN)
    for k in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        env.pop(k, None)
    env.update(env_extra or {})
    p = procs.start(name, [binary, "serve", "--config", path], env=env)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if p.poll() is not None:
            raise BenchError(f"credproxy ({name}) exited ({p.returncode}):\n{tail(p.bench_log)}")
        m = re.search(r"listening on 127\.0\.0\.1:(\d+)", tail(p.bench_log, 50))
        if m:
            return Credproxy(p, int(m.group(1)))
        time.sleep(0.05)
    raise BenchError(f"credproxy ({name}) did not report its port:\n{tail(p.bench_log)}")


def check_config(binary: str, d: str, name: str, conf_text: str) -> Optional[str]:
    """None when `credproxy check` accepts the config, else the reason (its first error line)."""
    path = os.path.join(d, f"{name}.conf")
    with open(path, "w") as fh:
        fh.write(conf_text)
    cp = run([binary, "check", "--config", path], check=False, timeout=30,
             env=dict(os.environ, BENCH_TOKEN=STATIC_TOKEN))
    if cp.returncode == 0:
        return None
    text = (cp.stderr.strip() or cp.stdout.strip() or f"exit {cp.returncode}").splitlines()
    first = next((ln for ln in text if "error" in ln.lower() or ": " in ln), text[0])
    first = first.replace(path, f"{name}.conf")
    return f"`credproxy check` exit {cp.returncode}: {first.strip()}"


def http_get(proxy_port: Optional[int], url: str, ca: Optional[str] = None, timeout: float = 10) -> tuple:
    """(status, body) for a GET sent absolute-form to a proxy, or directly (https) when no proxy."""
    if proxy_port is not None:
        c = http.client.HTTPConnection("127.0.0.1", proxy_port, timeout=timeout)
        c.request("GET", url)
    else:
        u = urllib.request.urlparse(url)
        ctx = ssl.create_default_context(cafile=ca)
        c = http.client.HTTPSConnection("127.0.0.1", u.port, timeout=timeout, context=ctx)
        c.request("GET", u.path, headers={"Host": u.netloc})
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, body


# ---------------------------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------------------------


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: Dict[str, int]
    cpu_us_per_req: Optional[float]
    foreign_cores: float = 0.0  # CPU other processes used meanwhile, in cores

    def error_text(self) -> str:
        bad = {k: v for k, v in self.errors.items() if v}
        return ", ".join(f"{v} {k}" for k, v in bad.items())


@dataclass
class Contender:
    name: str
    url: str  # where wrk connects
    target: str  # the request target on the request line
    host: str
    pid: Optional[int] = None  # process tree whose CPU is charged to this contender
    results: List[WrkResult] = field(default_factory=list)
    floor: Optional[List[str]] = None  # set for the libcurl floor: its argv without CONNS SECONDS
    procs: int = 1  # floor processes run side by side (one per loop in --load)

    @property
    def best(self) -> Optional[WrkResult]:
        return max(self.results, key=lambda r: r.rps) if self.results else None


def run_floor(c: Contender, seconds: float, conns: int, account: bool) -> WrkResult:
    """bench/floor/curl_floor: libcurl alone, no proxy; its own CPU per request (getrusage over
    the counted window, after its 1 s warm-up). With procs > 1, that many side by side, each with
    its share of the connections: requests and CPU summed, latencies of the slowest."""
    share = [conns // c.procs + (1 if i < conns % c.procs else 0) for i in range(c.procs)]
    with Accounted(c.name if account else "", []) as acc:
        acc.enabled = account
        ps = [subprocess.Popen(c.floor[:4] + [str(n), f"{seconds:g}"] + c.floor[4:], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True) for n in share]
        outs = [p.communicate(timeout=seconds + 60) for p in ps]
    js = []
    for p, (out, err) in zip(ps, outs):
        if p.returncode != 0 or not out.strip():
            raise BenchError(f"{c.name} failed ({p.returncode}): {err.strip()[-400:]}")
        js.append(json.loads(out.strip().splitlines()[-1]))
    n = sum(j["requests"] for j in js)
    rps = sum(j["rps"] for j in js)
    cpu = sum(j["cpu_s"] for j in js) * 1e6 / n
    return WrkResult(rps, max(j["p50_us"] for j in js) / 1000, max(j["p99_us"] for j in js) / 1000, n, {}, cpu,
                     acc.foreign_cores)


def wrk(c: Contender, seconds: float, conns: int = 50, account: bool = True) -> WrkResult:
    if c.floor:
        # The floor's own warm-up is its first second; a separate warm-up run would only add time.
        return run_floor(c, seconds, conns, account)
    argv = ["wrk", "-t1", f"-c{conns}", f"-d{seconds:g}s", "--latency", "--timeout", "10s",
            "-s", LUA, c.url, "--", c.target, c.host]
    cpu0 = cpu_seconds(c.pid) if c.pid else None
    with Accounted(c.name if account else "", [c.pid] if c.pid else []) as acc:
        acc.enabled = account
        cp = run(argv, timeout=seconds + 60)
    cpu1 = cpu_seconds(c.pid) if c.pid else None
    m = re.search(r"^BENCHJSON (\{.*\})$", cp.stdout, re.M)
    if not m:
        raise BenchError(f"wrk printed no result for {c.name}:\n{cp.stdout[-1500:]}\n{cp.stderr[-500:]}")
    j = json.loads(m.group(1))
    rps = j["requests"] / (j["duration_us"] / 1e6)
    errors = {"non-2xx/3xx": j["err_status"], "connect errors": j["err_connect"], "read errors": j["err_read"],
              "write errors": j["err_write"], "timeouts": j["err_timeout"]}
    cpu = (cpu1 - cpu0) * 1e6 / j["requests"] if (cpu0 is not None and j["requests"]) else None
    return WrkResult(rps, j["p50_us"] / 1000, j["p99_us"] / 1000, j["requests"], errors, cpu, acc.foreign_cores)


def measure(contenders: List[Contender], seconds: float, warmup: float, rounds: int, conns: int = 50) -> None:
    """Rounds of back-to-back runs, contenders interleaved; each warmed up before its first run."""
    for r in range(rounds):
        for c in contenders:
            if r == 0 and warmup > 0 and not c.floor:
                wrk(c, warmup, conns, account=False)
            res = wrk(c, seconds, conns)
            c.results.append(res)
            err = f" ERRORS: {res.error_text()}" if res.error_text() else ""
            cpu = f", {res.cpu_us_per_req:.0f} µs CPU/req" if res.cpu_us_per_req is not None else ""
            cpu += f"; others used {res.foreign_cores:.2f} cores"
            log(f"  {c.name:<22} round {r + 1}: {res.rps:9.0f} req/s  p50 {res.p50_ms:6.2f} ms"
                f"  p99 {res.p99_ms:6.2f} ms{cpu}{err}")


def curl_transfer(direction: str, url: str, file: str, proxy_port: Optional[int], ca: str, tls_port: int,
                  nbytes: int) -> dict:
    argv = ["curl", "-sS", "-o", "/dev/null", "--max-time", "300", "--noproxy", "", "-w",
            "%{http_code} %{size_download} %{size_upload} %{time_total} %{http_version}"]
    if proxy_port is not None:
        argv += ["-x", f"http://127.0.0.1:{proxy_port}"]
    else:
        argv += ["--cacert", ca, "--resolve", f"localhost:{tls_port}:127.0.0.1"]
    if direction == "up":
        argv += ["-H", "Expect:", "-T", file]
    argv.append(url)
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    cp = run(argv, timeout=330, check=False, env=env)
    parts = cp.stdout.split()
    if cp.returncode != 0 or len(parts) < 5:
        raise BenchError(f"curl {direction} {url} failed ({cp.returncode}): {cp.stderr.strip()} {cp.stdout}")
    code, down, up, total, ver = int(parts[0]), int(parts[1]), int(parts[2]), float(parts[3]), parts[4]
    moved = down if direction == "down" else up
    ok = code in (200, 201, 204) and moved == nbytes
    return {"code": code, "bytes": moved, "seconds": total, "mbps": moved / MiB / total if total else 0.0,
            "ok": ok, "http_version": ver}


def emulator_mints(control_url: str, ca: str) -> int:
    """Tokens minted so far, all kinds (the emulator's /__emulator/stats)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                         urllib.request.HTTPSHandler(context=ssl.create_default_context(cafile=ca)))
    with opener.open(control_url + "stats", timeout=10) as r:
        stats = json.load(r)
    return sum(m["count"] for m in stats.get("mints", []))


# ---------------------------------------------------------------------------------------------
# HTTPS interception (W7–W9): bench/clients.py's load client, since wrk cannot CONNECT
# ---------------------------------------------------------------------------------------------


def intercept_conf(ca: str, ca_dir: str, tls_port: int) -> str:
    """One proxy for W7–W9: the W1 route (absolute-form http:// → HTTPS upstream, `auth bearer`)
    also intercepts `CONNECT localhost:PORT`; `*.bench.test` intercepts any host under it."""
    return f"""listen 127.0.0.1:0
ca-file {ca}
ca-cert {ca_dir}/ca.pem
ca-key {ca_dir}/ca-key.pem
access-log off
admin 127.0.0.1:0
route localhost:{tls_port} {{
  connect-to 127.0.0.1:{tls_port}
  intercept
  auth bearer env:BENCH_TOKEN
}}
route *.bench.test {{
  connect-to 127.0.0.1:{tls_port}
  intercept
  auth bearer env:BENCH_TOKEN
}}
"""


def build_loadgen(workdir: str) -> "tuple[Optional[str], str]":
    """bench/loadgen (Go, standard library only) built into the work directory: (path, "") or
    (None, why not)."""
    go = shutil.which("go")
    if go is None:
        return None, "go not found (apt golang-go)"
    out = os.path.join(workdir, "loadgen")
    env = dict(os.environ, GOCACHE=os.path.join(workdir, "gocache"), GOFLAGS="-mod=mod", GOPROXY="off")
    cp = subprocess.run([go, "build", "-o", out, "."], cwd=os.path.join(HERE, "loadgen"), env=env,
                        capture_output=True, text=True, timeout=300)
    if cp.returncode != 0:
        return None, f"go build failed: {(cp.stderr.strip() or cp.stdout.strip())[:200]}"
    return out, ""


def find_mitmdump() -> Optional[str]:
    """$MITMDUMP, else mitmdump on PATH, else the venv scripts/bench installs it into."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    for cand in (os.environ.get("MITMDUMP"), shutil.which("mitmdump"),
                 os.path.join(cache, "credproxy-bench", "mitmproxy-venv", "bin", "mitmdump")):
        if cand and os.access(cand, os.X_OK):
            return cand
    return None


@dataclass
class LoadResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: Dict[str, int]
    cpu_us_per_req: Optional[float]  # the proxy's process tree
    client_cores: float  # the load client's own CPU, in cores
    client_us_per_req: Optional[float]
    procs: int
    foreign_cores: float = 0.0

    def error_text(self) -> str:
        return ", ".join(f"{v}× {k}" for k, v in self.errors.items() if v)


@dataclass
class LoadContender:
    name: str
    proxy_port: int
    target: str
    via: str  # plain | connect
    ca: Optional[str]
    pid: Optional[int]
    close: bool = False
    conns: int = 50
    procs: int = 1
    go_client: Optional[str] = None  # bench/loadgen's binary, used instead of clients.py when set
    results: List[LoadResult] = field(default_factory=list)

    @property
    def best(self) -> Optional[LoadResult]:
        return max(self.results, key=lambda r: r.rps) if self.results else None


def load_client_argv(proxy_port: int, target: str, via: str, ca: Optional[str], extra: List[str]) -> List[str]:
    argv = [sys.executable, CLIENTS, "load", "--proxy", f"127.0.0.1:{proxy_port}", "--target", target, "--via", via]
    if ca:
        argv += ["--ca", ca]
    return argv + extra


def w8_ceiling(ours: LoadResult, theirs: LoadResult) -> str:
    """Why W8's req/s target depends on the machine: the client and credproxy share its cores, so
    requests/s cannot exceed cores ÷ (client CPU + proxy CPU per handshake)."""
    if not (ours.client_us_per_req and ours.cpu_us_per_req and theirs.rps):
        return ""
    cores = os.cpu_count() or 1
    ceiling = cores * 1e6 / (ours.client_us_per_req + ours.cpu_us_per_req)
    return (f" Ceiling on this machine: {cores} cores ÷ ({ours.client_us_per_req:,.0f} + "
            f"{ours.cpu_us_per_req:,.0f} µs) = {ceiling:,.0f} req/s even with a free upstream, against "
            f"{20 * theirs.rps:,.0f} req/s for 20× mitmproxy's {theirs.rps:,.0f}.")


def run_load(c: LoadContender, seconds: float, account: bool = True) -> LoadResult:
    extra = ["--conns", str(c.conns), "--procs", str(c.procs), "--seconds", f"{seconds:g}",
             "--deadline", str(seconds + 60)]
    if c.close:
        extra.append("--close")
    if c.go_client:
        argv = [c.go_client, "--proxy", f"127.0.0.1:{c.proxy_port}", "--target", c.target, "--ca", c.ca or "",
                "--conns", str(c.conns), "--seconds", f"{seconds:g}"] + (["--close"] if c.close else [])
    else:
        argv = load_client_argv(c.proxy_port, c.target, c.via, c.ca, extra)
    # The client opens its connections during a 1 s ramp and measures from a common start time;
    # the proxy's CPU is read across the whole call, so the ramp's connection set-up is charged to
    # the requests (for keep-alive rows, 50 set-ups among thousands of requests).
    cpu0 = cpu_seconds(c.pid) if c.pid else None
    with Accounted(c.name if account else "", [c.pid] if c.pid else []) as acc:
        acc.enabled = account
        cp = run(argv, timeout=seconds + 120, check=False)
    cpu1 = cpu_seconds(c.pid) if c.pid else None
    lines = cp.stdout.strip().splitlines()
    try:
        j = json.loads(lines[-1])
    except (IndexError, ValueError):
        raise BenchError(f"load client printed no result for {c.name}: {cp.stderr.strip()[-600:]}")
    if "requests" not in j:
        raise BenchError(f"load client for {c.name}: {j.get('error')}")
    n = j["requests"]
    errors = {f"HTTP {k}": v for k, v in j["statuses"].items() if k != "200"}
    errors.update(j["errors"])
    return LoadResult(
        rps=n / j["seconds"], p50_ms=j["p50_ms"] or 0.0, p99_ms=j["p99_ms"] or 0.0, requests=n, errors=errors,
        cpu_us_per_req=(cpu1 - cpu0) * 1e6 / n if (cpu0 is not None and n) else None,
        client_cores=j["cpu_s"] / j["seconds"], client_us_per_req=j["cpu_s"] * 1e6 / n if n else None,
        procs=j["procs"], foreign_cores=acc.foreign_cores)


def measure_load(contenders: List[LoadContender], seconds: float, warmup: float, rounds: int) -> None:
    for r in range(rounds):
        for c in contenders:
            if r == 0 and warmup > 0:
                run_load(c, warmup, account=False)
            res = run_load(c, seconds)
            c.results.append(res)
            err = f" ERRORS: {res.error_text()}" if res.error_text() else ""
            cpu = f", {res.cpu_us_per_req:.0f} µs CPU/req" if res.cpu_us_per_req is not None else ""
            log(f"  {c.name:<26} round {r + 1}: {res.rps:9.0f} req/s  p50 {res.p50_ms:6.2f} ms  p99 "
                f"{res.p99_ms:6.2f} ms{cpu}; client {res.client_cores:.2f} cores ({res.procs} proc); "
                f"others used {res.foreign_cores:.2f} cores{err}")


def fmt_load(r: LoadResult, per: str = "req") -> str:
    s = f"{r.rps:,.0f} req/s · p50 {r.p50_ms:.2f} ms · p99 {r.p99_ms:.2f} ms"
    if r.cpu_us_per_req is not None:
        s += f" · {r.cpu_us_per_req:,.0f} µs CPU/{per}"
    s += f" · client {r.client_cores:.2f} cores ({r.procs} proc)"
    if r.error_text():
        s += f" · **errors: {r.error_text()}**"
    return s


def leaf_metrics(admin_port: Optional[int]) -> Optional[Dict[str, float]]:
    """Any `/metrics` series about leaves (a name with `leaf` in it), summed per name; None when the
    proxy exposes none (then the benchmark infers mints from timing and says so)."""
    if not admin_port:
        return None
    try:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"http://127.0.0.1:{admin_port}/metrics", timeout=10) as r:
            text = r.read().decode("utf-8", "replace")
    except OSError:
        return None
    out: Dict[str, float] = {}
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][\w:]*leaf[\w:]*)(?:\{[^}]*\})?\s+([0-9.eE+-]+)$", line)
        if m:
            out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(2))
    return out or None


# ---------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------


def fmt_rps(r: WrkResult) -> str:
    s = f"{r.rps:,.0f} req/s · p50 {r.p50_ms:.2f} ms · p99 {r.p99_ms:.2f} ms"
    if r.cpu_us_per_req is not None:
        s += f" · {r.cpu_us_per_req:.0f} µs CPU/req"
    if r.error_text():
        s += f" · **errors: {r.error_text()}**"
    return s


def rx(x: float) -> str:
    """A ratio with 2 decimals, or 3 when 2 would round it onto a target's threshold."""
    r = round(x, 2)
    if r != x and r in (0.8, 0.9, 0.95, 1.0, 1.5):
        return f"{x:.3f}×" if round(x, 3) != r else f"{x:.4f}×"
    return f"{x:.2f}×"


def cpu_ratio(a: WrkResult, b: WrkResult, name: str) -> str:
    if a.cpu_us_per_req and b.cpu_us_per_req:
        return f"; CPU/req {a.cpu_us_per_req / b.cpu_us_per_req:.2f}× {name}"
    return ""


NOISY_CORES = 0.25


def verdict(ok: Optional[bool], *noise: float) -> str:
    """met / NOT met; flagged when other processes used more than NOISY_CORES during its runs."""
    v = "n/a" if ok is None else ("met" if ok else "**NOT met**")
    worst = max(noise, default=0.0)
    return v + (f" (noisy: {worst:.1f} cores busy elsewhere)" if worst > NOISY_CORES else "")


class Table:
    def __init__(self) -> None:
        self.rows: List[List[str]] = []

    def add(self, w: str, workload: str, credproxy: str, compared: str, ratio: str, target: str, result: str):
        self.rows.append([w, workload, credproxy, compared, ratio, target, result])

    def na(self, w: str, workload: str, reason: str, target: str) -> None:
        self.add(w, workload, f"not available: {reason}", "—", "—", target, "n/a")

    def markdown(self) -> str:
        head = ["#", "workload", "credproxy", "compared with", "ratio", "target", "result"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in self.rows:
            lines.append("| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in r) + " |")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------


def versions(binary: str) -> str:
    def first(argv, stream="stdout"):
        try:
            cp = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            out = (cp.stdout if stream == "stdout" else cp.stderr) or cp.stdout or cp.stderr
            return out.strip().splitlines()[0] if out.strip() else "?"
        except (OSError, subprocess.TimeoutExpired):
            return "?"
    wrk_v = first(["wrk", "--version"]).split(" [")[0]
    nginx_v = first(["nginx", "-v"], "stderr").replace("nginx version: ", "")
    squid_v = first(["squid", "-v"]).replace("Squid Cache: Version ", "squid/")
    tiny_v = first(["tinyproxy", "-v"]).replace(" ", "/")
    curl_v = first(["curl", "--version"]).split(" (")[0].replace(" ", "/")
    cp_v = first([binary, "--version"])
    rev = first(["git", "-C", REPO, "rev-parse", "--short", "HEAD"])
    dirty = first(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"])
    rev += "+dirty" if dirty not in ("?", "") else ""
    return (f"{cp_v} ({rev}); {wrk_v}, {nginx_v}, {squid_v}, {tiny_v}, {curl_v}; "
            f"{os.cpu_count()} cores, Linux {platform.release()}")


def intercept_rows(binary: str, procs: Procs, workdir: str, certs: Dict[str, str], tls_port: int, P: dict,
                   table: "Table", notes: List[str], w1: WrkResult) -> None:
    """W7 (keep-alive inside an intercepted tunnel vs the plain path, same client), W8 (a CONNECT
    and full TLS handshake per request vs mitmproxy, same client), W9 (leaf cache: 1,000 new
    hosts, then the same 1,000)."""
    w7_name = "100 B GET, keep-alive inside an `intercept` CONNECT tunnel, 50 conns, `auth bearer`"
    w7_target = "≥ 0.8× the plain path"
    w8_name = "a new CONNECT + full TLS handshake per request (`Connection: close`), 16 at once"
    w8_target = "≥ 20× mitmproxy req/s"
    n_hosts = P["leaf_hosts"]
    w9_name = f"leaf cache: {n_hosts:,} new hosts (`*.bench.test`), then the same {n_hosts:,} again, one at a time"
    w9_target = "one mint per new host, none on the second pass"
    small = f"https://localhost:{tls_port}/small"
    log("W7–W9: HTTPS interception")

    ca_dir = os.path.join(workdir, "local-ca")
    conf_text = intercept_conf(certs["ca"], ca_dir, tls_port)
    conf_path = os.path.join(workdir, "credproxy-intercept.conf")
    with open(conf_path, "w") as fh:
        fh.write(conf_text)
    reason = None
    cp = run([binary, "ca", "init", "--dir", ca_dir, "--config", conf_path], check=False, timeout=30, cwd=workdir)
    if cp.returncode != 0:
        reason = f"`credproxy ca init` exit {cp.returncode}: {(cp.stderr.strip() or cp.stdout.strip())[:200]}"
    reason = reason or check_config(binary, workdir, "credproxy-intercept", conf_text)
    proxy = None
    if reason is None:
        try:
            proxy = start_credproxy(procs, binary, "credproxy-intercept", conf_text, workdir)
            ctx = ssl.create_default_context(cafile=os.path.join(ca_dir, "ca.pem"))
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
                s.sendall(f"CONNECT localhost:{tls_port} HTTP/1.1\r\nHost: localhost:{tls_port}\r\n\r\n".encode())
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    head += chunk
                if not head.startswith(b"HTTP/1.1 200"):
                    raise BenchError(f"CONNECT answered {head[:80]!r}")
                with ctx.wrap_socket(s, server_hostname="localhost") as t:
                    t.sendall(f"GET /auth-echo HTTP/1.1\r\nHost: localhost:{tls_port}\r\nConnection: close\r\n\r\n"
                              .encode())
                    data = b""
                    while True:
                        chunk = t.recv(65536)
                        if not chunk:
                            break
                        data += chunk
            if not data.startswith(b"HTTP/1.1 200") or not data.endswith(f"Bearer {STATIC_TOKEN}".encode()):
                raise BenchError(f"intercepted /auth-echo answered {data[:200]!r}")
            st, body = http_get(proxy.port, f"http://localhost:{tls_port}/auth-echo")
            if st != 200 or body.decode() != f"Bearer {STATIC_TOKEN}":
                raise BenchError(f"plain path on the intercept proxy answered {st}: {body[:120]!r}")
        except (BenchError, OSError, ssl.SSLError) as exc:
            reason = f"interception does not work: {str(exc).splitlines()[0][:200]}"
    if reason is not None:
        log(f"  not available: {reason}")
        table.na("7", w7_name, reason, w7_target)
        table.na("8", w8_name, reason, w8_target)
        table.na("9", w9_name, reason, w9_target)
        if proxy:
            procs.stop(proxy.proc)
        return
    local_ca = os.path.join(ca_dir, "ca.pem")
    m = re.search(r"admin listening on 127\.0\.0\.1:(\d+)", tail(proxy.proc.bench_log, 50))
    admin_port = int(m.group(1)) if m else None

    # --- W7 ------------------------------------------------------------------------------------
    log(f"W7: keep-alive GETs inside the tunnel vs the plain path, same load client, {P['seconds']} s")
    c_int = LoadContender("credproxy intercept", proxy.port, small, "connect", local_ca, proxy.pid)
    c_pla = LoadContender("credproxy plain (W1 path)", proxy.port, small.replace("https://", "http://"), "plain",
                          None, proxy.pid)
    try:
        # At least two interleaved rounds even in quick mode: one pair of runs on a shared machine
        # is too easily skewed by whatever else runs during one of them.
        measure_load([c_int, c_pla], P["seconds"], P["warmup"], max(2, P["rounds"]))
        bi, bp = c_int.best, c_pla.best
        ok = bi.rps >= 0.8 * bp.rps and not bi.error_text()
        cpu = (f"; CPU/req {bi.cpu_us_per_req / bp.cpu_us_per_req:.2f}× plain"
               if bi.cpu_us_per_req and bp.cpu_us_per_req else "")
        table.add("7", w7_name, fmt_load(bi),
                  f"plain path, same proxy and client (absolute-form `http://`, as W1): {fmt_load(bp)}; "
                  f"W1 with wrk: {w1.rps:,.0f} req/s",
                  f"{rx(bi.rps / bp.rps)} plain{cpu}", w7_target, verdict(ok, bi.foreign_cores, bp.foreign_cores))
        busiest = max(bi.client_cores / bi.procs, bp.client_cores / bp.procs)
        notes.append(f"W7 uses bench/clients.py's `load` client (Python asyncio; wrk cannot CONNECT) for both "
                     f"sides of its ratio (W8 uses bench/loadgen when Go is there). Its own CPU is in each cell (W7: "
                     f"{bi.client_us_per_req:.0f} µs/req inside the tunnel, {bp.client_us_per_req:.0f} µs/req "
                     f"plain; busiest client process {busiest:.2f} cores). "
                     + ("A client process near 1 core means the client, not the proxy, set the pace."
                        if busiest > 0.85 else "No client process was saturated in W7."))
    except BenchError as exc:
        table.na("7", w7_name, f"load run failed: {str(exc).splitlines()[0][:200]}", w7_target)

    # --- W8 ------------------------------------------------------------------------------------
    log("W8: a CONNECT and full TLS handshake per request, credproxy vs mitmproxy")
    mitm_bin = find_mitmdump()
    mitm = None
    # The Go client: Python's asyncio client spends more CPU per handshake than credproxy does, so
    # on two shared cores it would set both contenders' pace (it did, in earlier runs).
    loadgen, loadgen_na = build_loadgen(workdir)
    if loadgen is None:
        log(f"  bench/loadgen not built ({loadgen_na}); W8 falls back to clients.py")
    try:
        c8 = LoadContender("credproxy handshake/req", proxy.port, small, "connect", local_ca, proxy.pid,
                           close=True, conns=16, procs=2, go_client=loadgen)
        contenders = [c8]
        mitm_na = None
        if mitm_bin is None:
            mitm_na = "mitmdump not found (scripts/bench installs mitmproxy into a venv; set MITMDUMP=path)"
        else:
            mport = free_port()
            confdir = os.path.join(workdir, "mitmproxy-conf")
            os.makedirs(confdir, exist_ok=True)
            mitm = procs.start("mitmdump", [
                mitm_bin, "--listen-host", "127.0.0.1", "--listen-port", str(mport), "--set", f"confdir={confdir}",
                "--set", f"ssl_verify_upstream_trusted_ca={certs['ca']}",
                "--modify-headers", f"/~q/Authorization/Bearer {STATIC_TOKEN}",
                "--set", "flow_detail=0", "-q"])
            try:
                wait_port(mport, mitm, 60)
                mitm_ca = os.path.join(confdir, "mitmproxy-ca-cert.pem")
                c_m = LoadContender("mitmproxy handshake/req", mport, small, "connect", mitm_ca, mitm.pid,
                                    close=True, conns=16, procs=2, go_client=loadgen)
                contenders.append(c_m)
            except BenchError as exc:
                mitm_na = f"mitmdump did not start: {str(exc).splitlines()[0][:200]}"
        measure_load(contenders, P["seconds"], P["warmup"], P["rounds"])
        b8 = c8.best
        if mitm_na is None:
            bm = c_m.best
            ok = b8.rps >= 20 * bm.rps and not b8.error_text()
            cpu = (f"; CPU/handshake {b8.cpu_us_per_req / bm.cpu_us_per_req:.3f}× mitmproxy "
                   f"({bm.cpu_us_per_req / b8.cpu_us_per_req:.1f}× less)"
                   if b8.cpu_us_per_req and bm.cpu_us_per_req else "")
            table.add("8", w8_name, fmt_load(b8, "handshake"),
                      f"{versions_mitm(mitm_bin)} (regular mode, own CA, upstream verified, same header injected): "
                      f"{fmt_load(bm, 'handshake')}",
                      f"{rx(b8.rps / bm.rps)} mitmproxy req/s{cpu}", w8_target,
                      verdict(ok, b8.foreign_cores, bm.foreign_cores))
            notes.append(f"W8: credproxy's CPU per handshake is its process CPU time ÷ requests, each request "
                         f"being one CONNECT + full TLS handshake (no resumption) + one GET; credproxy keeps its "
                         f"upstream connections pooled, while mitmproxy opens (and verifies) a new upstream TLS "
                         f"connection for every client connection, as it does by design. The load client "
                         f"({'bench/loadgen, Go' if loadgen else 'clients.py, Python'}) spent "
                         f"{b8.client_us_per_req:,.0f} µs CPU per handshake ({b8.client_cores:.2f} cores) on "
                         f"credproxy's run, {b8.client_us_per_req / b8.cpu_us_per_req:.1f}× credproxy's "
                         f"{b8.cpu_us_per_req:,.0f} µs: a client's side of a full handshake (key share, "
                         f"verifying the chain) costs about what the server's side does, and on two shared "
                         f"cores it takes CPU credproxy would otherwise get, while single-threaded mitmproxy "
                         f"leaves the client a core of its own. The CPU/handshake ratio is the fairer figure."
                         + w8_ceiling(b8, bm))
        else:
            table.add("8", w8_name, fmt_load(b8, "handshake"), f"mitmproxy not available: {mitm_na}", "—",
                      w8_target, "n/a")
    except BenchError as exc:
        table.na("8", w8_name, f"load run failed: {str(exc).splitlines()[0][:200]}", w8_target)
    finally:
        if mitm is not None:
            procs.stop(mitm)

    # --- W9 ------------------------------------------------------------------------------------
    log(f"W9: {n_hosts} new hosts, then the same {n_hosts} again")
    try:
        passes = []
        metrics_before = leaf_metrics(admin_port)
        for label in ("first", "second"):
            argv = load_client_argv(proxy.port, small, "connect", local_ca,
                                    ["--close", "--host-pattern", "h{i}.bench.test:443", "--count", str(n_hosts),
                                     "--deadline", "300"])
            cpu0 = cpu_seconds(proxy.pid)
            with Accounted(f"W9 {label} pass", [proxy.pid]) as acc:
                cp = run(argv, timeout=360, check=False)
            cpu1 = cpu_seconds(proxy.pid)
            lines = cp.stdout.strip().splitlines()
            j = json.loads(lines[-1]) if lines else {}
            if "requests" not in j:
                raise BenchError(f"load client: {j.get('error') or cp.stderr.strip()[-300:]}")
            bad = {f"HTTP {k}": v for k, v in j["statuses"].items() if k != "200"}
            bad.update(j["errors"])
            passes.append(dict(ms=j["seconds"] * 1000 / n_hosts, cpu_us=(cpu1 - cpu0) * 1e6 / n_hosts,
                               ok=j["statuses"].get("200", 0), bad=bad, p50=j["p50_ms"], p99=j["p99_ms"],
                               client_us=j["cpu_s"] * 1e6 / n_hosts, foreign=acc.foreign_cores,
                               metrics=leaf_metrics(admin_port)))
            log(f"  {label} pass: {passes[-1]['ms']:.2f} ms/request, proxy {passes[-1]['cpu_us']:.0f} µs CPU/request,"
                f" {passes[-1]['ok']} × 200 {bad or ''}")
        p1, p2 = passes
        mint_ms, mint_cpu = p1["ms"] - p2["ms"], (p1["cpu_us"] - p2["cpu_us"]) / 1000

        def counted(before, after) -> str:
            return ", ".join(f"{k} +{after.get(k, 0) - (before or {}).get(k, 0):g}" for k in sorted(after))

        all_ok = p1["ok"] == n_hosts and p2["ok"] == n_hosts and not p1["bad"] and not p2["bad"]
        minted = None
        if p1["metrics"]:
            names = [k for k in p1["metrics"] if "mint" in k and not k.endswith(("_sum", "_bucket", "_seconds"))]
            if names:
                k = names[0]
                minted = (p1["metrics"][k] - (metrics_before or {}).get(k, 0), (p2["metrics"] or {}).get(k, 0)
                          - p1["metrics"][k])
            mints = (f"/metrics: first pass {counted(metrics_before, p1['metrics'])}; second pass "
                     f"{counted(p1['metrics'], p2['metrics'] or {})}")
        else:
            mints = ("mints inferred: credproxy's /metrics exposes no leaf counter, so the count is not "
                     "measured; every first-pass host is new, and the second pass costs less only if it minted "
                     "nothing")
        if minted is not None:
            ok9, how = all_ok and minted == (n_hosts, 0), f"{minted[0]:g} minted, then {minted[1]:g}"
        else:
            ok9, how = all_ok and p2["cpu_us"] < p1["cpu_us"], "inferred from CPU and time, no counter"
        errs = "".join(f" · **errors {lbl}: {', '.join(f'{v}× {k}' for k, v in p['bad'].items())}**"
                       for lbl, p in (("first", p1), ("second", p2)) if p["bad"])
        table.add("9", w9_name,
                  f"first pass {p1['ms']:.2f} ms/req ({p1['cpu_us']:,.0f} µs proxy CPU/req); second pass "
                  f"{p2['ms']:.2f} ms/req ({p2['cpu_us']:,.0f} µs CPU/req) → per mint ≈ {mint_ms:.2f} ms wall, "
                  f"≈ {mint_cpu:.2f} ms CPU (first − second){errs}",
                  f"second pass (leaves cached); {mints}; client {p1['client_us']:,.0f} µs CPU/req",
                  f"first pass {p1['ms'] / p2['ms']:.2f}× second's time, {p1['cpu_us'] / p2['cpu_us']:.2f}× its CPU",
                  w9_target, verdict(ok9, p1["foreign"], p2["foreign"]) + f" ({how})")
    except (BenchError, ValueError, KeyError, OSError) as exc:
        table.na("9", w9_name, f"run failed: {str(exc).splitlines()[0][:200]}", w9_target)
    procs.stop(proxy.proc)


LOAD_CONNS = (10, 50, 200, 1000)
LOAD_LOOPS = (1, 2)


def load_table(binary: str, procs: Procs, workdir: str, certs: Dict[str, str], tls_port: int, plain_port: int,
               floor: Optional[str], P: dict) -> str:
    """Requests/s against loop count and connections: credproxy `--threads N`, nginx
    `worker_processes N`, the libcurl floor as N processes; W1's request, credproxy with its
    default `upstream-http auto` (h2 by ALPN with this upstream) and the floor on h2 too."""
    small_tls, host_tls = f"http://localhost:{tls_port}/small", f"localhost:{tls_port}"
    rows = [["loops", "conns", "credproxy", "nginx forward proxy", "libcurl floor", "credproxy ÷ nginx",
             "credproxy ÷ floor"]]
    conf = credproxy_conf(certs["ca"], tls_port, plain_port, upstream_http="auto")
    if check_config(binary, workdir, "credproxy-load", conf):
        conf = credproxy_conf(certs["ca"], tls_port, plain_port)
    for loops in LOAD_LOOPS:
        path = os.path.join(workdir, f"credproxy-load{loops}.conf")
        with open(path, "w") as fh:
            fh.write(conf)
        env = dict(os.environ, BENCH_TOKEN=STATIC_TOKEN)
        cp = procs.start(f"credproxy-load{loops}", [binary, "serve", "--config", path, "--threads", str(loops)], env=env)
        deadline = time.monotonic() + 15
        port = None
        while port is None and time.monotonic() < deadline:
            m = re.search(r"listening on 127\.0\.0\.1:(\d+)", tail(cp.bench_log, 50))
            port = int(m.group(1)) if m else None
            time.sleep(0.05)
        if port is None:
            raise BenchError(f"credproxy --threads {loops} did not start: {tail(cp.bench_log)}")
        np_port = free_port()
        nconf = os.path.join(workdir, f"nginx-load{loops}.conf")
        with open(nconf, "w") as fh:
            fh.write(forward_nginx_conf(workdir, certs, np_port, tls_port, workers=loops, name=f"nginx-load{loops}"))
        ngx = procs.start(f"nginx-load{loops}", ["nginx", "-c", nconf, "-p", workdir, "-e",
                                                  f"{workdir}/nginx-load{loops}-error.log"])
        wait_port(np_port, ngx)
        for conns in LOAD_CONNS:
            cs = [Contender(f"credproxy x{loops} c{conns}", f"http://127.0.0.1:{port}/", small_tls, host_tls, cp.pid),
                  Contender(f"nginx x{loops} c{conns}", f"http://127.0.0.1:{np_port}/", small_tls, host_tls, ngx.pid)]
            if floor:
                cs.append(Contender(f"floor x{loops} c{conns}", "", "", "", procs=loops,
                                    floor=[floor, f"https://localhost:{tls_port}/small", certs["ca"], "2",
                                           "configured", f"localhost:{tls_port}:127.0.0.1"]))
            log(f"load: {loops} loop(s), {conns} connections")
            measure(cs, P["load_seconds"], 1, 1, conns)
            b = [c.best for c in cs]
            cell = [f"{r.rps:,.0f} req/s · p99 {r.p99_ms:.1f} ms · {r.cpu_us_per_req:.0f} µs CPU/req"
                    + (f" · **errors: {r.error_text()}**" if r.error_text() else "") for r in b]
            rows.append([str(loops), f"{conns:,}", cell[0], cell[1], cell[2] if floor else "—",
                         f"{b[0].rps / b[1].rps:.2f}×", f"{b[0].rps / b[2].rps:.2f}×" if floor else "—"])
        procs.stop(cp)
        procs.stop(ngx)
    lines = ["| " + " | ".join(r) + " |" for r in rows]
    lines.insert(1, "|" + "---|" * len(rows[0]))
    return "\n".join(lines)


def versions_mitm(path: str) -> str:
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30).stdout
        m = re.search(r"Mitmproxy:\s*(\S+)", out)
        return f"mitmproxy {m.group(1)}" if m else "mitmproxy"
    except (OSError, subprocess.TimeoutExpired):
        return "mitmproxy"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True, help="the credproxy binary")
    ap.add_argument("--quick", action="store_true", help="shorter runs, 256 MiB streams, 2,000 idle connections")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (configs, logs)")
    ap.add_argument("--out", default=os.path.join(HERE, "last-result.md"))
    ap.add_argument("--workdir", help="an empty directory to work in (default: a new temporary one)")
    ap.add_argument("--floor", help="bench/floor/curl_floor built (scripts/bench builds it); without it no floor rows")
    ap.add_argument("--load", action="store_true",
                    help="only the load table: req/s vs loop count (1, 2) and connections (10, 50, 200, 1000)")
    args = ap.parse_args()
    binary = os.path.abspath(args.bin)

    quick = args.quick
    P = dict(seconds=3 if quick else 10, warmup=1 if quick else 2, rounds=1 if quick else 3, leaf_hosts=1000,
             load_seconds=3 if quick else 5,
             stream_mib=256 if quick else 1024, idle=2000 if quick else 10000, burst=1000)

    workdir = args.workdir or tempfile.mkdtemp(prefix="credproxy-bench.")
    shm_base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    if shm_base:
        st = os.statvfs(shm_base)
        if st.f_bavail * st.f_frsize < (2 * P["stream_mib"] + 256) * MiB:
            shm_base = None
    shm = tempfile.mkdtemp(prefix="credproxy-bench.", dir=shm_base)
    with open(os.path.join(workdir, "shm"), "w") as fh:
        fh.write(shm + "\n")
    os.chmod(workdir, 0o755)
    procs = Procs(workdir)

    def on_signal(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    table = Table()
    notes: List[str] = []
    try:
        load_start = os.getloadavg()[0]
        log(f"work dir {workdir}; {'quick' if quick else 'full'} mode; load average {load_start:.2f}")
        certs = make_certs(workdir)
        stream_bytes = P["stream_mib"] * MiB
        with open(os.path.join(shm, "large.bin"), "wb") as fh:
            fh.truncate(stream_bytes)
        os.makedirs(os.path.join(shm, "dav", "upload"))
        os.makedirs(os.path.join(shm, "body"))

        # --- upstream ----------------------------------------------------------------------
        tls_port, plain_port = free_port(), free_port()
        conf = os.path.join(workdir, "upstream.conf")
        with open(conf, "w") as fh:
            fh.write(upstream_nginx_conf(workdir, shm, certs, tls_port, plain_port))
        up = procs.start("upstream-nginx", ["nginx", "-c", conf, "-p", workdir, "-e", f"{workdir}/upstream-error.log"])
        wait_port(tls_port, up)
        wait_port(plain_port, up)
        Interference.upstream_pid = up.pid
        st, body = http_get(None, f"https://localhost:{tls_port}/small", ca=certs["ca"])
        if st != 200 or len(body) != 100:
            raise BenchError(f"upstream /small answered {st} with {len(body)} bytes")
        log(f"upstream nginx: https 127.0.0.1:{tls_port} (h2+http/1.1), http 127.0.0.1:{plain_port}")

        if args.load:
            md = "\n".join([
                f"## credproxy load table ({'quick' if quick else 'full'} mode)", "",
                f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {versions(binary)}. W1's request (100 B "
                f"GET, keep-alive, `auth bearer`, HTTPS upstream with `upstream-http auto`: h2 by ALPN; the floor "
                f"on h2 too), wrk -t1 -cN, {P['load_seconds']} s "
                f"per run after a 1 s warm-up, one round; credproxy `--threads L`, nginx `worker_processes L`, the "
                f"libcurl floor as L processes (N connections split between them). CPU/req = the process tree's "
                f"CPU ÷ requests; the floor's is its own getrusage.", "",
                load_table(binary, procs, workdir, certs, tls_port, plain_port, args.floor, P), "",
                f"- Load average at start {load_start:.2f}; other processes used up to {Interference.worst:.2f} "
                f"cores during a measured run ({Interference.where or '-'})."])
            print(md)
            out = os.path.join(HERE, "last-load.md")
            with open(out, "w") as fh:
                fh.write(md + "\n")
            log(f"written to {os.path.relpath(out, REPO)}; took {time.monotonic() - T0:.0f} s")
            return 0

        small_tls = f"http://localhost:{tls_port}/small"
        host_tls = f"localhost:{tls_port}"
        small_plain = f"http://127.0.0.1:{plain_port}/small"
        host_plain = f"127.0.0.1:{plain_port}"

        # --- credproxy (bearer + plain routes) ---------------------------------------------
        # Both upstream shapes, each named explicitly: cp_a speaks HTTP/1.1 upstream (and serves
        # the other rows), cp_h2 h2 by ALPN. A binary without `upstream-http` runs its fixed choice.
        shapes_na = check_config(binary, workdir, "credproxy-h2",
                                 credproxy_conf(certs["ca"], tls_port, plain_port, upstream_http="2"))
        cp_a = start_credproxy(procs, binary, "credproxy",
                               credproxy_conf(certs["ca"], tls_port, plain_port,
                                              upstream_http=None if shapes_na else "1.1"), workdir)
        st, body = http_get(cp_a.port, f"http://localhost:{tls_port}/auth-echo")
        if st != 200 or body.decode() != f"Bearer {STATIC_TOKEN}":
            raise BenchError(f"credproxy bearer route answered {st}: {body[:200]!r}")
        st, body = http_get(cp_a.port, small_plain)
        if st != 200 or len(body) != 100:
            raise BenchError(f"credproxy plain route answered {st}: {body[:200]!r}")
        log(f"credproxy on 127.0.0.1:{cp_a.port} (pid {cp_a.pid})")

        # --- nginx as forward proxy --------------------------------------------------------
        np_port = free_port()
        conf = os.path.join(workdir, "nginx-proxy.conf")
        with open(conf, "w") as fh:
            fh.write(forward_nginx_conf(workdir, certs, np_port, tls_port))
        ngx = procs.start("nginx-proxy", ["nginx", "-c", conf, "-p", workdir, "-e", f"{workdir}/nginx-proxy-error.log"])
        wait_port(np_port, ngx)
        st, body = http_get(np_port, f"http://localhost:{tls_port}/auth-echo")
        if st != 200 or body.decode() != f"Bearer {STATIC_TOKEN}":
            raise BenchError(f"nginx forward proxy answered {st}: {body[:200]!r}")

        # --- OAuth2 / OIDC availability and the token emulator ------------------------------
        emu_info, emu_err = None, None
        try:
            import cryptography  # noqa: F401  (the emulators need it)
            info_file = os.path.join(workdir, "emu.json")
            emu = procs.start("emulators", [sys.executable, "-m", "emulators", "--dir", f"{workdir}/emu",
                                            "--info-file", info_file, "--tls-cert", certs["cert"],
                                            "--tls-key", certs["key"]], cwd=EMULATOR_DIR)
            deadline = time.monotonic() + 30
            while not os.path.exists(info_file):
                if emu.poll() is not None or time.monotonic() > deadline:
                    raise BenchError(f"token emulators did not start:\n{tail(emu.bench_log)}")
                time.sleep(0.1)
            with open(info_file) as fh:
                emu_info = json.load(fh)
            key_file = emu_info["service_account_key"]
            log(f"token emulator at {emu_info['token_url']}")
        except (ImportError, BenchError) as exc:
            emu_err = f"token emulator unavailable ({str(exc).splitlines()[0]})"
            key_file = os.path.join(workdir, "missing-service-account.json")
        sa_block = f"credentials sa {{\n  source key-file {key_file}\n}}\n"
        oauth_conf = credproxy_conf(certs["ca"], tls_port, plain_port, credentials=sa_block,
                                    auth=f"credentials sa\n  auth OAuth2 scopes {OAUTH_SCOPE}")
        oidc_conf = credproxy_conf(certs["ca"], tls_port, plain_port, credentials=sa_block,
                                   auth=f"credentials sa\n  auth OIDC audience {OIDC_AUDIENCE}")
        oauth_na = check_config(binary, workdir, "credproxy-oauth2", oauth_conf) or emu_err
        oidc_na = check_config(binary, workdir, "credproxy-oidc", oidc_conf) or emu_err
        # credproxy fetches tokens over https from the emulator, trusting the bench CA by ca-file.
        google_env: Dict[str, str] = {}

        cp_oauth = None
        if oauth_na is None:
            try:
                cp_oauth = start_credproxy(procs, binary, "credproxy-oauth2", oauth_conf, workdir, google_env)
                st, body = http_get(cp_oauth.port, f"http://localhost:{tls_port}/auth-echo", timeout=30)
                tok = body.decode(errors="replace")
                if st != 200 or not tok.startswith("Bearer ") or STATIC_TOKEN in tok or len(tok) < 20:
                    raise BenchError(f"OAuth2 route answered {st}: {tok[:120]!r}")
            except BenchError as exc:
                oauth_na = f"OAuth2 route does not work: {str(exc).splitlines()[0]}"
                if cp_oauth:
                    procs.stop(cp_oauth.proc)
                cp_oauth = None

        # --- W1 (+ W2) -----------------------------------------------------------------------
        log(f"W1/W2: small GETs, keep-alive, wrk -t1 -c50, {P['seconds']} s x {P['rounds']} round(s)")
        cp_h2 = None
        if shapes_na is None:
            cp_h2 = start_credproxy(procs, binary, "credproxy-h2",
                                    credproxy_conf(certs["ca"], tls_port, plain_port, upstream_http="2"), workdir)
            st, body = http_get(cp_h2.port, f"http://localhost:{tls_port}/auth-echo")
            if st != 200 or body.decode() != f"Bearer {STATIC_TOKEN}":
                raise BenchError(f"credproxy h2 route answered {st}: {body[:200]!r}")
        h1_name = "credproxy (bearer, HTTP/1.1 up)" if shapes_na is None else "credproxy (bearer)"
        c_cp = Contender(h1_name, f"http://127.0.0.1:{cp_a.port}/", small_tls, host_tls, cp_a.pid)
        c_ngx = Contender("nginx forward proxy", f"http://127.0.0.1:{np_port}/", small_tls, host_tls, ngx.pid)
        c_dir = Contender("upstream direct (TLS)", f"https://127.0.0.1:{tls_port}/", "/small", host_tls, None)
        w1 = [c_cp, c_ngx, c_dir]
        c_cp2 = None
        if cp_h2:
            c_cp2 = Contender("credproxy (bearer, h2 up)", f"http://127.0.0.1:{cp_h2.port}/", small_tls, host_tls,
                              cp_h2.pid)
            w1.append(c_cp2)
        floors: Dict[str, Contender] = {}
        if args.floor:
            for ver in ("1.1", "2"):
                floors[ver] = Contender(f"libcurl floor ({'HTTP/1.1' if ver == '1.1' else 'h2'})", "", "", "",
                                        floor=[args.floor, f"https://localhost:{tls_port}/small", certs["ca"], ver,
                                               "configured", f"localhost:{tls_port}:127.0.0.1"])
                w1.append(floors[ver])
        c_oauth = None
        if cp_oauth:
            c_oauth = Contender("credproxy (OAuth2)", f"http://127.0.0.1:{cp_oauth.port}/", small_tls, host_tls,
                                cp_oauth.pid)
            w1.append(c_oauth)
        measure(w1, P["seconds"], P["warmup"], P["rounds"])
        b_cp, b_ngx, b_dir = c_cp.best, c_ngx.best, c_dir.best
        w1_target = "≥ 0.9× nginx req/s and p99 ≤ nginx"
        for label, c, shape in (("1", c_cp, "HTTPS upstream over HTTP/1.1" if cp_h2 else "HTTPS upstream"),
                                ("1b", c_cp2, "HTTPS upstream over h2 (ALPN)")):
            if c is None:
                if label == "1b":
                    table.na(label, f"as W1, {shape}", shapes_na or "no upstream-http", w1_target)
                continue
            b = c.best
            ok1 = (b.rps >= 0.9 * b_ngx.rps and b.p99_ms <= b_ngx.p99_ms and not b.error_text())
            table.add(label, f"100 B GET, keep-alive, 50 conns; `auth bearer` → {shape}",
                      fmt_rps(b), f"nginx forward proxy (HTTP/1.1 upstream, keepalive 64): {fmt_rps(b_ngx)}; "
                      f"upstream direct over TLS: {fmt_rps(b_dir)}",
                      f"{rx(b.rps / b_ngx.rps)} nginx req/s; p99 {rx(b.p99_ms / b_ngx.p99_ms)} nginx; "
                      f"{b.rps / b_dir.rps:.2f}× direct" + cpu_ratio(b, b_ngx, "nginx"),
                      w1_target, verdict(ok1, b.foreign_cores, b_ngx.foreign_cores))
        if floors:
            parts, costs, noise = [], [], []
            for ver, c in (("1.1", c_cp), ("2", c_cp2)):
                f = floors[ver].best
                min_cpu = min(r.cpu_us_per_req for r in floors[ver].results)
                parts.append(f"{floors[ver].name}: {f.rps:,.0f} req/s · p50 {f.p50_ms:.2f} ms · p99 {f.p99_ms:.2f} ms"
                             f" · {min_cpu:.0f} µs CPU/req")
                if c is not None:
                    cp_cpu = min(r.cpu_us_per_req for r in c.results)
                    costs.append((ver, cp_cpu - min_cpu, cp_cpu, min_cpu))
                noise += [r.foreign_cores for r in floors[ver].results]
            own = "; ".join(f"{'HTTP/1.1' if v == '1.1' else 'h2'}: {c:.0f} µs ({cp:.0f} − {fl:.0f})"
                            for v, c, cp, fl in costs)
            table.add("1f", "credproxy's own cost: its CPU per W1 request minus libcurl's alone "
                            "(bench/floor/curl_floor: 50 keep-alive GETs in flight, no proxy, same upstream)",
                      f"own cost {own}", "; ".join(parts),
                      "; ".join(f"{cp / fl:.2f}× the floor's CPU ({'HTTP/1.1' if v == '1.1' else 'h2'})"
                                for v, c, cp, fl in costs),
                      "≤ 15 µs", verdict(bool(costs) and all(c <= 15 for _, c, _, _ in costs), *noise))
            notes.append("W1f: CPU per request is the lowest of the rounds for both sides (the least disturbed); "
                         "the floor sets each handle's options once and per request only the URL and the header "
                         "list, as any forwarder must, and drives curl from epoll with curl_multi_socket_action as "
                         "credproxy does. What credproxy does on top (accept, parse, route, inject, answer the "
                         "client) is its own cost.")
        w2_target = "≥ 0.95× W1"
        if c_oauth:
            b_o = c_oauth.best
            table.add("2", "as W1 with a minted OAuth2 token (cache hot)", fmt_rps(b_o), f"W1 credproxy: {b_cp.rps:,.0f} req/s",
                      f"{rx(b_o.rps / b_cp.rps)} W1", w2_target, verdict(b_o.rps >= 0.95 * b_cp.rps and not b_o.error_text(),
                                                       b_o.foreign_cores, b_cp.foreign_cores))
            procs.stop(cp_oauth.proc)
        else:
            table.na("2", "as W1 with a minted OAuth2 token (cache hot)", oauth_na, w2_target)
        procs.stop(ngx)

        # --- W3 --------------------------------------------------------------------------------
        log("W3: plain-HTTP forwarding vs squid and tinyproxy")
        sq_port, tp_port = free_port(), free_port()
        sq_dir = os.path.join(workdir, "squid")
        os.makedirs(sq_dir)
        os.chmod(sq_dir, 0o777)
        conf = os.path.join(sq_dir, "squid.conf")
        with open(conf, "w") as fh:
            fh.write(squid_conf(sq_dir, sq_port))
        squid = procs.start("squid", ["squid", "-N", "-f", conf])
        conf = os.path.join(workdir, "tinyproxy.conf")
        with open(conf, "w") as fh:
            fh.write(tinyproxy_conf(workdir, tp_port))
        tiny = procs.start("tinyproxy", ["tinyproxy", "-d", "-c", conf])
        wait_port(sq_port, squid, 30)
        wait_port(tp_port, tiny)
        for name, port in (("squid", sq_port), ("tinyproxy", tp_port)):
            st, body = http_get(port, small_plain)
            if st != 200 or len(body) != 100:
                raise BenchError(f"{name} answered {st}: {body[:200]!r}")
        c_cp3 = Contender("credproxy (plain)", f"http://127.0.0.1:{cp_a.port}/", small_plain, host_plain, cp_a.pid)
        c_sq = Contender("squid", f"http://127.0.0.1:{sq_port}/", small_plain, host_plain, squid.pid)
        c_tp = Contender("tinyproxy", f"http://127.0.0.1:{tp_port}/", small_plain, host_plain, tiny.pid)
        measure([c_cp3, c_sq, c_tp], P["seconds"], P["warmup"], P["rounds"])
        b3, bsq, btp = c_cp3.best, c_sq.best, c_tp.best
        table.add("3", "100 B GET, keep-alive, 50 conns; plain HTTP, `auth none`", fmt_rps(b3),
                  f"squid: {fmt_rps(bsq)}; tinyproxy: {fmt_rps(btp)}",
                  f"{rx(b3.rps / bsq.rps)} squid; {b3.rps / btp.rps:.2f}× tinyproxy" + cpu_ratio(b3, bsq, "squid"),
                  "≥ 1.5× squid",
                  verdict(b3.rps >= 1.5 * bsq.rps and not b3.error_text(), b3.foreign_cores, bsq.foreign_cores))
        if btp.errors.get("read errors") and not btp.errors.get("non-2xx/3xx"):
            notes.append("tinyproxy answers without keep-alive and closes the client connection after each "
                         "response; wrk counts each close as a read error and reconnects, so its row's read "
                         "errors are connection closes, not failed requests.")
        procs.stop(squid)
        procs.stop(tiny)

        # --- W4 --------------------------------------------------------------------------------
        w4_name = f"cold burst: {P['burst']:,} concurrent first requests, one OIDC audience"
        w4_target = "exactly 1 mint; all answered"
        log(f"W4: cold bursts of {P['burst']} first requests (`auth bearer` baseline, then OIDC)")

        def burst(name: str, conf_text: str, env_extra=None) -> dict:
            """A fresh proxy; N connections opened, then one request on each at once."""
            proxy = start_credproxy(procs, binary, name, conf_text, workdir, env_extra)
            try:
                with Accounted(name, [proxy.pid]):
                    cp = run([sys.executable, CLIENTS, "burst", "--proxy", f"127.0.0.1:{proxy.port}",
                              "--target", small_tls, "--n", str(P["burst"]), "--deadline", "60"],
                             timeout=90, check=False)
            finally:
                procs.stop(proxy.proc)
            lines = cp.stdout.strip().splitlines()
            res = json.loads(lines[-1]) if lines else {}
            if "statuses" not in res:
                raise BenchError(f"burst client: {res.get('error') or cp.stderr.strip()[-300:]}")
            res["ok"] = res["statuses"].get("200", 0)
            res["text"] = (f"all answered in {res['all_answered_s'] * 1000:,.0f} ms (first "
                           f"{res['first_answer_s'] * 1000:,.0f} ms); "
                           + ", ".join(f"{v}× {k}" for k, v in sorted(res["statuses"].items()))
                           + (f"; {res['connect_failures']} connects failed" if res["connect_failures"] else ""))
            log(f"  {name}: {res['text']}")
            return res

        try:
            base = burst("credproxy-burst-bearer", credproxy_conf(certs["ca"], tls_port, plain_port))
            base_text = f"same burst on `auth bearer`: {base['text']}"
        except BenchError as exc:
            base, base_text = None, f"`auth bearer` burst failed: {str(exc).splitlines()[0][:200]}"
        if oidc_na is None:
            try:
                control = emu_info["control"]["token"]
                before = emulator_mints(control, certs["ca"])
                res = burst("credproxy-oidc", oidc_conf, google_env)
                mints = emulator_mints(control, certs["ca"]) - before
                ratio = (f"{res['all_answered_s'] / base['all_answered_s']:.2f}× the bearer burst's time"
                         if base else "—")
                table.add("4", w4_name, f"{mints} mint{'' if mints == 1 else 's'}; {res['text']}", base_text, ratio, w4_target,
                          verdict(mints == 1 and res["ok"] == P["burst"]))
            except (BenchError, ValueError, KeyError, IndexError, OSError) as exc:
                table.add("4", w4_name, f"not available: burst failed: {str(exc).splitlines()[0][:200]}",
                          base_text, "—", w4_target, "n/a")
        else:
            table.add("4", w4_name, f"not available: {oidc_na}", base_text, "—", w4_target, "n/a")

        # --- W5 --------------------------------------------------------------------------------
        mib = P["stream_mib"]
        log(f"W5: streaming {mib} MiB down and up, proxy vs direct curl")
        large_url = f"http://localhost:{tls_port}/large"
        up_url = f"http://localhost:{tls_port}/upload/blob"
        src = os.path.join(shm, "large.bin")
        blob = os.path.join(shm, "dav", "upload", "blob")
        res5: Dict[str, tuple] = {}
        growth = 0
        # Both upstream shapes: cp_a speaks HTTP/1.1 upstream, cp_h2 h2 (when the binary has
        # upstream-http); the direct run is shared.
        shapes5 = [("", cp_a)] + ([(" h2", cp_h2)] if cp_h2 else [])
        for r in range(P["rounds"]):
            for direction, (tag, proxy5) in [(d, s) for d in ("down", "up") for s in shapes5]:
                url = large_url if direction == "down" else up_url
                with Accounted(f"direct {direction}", [cp_a.pid]) as acc:
                    d = curl_transfer(direction, url.replace("http://", "https://"), src, None, certs["ca"],
                                      tls_port, stream_bytes)
                d["foreign"] = acc.foreign_cores
                if os.path.exists(blob):
                    os.unlink(blob)
                before = rss_kib(proxy5.pid)
                with RssSampler(proxy5.pid) as samp, Accounted(f"proxied {direction}", [proxy5.pid]) as acc:
                    p = curl_transfer(direction, url, src, proxy5.port, certs["ca"], tls_port, stream_bytes)
                p["foreign"] = acc.foreign_cores
                if os.path.exists(blob):
                    os.unlink(blob)
                growth = max(growth, samp.peak - before)
                bp, bd = res5.get(direction + tag, (p, d))
                res5[direction + tag] = (max(bp, p, key=lambda x: (x["ok"], x["mbps"])),
                                         max(bd, d, key=lambda x: (x["ok"], x["mbps"])))
                log(f"  {direction}{tag} round {r + 1}: proxied {p['mbps']:.0f} MiB/s (HTTP {p['code']}), direct "
                    f"{d['mbps']:.0f} MiB/s (HTTP {d['code']}, HTTP/{d['http_version']}); "
                    f"RSS +{(samp.peak - before) / 1024:.1f} MiB")
        for key, label in (("down", "5a"), ("up", "5b"), ("down h2", "5a′"), ("up h2", "5b′")):
            if key not in res5:
                continue
            direction = key.split()[0]
            shape = (" (h2 upstream)" if key.endswith("h2") else " (HTTP/1.1 upstream)") if cp_h2 else ""
            p, d = res5[key]
            ok = p["ok"] and d["ok"] and p["mbps"] >= 0.8 * d["mbps"]
            bad = "" if (p["ok"] and d["ok"]) else f" (**HTTP {p['code']} / {d['code']}, bytes {p['bytes']} / {d['bytes']}**)"
            table.add(label, f"stream {mib:,} MiB {'down' if direction == 'down' else 'up (PUT)'} through the proxy{shape}",
                      f"{p['mbps']:,.0f} MiB/s ({p['seconds']:.2f} s){bad}",
                      f"direct curl over TLS (HTTP/{d['http_version']}): {d['mbps']:,.0f} MiB/s ({d['seconds']:.2f} s)",
                      f"{rx(p['mbps'] / d['mbps'])} direct", "≥ 0.8× direct",
                      verdict(ok, p["foreign"], d["foreign"]))
        table.add("5c", "proxy RSS growth while streaming (peak, VmRSS every 50 ms)",
                  f"+{growth / 1024:.1f} MiB", "RSS before each transfer", "—", "≤ 32 MiB", verdict(growth <= 32 * 1024))

        if cp_h2:
            procs.stop(cp_h2.proc)

        # --- W6 --------------------------------------------------------------------------------
        n_idle = P["idle"]
        log(f"W6: {n_idle:,} idle keep-alive connections")
        procs.stop(cp_a.proc)
        cp_b = start_credproxy(procs, binary, "credproxy-idle",
                               credproxy_conf(certs["ca"], tls_port, plain_port, idle_timeout="10m"), workdir)
        http_get(cp_b.port, small_tls)
        c6base = Contender("credproxy, no idle conns", f"http://127.0.0.1:{cp_b.port}/", small_tls, host_tls, cp_b.pid)
        measure([c6base], P["seconds"], P["warmup"], P["rounds"])
        rss0 = rss_kib(cp_b.pid)
        holder = procs.start("idle-clients", [sys.executable, CLIENTS, "hold", "--proxy", f"127.0.0.1:{cp_b.port}",
                                              "--target", small_tls, "--n", str(n_idle), "--deadline", "400"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        ready = {}
        line_box: List[bytes] = []
        t = threading.Thread(target=lambda: line_box.append(holder.stdout.readline()), daemon=True)
        t.start()
        t.join(180)
        if line_box and line_box[0]:
            ready = json.loads(line_box[0])
        if ready.get("event") != "ready":
            raise BenchError(f"idle clients did not get ready: {ready or tail(holder.bench_log)}")
        time.sleep(1.0)
        rss_idle = rss_kib(cp_b.pid)
        c6 = Contender(f"credproxy + {n_idle // 1000}k idle", f"http://127.0.0.1:{cp_b.port}/", small_tls, host_tls,
                       cp_b.pid)
        measure([c6], P["seconds"], P["warmup"], P["rounds"])
        rss_after = rss_kib(cp_b.pid)
        holder.stdin.write(b"done\n")
        holder.stdin.flush()
        t = threading.Thread(target=lambda: line_box.append(holder.stdout.readline()), daemon=True)
        t.start()
        t.join(30)
        done = json.loads(line_box[-1]) if len(line_box) > 1 and line_box[-1] else {}
        procs.stop(holder)
        closed = done.get("closed_by_peer")
        failures = ready.get("failures") or {}
        fail_txt = (", failed to open: " + ", ".join(f"{v}× {k}" for k, v in failures.items())) if failures else ""
        per_conn = (rss_idle - rss0) / max(1, ready["open"])
        rss_target = 150 * 1024
        table.add("6a", f"{n_idle:,} idle keep-alive client connections held open",
                  f"RSS {rss_idle / 1024:.1f} MiB with {ready['open']:,} open (+{(rss_idle - rss0) / 1024:.1f} MiB, "
                  f"{per_conn:.1f} KiB/conn; {rss_after / 1024:.1f} MiB after the wrk run); "
                  f"{closed if closed is not None else '?'} closed by the proxy while held{fail_txt}",
                  f"RSS before them: {rss0 / 1024:.1f} MiB", "—",
                  "≤ 150 MiB for 10k" + (" (quick mode holds fewer: indicative only)" if quick else ""),
                  verdict(rss_idle <= rss_target and ready["open"] == n_idle and not closed))
        b6, b6base = c6.best, c6base.best
        table.add("6b", f"W1 load while the {n_idle:,} idle connections are held", fmt_rps(b6),
                  f"W1 load on the same proxy just before they were opened: {fmt_rps(b6base)} "
                  f"(W1 row: {b_cp.rps:,.0f} req/s)",
                  f"{rx(b6.rps / b6base.rps)} (vs the W1 row: {b6.rps / b_cp.rps:.2f}×)",
                  "≥ 0.90× W1",
                  verdict(b6.rps >= 0.9 * b6base.rps and not b6.error_text(), b6.foreign_cores, b6base.foreign_cores))

        # --- W7, W8, W9: HTTPS interception ------------------------------------------------------
        procs.stop(cp_b.proc)
        intercept_rows(binary, procs, workdir, certs, tls_port, P, table, notes, b_cp)

        # --- report ----------------------------------------------------------------------------
        title = f"## credproxy benchmark ({'quick' if quick else 'full'} mode)"
        ctx = (f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {versions(binary)}. "
               f"All on 127.0.0.1; wrk -t1 -c50, {P['seconds']} s per run after a {P['warmup']} s warm-up, "
               f"best of {P['rounds']} interleaved round(s); credproxy default threads, nginx worker_processes 2; "
               f"same nginx upstream (HTTPS with h2, and plain HTTP) for everyone. CPU/req = proxy process tree "
               f"CPU time ÷ requests. Ratios are credproxy ÷ the comparison.")
        procs.stop_all()  # measurements are done; this also checks how every credproxy exits
        for prob in procs.problems:
            notes.append(f"**credproxy problem**: {prob}")
        if Interference.worst > 0.15:
            notes.append(f"**Noisy machine**: processes outside the benchmark used up to {Interference.worst:.2f} "
                         f"of the {os.cpu_count()} cores during a measured run ({Interference.where}); "
                         f"load average at start {load_start:.2f}. Rerun on a quiet machine before trusting ratios.")
        else:
            notes.append(f"Quiet machine: other processes used at most {Interference.worst:.2f} cores during "
                         f"measured runs (load average at start {load_start:.2f}).")
        md = "\n".join([title, "", ctx, "", table.markdown(), ""] + [f"- {n}" for n in notes])
        print(md)
        with open(args.out, "w") as fh:
            fh.write(md + "\n")
        log(f"written to {os.path.relpath(args.out, REPO)}; took {time.monotonic() - T0:.0f} s")
        return 0
    except BenchError as exc:
        log(f"FAILED: {exc}")
        if table.rows:
            sys.stderr.write(table.markdown() + "\n")
        return 1
    finally:
        procs.stop_all()
        shutil.rmtree(shm, ignore_errors=True)
        if args.keep:
            log(f"kept {workdir}")
        elif not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
