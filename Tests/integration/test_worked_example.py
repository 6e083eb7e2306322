"""The README's worked example, end to end: a GitHub Actions job that holds no secret, identified
by its own OIDC token (the OIDC issuer emulator plays token.actions.githubusercontent.com),
reaches a Google API through workload identity federation (credproxy's own service-account token
exchanged at the emulated STS, then impersonation) and the GitHub API through a GitHub App
(the GitHub API emulator), and only its own routes."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from emulators import encode_jwt, generate_rsa_key
from emulators.github_api import GitHubAPI
from emulators.oidc_issuer import OIDCIssuer
from google_support import (  # noqa: F401 - fixtures
    CP,
    block,
    conf,
    creds,
    emu,
    fetch,
    fetch_json,
    genv,
    gtmp,
    gup,
    reset_emu,
    route,
    tokens_never_logged,
    track_secret,
)
from policy_support import assert_refused, basic, bearer, read_audit

pytestmark = pytest.mark.timeout(90)

CLUSTER_ISSUER = "https://kubernetes.default.svc.cluster.local"
POOL = "//iam.googleapis.com/projects/123456789/locations/global/workloadIdentityPools/k8s/providers/cluster"
CLUSTER_KEY = generate_rsa_key()
TARGET = "deployer@credproxy-test.iam.gserviceaccount.com"


@pytest.fixture
def actions():
    issuer = OIDCIssuer().start()
    yield issuer
    issuer.stop()


@pytest.fixture
def github():
    api = GitHubAPI().start()
    api.add_installation("77", ["deploy", "website"], {"contents": "write", "metadata": "read"})
    yield api
    api.stop()


def test_runner_with_no_secret_reaches_google_and_github_through_its_own_routes(
        emu, gup, actions, github, proxy_factory, genv, pki, tmp_path: Path):
    # credproxy's side: the pod's projected service-account token (the WIF subject token) and
    # the GitHub App's key. Nothing of this reaches the runner.
    emu.token.add_workload_provider(POOL, CLUSTER_ISSUER, CLUSTER_KEY.public_key(), "k8s-1")
    now = int(time.time())
    sa_token = encode_jwt(CLUSTER_KEY, {"iss": CLUSTER_ISSUER, "aud": "https:" + POOL, "iat": now,
                                        "exp": now + 3600, "sub": "system:serviceaccount:ci:credproxy"},
                          kid="k8s-1")
    track_secret("projected service-account token", sa_token)
    (tmp_path / "sa-token").write_text(sa_token)
    wif = tmp_path / "wif.json"
    wif.write_text(json.dumps({
        "type": "external_account", "audience": POOL,
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt", "token_url": emu.sts_url,
        "service_account_impersonation_url": emu.iam.access_token_url(TARGET),
        "credential_source": {"file": str(tmp_path / "sa-token")}}))
    key = tmp_path / "gh-app.pem"
    key.write_text(github.private_key_pem())
    audit = tmp_path / "audit.jsonl"
    gh_port = github.url.rsplit(":", 1)[1]
    px = proxy_factory(conf(
        pki.ca_file,
        f"audit-log {audit}\n",
        block("client", "deploy-main",
              f"oidc issuer {actions.url} audience credproxy claim repository myorg/deploy claim ref refs/heads/main"),
        creds("gcp", f"source key-file {wif}"),
        creds("gh-deploy", f"source github-app app-id {github.app_id} installation-id 77 private-key file:{key} "
                           f"api-url {github.url} repositories deploy permissions contents:write"),
        route(f"localhost:{gup.port}/oauth", "allow deploy-main", "credentials gcp", "auth OAuth2"),
        route(f"127.0.0.1:{gh_port}/repos/myorg/deploy", "upstream http", "allow deploy-main",
              "credentials gh-deploy", "auth token"),
    ), env=genv())

    # The runner's side: only the OIDC token its platform gave it.
    job = actions.token(aud="credproxy", repository="myorg/deploy", ref="refs/heads/main")
    a = fetch_json(px, gup.url("/oauth/projects"), [bearer(job)])["authorization"]
    assert a["known"] and a["source"] == "iam" and a["email"] == TARGET and a["scopes"] == [CP], a
    assert a["source_identity"].endswith("/subject/system:serviceaccount:ci:credproxy"), a
    # The proxy-URL form (HTTPS_PROXY=https://deploy-main:$ID_TOKEN@…) for the GitHub call.
    r = fetch(px, github.url + "/repos/myorg/deploy/deployments", [basic("deploy-main", job)],
              method="POST", body=b'{"ref":"main"}')
    assert r.status == 200, r
    assert r.json()["scheme"] == "bearer"
    assert r.json()["repositories"] == ["deploy"] and r.json()["permissions"] == {"contents": "write"}
    assert github.rejections == [] and github.mint_count() == 1

    # Another branch of the same repository, another repository, and no token at all: refused.
    for other in (actions.token(aud="credproxy", repository="myorg/deploy", ref="refs/heads/dev"),
                  actions.token(aud="credproxy", repository="myorg/website", ref="refs/heads/main")):
        assert_refused(fetch(px, gup.url("/oauth/projects"), [bearer(other)]), 407, "proxy_auth_required")
        assert_refused(fetch(px, github.url + "/repos/myorg/deploy", [bearer(other)]), 407,
                       "proxy_auth_required")
    assert_refused(fetch(px, gup.url("/oauth/projects")), 407, "proxy_auth_required")
    # Only its own routes: another repository's API is not routed at all.
    assert_refused(fetch(px, github.url + "/repos/myorg/website", [bearer(job)]), 403, "no_route")

    records = read_audit(audit, at_least=2)
    allowed = [x for x in records if x["decision"] == "allow"]
    assert {x["client"] for x in allowed} == {"deploy-main"}
    assert all(x["client_claims"] == ["repository=myorg/deploy", "ref=refs/heads/main"] for x in allowed)
    logs = audit.read_text() + px.stderr_text()
    for secret in [job, sa_token, github.mints[0].token, "PRIVATE KEY"]:
        assert secret not in logs
