"""Path rules hold whatever the upstream makes of a path: a `deny` route matches every reading of
a path (percent-decoded including `%2F`/`%5C`, `;params` cut, case folded, blanks and trailing
dots trimmed), and an allow route's prefix only matches a path that is under it in every reading.
The client is curl (with ``--path-as-is``), the request reaches the proxy byte for byte."""

from __future__ import annotations

import pytest

from harness import secret_values as sv
from policy_support import curl

CONFIG = """\
listen 127.0.0.1:0
ca-file {ca}

route localhost:{upstream_port}/admin {
  deny
}
route localhost:{upstream_port} {
  auth bearer env:{env_bearer}
}
route 127.0.0.1:{upstream_port}/public {
  auth bearer env:{env_bearer}
}
"""


@pytest.fixture(scope="module")
def px(module_proxy_factory):
    return module_proxy_factory(CONFIG, name="path-canonical")


def via_curl(px, url: str):
    return curl("--path-as-is", "-x", f"http://127.0.0.1:{px.port}", url)


@pytest.mark.parametrize("spelling", [
    "/admin%2f{t}/echo", "/admin%2F{t}/echo", "/admin;x/{t}/echo", "/ADMIN/{t}/echo",
    "/Admin/{t}/echo", "/admin%20/{t}/echo", "/%2fadmin/{t}/echo", "/admin%5c{t}/echo",
    "/admin./{t}/echo", "/admin%252f{t}/echo", "/x/..;/admin/{t}/echo",
])
def test_deny_route_matches_every_reading(px, upstream, token, spelling):
    r = via_curl(px, f"http://localhost:{upstream.port}" + spelling.replace("{t}", token))
    assert r.status in (400, 403), r
    if r.status == 403:
        assert "denied" in r.text, r
    assert not upstream.requests_matching(token), "a denied path reached the upstream"


def test_paths_outside_the_deny_prefix_are_forwarded_as_sent(px, upstream, token):
    r = via_curl(px, f"http://localhost:{upstream.port}/administrator/{token}%2Fx/echo")
    assert r.status == 200, r
    seen = upstream.requests_matching(token)
    assert seen and seen[-1].target == f"/administrator/{token}%2Fx/echo", seen
    assert seen[-1].header_values("Authorization") == [f"Bearer {sv.BEARER_TOKEN}"]


@pytest.mark.parametrize("spelling", [
    "/public/..;/{t}/echo", "/public%2f{t}/echo", "/PUBLIC/{t}/echo", "/public;x/{t}/echo",
    "/public/x%252F..%252F..%252F{t}/echo", "/public%20/{t}/echo",
])
def test_allow_prefix_matches_only_under_every_reading(px, upstream, token, spelling):
    r = via_curl(px, f"http://127.0.0.1:{upstream.port}" + spelling.replace("{t}", token))
    assert r.status in (400, 403), r
    assert not upstream.requests_matching(token), "the /public credential left its prefix"


def test_allow_prefix_still_matches_plain_paths(px, upstream, token):
    r = via_curl(px, f"http://127.0.0.1:{upstream.port}/public/{token}/a%2Fb/echo")
    assert r.status == 200, r
    seen = upstream.requests_matching(token)
    assert seen and seen[-1].target == f"/public/{token}/a%2Fb/echo", seen
