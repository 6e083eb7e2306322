#!/usr/bin/env python3
"""Many-connection HTTP/1.1 clients for credproxy's benchmark (used by bench/run.py).

  clients.py burst --proxy 127.0.0.1:PORT --target URL --n 1000
      Opens N connections, and once every one is connected sends one absolute-form GET on each at
      the same moment; prints one JSON line: statuses, time until all were answered.

  clients.py hold --proxy 127.0.0.1:PORT --target URL --n 10000
      Opens N keep-alive connections, sends one request on each (so each is a real keep-alive
      connection that has carried a request) and keeps them idle. Prints a JSON "ready" line,
      then waits for a line (or EOF) on stdin, and prints a JSON "done" line counting how many
      connections the peer closed meanwhile.

  clients.py load --proxy 127.0.0.1:PORT --target URL --via plain|connect --conns 50 --seconds 3
      Load generator for the HTTPS-interception rows (wrk cannot CONNECT). `--via plain` sends
      absolute-form GETs (`GET http://host:port/path`) to the proxy; `--via connect` opens
      `CONNECT host:port`, then TLS inside the tunnel (SNI = host, verified against --ca), then
      origin-form GETs. Keep-alive by default; `--close` makes every request a new connection
      (a new CONNECT and a full TLS handshake: no session resumption) with `Connection: close`.
      `--procs K` splits the connections over K processes (Python alone cannot saturate a fast
      proxy). `--hosts a,b,c` (or `--host-pattern 'h{i}.example:443' --count N`) sends one request
      per host, in order, instead of running for --seconds. Prints one JSON line: requests,
      seconds, statuses, errors, latency percentiles and the client's own CPU time.

Everything is loopback; each call is bounded by --deadline seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import ssl
import subprocess
import sys
import time
import urllib.parse


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


def request_bytes(target: str) -> bytes:
    u = urllib.parse.urlsplit(target)
    return (f"GET {target} HTTP/1.1\r\nHost: {u.netloc}\r\nUser-Agent: credproxy-bench\r\n"
            "Accept: */*\r\n\r\n").encode("ascii")


async def read_response(reader: asyncio.StreamReader) -> int:
    """Reads one response (Content-Length or chunked body); returns its status."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length, chunked = None, False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value.strip())
        elif name == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass
                break
            await reader.readexactly(size + 2)
    elif length:
        await reader.readexactly(length)
    return status


async def connect(host: str, port: int, tries: int = 3):
    for attempt in range(tries):
        try:
            return await asyncio.open_connection(host, port, limit=1 << 16)
        except OSError:
            if attempt == tries - 1:
                raise
            await asyncio.sleep(0.05 * (attempt + 1))


