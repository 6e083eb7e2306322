"""The live status dashboard (/status on the admin listener), rendered by a real headless Chromium:
per-route and per-client traffic of the last minute and 15 minutes with the counts this test
generated, sparklines, the token cache with a live expiry countdown and the last mint, upstream
errors by kind, open connections and tunnels; screenshots at 1280 px and at a phone's 390 px, no
console errors, and hostile text from the config shown as text, never as markup."""

from __future__ import annotations

import html as htmllib
import os
import re
import shutil

import pytest

from google_support import (  # noqa: F401 - fixtures
    RO,
    creds,
    emu,
    genv,
    gtmp,
    gup,
    new_sa,
    reset_emu,
    route,
    tokens_never_logged,
)
from policy_support import (  # noqa: F401 - fixture
    ALICE_PASSWORD,
    BOB_TOKEN,
    POLICY_ENV,
    admin_get,
    admin_port,
    basic,
    bearer,
    check_png,
    chromium,
    chromium_binary,
    connect_tunnel,
    fetch,
    find_secrets,
    policy_secrets,
)

pytestmark = pytest.mark.timeout(120)

ALICE = [basic("alice", ALICE_PASSWORD)]
BOB = [bearer(BOB_TOKEN)]
# Accepted by the config language in a path prefix; markup if the page did not escape it.
HOSTILE = "/<b/id=pwned>&'x"

CONSOLE_RE = re.compile(r"CONSOLE|Uncaught|SyntaxError|ReferenceError|TypeError", re.I)


def build(ca, sa_path, upstream_port: int, closed_port: int, gup_port: int) -> str:
    return "\n".join([
        "listen 127.0.0.1:0",
        f"ca-file {ca}",
        "connect-timeout 3s",
        "request-timeout 20s",
        "admin 127.0.0.1:0",
        "client alice {\n  password env:ITEST_ALICE_PW\n}",
        "client bob {\n  token env:ITEST_BOB_TOKEN\n}",
        creds("sa", f"source key-file {sa_path}"),
        route(f"localhost:{upstream_port}/api", "auth none"),
        route(f"localhost:{closed_port}", "auth none"),
        route(f"localhost:{upstream_port}{HOSTILE}", "deny"),
        route(f"localhost:{gup_port}/g", f"auth OAuth2 scopes {RO}", "credentials sa"),
        route(f"localhost:{upstream_port}", "auth none", "tunnel"),
        "",
    ])


def section(page: str, ident: str) -> str:
    """The HTML from the element with ``id=ident`` to the next ``<h2``."""
    start = page.find(f'id="{ident}"')
    assert start >= 0, f"section {ident!r} is missing"
    end = page.find("<h2", start + 1)
    return page[start:end if end > 0 else len(page)]


