"""`audit-log`: one JSON line per decision (allow, deny, report) with the documented fields, the
credential by source (never the value), queries only with `log-queries on` and then with
secret-looking parameters redacted; `mode report` (per route and top level) lets through what it
would deny and says so."""

from __future__ import annotations

import json
import time

import pytest

from harness import secret_values
from policy_support import (  # noqa: F401 - fixture
    ALICE_PASSWORD,
    AUDIT_FIELDS,
    BOB_TOKEN,
    POLICY_ENV,
    QUERY_SECRET,
    assert_refused,
    audit_for,
    basic,
    bearer,
    connect_tunnel,
    fetch,
    find_secrets,
    policy_secrets,
    read_audit,
    tls_over,
)

pytestmark = pytest.mark.timeout(60)

ALICE = [basic("alice", ALICE_PASSWORD)]
BOB = [bearer(BOB_TOKEN)]

CONF = """\
listen 127.0.0.1:0
ca-file {ca}
connect-timeout 5s
request-timeout 20s
audit-log audit.jsonl
log-queries on
client alice {
  password env:ITEST_ALICE_PW
}
client bob {
  token env:ITEST_BOB_TOKEN
}
route localhost:{upstream_port}/bearer {
  auth bearer env:{env_bearer}
  allow alice
}
route localhost:{upstream_port}/header {
  auth header X-Api-Key env:{env_header}
  allow alice bob
}
route localhost:{upstream_port}/report {
  auth none
  allow bob
  rate 1/m burst 1
  mode report
}
route localhost:{upstream_port}/tunnel-only {
  auth none
}
route localhost:{upstream_port} {
  tunnel
  allow alice
}
route * {
  auth none
  mode report
}
"""


@pytest.fixture(scope="module")
def px(module_proxy_factory):
    return module_proxy_factory(CONF, env=POLICY_ENV, name="audit")


@pytest.fixture(scope="module")
def audit_path(px):
    return px.workdir / "audit.jsonl"


def records_for(audit_path, token, n):
    recs = audit_for(read_audit(audit_path), token)
    deadline = time.monotonic() + 5
    while len(recs) < n and time.monotonic() < deadline:
        time.sleep(0.05)
        recs = audit_for(read_audit(audit_path), token)
    assert len(recs) == n, f"expected {n} audit lines for {token}, got {recs}"
    return recs


def check_shape(rec: dict) -> None:
    keys = list(rec)
    assert [k for k in keys if k != "query"] == list(AUDIT_FIELDS), keys
    assert isinstance(rec["time"], str) and rec["time"].endswith("Z"), rec
    assert rec["source"].startswith("127.0.0.1"), rec
    assert rec["decision"] in ("allow", "deny", "report"), rec
    assert isinstance(rec["status"], int)
    for k in ("bytes_in", "bytes_out"):
        assert isinstance(rec[k], int) and rec[k] >= 0, rec
    assert isinstance(rec["duration_ms"], (int, float)) and rec["duration_ms"] >= 0, rec
    assert rec["route"] is None or isinstance(rec["route"], int), rec


def test_allowed_request_line(px, audit_path, upstream, token):
    q = f"a=1&token={QUERY_SECRET}&signature={QUERY_SECRET}&access_token={QUERY_SECRET}" \
        f"&api_key={QUERY_SECRET}&X-Amz-Signature={QUERY_SECRET}&password={QUERY_SECRET}&b=two"
    body = b"x" * 1234
    r = fetch(px, upstream.url(f"/bearer/echo/{token}?{q}"), ALICE, method="POST", body=body)
    assert r.status == 200, r
    (rec,) = records_for(audit_path, token, 1)
    check_shape(rec)
    assert rec["client"] == "alice"
    assert rec["method"] == "POST"
    assert rec["scheme"] == "https"
    assert rec["host"] == "localhost" and rec["port"] == upstream.port, rec
    assert rec["path"] == f"/bearer/echo/{token}", rec
    assert rec["route"] == 1, rec
    assert rec["decision"] == "allow" and rec["reason"] is None, rec
    assert rec["credential"] == f"env:{secret_values.ENV_BEARER}", rec
    assert rec["status"] == 200
    assert rec["bytes_in"] == len(body), rec
    assert rec["bytes_out"] == len(r.body), rec
    # The query is logged with secret-looking parameters redacted, others kept.
    query = rec["query"]
    assert query.startswith("a=1&") and query.endswith("&b=two"), query
    for name in ("token", "signature", "access_token", "api_key", "X-Amz-Signature", "password"):
        assert f"{name}=REDACTED" in query, query
    assert QUERY_SECRET not in audit_path.read_text()