async def burst(args) -> dict:
    host, port = args.proxy.rsplit(":", 1)
    port = int(port)
    req = request_bytes(args.target)
    sem = asyncio.Semaphore(args.connect_concurrency)

    async def open_one():
        async with sem:
            return await connect(host, port)

    conns = await asyncio.gather(*(open_one() for _ in range(args.n)), return_exceptions=True)
    good = [c for c in conns if not isinstance(c, BaseException)]
    connect_failures = len(conns) - len(good)
    statuses: dict = {}
    done_times = []
    t0 = time.monotonic()
    for _, w in good:  # every request leaves before any answer is awaited
        w.write(req)

    async def one(r):
        try:
            s = str(await read_response(r))
        except (OSError, asyncio.IncompleteReadError, ValueError, asyncio.LimitOverrunError) as exc:
            s = type(exc).__name__
        done_times.append(time.monotonic() - t0)
        statuses[s] = statuses.get(s, 0) + 1

    await asyncio.gather(*(one(r) for r, _ in good))
    elapsed = time.monotonic() - t0
    for _, w in good:
        w.close()
    done_times.sort()
    return {
        "n": args.n,
        "connected": len(good),
        "connect_failures": connect_failures,
        "statuses": statuses,
        "all_answered_s": elapsed,
        "first_answer_s": done_times[0] if done_times else None,
        "median_answer_s": done_times[len(done_times) // 2] if done_times else None,
    }


async def hold(args) -> None:
    host, port = args.proxy.rsplit(":", 1)
    port = int(port)
    req = request_bytes(args.target)
    sem = asyncio.Semaphore(args.connect_concurrency)
    conns = []
    failures: dict = {}
    closed = 0

    async def open_one():
        async with sem:
            try:
                r, w = await connect(host, port)
                w.write(req)
                s = await read_response(r)
                if s != 200:
                    failures[str(s)] = failures.get(str(s), 0) + 1
                    w.close()
                    return
                conns.append((r, w))
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                k = type(exc).__name__
                failures[k] = failures.get(k, 0) + 1

    t0 = time.monotonic()
    await asyncio.gather(*(open_one() for _ in range(args.n)))
    opened_s = time.monotonic() - t0

    async def watch(r):
        nonlocal closed
        try:
            data = await r.read(1)
        except OSError:
            data = b""
        if not data:
            closed += 1

    watchers = [asyncio.ensure_future(watch(r)) for r, _ in conns]
    print(json.dumps({"event": "ready", "open": len(conns), "failures": failures, "open_s": opened_s}),
          flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.readline)
    await asyncio.sleep(0)
    print(json.dumps({"event": "done", "open": len(conns), "closed_by_peer": closed}), flush=True)
    for w in watchers:
        w.cancel()
    for _, w in conns:
        w.close()


# ---------------------------------------------------------------------------------------------
# load: keep-alive or connection-per-request GETs, plain or through CONNECT + TLS
# ---------------------------------------------------------------------------------------------


class _Conn(asyncio.Protocol):
    """One client connection. Responses are framed by Content-Length only (the benchmark's
    upstream always sends it); a CONNECT's 2xx has no body."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.waiter: "asyncio.Future | None" = None
        self.head_only = False
        self.eof = False
        self.transport = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self._check()

    def eof_received(self):
        self.eof = True
        self._check()
        return False

    def connection_lost(self, exc) -> None:
        self.eof = True
        self._check()

    def _check(self) -> None:
        w = self.waiter
        if w is None or w.done():
            return
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            if self.eof:
                w.set_exception(ConnectionResetError("closed before a response"))
            return
        head = bytes(self.buf[:end]).lower()
        status = int(head[9:12])
        length = 0
        if not self.head_only:
            i = head.find(b"\r\ncontent-length:")
            if i >= 0:
                j = head.find(b"\r", i + 2)
                length = int(head[i + 17:j if j >= 0 else len(head)])
        total = end + 4 + length
        if len(self.buf) < total:
            if self.eof:
                w.set_exception(ConnectionResetError("closed mid-response"))
            return
        del self.buf[:total]
        self.waiter = None
        w.set_result((status, b"connection: close" in head))

    def response(self, head_only: bool = False) -> "asyncio.Future":
        self.head_only = head_only
        self.waiter = asyncio.get_running_loop().create_future()
        self._check()
        return self.waiter


def _client_ctx(ca: "str | None") -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ca)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


async def _open(args, ctx, target_host: str, target_port: int, authority: str):
    """A connection ready for requests: plain to the proxy, or CONNECT + TLS through it."""
    loop = asyncio.get_running_loop()
    host, port = args.proxy.rsplit(":", 1)
    transport, proto = await loop.create_connection(_Conn, host, int(port))
    if args.via == "connect":
        transport.write(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
        status, _ = await proto.response(head_only=True)
        if status != 200:
            transport.close()
            raise ConnectionRefusedError(f"CONNECT {status}")
        transport = await loop.start_tls(transport, proto, ctx, server_hostname=target_host)
        proto.transport = transport
    return transport, proto


def _request(args, host: str, port: int, path: str, authority: str) -> bytes:
    target = f"http://{authority}{path}" if args.via == "plain" else path
    close = "Connection: close\r\n" if args.close else ""
    return (f"GET {target} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: credproxy-bench\r\n{close}\r\n"
            .encode("ascii"))


async def _load_worker_async(args) -> dict:
    u = urllib.parse.urlsplit(args.target)
    host, port = u.hostname, u.port or (443 if u.scheme == "https" else 80)
    path = u.path or "/"
    ctx = _client_ctx(args.ca) if args.via == "connect" else None
    statuses: dict = {}
    errors: dict = {}
    lat: list = []
    hosts = args.host_list
    if hosts is not None:
        conns = 1
    else:
        conns = args.conns
    start_at = args.start_at
    stop_at = start_at + args.seconds
    cpu0 = [0.0]

    def count(d: dict, k: str) -> None:
        d[k] = d.get(k, 0) + 1

    async def per_request_conn(h: str, p: int, deadline: "float | None" = None) -> None:
        authority = f"{h}:{p}"
        req = _request(args, h, p, path, authority)
        t0 = time.perf_counter()
        tr = None
        try:
            tr, proto = await _open(args, ctx, h, p, authority)
            tr.write(req)
            st, _ = await proto.response()
            if deadline is None or time.time() <= deadline:  # answered within the measured window
                lat.append(time.perf_counter() - t0)
                count(statuses, str(st))
        except (OSError, ssl.SSLError, ValueError, asyncio.TimeoutError) as exc:
            count(errors, f"{type(exc).__name__}: {str(exc)[:80]}")
        finally:
            if tr is not None:
                tr.close()

    async def keepalive(i: int) -> None:
        authority = f"{host}:{port}"
        req = _request(args, host, port, path, authority)
        conn = None
        while True:
            if conn is None:
                try:
                    conn = await _open(args, ctx, host, port, authority)
                except (OSError, ssl.SSLError, ValueError) as exc:
                    count(errors, f"connect: {type(exc).__name__}")
                    await asyncio.sleep(0.01)
                    if time.time() >= stop_at:
                        return
                    continue
            now = time.time()
            if now < start_at:
                await asyncio.sleep(start_at - now)
            if time.time() >= stop_at:
                conn[0].close()
                return
            t0 = time.perf_counter()
            try:
                conn[0].write(req)
                st, closing = await conn[1].response()
            except (OSError, ssl.SSLError, ValueError) as exc:
                count(errors, f"{type(exc).__name__}")
                conn[0].close()
                conn = None
                continue
            if time.time() <= stop_at:
                lat.append(time.perf_counter() - t0)
                count(statuses, str(st))
            if closing:
                conn[0].close()
                conn = None

    async def closing_loop() -> None:
        now = time.time()
        if now < start_at:
            await asyncio.sleep(start_at - now)
        while time.time() < stop_at:
            failed_before = sum(errors.values())
            await per_request_conn(host, port, stop_at)
            if sum(errors.values()) > failed_before:  # no hot loop against a refusing proxy
                await asyncio.sleep(0.01)

    def cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    if hosts is not None:
        now = time.time()
        if now < start_at:
            await asyncio.sleep(start_at - now)
        cpu0[0] = cpu()
        t0 = time.perf_counter()
        for h in hosts:
            hh, _, pp = h.rpartition(":")
            await per_request_conn(hh, int(pp))
        elapsed = time.perf_counter() - t0
    elif args.close:
        tasks = [asyncio.ensure_future(closing_loop()) for _ in range(conns)]
        await asyncio.sleep(max(0.0, start_at - time.time()))
        cpu0[0] = cpu()
        await asyncio.gather(*tasks)
        elapsed = args.seconds
    else:
        tasks = [asyncio.ensure_future(keepalive(i)) for i in range(conns)]
        await asyncio.sleep(max(0.0, start_at - time.time()))
        cpu0[0] = cpu()
        await asyncio.gather(*tasks)
        elapsed = args.seconds
    return {"requests": len(lat), "seconds": elapsed, "statuses": statuses, "errors": errors,
            "latencies": lat, "cpu_s": cpu() - cpu0[0]}


def _percentile(sorted_vals: list, q: float) -> "float | None":
    if not sorted_vals:
        return None
    return sorted_vals[min(len(sorted_vals) - 1, int(q * len(sorted_vals)))]


def load(args) -> dict:
    """Runs --procs worker processes (each its share of --conns) and merges what they saw."""
    if args.hosts:
        args.host_list = args.hosts.split(",")
    elif args.host_pattern:
        args.host_list = [args.host_pattern.format(i=i) for i in range(args.count)]
    else:
        args.host_list = None
    if args.worker or args.host_list is not None:
        if not args.start_at:
            args.start_at = time.time()
        res = asyncio.run(asyncio.wait_for(_load_worker_async(args), args.deadline))
        if args.worker:
            return res
        lat = sorted(res.pop("latencies"))
        res.update(p50_ms=_ms(_percentile(lat, 0.5)), p99_ms=_ms(_percentile(lat, 0.99)), procs=1)
        return res
    procs = max(1, min(args.procs, args.conns))
    start_at = time.time() + args.ramp
    workers = []
    share = [args.conns // procs + (1 if i < args.conns % procs else 0) for i in range(procs)]
    for n in share:
        argv = [sys.executable, os.path.abspath(__file__), "load", "--worker", "--proxy", args.proxy,
                "--target", args.target, "--via", args.via, "--conns", str(n), "--seconds", str(args.seconds),
                "--start-at", repr(start_at), "--deadline", str(args.deadline)]
        if args.ca:
            argv += ["--ca", args.ca]
        if args.close:
            argv.append("--close")
        workers.append(subprocess.Popen(argv, stdout=subprocess.PIPE, text=True))
    merged = {"requests": 0, "seconds": args.seconds, "statuses": {}, "errors": {}, "cpu_s": 0.0,
              "procs": procs}
    lat: list = []
    for w in workers:
        out, _ = w.communicate(timeout=args.deadline + 30)
        r = json.loads(out.strip().splitlines()[-1])
        merged["requests"] += r["requests"]
        merged["cpu_s"] += r["cpu_s"]
        lat.extend(r["latencies"])
        for k in ("statuses", "errors"):
            for kk, v in r[k].items():
                merged[k][kk] = merged[k].get(kk, 0) + v
    lat.sort()
    merged.update(p50_ms=_ms(_percentile(lat, 0.5)), p99_ms=_ms(_percentile(lat, 0.99)))
    return merged


def _ms(x: "float | None") -> "float | None":
    return None if x is None else x * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["burst", "hold", "load"])
    ap.add_argument("--proxy", required=True, help="HOST:PORT of the proxy")
    ap.add_argument("--target", required=True, help="absolute URL put on the request line")
    ap.add_argument("--n", type=int, default=0)
    ap.add_argument("--via", choices=["plain", "connect"], default="plain", help="load: how requests reach the proxy")
    ap.add_argument("--conns", type=int, default=50, help="load: concurrent connections (all processes)")
    ap.add_argument("--procs", type=int, default=1, help="load: client processes")
    ap.add_argument("--seconds", type=float, default=3.0, help="load: how long to measure")
    ap.add_argument("--ramp", type=float, default=1.0, help="load: seconds to open connections before measuring")
    ap.add_argument("--close", action="store_true", help="load: a new connection (and handshake) per request")
    ap.add_argument("--ca", help="load: CA file the client trusts for TLS inside the tunnel")
    ap.add_argument("--hosts", help="load: comma-separated host:port list, one request each, in order")
    ap.add_argument("--host-pattern", help="load: e.g. 'h{i}.bench.test:443', with --count")
    ap.add_argument("--count", type=int, default=0)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--start-at", type=float, default=0.0, help=argparse.SUPPRESS)
    ap.add_argument("--connect-concurrency", type=int, default=0,
                    help="connections being opened at once (default: all for burst, 256 for hold)")
    ap.add_argument("--deadline", type=float, default=120.0, help="give up after this many seconds")
    args = ap.parse_args()
    limit = raise_nofile()
    if args.mode == "load":
        try:
            print(json.dumps(load(args)), flush=True)
        except asyncio.TimeoutError:
            print(json.dumps({"event": "error", "error": f"deadline of {args.deadline:g} s passed"}), flush=True)
            return 1
        return 0
    if args.n + 64 > limit:
        print(json.dumps({"event": "error", "error": f"RLIMIT_NOFILE is {limit}, need {args.n + 64}"}))
        return 1
    if not args.connect_concurrency:
        args.connect_concurrency = args.n if args.mode == "burst" else 256

    async def run():
        if args.mode == "burst":
            print(json.dumps(await asyncio.wait_for(burst(args), args.deadline)), flush=True)
        else:
            await asyncio.wait_for(hold(args), args.deadline)

    try:
        asyncio.run(run())
    except asyncio.TimeoutError:
        print(json.dumps({"event": "error", "error": f"deadline of {args.deadline:g} s passed"}), flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
