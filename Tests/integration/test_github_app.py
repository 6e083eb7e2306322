"""GitHub App installation tokens: `source github-app …` mints with an RS256 app JWT that the
local GitHub API emulator (emulators/github_api.py) verifies with Python's `cryptography`; routes
send the token as git's Basic `x-access-token:TOKEN`. Narrowed, cached, one mint per cold burst."""

from __future__ import annotations

import threading
import time

import pytest

from emulators.github_api import GitHubAPI
from policy_support import assert_refused, fetch

pytestmark = pytest.mark.timeout(90)

CONF = """\
listen 127.0.0.1:0
credentials gh {
  source github-app app-id APPID installation-id 77 private-key file:KEYFILE api-url GHURL
}
credentials gh-narrow {
  source github-app app-id APPID installation-id 77 private-key file:KEYFILE api-url GHURL repositories deploy permissions contents:read
}
credentials gh-too-wide {
  source github-app app-id APPID installation-id 77 private-key file:KEYFILE api-url GHURL permissions administration:write
}
credentials gh-elsewhere {
  source github-app app-id APPID installation-id 99 private-key file:KEYFILE api-url GHURL
}
route 127.0.0.1:GHPORT/narrow {
  upstream http
  credentials gh-narrow
  auth basic x-access-token token
}
route 127.0.0.1:GHPORT/too-wide {
  upstream http
  credentials gh-too-wide
  auth basic x-access-token token
}
route 127.0.0.1:GHPORT/bearer {
  upstream http
  credentials gh
  auth token
}
route 127.0.0.1:GHPORT/elsewhere {
  upstream http
  credentials gh-elsewhere
  auth basic x-access-token token
}
route 127.0.0.1:GHPORT {
  upstream http
  credentials gh
  auth basic x-access-token token
}
"""


@pytest.fixture
def github():
    api = GitHubAPI().start()
    api.add_installation("77", ["deploy", "website", "infra"],
                         {"contents": "write", "issues": "write", "metadata": "read"})
    yield api
    api.stop()


@pytest.fixture
def gh_proxy(proxy, github, tmp_path, secret_guard):
    key = tmp_path / "app.pem"
    key.write_text(github.private_key_pem())
    key.chmod(0o600)

    def start():
        conf = (CONF.replace("APPID", str(github.app_id)).replace("KEYFILE", str(key))
                .replace("GHURL", github.url).replace("GHPORT", github.url.rsplit(":", 1)[1]))
        return proxy(conf)

    return start


def issued_tokens_absent(px, github):
    text = px.stderr_text()
    for m in github.mints:
        assert m.token not in text
    assert "PRIVATE KEY" not in text


def test_token_is_minted_with_a_verified_app_jwt_and_sent_as_git_basic(gh_proxy, github):
    px = gh_proxy()
    r = fetch(px, github.url + "/repos/myorg/website/contents/README.md")
    assert r.status == 200, r
    body = r.json()
    assert body["scheme"] == "basic"  # x-access-token:TOKEN, checked by the emulator
    assert body["repositories"] == ["deploy", "website", "infra"]
    assert github.rejections == []
    assert github.mint_count() == 1
    claims = github.mints[0].jwt_claims
    now = time.time()
    assert claims["iss"] == github.app_id
    assert claims["exp"] - claims["iat"] == 600
    assert now - 75 <= claims["iat"] <= now - 55  # backdated 60 s, as GitHub advises
    # Cached: a second request reuses the token.
    assert fetch(px, github.url + "/repos/myorg/infra").status == 200
    assert github.mint_count() == 1
    issued_tokens_absent(px, github)


def test_narrowed_token_has_only_the_listed_repositories_and_permissions(gh_proxy, github):
    px = gh_proxy()
    r = fetch(px, github.url + "/narrow/repos/myorg/deploy")
    assert r.status == 200, r
    assert r.json()["repositories"] == ["deploy"]
    assert r.json()["permissions"] == {"contents": "read"}
    # The narrow and the wide credentials are cached apart.
    assert fetch(px, github.url + "/narrow/x").status == 200
    assert fetch(px, github.url + "/repos/x").json()["repositories"] == ["deploy", "website", "infra"]
    assert github.mint_count() == 2
    issued_tokens_absent(px, github)


