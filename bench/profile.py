#!/usr/bin/env python3
"""Instruction and syscall counts per request on credproxy's hot path (W1's request: a 100-byte
keep-alive GET, absolute-form, `auth bearer`, HTTPS upstream), robust where wall-clock numbers are
not (a shared, noisy 2-core machine).

    python3 bench/profile.py --bin .build/release/credproxy callgrind [--http 1.1|2] [--n 2000]
    python3 bench/profile.py --bin .build/release/credproxy strace    [--http 1.1|2] [--n 2000]

Starts the same nginx upstream as bench/run.py (its own certificates, on 127.0.0.1), then one
credproxy with `--threads 1` (under `valgrind --tool=callgrind`, or `strace -c -f`), warms it up
with 200 requests, then sends N requests over 10 keep-alive connections. callgrind: instrumentation
is switched on only for those N (`--instr-atstart=no`, then callgrind_control -i on, and -d), and
the result is Ir per request and the top functions (callgrind_annotate, inclusive and self);
strace: syscalls per request by name (start-up and warm-up included; STRACE_FULL=K prints the
last K lines of a full trace instead).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as bench  # noqa: E402  (bench/run.py: certificates, nginx upstream, credproxy config)


def drive(port: int, target: str, host: str, n: int, conns: int = 10) -> None:
    """n keep-alive GETs over `conns` connections, each answered (100-byte body) before the next."""
    req = f"GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    per = [n // conns + (1 if i < n % conns else 0) for i in range(conns)]
    errors: list = []

    def one(count: int) -> None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=120) as s:
                buf = b""
                for _ in range(count):
                    s.sendall(req)
                    while True:
                        end = buf.find(b"\r\n\r\n")
                        if end >= 0:
                            m = re.search(rb"(?i)content-length: *(\d+)", buf[:end])
                            need = end + 4 + int(m.group(1))
                            if len(buf) >= need:
                                if not buf.startswith(b"HTTP/1.1 200"):
                                    raise RuntimeError(buf[:200])
                                buf = buf[need:]
                                break
                        chunk = s.recv(65536)
                        if not chunk:
                            raise RuntimeError("closed")
                        buf += chunk
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(c,)) for c in per]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"driver: {errors[0]}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True)
    ap.add_argument("tool", choices=["callgrind", "strace"])
    ap.add_argument("--http", choices=["1.1", "2", "default"], default="default",
                    help="the route's `upstream-http` (default: leave the directive out)")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--conns", type=int, default=10)
    ap.add_argument("--top", type=int, default=25, help="functions listed (callgrind)")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    binary = os.path.abspath(args.bin)
    workdir = tempfile.mkdtemp(prefix="credproxy-profile.")
    procs = bench.Procs(workdir)
    try:
        certs = bench.make_certs(workdir)
        shm = tempfile.mkdtemp(prefix="credproxy-profile.")
        os.makedirs(os.path.join(shm, "dav"))
        os.makedirs(os.path.join(shm, "body"))
        tls_port, plain_port = bench.free_port(), bench.free_port()
        conf = os.path.join(workdir, "upstream.conf")
        with open(conf, "w") as fh:
            fh.write(bench.upstream_nginx_conf(workdir, shm, certs, tls_port, plain_port))
        up = procs.start("upstream-nginx", ["nginx", "-c", conf, "-p", workdir, "-e", f"{workdir}/upstream-error.log"])
        bench.wait_port(tls_port, up)
        text = bench.credproxy_conf(certs["ca"], tls_port, plain_port)
        if args.http != "default":
            text = text.replace("  auth bearer", f"  upstream-http {args.http}\n  auth bearer", 1)
        path = os.path.join(workdir, "credproxy.conf")
        with open(path, "w") as fh:
            fh.write(text)
        out = os.path.join(workdir, "callgrind.out")
        if args.tool == "callgrind":
            wrap = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--instr-atstart=no"]
        else:
            wrap = ["strace", "-f", "-o", os.path.join(workdir, "strace.txt")] if os.environ.get("STRACE_FULL") else ["strace", "-c", "-f", "-o", os.path.join(workdir, "strace.txt")]
        env = dict(os.environ, BENCH_TOKEN=bench.STATIC_TOKEN)
        p = procs.start("credproxy", wrap + [binary, "serve", "--config", path, "--threads", "1"], env=env)
        deadline = time.monotonic() + 120
        port = None
        while time.monotonic() < deadline and port is None:
            m = re.search(r"listening on 127\.0\.0\.1:(\d+)", bench.tail(p.bench_log, 80))
            port = int(m.group(1)) if m else None
            time.sleep(0.2)
        if port is None:
            raise SystemExit(f"credproxy did not start:\n{bench.tail(p.bench_log)}")
        target, host = f"http://localhost:{tls_port}/small", f"localhost:{tls_port}"
        drive(port, target, host, 200, args.conns)
        if args.tool == "callgrind":
            subprocess.run(["callgrind_control", "-i", "on", str(p.pid)], check=True, capture_output=True)
            drive(port, target, host, args.n, args.conns)
            subprocess.run(["callgrind_control", "-d", str(p.pid)], check=True, capture_output=True)
            dumps = sorted(f for f in os.listdir(workdir) if f.startswith("callgrind.out"))
            ir = 0
            for f in dumps:
                with open(os.path.join(workdir, f)) as fh:
                    for line in fh:
                        if line.startswith("summary:") or line.startswith("totals:"):
                            ir = max(ir, int(line.split()[1]))
                            break
            print(f"{ir / args.n:,.0f} instructions per request ({ir:,} for {args.n} requests, "
                  f"upstream-http {args.http}, {args.conns} connections)")
            dump = [os.path.join(workdir, f) for f in dumps if f != "callgrind.out"]
            ann = subprocess.run(["callgrind_annotate", "--inclusive=yes", dump[-1] if dump else out],
                                 capture_output=True, text=True).stdout
            lines = [ln for ln in ann.splitlines() if re.match(r"^\s*[\d,]+ \(", ln)]
            print("\n".join(lines[:args.top]))
            ann = subprocess.run(["callgrind_annotate", dump[-1] if dump else out],
                                 capture_output=True, text=True).stdout
            lines = [ln for ln in ann.splitlines() if re.match(r"^\s*[\d,]+ \(", ln)]
            print("-- self cost --")
            print("\n".join(lines[:args.top]))
        else:
            # strace counts from start; subtract a run of the warm-up size measured the same way.
            drive(port, target, host, args.n, args.conns)
            procs.stop(p)
            with open(os.path.join(workdir, "strace.txt")) as fh:
                table = fh.read()
            if os.environ.get("STRACE_FULL"):
                print("\n".join(table.splitlines()[-int(os.environ["STRACE_FULL"]):]))
                return 0
            print(f"syscalls per request (strace -c -f, {args.n + 200} requests incl. 200 warm-up, "
                  f"upstream-http {args.http}):")
            total = 0
            for line in table.splitlines():
                f = line.split()
                if len(f) >= 5 and f[-1] not in ("syscall", "total") and f[3].isdigit():
                    calls = int(f[3])
                    total += calls
                    if calls >= (args.n + 200) // 20:
                        print(f"  {f[-1]:<16} {calls / (args.n + 200):6.2f}")
            print(f"  {'all syscalls':<16} {total / (args.n + 200):6.2f}")
        return 0
    finally:
        procs.stop_all()
        shutil.rmtree(shm, ignore_errors=True)
        if args.keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