def rows(part: str) -> dict[str, list[str]]:
    """Table rows of ``part`` by their first cell's text (tags stripped, entities decoded)."""
    out = {}
    for row in re.findall(r"<tr>(.*?)</tr>", part, re.S):
        cells = [htmllib.unescape(re.sub(r"<[^>]+>", "", c)).strip()
                 for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        if cells:
            out[cells[0]] = cells
    return out


def card(page: str, ident: str) -> str:
    m = re.search(rf'id="{ident}"><b>([^<]*)</b>', page)
    assert m, f"card {ident!r} is missing"
    return m.group(1)


def check_dashboard(page: str, up: int, closed: int, gport: int, tunnel_open: bool) -> None:
    api, dead, g = f"localhost:{up}/api", f"localhost:{closed}", f"localhost:{gport}/g"
    by_route = rows(section(page, "traffic-routes"))
    # columns: name, req 1m, req/s 1m, errors 1m, p50/p99 1m, req 15m, req/s 15m, errors 15m, …
    assert by_route[api][1] == "10" and by_route[api][3] == "0.0 %", by_route[api]
    assert by_route[api][5] == "10", by_route[api]
    assert by_route[dead][1] == "4" and by_route[dead][3] == "100.0 %", by_route[dead]
    assert by_route[g][1] == "2", by_route[g]
    assert re.fullmatch(r"[\d.]+ ms / [\d.]+ ms", by_route[api][4]), by_route[api]
    assert float(by_route[api][2]) > 0, by_route[api]
    by_client = rows(section(page, "traffic-clients"))
    assert by_client["alice"][1] == "13", by_client["alice"]  # 7 api + 4 dead + 2 minted
    assert by_client["bob"][1] == "3", by_client["bob"]
    assert by_client["bob"][3] == "0.0 %" and by_client["alice"][3] == "30.8 %", by_client
    assert section(page, "traffic-routes").count('<svg class="spark"') == len(by_route)
    errors = rows(section(page, "upstream-errors"))
    assert errors["upstream_connect"][1] == "4", errors
    assert card(page, "upstream-error-total") == "4"
    if tunnel_open:
        assert card(page, "open-tunnels") == "1"
        assert int(card(page, "open-connections")) >= 1
    tokens = rows(section(page, "tokens"))
    assert tokens["sa"][5] == "ok", tokens  # last mint
    assert re.fullmatch(r"\d+ s", tokens["sa"][4]), tokens
    # The hostile path prefix is text on the page, never an element.
    assert 'id="pwned"' not in page and "<b/id=pwned>" not in page
    # (Chromium's DOM serialiser writes ' back as itself; the server sends &#39;.)
    assert "/&lt;b/id=pwned&gt;&amp;" in page, "the hostile route is not shown as text"
    assert not find_secrets(page), find_secrets(page)


def test_dashboard_counts_escaping_and_chromium(emu, gup, proxy_factory, genv, upstream,
                                                closed_port, pki, tmp_path):
    if chromium_binary() is None:
        pytest.fail("chromium is not installed (scripts/test installs it)")
    sa = new_sa(emu)
    px = proxy_factory(build(pki.ca_file, sa.path, upstream.port, closed_port, gup.port),
                       env={**POLICY_ENV, **genv()})
    aport = admin_port(px)

    for i in range(7):
        assert fetch(px, upstream.url(f"/api/echo/a{i}"), ALICE).status == 200
    for i in range(3):
        assert fetch(px, upstream.url(f"/api/echo/b{i}"), BOB).status == 200
    for _ in range(4):
        r = fetch(px, f"http://localhost:{closed_port}/x", ALICE)
        assert r.status == 502 and r.error_code == "upstream_connect", r
    for i in range(2):
        assert fetch(px, gup.url(f"/g/{i}"), ALICE).status == 200
    tunnel, resp = connect_tunnel(px.port, f"localhost:{upstream.port}", ALICE)
    assert resp.status == 200, resp
    try:
        page = admin_get(aport, "/status").text
        check_dashboard(page, upstream.port, closed_port, gup.port, tunnel_open=True)
        left = int(re.search(r'data-left="(\d+)"', page).group(1))
        assert 3000 < left <= 3600, left

        url = f"http://127.0.0.1:{aport}/status"
        profile = tmp_path / "chromium-profile"
        profile.mkdir()
        for width, height in ((1280, 900), (390, 844)):
            # The DOM after 3 s of (virtual) time: the script has counted the expiry down.
            dom = chromium([f"--window-size={width},{height}", "--virtual-time-budget=3000",
                            "--enable-logging=stderr", "--v=0", "--dump-dom", url], profile)
            assert dom.returncode == 0, dom.stderr.decode(errors="replace")[-2000:]
            text = dom.stdout.decode("utf-8", "replace")
            check_dashboard(text, upstream.port, closed_port, gup.port, tunnel_open=True)
            shown = int(re.search(r'data-left="\d+">(\d+) s<', text).group(1))
            assert shown < left, f"the expiry countdown did not run: {shown} vs {left}"
            console = [line for line in dom.stderr.decode(errors="replace").splitlines()
                       if CONSOLE_RE.search(line)]
            assert not console, console

            shot = tmp_path / f"status-{width}.png"
            res = chromium([f"--screenshot={shot}", f"--window-size={width},{height}",
                            "--hide-scrollbars", url], profile)
            assert res.returncode == 0, res.stderr.decode(errors="replace")[-2000:]
            info = check_png(shot.read_bytes())
            assert (info.width, info.height) == (width, height), info
            assert info.distinct_colors >= 3 and info.non_background_fraction > 0.01, info
            # Readable at this width: nothing runs off the right edge (wide tables scroll inside
            # their own box, which ends at the body's margin).
            assert 0 < info.content_right < width - 4, info
            # The README's screenshot (docs/dashboard.png) is made this way.
            if os.environ.get("CREDPROXY_DASHBOARD_SHOT") and width == 1280:
                shutil.copy(shot, os.environ["CREDPROXY_DASHBOARD_SHOT"])
    finally:
        tunnel.close()


def test_console_and_overflow_detection_work(tmp_path):
    """The checks above would see a script error and a page wider than the window: the same flags
    on a page that has both."""
    if chromium_binary() is None:
        pytest.fail("chromium is not installed (scripts/test installs it)")
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><meta name=viewport content='width=device-width'>"
                    "<div style='width:900px;height:40px;background:#36c'></div>"
                    "<p>x</p><script>undefinedFunction();</script>")
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    dom = chromium(["--virtual-time-budget=1000", "--enable-logging=stderr", "--v=0",
                    "--dump-dom", page.as_uri()], profile)
    console = [line for line in dom.stderr.decode(errors="replace").splitlines()
               if CONSOLE_RE.search(line)]
    assert console, dom.stderr.decode(errors="replace")[-2000:]
    shot = tmp_path / "wide.png"
    res = chromium([f"--screenshot={shot}", "--window-size=390,300", "--hide-scrollbars",
                    page.as_uri()], profile)
    assert res.returncode == 0, res.stderr.decode(errors="replace")[-2000:]
    assert check_png(shot.read_bytes()).content_right == 389