def test_header_credential_named_by_source(px, audit_path, upstream, token):
    assert fetch(px, upstream.url(f"/header/echo/{token}"), BOB).status == 200
    (rec,) = records_for(audit_path, token, 1)
    assert rec["client"] == "bob" and rec["route"] == 2
    assert rec["credential"] == f"env:{secret_values.ENV_HEADER}", rec


def test_denied_lines(px, audit_path, upstream, token):
    assert_refused(fetch(px, upstream.url(f"/bearer/echo/{token}/a"), BOB), 403, "client_not_allowed")
    assert_refused(fetch(px, upstream.url(f"/bearer/echo/{token}/b")), 407, "proxy_auth_required")
    assert_refused(fetch(px, upstream.url(f"/bearer/echo/{token}/c"), [basic("alice", "wrong")]),
                   407, "proxy_auth_required")
    recs = sorted(records_for(audit_path, token, 3), key=lambda r: r["path"])
    for rec in recs:
        check_shape(rec)
        assert rec["decision"] == "deny", rec
        assert rec["credential"] is None, "a refused request names no credential"
    a, b, c = recs
    assert a["client"] == "bob" and a["reason"] == "client_not_allowed" and a["status"] == 403
    assert a["route"] == 1
    assert b["client"] is None and b["reason"] == "proxy_auth_required" and b["status"] == 407
    assert c["client"] is None and c["reason"] == "proxy_auth_required" and c["status"] == 407
    assert upstream.requests_matching(token) == []


def test_report_mode_route_lets_through_and_logs_report(px, audit_path, upstream, token):
    # alice is not in the route's allow list: reported, forwarded.
    r = fetch(px, upstream.url(f"/report/echo/{token}/who"), ALICE)
    assert r.status == 200, r
    # bob is allowed; the second request in the same minute is over the rate: reported.
    assert fetch(px, upstream.url(f"/report/echo/{token}/rate1"), BOB).status == 200
    assert fetch(px, upstream.url(f"/report/echo/{token}/rate2"), BOB).status == 200
    assert len(upstream.requests_matching(token)) == 3
    recs = {r["path"].rsplit("/", 1)[1]: r for r in records_for(audit_path, token, 3)}
    assert recs["who"]["decision"] == "report" and recs["who"]["reason"] == "client_not_allowed", recs
    assert recs["who"]["status"] == 200 and recs["who"]["client"] == "alice"
    assert recs["rate1"]["decision"] == "allow", recs["rate1"]
    assert recs["rate2"]["decision"] == "report" and recs["rate2"]["reason"] == "rate_limited", recs
    for rec in recs.values():
        check_shape(rec)
        assert rec["route"] == 3


def test_report_mode_ssrf(px, audit_path, upstream, token):
    # Route `* { mode report }`: 127.0.0.1 is loopback and the route does not name it, so the
    # dial would be refused (blocked_address); report mode lets it through and logs `report`.
    r = fetch(px, f"http://127.0.0.1:{upstream.port}/echo/{token}", ALICE, timeout=10)
    assert r.status == 200, r
    assert len(upstream.requests_matching(token)) == 1
    (rec,) = records_for(audit_path, token, 1)
    check_shape(rec)
    assert rec["route"] == 6, rec
    assert rec["status"] == 200, rec
    assert (rec["decision"], rec["reason"]) == ("report", "blocked_address"), \
        f"an SSRF refusal let through by report mode must be logged as report: {rec}"


def test_tunnel_lines(px, audit_path, upstream, pki, token):
    conn, resp = connect_tunnel(px.port, f"localhost:{upstream.port}", ALICE)
    with conn:
        assert resp.status == 200, resp
        tls_over(conn, pki.client_context())
        r = conn.request("GET", f"/echo/{token}", [("Host", "localhost"), ("Connection", "close")])
        assert r.status == 200
    conn, resp = connect_tunnel(px.port, f"localhost:{upstream.port}", BOB)
    conn.close()
    assert_refused(resp, 403, "client_not_allowed")
    deadline = time.monotonic() + 5
    while True:
        recs = [r for r in read_audit(audit_path) if r["scheme"] == "connect"
                and r["port"] == upstream.port and r["client"] in ("alice", "bob")]
        if len(recs) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    by_client = {r["client"]: r for r in recs}
    assert set(by_client) == {"alice", "bob"}, recs
    ok, no = by_client["alice"], by_client["bob"]
    check_shape(ok)
    assert ok["method"] == "CONNECT" and ok["decision"] == "allow" and ok["route"] == 5, ok
    assert ok["host"] == "localhost" and ok["credential"] is None, ok
    assert ok["bytes_out"] > 0 and ok["bytes_in"] > 0, "tunnel byte counts"
    assert no["decision"] == "deny" and no["reason"] == "client_not_allowed" and no["status"] == 403


