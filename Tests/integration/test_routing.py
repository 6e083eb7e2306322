"""Routing policy: deny by default, `deny` routes, method lists, path prefixes on whole segments,
wildcards, first match wins, ports count, and no way around the host rules (alternate IP spellings,
Host vs absolute-form, dot-segments carrying a route's credential outside its prefix)."""

from __future__ import annotations

import posixpath
import re
import urllib.parse

import pytest

from harness import secret_values as sv
from harness.rawhttp import RawConnection, get_via_proxy

CONFIG = """\
listen 127.0.0.1:0
ca-file {ca}

route localhost:{upstream_port}/api {
  auth bearer env:{env_bearer}
}
route localhost:{upstream_port}/deny-me {
  deny
}
route localhost:{upstream_port}/ro {
  methods GET HEAD
}
route localhost:{upstream_port}/first {
  deny
}
route localhost:{upstream_port}/first {
  auth none
}
route localhost:{upstream_port}/order {
  auth bearer env:{env_bearer}
}
route localhost:{upstream_port}/order/inner {
  deny
}
route 127.0.0.1:{upstream_port}/ip {
  auth none
}
route *.wild.itest.invalid:8443 {
  connect-to 127.0.0.1:{upstream_port}
}
"""


@pytest.fixture(scope="module")
def px(module_proxy_factory):
    return module_proxy_factory(CONFIG, name="routing")


def assert_refused(resp, status: int, code: str) -> str:
    assert resp.status == status, resp
    assert resp.error_code == code, resp
    assert (resp.header("Content-Type") or "").startswith("text/plain"), resp
    text = resp.body.decode("utf-8", "replace")
    assert text.strip() and "\n" not in text.strip(), f"not one line: {text!r}"
    assert not sv.find_leaks(text + resp.raw_head.decode("latin-1")), "a secret is in the refusal"
    return text


def auth_of(resp) -> list[str]:
    return [v for n, v in resp.json()["headers"] if n.lower() == "authorization"]


def test_no_route_403_names_host_and_deny_by_default(px, token):
    r = get_via_proxy(px.port, f"http://nothing-routes-here.invalid/{token}")
    text = assert_refused(r, 403, "no_route")
    assert "nothing-routes-here.invalid" in text, text
    assert re.search(r"den(y|ies)[- ]by[- ]default", text, re.I), text


def test_unrouted_port_on_routed_host_403(px, upstream, closed_port, token):
    r = get_via_proxy(px.port, f"http://localhost:{closed_port}/api/echo/{token}")
    assert_refused(r, 403, "no_route")


def test_unrouted_path_on_routed_host_403(px, upstream, token):
    r = get_via_proxy(px.port, upstream.url(f"/elsewhere/echo/{token}"))
    assert_refused(r, 403, "no_route")
    assert upstream.requests_matching(token) == []


def test_deny_route_403_denied(px, upstream, token):
    r = get_via_proxy(px.port, upstream.url(f"/deny-me/echo/{token}"))
    assert_refused(r, 403, "denied")
    assert upstream.requests_matching(token) == []


def test_method_not_allowed_405(px, upstream, token):
    r = get_via_proxy(px.port, upstream.url(f"/ro/echo/{token}"), method="POST", body=b"x")
    assert_refused(r, 405, "method_not_allowed")
    assert upstream.requests_matching(token) == []
    r = get_via_proxy(px.port, upstream.url(f"/ro/echo/{token}"))
    assert r.status == 200
    r = get_via_proxy(px.port, upstream.url(f"/ro/echo/{token}"), method="HEAD")
    assert r.status == 200


@pytest.mark.parametrize("suffix", ["", "/", "/x/y", "?q=1"])
def test_prefix_matches_whole_segments(px, upstream, token, suffix):
    # /api itself, /api/…, /api?… are on the route (no echo endpoint for bare /api: the upstream
    # answers 404, but the request went through with the credential).
    r = get_via_proxy(px.port, upstream.url(f"/api{suffix}"))
    assert r.status == 404 and r.error_code is None, r
    r = get_via_proxy(px.port, upstream.url(f"/api/echo/{token}{suffix}"))
    assert r.status == 200 and auth_of(r) == [f"Bearer {sv.BEARER_TOKEN}"]


def test_prefix_does_not_match_partial_segment(px, upstream, token):
    r = get_via_proxy(px.port, upstream.url(f"/apix/echo/{token}"))
    assert_refused(r, 403, "no_route")
    assert upstream.requests_matching(token) == []


