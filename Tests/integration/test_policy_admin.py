"""The admin listener (`admin ADDR:PORT [token SECRET]`): /healthz, /readyz, /metrics (Prometheus
text format 0.0.4, parsed strictly, counters moved by real requests), /status (HTML, also rendered
by a real headless Chromium: screenshot and DOM), 404 elsewhere, the bearer token when set, and
/readyz 503 while draining."""

from __future__ import annotations

import signal
import threading
import time

import pytest

from harness.rawhttp import RawConnection
from policy_support import (  # noqa: F401 - fixture
    ADMIN_TOKEN,
    ALICE_PASSWORD,
    BOB_TOKEN,
    POLICY_ENV,
    admin_get,
    admin_port,
    assert_refused,
    basic,
    bearer,
    check_histogram,
    check_png,
    chromium,
    chromium_binary,
    connect_tunnel,
    fetch,
    find_secrets,
    parse_metrics,
    policy_secrets,
    tls_over,
    wait_until,
)

pytestmark = pytest.mark.timeout(90)

ALICE = [basic("alice", ALICE_PASSWORD)]
BOB = [bearer(BOB_TOKEN)]

CONF = """\
listen 127.0.0.1:0
ca-file {ca}
connect-timeout 3s
request-timeout 20s
admin 127.0.0.1:0
client alice {
  password env:ITEST_ALICE_PW
}
client bob {
  token env:ITEST_BOB_TOKEN
}
route localhost:{upstream_port}/api {
  auth bearer env:{env_bearer}
  allow alice
}
route localhost:{upstream_port}/denyme {
  deny
}
route localhost:{closed_port} {
  auth none
}
route localhost:{upstream_port} {
  auth none
  tunnel
}
"""

FAMILIES = {
    "credproxy_requests_total": "counter",
    "credproxy_request_duration_seconds": "histogram",
    "credproxy_bytes_in_total": "counter",
    "credproxy_bytes_out_total": "counter",
    "credproxy_open_connections": "gauge",
    "credproxy_open_tunnels": "gauge",
    "credproxy_token_mints_total": "counter",
    "credproxy_token_mint_failures_total": "counter",
    "credproxy_token_cache_hits_total": "counter",
    "credproxy_upstream_errors_total": "counter",
    "credproxy_denials_total": "counter",
}


@pytest.fixture(scope="module")
def px(module_proxy_factory):
    return module_proxy_factory(CONF, env=POLICY_ENV, name="admin")


@pytest.fixture(scope="module")
def aport(px):
    return admin_port(px)


def scrape(aport):
    r = admin_get(aport, "/metrics")
    assert r.status == 200, r
    ctype = r.header("Content-Type") or ""
    assert ctype.replace(" ", "").startswith("text/plain;version=0.0.4"), ctype
    return parse_metrics(r.text), r.text


def test_admin_announced_on_stderr_and_separate_port(px, aport):
    assert aport != px.port
    # The proxy port does not serve admin paths (an origin-form request there is routed).
    with RawConnection(px.port) as c:
        r = c.request("GET", "/healthz", [("Host", f"127.0.0.1:{aport}")])
    assert r.status != 200 or r.text.strip() != "ok", r


def test_healthz(aport):
    r = admin_get(aport, "/healthz")
    assert r.status == 200, r
    assert r.text.strip() == "ok", r


def test_readyz(px, aport):
    r = admin_get(aport, "/readyz")
    assert r.status == 200, r
    assert f"127.0.0.1:{px.port}" in r.text, r.text
    assert "proxy.conf" in r.text, r.text
    assert not find_secrets(r.text)


def test_unknown_path_404(aport):
    for path in ("/nope", "/metrics/x", "/healthzz", "/../etc/passwd"):
        r = admin_get(aport, path)
        assert r.status in (404, 400), (path, r)
    assert admin_get(aport, "/nope").status == 404