def test_audit_log_has_no_secrets(px, audit_path):
    text = audit_path.read_text()
    assert text, "empty audit log"
    leaks = find_secrets(text)
    assert not leaks, f"secrets in the audit log: {leaks}"
    for line in text.splitlines():
        check_shape(json.loads(line))


def test_queries_not_logged_without_log_queries(proxy_factory, upstream, token):
    px = proxy_factory("""
listen 127.0.0.1:0
ca-file {ca}
audit-log audit.jsonl
route localhost:{upstream_port} {
  auth bearer env:{env_bearer}
}
""")
    r = fetch(px, upstream.url(f"/echo/{token}?token={QUERY_SECRET}&x=1"))
    assert r.status == 200
    (rec,) = records_for(px.workdir / "audit.jsonl", token, 1)
    assert "query" not in rec, rec
    assert rec["client"] is None and rec["decision"] == "allow"
    assert QUERY_SECRET not in (px.workdir / "audit.jsonl").read_text()
    assert QUERY_SECRET not in px.stderr_text()


def test_top_level_report_mode_and_stderr_audit(proxy_factory, upstream, token):
    px = proxy_factory("""
listen 127.0.0.1:0
ca-file {ca}
audit-log stderr
access-log off
mode report
client alice {
  password env:ITEST_ALICE_PW
}
route localhost:{upstream_port}/bearer {
  auth bearer env:{env_bearer}
  allow alice
}
""", env=POLICY_ENV)
    # No route matches /echo: reported, forwarded without a credential.
    r = fetch(px, upstream.url(f"/echo/{token}/noroute"), ALICE)
    assert r.status == 200, r
    assert [v for n, v in r.json()["headers"] if n.lower() == "authorization"] == []
    assert px.wait_for_stderr(rf'"path":"/echo/{token}/noroute"', timeout=5), px.stderr_text()
    lines = [json.loads(ln) for ln in px.stderr_lines() if token in ln and ln.startswith("{")]
    assert len(lines) == 1, lines
    assert lines[0]["decision"] == "report" and lines[0]["reason"] == "no_route", lines
    assert lines[0]["route"] is None
    # An unidentified caller: whatever report mode makes of it, it is logged with a decision.
    r = fetch(px, upstream.url(f"/bearer/echo/{token}/anon"))
    assert r.status in (200, 407), r
    assert px.wait_for_stderr(rf'"path":"/bearer/echo/{token}/anon"', timeout=5), px.stderr_text()
    anon = [json.loads(ln) for ln in px.stderr_lines() if f"{token}/anon" in ln and ln.startswith("{")]
    assert len(anon) == 1 and anon[0]["decision"] in ("deny", "report"), anon
    assert not find_secrets(px.stderr_text())


REPORT_TUNNEL_CONF = """\
listen 127.0.0.1:0
ca-file {ca}
audit-log audit.jsonl
route localhost:{upstream_port} {
  auth none
  mode report
}
route * {
  tunnel
  mode report
}
"""


def test_report_mode_tunnels(proxy_factory, upstream, pki, token):
    px = proxy_factory(REPORT_TUNNEL_CONF)
    # Route 1 has no `tunnel`: tunnel_denied, reported, relayed.
    # Route 2 is `*`: 127.0.0.1 is loopback and not named exactly: blocked_address, reported.
    for authority in (f"localhost:{upstream.port}", f"127.0.0.1:{upstream.port}"):
        conn, resp = connect_tunnel(px.port, authority)
        with conn:
            assert resp.status == 200, (authority, resp)
            tls_over(conn, pki.client_context())
            r = conn.request("GET", f"/echo/{token}", [("Host", "localhost"), ("Connection", "close")])
            assert r.status == 200
    path = px.workdir / "audit.jsonl"
    recs = [r for r in read_audit(path, at_least=2) if r["scheme"] == "connect"]
    got = {r["host"]: (r["route"], r["decision"], r["reason"]) for r in recs}
    assert got.get("localhost") == (1, "report", "tunnel_denied"), recs
    assert got.get("127.0.0.1") == (2, "report", "blocked_address"), \
        f"a CONNECT whose SSRF refusal report mode let through must be logged as report: {recs}"