def test_first_match_wins(px, upstream, token):
    r = get_via_proxy(px.port, upstream.url(f"/first/echo/{token}"))
    assert_refused(r, 403, "denied")
    r = get_via_proxy(px.port, upstream.url(f"/order/inner/echo/{token}"))
    assert r.status == 200, "a later, more specific route overrode an earlier match"
    assert auth_of(r) == [f"Bearer {sv.BEARER_TOKEN}"]


def test_host_is_case_insensitive(px, upstream, token):
    r = get_via_proxy(px.port, f"http://LocalHost:{upstream.port}/api/echo/{token}")
    assert r.status == 200, r
    assert auth_of(r) == [f"Bearer {sv.BEARER_TOKEN}"]


def test_ip_literal_route(px, upstream, token):
    r = get_via_proxy(px.port, f"http://127.0.0.1:{upstream.port}/ip/echo/{token}")
    assert r.status == 200, r


@pytest.mark.parametrize("spelling", ["2130706433", "0x7f.1", "127.1", "0177.0.0.1", "0x7f000001"])
def test_alternate_ip_spellings_do_not_match(px, upstream, token, spelling):
    r = get_via_proxy(px.port, f"http://{spelling}:{upstream.port}/ip/echo/{token}")
    assert r.status in (400, 403), r
    assert r.error_code in ("no_route", "bad_request"), r
    assert upstream.requests_matching(token) == []


def test_wildcard_route(px, upstream, token):
    r = get_via_proxy(px.port, f"http://a.wild.itest.invalid:8443/echo/{token}")
    assert r.status == 200, r
    assert r.json()["sni"] == "a.wild.itest.invalid"


def test_wildcard_does_not_match_bare_suffix(px, upstream, token):
    r = get_via_proxy(px.port, f"http://wild.itest.invalid:8443/echo/{token}")
    assert_refused(r, 403, "no_route")


def test_wildcard_matches_deeper_names(px, upstream, token):
    # Routed (not 403); the certificate's *.wild covers one label only, so TLS must then fail.
    r = get_via_proxy(px.port, f"http://a.b.wild.itest.invalid:8443/echo/{token}")
    assert r.status == 502 and r.error_code == "upstream_tls", r


def test_host_header_does_not_route_absolute_form(px, upstream, token):
    # Routed URI, unrouted Host: the URI wins, so it is allowed.
    r = get_via_proxy(px.port, upstream.url(f"/api/echo/{token}"), [("Host", "evil.itest.invalid")])
    assert r.status == 200, r
    assert [v for n, v in r.json()["headers"] if n.lower() == "host"] == [upstream.authority]
    # Unrouted URI, routed Host: denied, naming the URI's host.
    r = get_via_proxy(px.port, f"http://evil.itest.invalid/api/echo/{token}",
                      [("Host", upstream.authority)])
    text = assert_refused(r, 403, "no_route")
    assert "evil.itest.invalid" in text


def test_origin_form_routes_on_host(px, upstream, token):
    with RawConnection(px.port) as c:
        r = c.request("GET", f"/api/echo/{token}", [("Host", upstream.authority)])
        assert r.status == 200 and auth_of(r) == [f"Bearer {sv.BEARER_TOKEN}"]
        r = c.request("GET", f"/api/echo/{token}", [("Host", "evil.itest.invalid")])
        assert_refused(r, 403, "no_route")


@pytest.mark.parametrize("path", ["/api/../echo/{t}", "/api/./../echo/{t}", "/api/x/../../echo/{t}"])
def test_dot_segments_cannot_carry_a_credential_outside_its_prefix(px, upstream, token, path):
    path = path.replace("{t}", token)
    r = get_via_proxy(px.port, upstream.url(path))
    if r.status != 200:
        assert r.status in (400, 403), r  # refused outright: fine
        return
    seen = upstream.requests_matching(token)
    assert seen, "answered 200 without reaching the upstream?"
    effective = posixpath.normpath(urllib.parse.urlsplit(seen[-1].target).path)
    if not (effective == "/api" or effective.startswith("/api/")):
        assert f"Bearer {sv.BEARER_TOKEN}" not in seen[-1].header_values("Authorization"), (
            f"the /api credential went to {seen[-1].target!r} (effective path {effective})")
