"""The security review's breaks, each reproduced against the real binary:

1. request smuggling with the injected credential after an early upstream answer;
2. the SSRF guard bypassed through a pooled upstream connection;
3. an upstream desyncing the caller's keep-alive connection with its framing;
and the request-path faults of the same review (OPTIONS *, `_`/`-` header spellings, tokens over
plain http decided on the dialled address, bytes counted after a failed upload, PIPEWAIT on http,
a body that trickles)."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from harness import secret_values as sv
from harness.hostile import HostileUpstream
from harness.rawhttp import RawConnection, get_via_proxy


@pytest.fixture(scope="module")
def hostile():
    server = HostileUpstream().start()
    yield server
    server.stop()


def render(config: str, hostile: HostileUpstream) -> str:
    return config.replace("{hostile_port}", str(hostile.port))


BEARER_CONFIG = """\
listen 127.0.0.1:0
route 127.0.0.1:{hostile_port} {
  upstream http
  auth bearer env:{env_bearer}
}
"""


def smuggled_head(tag: str, port: int, length: int) -> bytes:
    """A GET head of exactly ``length`` bytes (padded with a header)."""
    base = f"GET /echo/SMUGGLED-{tag} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Pad: "
    end = "\r\n\r\n"
    pad = length - len(base) - len(end)
    assert pad > 0
    return (base + "p" * pad + end).encode()


# -- 1. smuggling ------------------------------------------------------------------------------

@pytest.mark.parametrize("status", [413, 401, 403, 301, 500])
def test_early_answer_then_body_is_never_parsed_as_a_request(proxy, hostile, status):
    px = proxy(render(BEARER_CONFIG, hostile))
    tag = f"early{status}"
    with RawConnection(px.port) as c:
        c.send(f"POST /early/{status} HTTP/1.1\r\nHost: 127.0.0.1:{hostile.port}\r\n"
               f"Content-Length: 173\r\n\r\n".encode())
        head = c.read_head()
        assert head.status == status, head
        assert (head.header("Connection") or "").lower() == "close", head
        try:
            c.send(smuggled_head(tag, hostile.port, 173))
        except OSError:
            pass  # the proxy may already have closed: that is the point
        assert c.wait_closed(5), "the connection stayed open after an answer to an unread body"
    time.sleep(0.5)
    assert not hostile.seen(f"SMUGGLED-{tag}"), hostile.seen("SMUGGLED")


def test_one_write_of_a_body_made_of_heads_smuggles_nothing(proxy, hostile):
    px = proxy(render(BEARER_CONFIG, hostile))
    one = smuggled_head("bulk", hostile.port, 200)
    body = one * ((1 << 20) // len(one))
    payload = (f"POST /early/413 HTTP/1.1\r\nHost: 127.0.0.1:{hostile.port}\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    with RawConnection(px.port) as c:
        def send_all():
            try:
                c.sock.sendall(payload)
            except OSError:
                pass
        writer = threading.Thread(target=send_all, daemon=True)
        writer.start()
        head = c.read_head()
        assert head.status == 413, head
        writer.join(10)
        if (head.header("Connection") or "").lower() == "close":
            assert c.wait_closed(10)
        else:
            # The upstream took the whole body before it answered (loopback buffers are deep):
            # nothing was left unread, so the connection may stay; it must still be in step.
            r = c.request("GET", f"http://127.0.0.1:{hostile.port}/echo/after-bulk")
            assert r.status == 200 and r.json()["line"].startswith("GET /echo/after-bulk"), r
    time.sleep(0.5)
    assert not hostile.seen("SMUGGLED-bulk"), f"{len(hostile.seen('SMUGGLED-bulk'))} smuggled"


def test_answer_after_the_whole_body_keeps_the_connection(proxy, hostile):
    """The rule closes only when body bytes were left unread: a normal POST keeps alive."""
    px = proxy(render(BEARER_CONFIG, hostile))
    with RawConnection(px.port) as c:
        for i in range(3):
            r = c.request("POST", f"/echo/ka{i}", [("Host", f"127.0.0.1:{hostile.port}")],
                          body=b"x" * 1000)
            assert r.status == 200, r
            assert r.json()["body_length"] == 1000
            assert (r.header("Connection") or "").lower() != "close"


# -- 2. SSRF through a pooled connection -------------------------------------------------------

POOL_CONFIG = """\
listen 127.0.0.1:0
route 127.0.0.1:{hostile_port}/public {
  upstream http
}
route * {
  upstream http
}
"""


def test_blocked_address_alone(proxy, hostile):
    px = proxy(render(POOL_CONFIG, hostile))
    r = get_via_proxy(px.port, f"http://127.0.0.1:{hostile.port}/secret/alone")
    assert r.status == 403 and r.error_code == "blocked_address", r


@pytest.mark.parametrize("same_connection", [True, False])
def test_pooled_connection_does_not_bypass_the_address_check(proxy, hostile, same_connection):
    px = proxy(render(POOL_CONFIG, hostile))
    with RawConnection(px.port) as c:
        r = c.request("GET", f"http://127.0.0.1:{hostile.port}/public/x")
        assert r.status == 200, r
        if same_connection:
            r2 = c.request("GET", f"http://127.0.0.1:{hostile.port}/secret/x")
        else:
            # Another caller: the proxy has a loop per core, so try enough connections to land
            # on the loop whose pool holds the connection.
            results = []
            for _ in range(8):
                with RawConnection(px.port) as other:
                    results.append(other.request("GET", f"http://127.0.0.1:{hostile.port}/secret/x"))
            assert all(x.status == 403 and x.error_code == "blocked_address" for x in results), results
            r2 = results[0]
    assert r2.status == 403 and r2.error_code == "blocked_address", r2
    assert not hostile.seen("/secret/x"), hostile.seen("/secret")


# -- 3. framing computed, not copied -----------------------------------------------------------

PLAIN_CONFIG = """\
listen 127.0.0.1:0
route 127.0.0.1:{hostile_port} {
  upstream http
}
"""


@pytest.mark.parametrize("path", ["/h101", "/clte", "/twocl"])
def test_ambiguous_upstream_framing_is_502_and_closes(proxy, hostile, path):
    px = proxy(render(PLAIN_CONFIG, hostile))
    with RawConnection(px.port) as c:
        r = c.request("GET", f"http://127.0.0.1:{hostile.port}{path}")
        assert r.status == 502 and r.error_code == "upstream_protocol", r
        assert b"INJECT" not in r.body
        assert c.wait_closed(5), "the caller's connection stayed open after ambiguous framing"


def test_connection_naming_content_length_keeps_framing(proxy, hostile):
    px = proxy(render(PLAIN_CONFIG, hostile))
    with RawConnection(px.port) as c:
        r = c.request("GET", f"http://127.0.0.1:{hostile.port}/conncl")
        assert r.status == 200, r
        assert r.header("Content-Length") == "5", r
        assert r.body == b"hello"
        r2 = c.request("GET", f"http://127.0.0.1:{hostile.port}/echo/after-conncl")
        assert r2.status == 200, r2
        assert r2.json()["line"].startswith("GET /echo/after-conncl")


# -- request-path faults -----------------------------------------------------------------------

def test_options_asterisk_is_forwarded_as_asterisk(proxy, hostile):
    px = proxy(render(PLAIN_CONFIG, hostile))
    with RawConnection(px.port) as c:
        r = c.request("OPTIONS", "*", [("Host", f"127.0.0.1:{hostile.port}")])
        assert r.status == 200, r
        assert r.json()["line"] == "OPTIONS * HTTP/1.1"
        r = c.request("OPTIONS", f"http://127.0.0.1:{hostile.port}/echo/opt")
        assert r.status == 200, r
        assert r.json()["line"] == "OPTIONS /echo/opt HTTP/1.1"


HEADER_CONFIG = """\
listen 127.0.0.1:0
route 127.0.0.1:{hostile_port} {
  upstream http
  auth header X-Api-Key env:{env_header}
}
"""


def test_caller_header_spelled_with_underscores_is_dropped(proxy, hostile):
    px = proxy(render(HEADER_CONFIG, hostile))
    r = get_via_proxy(px.port, f"http://127.0.0.1:{hostile.port}/echo/underscore",
                      headers=[("X_Api_Key", "caller-1"), ("x-api_KEY", "caller-2"),
                               ("X-Api-Key", "caller-3"), ("X-Api-Keys", "kept")])
    assert r.status == 200, r
    headers = r.json()["headers"]
    api = [v for n, v in headers if n.lower().replace("_", "-") == "x-api-key"]
    assert api == [sv.HEADER_SECRET], "caller copies reached the upstream"
    assert ["X-Api-Keys", "kept"] in headers


def test_bytes_in_counts_what_left_before_the_upstream_failed(proxy, hostile):
    px = proxy(render("listen 127.0.0.1:0\nlog-format json\n" + PLAIN_CONFIG.split("\n", 1)[1], hostile))
    with RawConnection(px.port) as c:
        r = c.request("POST", f"http://127.0.0.1:{hostile.port}/readclose", body=b"u" * 50000)
        assert r.status == 502, r
    deadline = time.monotonic() + 5
    while True:
        lines = [l for l in px.stderr_text().splitlines() if "/readclose" in l]
        if lines or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    record = json.loads(lines[-1])
    assert record["bytes_in"] == 50000, record


def test_plain_http_cold_pool_does_not_queue_behind_one_slow_request(proxy, hostile):
    px = proxy(render("listen 127.0.0.1:0\nrequest-timeout 4s\n" + PLAIN_CONFIG.split("\n", 1)[1],
                      hostile))
    results: dict[int, int] = {}

    def one(i: int, path: str) -> None:
        try:
            results[i] = get_via_proxy(px.port, f"http://127.0.0.1:{hostile.port}{path}", timeout=20).status
        except Exception:  # noqa: BLE001 - any failure counts as not 200
            results[i] = -1

    slow = threading.Thread(target=one, args=(-1, "/sleep/6"))
    slow.start()
    time.sleep(0.05)
    quick = [threading.Thread(target=one, args=(i, f"/echo/quick{i}")) for i in range(30)]
    for t in quick:
        t.start()
    for t in quick:
        t.join(30)
    slow.join(30)
    bad = {i: s for i, s in results.items() if i >= 0 and s != 200}
    assert not bad, f"quick requests failed behind a slow one: {bad}"


def test_trickling_body_times_out(proxy, hostile):
    px = proxy(render("listen 127.0.0.1:0\nbody-timeout 2s\nbody-min-rate 500\n"
                      + PLAIN_CONFIG.split("\n", 1)[1], hostile))
    with RawConnection(px.port, timeout=30) as c:
        c.send(f"POST /echo/trickle HTTP/1.1\r\nHost: 127.0.0.1:{hostile.port}\r\n"
               f"Content-Length: 100\r\n\r\n".encode())
        started = time.monotonic()
        status = None
        for _ in range(20):  # one byte a second: far below 500 B/s
            try:
                c.send(b"x")
            except OSError:
                break
            c.sock.settimeout(1.0)
            try:
                data = c.sock.recv(65536)
            except socket.timeout:
                continue
            if data:
                status = data.split(b" ")[1]
                assert b"body_timeout" in data, data
            break
        assert status == b"408", status
        assert time.monotonic() - started < 12
        assert c.wait_closed(5)


def test_silent_body_times_out_without_a_rate(proxy, hostile):
    px = proxy(render("listen 127.0.0.1:0\nbody-timeout 2s\nbody-min-rate 0\n"
                      + PLAIN_CONFIG.split("\n", 1)[1], hostile))
    with RawConnection(px.port, timeout=30) as c:
        c.send(f"POST /echo/silent HTTP/1.1\r\nHost: 127.0.0.1:{hostile.port}\r\n"
               f"Content-Length: 100\r\n\r\n".encode() + b"y" * 10)
        r = c.read_head(timeout=15)
        assert r.status == 408 and r.error_code == "body_timeout", r


REFUSING_CURL = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdarg.h>
#include <curl/curl.h>
#undef curl_easy_setopt
/* A libcurl that refuses one option, as an old or stripped-down build would. */
CURLcode curl_easy_setopt(CURL *h, CURLoption o, ...) {
  static CURLcode (*real)(CURL *, CURLoption, ...);
  if (!real) real = (CURLcode (*)(CURL *, CURLoption, ...))dlsym(RTLD_NEXT, "curl_easy_setopt");
  va_list ap;
  va_start(ap, o);
  void *arg = va_arg(ap, void *);
  va_end(ap);
  if (o == REFUSED) return CURLE_UNKNOWN_OPTION;
  return real(h, o, arg);
}
"""


@pytest.mark.parametrize("option", ["CURLOPT_PREREQFUNCTION", "CURLOPT_SSL_VERIFYPEER", "CURLOPT_PROXY"])
def test_refuses_to_serve_when_libcurl_refuses_a_security_option(tmp_path, credproxy_bin, option):
    import shutil
    import subprocess

    if shutil.which("gcc") is None:
        pytest.fail("gcc is needed to build the refusing libcurl shim")
    src = tmp_path / "refuse.c"
    src.write_text(REFUSING_CURL.replace("REFUSED", option))
    lib = tmp_path / "refuse.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(lib), str(src), "-ldl"], check=True)
    conf = tmp_path / "proxy.conf"
    conf.write_text("listen 127.0.0.1:0\nroute example.com {\n  auth none\n}\n")
    r = subprocess.run([str(credproxy_bin), "serve", "--config", str(conf)], capture_output=True,
                       text=True, timeout=20, env={"LD_PRELOAD": str(lib), "PATH": "/usr/bin:/bin"},
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert option in r.stderr and "refusing to serve" in r.stderr, r.stderr