def test_github_refusals_are_503_naming_the_credential_and_githubs_message(gh_proxy, github):
    px = gh_proxy()
    r = fetch(px, github.url + "/too-wide/x")
    assert_refused(r, 503, "token_unavailable")
    text = r.body.decode()
    assert "gh-too-wide" in text and "422" in text and "not granted" in text
    r = fetch(px, github.url + "/elsewhere/x")
    assert_refused(r, 503, "token_unavailable")
    assert "gh-elsewhere" in r.body.decode() and "404" in r.body.decode()
    assert github.mint_count() == 0


def test_a_token_is_not_used_in_its_last_five_minutes(gh_proxy, github):
    github.lifetime = 302  # already inside the 5-minute margin when it arrives
    px = gh_proxy()
    assert fetch(px, github.url + "/repos/a").status == 200
    assert fetch(px, github.url + "/repos/b").status == 200
    assert github.mint_count() == 2
    github.lifetime = 3600
    assert fetch(px, github.url + "/repos/c").status == 200
    assert fetch(px, github.url + "/repos/d").status == 200
    assert github.mint_count() == 3


def test_cold_burst_of_100_requests_mints_once(gh_proxy, github):
    github.mint_delay = 0.5
    px = gh_proxy()
    statuses: list[int] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        r = fetch(px, github.url + f"/repos/burst/{i}", timeout=30)
        with lock:
            statuses.append(r.status)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * 100
    assert github.mint_count() == 1
    assert sum(1 for c in github.api_calls if c["ok"]) == 100


def test_explain_mint_shows_the_github_token_by_fingerprint(cli, proxy_factory, github, tmp_path):
    key = tmp_path / "app.pem"
    key.write_text(github.private_key_pem())
    conf = (CONF.replace("APPID", str(github.app_id)).replace("KEYFILE", str(key))
            .replace("GHURL", github.url).replace("GHPORT", github.url.rsplit(":", 1)[1]))
    path = proxy_factory.config(conf)
    r = cli("explain", github.url + "/narrow/repos/myorg/deploy", "--mint", "--config", str(path))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Basic <base64 of user x-access-token and the token credentials gh-narrow mints>" in r.stdout
    assert github.mint_count() == 1
    token = github.mints[0].token
    assert token not in r.stdout + r.stderr
    import hashlib
    assert hashlib.sha256(token.encode()).hexdigest()[:12] in r.stdout


def test_auth_token_sends_the_same_cached_token_as_bearer(gh_proxy, github):
    px = gh_proxy()
    r = fetch(px, github.url + "/bearer/repos/myorg/deploy")
    assert r.status == 200, r
    assert r.json()["scheme"] == "bearer"
    # `auth token` and `auth basic x-access-token token` on one block share one token.
    r = fetch(px, github.url + "/repos/myorg/deploy")
    assert r.status == 200 and r.json()["scheme"] == "basic"
    assert github.mint_count() == 1
    issued_tokens_absent(px, github)


def test_a_refusal_quoting_the_app_jwt_never_shows_it(gh_proxy, github):
    """The app JWT authenticates as the App itself (any installation, for 10 minutes): if GitHub,
    or whatever answers in its place, quotes it back, the 503 and the log show `[redacted]`."""
    github.refusal_quoting_authorization = "Bad credentials: {authorization} (check the App ID)"
    px = gh_proxy()
    r = fetch(px, github.url + "/repos/myorg/deploy")
    assert_refused(r, 503, "token_unavailable")
    text = r.body.decode()
    assert "401" in text and "Bad credentials" in text and "[redacted]" in text, text
    jwt = github.rejections[-1].removeprefix("Bearer ")
    for part in [jwt[:40], *jwt.split(".")]:
        assert part not in text and part not in px.stderr_text()


def test_a_minted_token_a_header_cannot_carry_is_refused(gh_proxy, github):
    """Whatever answers at the token URL hands out a token with CR LF in it: sent on, it would
    add headers (or a second request) to the upstream call. It is a failed mint instead."""
    github.token_suffix = "\r\nX-Injected: 1"
    px = gh_proxy()
    r = fetch(px, github.url + "/bearer/repos/myorg/deploy")
    assert_refused(r, 503, "token_unavailable")
    assert "gh" in r.body.decode() and "header" in r.body.decode(), r
    assert github.api_calls == []
    github.token_suffix = " spaced"
    time.sleep(1.2)  # past the first backoff
    r = fetch(px, github.url + "/bearer/repos/myorg/deploy")
    assert_refused(r, 503, "token_unavailable")
    assert github.api_calls == []
    issued_tokens_absent(px, github)
