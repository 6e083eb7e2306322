"""Who is calling: `client` blocks (password → Basic, token → Bearer, `from` CIDR), 407 for
callers that identify as nobody, `Proxy-Authorization` never forwarded, per-client `allow`
lists, and no open credential-injecting proxy on a non-loopback address."""

from __future__ import annotations

import subprocess

import pytest

from harness import secret_values
from policy_support import (  # noqa: F401 - fixture
    ALICE_PASSWORD,
    BOB_TOKEN,
    CAROL_PASSWORD,
    POLICY_ENV,
    assert_refused,
    basic,
    bearer,
    curl,
    echo_headers,
    fetch,
    find_secrets,
    header_values,
    policy_secrets,
)

pytestmark = pytest.mark.timeout(60)

CLIENTS = """\
client alice {
  password env:ITEST_ALICE_PW
}
client bob {
  token env:ITEST_BOB_TOKEN
}
client carol {
  password env:ITEST_CAROL_PW
  from 10.99.0.0/16
}
"""

# Route 1: alice only; route 2: bob only; route 3: the loopback `from` client only; route 4: any
# identified client. The bearer route shows the injected credential is unaffected by the caller's.
ALLOW_CONF = """\
listen 127.0.0.1:0
ca-file {ca}
connect-timeout 5s
request-timeout 20s
""" + CLIENTS + """\
client local {
  from 127.0.0.0/8
}
route localhost:{upstream_port}/alice-only {
  auth bearer env:{env_bearer}
  allow alice
}
route localhost:{upstream_port}/bob-only {
  auth none
  allow bob
}
route localhost:{upstream_port}/local-only {
  auth none
  allow local
}
route localhost:{upstream_port} {
  auth none
}
"""

# No `from` client matches 127.0.0.1 here: an unidentified caller is refused.
AUTH_ONLY_CONF = """\
listen 127.0.0.1:0
ca-file {ca}
connect-timeout 5s
request-timeout 20s
""" + CLIENTS + """\
route localhost:{upstream_port} {
  auth none
}
"""


@pytest.fixture(scope="module")
def auth_proxy(module_proxy_factory):
    return module_proxy_factory(AUTH_ONLY_CONF, env=POLICY_ENV, name="auth-only")


@pytest.fixture(scope="module")
def allow_proxy(module_proxy_factory):
    return module_proxy_factory(ALLOW_CONF, env=POLICY_ENV, name="allow")


def assert_407(r):
    assert_refused(r, 407, "proxy_auth_required")
    assert r.header("Proxy-Authenticate") == 'Basic realm="credproxy"', r
    assert not find_secrets(r.text), "a secret in the 407 body"


# -- identification ----------------------------------------------------------------------------

def test_basic_via_curl_proxy_url(auth_proxy, upstream, token):
    r = curl("-x", f"http://alice:{ALICE_PASSWORD}@127.0.0.1:{auth_proxy.port}",
             upstream.url(f"/echo/{token}"))
    assert r.returncode == 0 and r.status == 200, r
    seen = upstream.requests_matching(token)
    assert len(seen) == 1
    assert seen[0].header_values("Proxy-Authorization") == [], "Proxy-Authorization forwarded upstream"
    assert r.json()["upstream"] == "main"


def test_bearer_proxy_authorization(auth_proxy, upstream, token):
    r = fetch(auth_proxy, upstream.url(f"/echo/{token}"), [bearer(BOB_TOKEN)])
    assert r.status == 200, r
    hs = echo_headers(r)
    assert header_values(hs, "Proxy-Authorization") == []
    assert not any(BOB_TOKEN in v for _, v in hs), "the client token reached the upstream"


def test_basic_raw_header_and_case_insensitive_scheme(auth_proxy, upstream, token):
    name, value = basic("alice", ALICE_PASSWORD)
    r = fetch(auth_proxy, upstream.url(f"/echo/{token}"), [(name.lower(), "basic" + value[5:])])
    assert r.status == 200, r
    assert header_values(echo_headers(r), "Proxy-Authorization") == []


def test_missing_credentials_get_407(auth_proxy, upstream, token):
    assert_407(fetch(auth_proxy, upstream.url(f"/echo/{token}/none")))
    r = curl("-x", f"http://127.0.0.1:{auth_proxy.port}", upstream.url(f"/echo/{token}/curl"))
    assert r.status == 407, r
    assert upstream.requests_matching(token) == [], "a refused request reached the upstream"


@pytest.mark.parametrize("why, header", [
    ("wrong password", basic("alice", ALICE_PASSWORD + "x")),
    ("password of another client", basic("alice", CAROL_PASSWORD)),
    ("unknown user", basic("mallory", ALICE_PASSWORD)),
    ("client without a password", basic("bob", BOB_TOKEN)),
    ("wrong bearer", bearer(BOB_TOKEN[:-1])),
    ("password as bearer", bearer(ALICE_PASSWORD)),
    ("empty bearer", ("Proxy-Authorization", "Bearer ")),
    ("not base64", ("Proxy-Authorization", "Basic !!!notbase64")),
    ("unknown scheme", ("Proxy-Authorization", "Digest username=alice")),
])
def test_wrong_credentials_get_407(auth_proxy, upstream, token, why, header):
    assert_407(fetch(auth_proxy, upstream.url(f"/echo/{token}"), [header]))
    assert upstream.requests_matching(token) == [], why


def test_wrong_password_via_curl_gets_407(auth_proxy, upstream, token):
    r = curl("-x", f"http://alice:wrong-{token}@127.0.0.1:{auth_proxy.port}",
             upstream.url(f"/echo/{token}"))
    assert r.status == 407, r
    assert upstream.requests_matching(token) == []