def test_metrics_format_and_counters(px, aport, upstream, closed_port, pki, token):
    before, _ = scrape(aport)

    bodies = 0
    for i in range(3):
        r = fetch(px, upstream.url(f"/api/echo/{token}/{i}"), ALICE)
        assert r.status == 200
        bodies += len(r.body)
    r = fetch(px, upstream.url(f"/api/upload?{token}"), ALICE, method="POST", body=b"u" * 5000)
    assert r.status == 200
    bodies += len(r.body)
    assert_refused(fetch(px, upstream.url(f"/api/echo/{token}/bob"), BOB), 403, "client_not_allowed")
    assert_refused(fetch(px, upstream.url(f"/api/echo/{token}/anon")), 407, "proxy_auth_required")
    assert_refused(fetch(px, upstream.url(f"/denyme/{token}"), ALICE), 403, "denied")
    assert_refused(fetch(px, f"http://nowhere.itest.invalid/{token}", ALICE), 403, "no_route")
    r = fetch(px, f"http://localhost:{closed_port}/{token}", ALICE, timeout=10)
    assert r.status == 502 and r.error_code == "upstream_connect", r

    # Gauges while a keep-alive connection and a tunnel are open.
    keep = RawConnection(px.port)
    assert keep.request("GET", upstream.url(f"/echo/{token}/keep"), ALICE).status == 200
    tconn, tresp = connect_tunnel(px.port, f"localhost:{upstream.port}", ALICE)
    assert tresp.status == 200, tresp
    tls_over(tconn, pki.client_context())
    assert tconn.request("GET", f"/echo/{token}/t", [("Host", "localhost")]).status == 200
    during, _ = scrape(aport)
    assert during.get("credproxy_open_connections") >= 2, during.series("credproxy_open_connections")
    assert during.get("credproxy_open_tunnels") == 1, during.series("credproxy_open_tunnels")
    tconn.close()
    keep.close()

    def settled():
        m, _ = scrape(aport)
        return m.get("credproxy_open_tunnels") == 0
    assert wait_until(settled, 5), "open_tunnels did not go back to 0 after the tunnel closed"

    after, text = scrape(aport)
    for name, kind in FAMILIES.items():
        assert after.type.get(name) == kind, f"{name}: TYPE {after.type.get(name)!r}, expected {kind}"
        assert after.help.get(name), f"{name}: no HELP"
    check_histogram(after, "credproxy_request_duration_seconds")
    assert not find_secrets(text)

    def delta(name, **labels):
        return after.total(name, **labels) - before.total(name, **labels)

    assert delta("credproxy_requests_total", status_class="2xx", client="alice") >= 5
    assert delta("credproxy_requests_total", status_class="4xx") >= 4
    assert delta("credproxy_requests_total", status_class="5xx") >= 1
    for labels, _v in after.series("credproxy_requests_total"):
        assert set(labels) == {"route", "status_class", "client"}, labels
        assert labels["status_class"] in ("1xx", "2xx", "3xx", "4xx", "5xx"), labels
    assert delta("credproxy_request_duration_seconds_count") >= 9
    assert delta("credproxy_request_duration_seconds_sum") >= 0
    assert delta("credproxy_bytes_in_total") >= 5000
    assert delta("credproxy_bytes_out_total") >= bodies
    for reason in ("client_not_allowed", "proxy_auth_required", "denied", "no_route"):
        assert delta("credproxy_denials_total", reason=reason) >= 1, (reason, after.series("credproxy_denials_total"))
    errs = [(labels, v - before.total("credproxy_upstream_errors_total", **labels))
            for labels, v in after.series("credproxy_upstream_errors_total")]
    assert any(d >= 1 for _, d in errs), errs
    assert all(set(labels) == {"kind"} for labels, _ in errs), errs
    # Counters never go down.
    for key, v in before.samples.items():
        if before.type.get(key[0]) == "counter" and key in after.samples:
            assert after.samples[key] >= v, key


def test_status_page(px, aport, upstream, token):
    assert_refused(fetch(px, upstream.url(f"/api/echo/{token}"), BOB), 403, "client_not_allowed")
    assert_refused(fetch(px, f"http://denied-{token}.itest.invalid/x", ALICE), 403, "no_route")
    r = admin_get(aport, "/status")
    assert r.status == 200, r
    assert (r.header("Content-Type") or "").startswith("text/html"), r
    html = r.text
    assert html.lstrip().lower().startswith("<!doctype html") or "<html" in html.lower()
    for needle in (f"localhost:{upstream.port}/api", f"localhost:{upstream.port}/denyme",
                   f"denied-{token}.itest.invalid", "client_not_allowed", "no_route"):
        assert needle in html, f"{needle!r} not on the status page"
    assert not find_secrets(html), find_secrets(html)


