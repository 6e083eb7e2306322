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

Everything is loopback; each call is bounded by --deadline seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["burst", "hold"])
    ap.add_argument("--proxy", required=True, help="HOST:PORT of the proxy")
    ap.add_argument("--target", required=True, help="absolute URL put on the request line")
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--connect-concurrency", type=int, default=0,
                    help="connections being opened at once (default: all for burst, 256 for hold)")
    ap.add_argument("--deadline", type=float, default=120.0, help="give up after this many seconds")
    args = ap.parse_args()
    limit = raise_nofile()
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