def test_from_cidr_identifies_without_header(allow_proxy, upstream, token):
    r = fetch(allow_proxy, upstream.url(f"/local-only/echo/{token}"))
    assert r.status == 200, r


def test_wrong_credentials_refused_even_from_a_matching_address(allow_proxy, upstream, token):
    # 127.0.0.1 is in `local`'s `from`, but a bad Proxy-Authorization decides.
    for h in (basic("alice", "nope"), bearer("nope"), basic("local", "x")):
        assert_407(fetch(allow_proxy, upstream.url(f"/local-only/echo/{token}"), [h]))
    assert upstream.requests_matching(token) == []


def test_no_clients_everyone_is_anonymous(proxy_factory, upstream, token):
    px = proxy_factory("""
listen 127.0.0.1:0
ca-file {ca}
route localhost:{upstream_port} {
  auth none
}
""")
    r = fetch(px, upstream.url(f"/echo/{token}/plain"))
    assert r.status == 200, r
    # Whatever the caller sends as Proxy-Authorization is not forwarded.
    r = fetch(px, upstream.url(f"/echo/{token}/with-header"), [basic("alice", ALICE_PASSWORD)])
    assert r.status == 200, r
    assert header_values(echo_headers(r), "Proxy-Authorization") == []
    r = curl("-x", f"http://alice:{ALICE_PASSWORD}@127.0.0.1:{px.port}",
             upstream.url(f"/echo/{token}/curl"))
    assert r.status == 200, r
    assert header_values([tuple(h) for h in r.json()["headers"]], "Proxy-Authorization") == []


# -- allow lists --------------------------------------------------------------------------------

def test_allow_lists_two_clients_two_routes(allow_proxy, upstream, token):
    alice = [basic("alice", ALICE_PASSWORD)]
    bob = [bearer(BOB_TOKEN)]

    r = fetch(allow_proxy, upstream.url(f"/alice-only/echo/{token}/a"), alice)
    assert r.status == 200, r
    hs = echo_headers(r)
    assert header_values(hs, "Authorization") == [f"Bearer {secret_values.BEARER_TOKEN}"]
    assert header_values(hs, "Proxy-Authorization") == []

    r = fetch(allow_proxy, upstream.url(f"/bob-only/echo/{token}/b"), bob)
    assert r.status == 200, r
    assert header_values(echo_headers(r), "Authorization") == []

    denied = [
        ("/alice-only", bob), ("/bob-only", alice),
        ("/alice-only", []), ("/bob-only", []),           # `local` by address
        ("/local-only", alice), ("/local-only", bob),
    ]
    for i, (prefix, who) in enumerate(denied):
        r = fetch(allow_proxy, upstream.url(f"{prefix}/echo/{token}/denied{i}"), who)
        assert_refused(r, 403, "client_not_allowed")
        assert not find_secrets(r.text)
    assert upstream.requests_matching(f"{token}/denied") == [], "a refused request was forwarded"

    # Routes without `allow` take every identified client.
    for who in (alice, bob, []):
        assert fetch(allow_proxy, upstream.url(f"/echo/{token}/open"), who).status == 200


def test_allow_list_via_curl(allow_proxy, upstream, token):
    ok = curl("-x", f"http://alice:{ALICE_PASSWORD}@127.0.0.1:{allow_proxy.port}",
              upstream.url(f"/alice-only/echo/{token}"))
    assert ok.status == 200, ok
    no = curl("-x", f"http://alice:{ALICE_PASSWORD}@127.0.0.1:{allow_proxy.port}",
              upstream.url(f"/bob-only/echo/{token}"))
    assert no.status == 403, no


def test_allow_names_an_undefined_client_is_a_config_error(proxy_factory, cli):
    path = proxy_factory.config("""
listen 127.0.0.1:0
client alice {
  password env:ITEST_ALICE_PW
}
route localhost:1 {
  allow alice nobody
}
""", name="undefined-client.conf")
    r = cli("check", "--config", str(path), env=POLICY_ENV)
    assert r.returncode == 2, r
    assert "nobody" in r.stderr, r.stderr


# -- no open proxy on a non-loopback address ----------------------------------------------------

OPEN_MESSAGE = "open credential-injecting proxy"


@pytest.mark.parametrize("clients", [
    "",
    "client office {\n  from 10.0.0.0/8\n}\n",   # addresses are not secrets
], ids=["no-clients", "from-only"])
def test_non_loopback_listen_without_auth_refused(proxy_factory, cli, clients):
    path = proxy_factory.config(
        "listen 0.0.0.0:0\n" + clients + "route localhost:1 {\n  auth none\n}\n",
        name="open.conf")
    r = cli("check", "--config", str(path), env=POLICY_ENV)
    assert r.returncode == 2, r
    assert OPEN_MESSAGE in r.stderr, r.stderr
    assert "open.conf:1:" in r.stderr, r.stderr
    try:
        s = cli("serve", "--config", str(path), env=POLICY_ENV, timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail("serve started an open credential-injecting proxy on 0.0.0.0 (no exit within 10 s)")
    assert s.returncode == 2, s
    assert OPEN_MESSAGE in s.stderr, s.stderr
    assert "credproxy: listening on" not in s.stderr, s.stderr


def test_non_loopback_listen_with_password_client_is_accepted_by_check(proxy_factory, cli):
    path = proxy_factory.config(
        "listen 0.0.0.0:0\n" + CLIENTS + "route localhost:1 {\n  auth none\n}\n", name="shared.conf")
    r = cli("check", "--config", str(path), env=POLICY_ENV)
    assert r.returncode == 0, r
    assert OPEN_MESSAGE not in r.stdout + r.stderr
    assert not find_secrets(r.stdout + r.stderr)