def test_chromium_renders_status_page(px, aport, upstream, tmp_path, token):
    if chromium_binary() is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium was not possible here)")
    assert_refused(fetch(px, f"http://shot-{token}.itest.invalid/x", ALICE), 403, "no_route")
    url = f"http://127.0.0.1:{aport}/status"
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    dom = chromium(["--dump-dom", url], profile)
    assert dom.returncode == 0, dom.stderr.decode(errors="replace")[-2000:]
    text = dom.stdout.decode("utf-8", "replace")
    assert f"localhost:{upstream.port}/api" in text, text[:2000]
    assert f"shot-{token}.itest.invalid" in text, "the recent denial is not in the rendered DOM"
    assert "<table" in text.lower()
    assert not find_secrets(text)

    shot = tmp_path / "status.png"
    res = chromium([f"--screenshot={shot}", "--window-size=1200,900", "--hide-scrollbars", url], profile)
    assert res.returncode == 0, res.stderr.decode(errors="replace")[-2000:]
    assert shot.exists() and shot.stat().st_size > 1000, "no screenshot written"
    info = check_png(shot.read_bytes())
    assert (info.width, info.height) == (1200, 900), info
    assert info.distinct_colors >= 3, f"the screenshot looks blank: {info}"
    assert info.non_background_fraction > 0.002, f"the screenshot looks blank: {info}"


# -- token ---------------------------------------------------------------------------------------

TOKEN_CONF = """\
listen 127.0.0.1:0
admin 127.0.0.1:0 token env:ITEST_ADMIN_TOKEN
route localhost:{upstream_port} {
  auth none
}
"""


def test_admin_token_required(proxy_factory):
    px = proxy_factory(TOKEN_CONF, env=POLICY_ENV)
    port = admin_port(px)
    for path in ("/healthz", "/readyz", "/metrics", "/status"):
        assert admin_get(port, path).status == 401, path
        assert admin_get(port, path, token="wrong").status == 401, path
        assert admin_get(port, path, token=ADMIN_TOKEN[:-1]).status == 401, path
        assert admin_get(port, path, extra=[("Authorization", f"Basic {ADMIN_TOKEN}")]).status == 401
        r = admin_get(port, path, token=ADMIN_TOKEN)
        assert r.status == 200, (path, r)
        assert ADMIN_TOKEN not in r.text
    assert admin_get(port, "/nope", token=ADMIN_TOKEN).status == 404


def test_admin_off_by_default(proxy_factory):
    px = proxy_factory("listen 127.0.0.1:0\nroute localhost:1 {\n  auth none\n}\n")
    time.sleep(0.2)
    assert "admin listening" not in px.stderr_text()


def test_non_loopback_admin_needs_token(proxy_factory, cli):
    bad = proxy_factory.config("listen 127.0.0.1:0\nadmin 0.0.0.0:0\nroute localhost:1 {\n  auth none\n}\n",
                               name="admin-open.conf")
    r = cli("check", "--config", str(bad), env=POLICY_ENV)
    assert r.returncode == 2, r
    assert "admin-open.conf:2:" in r.stderr and "token" in r.stderr, r.stderr
    good = proxy_factory.config(
        "listen 127.0.0.1:0\nadmin 0.0.0.0:0 token env:ITEST_ADMIN_TOKEN\nroute localhost:1 {\n  auth none\n}\n",
        name="admin-token.conf")
    r = cli("check", "--config", str(good), env=POLICY_ENV)
    assert r.returncode == 0, r
    assert ADMIN_TOKEN not in r.stdout + r.stderr


# -- draining ------------------------------------------------------------------------------------

DRAIN_CONF = """\
listen 127.0.0.1:0
ca-file {ca}
admin 127.0.0.1:0
shutdown-timeout 20s
route localhost:{upstream_port} {
  auth none
}
"""


def test_readyz_503_while_draining(proxy_factory, upstream, token):
    px = proxy_factory(DRAIN_CONF)
    port = admin_port(px)
    assert admin_get(port, "/readyz").status == 200
    result = {}

    def slow():
        try:
            result["r"] = fetch(px, upstream.url(f"/slow-stream?id={token}&chunks=30&size=1000&interval=0.1"),
                                timeout=30)
        except Exception as e:  # noqa: BLE001
            result["r"] = e

    t = threading.Thread(target=slow)
    t.start()
    assert upstream.wait_event("slow_start", token, timeout=10)
    px.proc.send_signal(signal.SIGTERM)
    seen = []

    def draining_seen():
        try:
            r = admin_get(port, "/readyz", timeout=2)
        except OSError as e:
            seen.append(repr(e))
            return False
        seen.append(r.status)
        return r.status == 503
    ok = wait_until(draining_seen, 2.5, interval=0.1)
    t.join(30)
    assert ok, f"/readyz while draining answered {seen[-5:]}"
    r = result.get("r")
    assert not isinstance(r, Exception) and r.status == 200 and len(r.body) == 30000, r
    assert px.proc.wait(timeout=20) == 0
