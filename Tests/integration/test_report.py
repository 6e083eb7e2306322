"""`credproxy report`: real traffic through the proxy fills an audit log that is rotated (SIGHUP
reopens it) and gzip-compressed; the report counts exactly what the test sent, per client and
route; its tightened config, applied with `patch`, passes `credproxy check` and, served by a new
proxy, still lets every request that was used through while refusing what was not."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from harness.proxy import binary_path
from policy_support import (  # noqa: F401 - fixture
    ALICE_PASSWORD,
    BOB_TOKEN,
    CAROL_PASSWORD,
    POLICY_ENV,
    assert_refused,
    basic,
    bearer,
    fetch,
    find_secrets,
    policy_secrets,
    read_audit,
)

pytestmark = pytest.mark.timeout(90)

ALICE = [basic("alice", ALICE_PASSWORD)]
BOB = [bearer(BOB_TOKEN)]
CAROL = [basic("carol", CAROL_PASSWORD)]

CONF = """\
listen 127.0.0.1:0
ca-file {ca}
audit-log audit.jsonl
client alice {
  password env:ITEST_ALICE_PW
}
client bob {
  token env:ITEST_BOB_TOKEN
}
client carol {
  password env:ITEST_CAROL_PW
}
route localhost:{upstream_port}/admin {
  deny
}
route localhost:{upstream_port} {
  auth bearer env:{env_bearer}
}
route 127.0.0.1:{upstream_port} {
  auth none
}
"""


def report(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(binary_path()), "report", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=60)


def test_report_on_rotated_gzip_logs_and_the_tightened_config_holds(proxy_factory, upstream, tmp_path):
    px = proxy_factory(CONF, env=POLICY_ENV, name="report")
    base = upstream.url("")
    sent = {"alice": {"GET": 0, "POST": 0}, "bob": {"GET": 0}}

    def go(who, headers, method, path, expect=200):
        r = fetch(px, base + path, headers, method=method, body=b"x" if method == "POST" else None)
        assert r.status == expect, (path, r)
        if expect == 200:
            sent[who][method] += 1
        return r

    for i in range(12):
        go("alice", ALICE, "GET", f"/storage/v1/b/bucket-{i % 6}/o/echo")
    for i in range(3):
        go("alice", ALICE, "POST", "/up/storage/v1/b/bucket-1/o/echo")
    # Rotate as logrotate does (rename, then SIGHUP: the audit log is reopened on reload).
    audit = px.workdir / "audit.jsonl"
    read_audit(audit, at_least=15)
    rotated = px.workdir / "audit.jsonl.1"
    audit.rename(rotated)
    px.proc.send_signal(signal.SIGHUP)
    assert px.wait_for_stderr(r"credproxy: reloaded ", timeout=5), px.stderr_text()[-1500:]
    for i in range(7):
        go("bob", BOB, "GET", f"/api/v2/items/{1000 + i}/echo")
    assert_refused(fetch(px, base + "/admin/echo", BOB), 403, "denied")
    assert_refused(fetch(px, "http://nowhere.invalid/x", ALICE), 403, "no_route")
    read_audit(audit, at_least=9)
    with open(rotated, "rb") as src, gzip.open(str(rotated) + ".gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    rotated.unlink()
    logs = ["audit.jsonl.1.gz", "audit.jsonl"]

    # JSON: the counts are exactly what was sent.
    r = report("--config", "proxy.conf", "--format", "json", *logs, cwd=px.workdir)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["records"] == 24 and data["skipped_lines"] == 0, data
    by = {c["client"]: {x["route"]: x for x in c["routes"]} for c in data["clients"]}
    assert set(by) == {"alice", "bob"}, by.keys()
    a = by["alice"][2]
    assert a["requests"] == 15 and a["methods"] == {"GET": 12, "POST": 3}, a
    assert [h["host"] for h in a["hosts"]] == [f"localhost:{upstream.port}"]
    assert sorted(a["hosts"][0]["paths"]) == ["/storage/v1/b/*/o/echo", "/up/storage/v1/b/bucket-1/o/echo"], a
    b = by["bob"][2]
    assert b["requests"] == 7 and b["methods"] == {"GET": 7}
    assert b["hosts"][0]["paths"] == ["/api/v2/items/*/echo"], b
    assert by["bob"][1]["denials"] == {"denied": 1}
    assert by["alice"][None]["denials"] == {"no_route": 1}
    assert by["alice"][None]["refused_hosts"] == {"nowhere.invalid": 1}
    assert data["unused_routes"] == [3] and data["unused_clients"] == ["carol"], data
    assert data["proposal_valid"] is True, data["proposal_errors"]
    assert a["first"] <= a["last"] and a["first"] < b["first"]

    # Text: the same, for people.
    t = report("--config", "proxy.conf", *logs, cwd=px.workdir)
    assert t.returncode == 0, t.stderr
    assert "client alice" in t.stdout and "client bob" in t.stdout
    assert "/storage/v1/b/*/o/echo  (12)" in t.stdout, t.stdout
    assert "methods: GET 12, POST 3" in t.stdout, t.stdout
    assert "denied (no_route 1)" in t.stdout and "denied (denied 1)" in t.stdout, t.stdout
    unused = t.stdout.split("\nunused ")[1].split("\nproposed changes")[0]
    assert f"route #3 127.0.0.1:{upstream.port}" in unused and "client carol" in unused, t.stdout
    assert not find_secrets(t.stdout + r.stdout)

    # The diff applies with patch, and the result passes `credproxy check`.
    diff = t.stdout[t.stdout.index("--- proxy.conf"):]
    proposed = tmp_path / "proposed.conf"
    shutil.copy(px.config_path, proposed)
    subprocess.run(["patch", "-s", str(proposed)], input=diff, text=True, check=True)
    assert proposed.read_text() == data["proposed_config"]
    check = subprocess.run([str(binary_path()), "check", "--config", str(proposed)],
                           capture_output=True, text=True, env={**os.environ, **POLICY_ENV})
    assert check.returncode == 0, check.stdout + check.stderr
    text = proposed.read_text()
    assert f"localhost:{upstream.port}/storage/v1/b localhost:{upstream.port}/up/storage/v1" in text, text
    assert "allow bob" in text and "allow alice" in text and "carol used no route" in text

    # Served: what was used still works, what was not is refused.
    nx = proxy_factory(text.replace("audit-log audit.jsonl", "audit-log off"), env=POLICY_ENV,
                       name="tightened")
    assert fetch(nx, base + "/storage/v1/b/bucket-9/o/echo", ALICE).status == 200
    assert fetch(nx, base + "/up/storage/v1/b/bucket-1/o/echo", ALICE, method="POST", body=b"x").status == 200
    assert fetch(nx, base + "/api/v2/items/5/echo", BOB).status == 200
    assert_refused(fetch(nx, base + "/storage/v1/b/bucket-1/o/echo", ALICE, method="DELETE"), 405, "method_not_allowed")
    assert_refused(fetch(nx, base + "/api/v2/items/5/echo", ALICE), 403, "client_not_allowed")
    assert_refused(fetch(nx, base + "/storage/v1/b/bucket-1/o/echo", BOB), 403, "client_not_allowed")
    assert_refused(fetch(nx, base + "/other/echo", ALICE), 403, "denied")
    assert_refused(fetch(nx, base + "/storage/v1/b/bucket-1/o/echo", CAROL), 403, "client_not_allowed")


def test_report_since_and_errors(tmp_path):
    now = time.time()

    def line(t, path):
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".000Z"
        return json.dumps({"time": stamp, "client": None, "source": "127.0.0.1:1", "method": "GET",
                           "scheme": "http", "host": "api.example.com", "port": None, "path": path,
                           "route": 1, "decision": "allow", "reason": None, "status": 200})

    log = tmp_path / "audit.jsonl"
    log.write_text("\n".join([line(now - 3 * 86400, "/old"), line(now - 60, "/new"),
                              "not json", line(now - 30, "/new")]) + "\n")
    r = report("--since", "1d", "--format", "json", str(log), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert (d["records"], d["before_since"], d["skipped_lines"]) == (2, 1, 1), d
    assert d["clients"][0]["routes"][0]["hosts"][0]["paths"] == ["/new"]
    assert "unused_routes" not in d, "no config here: no proposal"
    r = report(str(log), cwd=tmp_path)
    assert r.returncode == 0 and "3 records" in r.stdout and "1 lines not audit records" in r.stdout, r.stdout
    # Where: the line that is not a record is the third of the file.
    assert f"the first at {log}:3" in r.stdout, r.stdout

    bad_gz = tmp_path / "audit.jsonl.2.gz"
    bad_gz.write_bytes(gzip.compress(log.read_bytes())[:-20])
    r = report(str(log), str(bad_gz), str(tmp_path / "missing.jsonl"), cwd=tmp_path)
    assert r.returncode == 1, r
    assert "audit.jsonl.2.gz: gzip data ends early" in r.stdout, r.stdout
    assert "missing.jsonl: No such file" in r.stdout, r.stdout

    for args, needle in [((), "needs at least one audit log"), (("--since", "soon", str(log)), "--since"),
                         (("--format", "xml", str(log)), "--format"), (("--bogus", str(log)), "--bogus")]:
        r = report(*args, cwd=tmp_path)
        assert r.returncode == 2 and needle in r.stderr, (args, r)
    conf = tmp_path / "broken.conf"
    conf.write_text("route {\n")
    r = report("--config", str(conf), str(log), cwd=tmp_path)
    assert r.returncode == 2 and "broken.conf:" in r.stderr, r.stderr


def _peak_rss_kib(args: list[str], cwd: Path) -> int:
    """Runs the binary and returns its peak RSS (ru_maxrss of that child alone, via wait4)."""
    proc = subprocess.Popen([str(binary_path()), *args], cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, proc.stderr.read()
    return usage.ru_maxrss


@pytest.mark.slow
def test_report_memory_does_not_grow_with_the_log(tmp_path):
    """Streaming: a log ten times larger (with ever-new object names) peaks at the same RSS."""
    lines = []
    for i in range(20_000):
        lines.append(json.dumps({
            "time": f"2026-11-30T12:{i // 60 % 60:02d}:{i % 60:02d}.000Z", "client": ["a", "b", None][i % 3],
            "source": "10.0.0.1:1", "method": "GET", "scheme": "http", "host": f"h{i % 5}.example.com",
            "port": None, "path": f"/v1/b/bucket-{i % 7}/o/object-{i}.txt", "route": 1 + i % 2,
            "decision": "allow", "reason": None, "status": 200}))
    block = ("\n".join(lines) + "\n").encode()

    def write(name: str, copies: int) -> Path:
        path = tmp_path / name
        with open(path, "wb") as f:
            for k in range(copies):
                f.write(block.replace(b"object-", b"o%d-" % k))
        return path

    small = write("small.jsonl", 3)     # ~6 MB
    large = write("large.jsonl", 30)    # ~60 MB
    with open(large, "rb") as src, gzip.open(tmp_path / "large.jsonl.gz", "wb", compresslevel=1) as dst:
        shutil.copyfileobj(src, dst)
    base = _peak_rss_kib(["report", "small.jsonl"], tmp_path)
    plain = _peak_rss_kib(["report", "large.jsonl"], tmp_path)
    packed = _peak_rss_kib(["report", "large.jsonl.gz"], tmp_path)
    assert plain < base + 8 * 1024, (base, plain)
    assert packed < base + 8 * 1024, (base, packed)


def test_report_never_prints_inline_secrets(tmp_path):
    secret = "inline-" + os.urandom(8).hex() + '"q\\'
    quoted = secret.replace("\\", "\\\\").replace('"', '\\"')
    conf = tmp_path / "proxy.conf"
    conf.write_text(f'route api.example.com {{\n  auth bearer "{quoted}"\n  methods GET POST\n}}\n'
                    f'client ci {{\n  token "{quoted}x"\n}}\n')
    log = tmp_path / "audit.jsonl"
    log.write_text(json.dumps({"time": "2026-11-30T12:00:00Z", "client": "ci", "method": "GET",
                               "scheme": "http", "host": "api.example.com", "port": None,
                               "path": "/v1/a", "route": 1, "decision": "allow", "status": 200}) + "\n")
    proposal = tmp_path / "out" / "tight.conf"
    proposal.parent.mkdir()
    proposal.write_text("old")
    proposal.chmod(0o644)
    t = report("--config", str(conf), "--proposal", str(proposal), str(log), cwd=tmp_path)
    j = report("--config", str(conf), "--format", "json", str(log), cwd=tmp_path)
    assert t.returncode == 0 and j.returncode == 0, (t.stderr, j.stderr)
    for out in (t.stdout + t.stderr, j.stdout + j.stderr):
        assert secret not in out and quoted not in out and "inline-" not in out, out
    assert "[redacted]" in t.stdout and "does not apply as printed" in t.stdout, t.stdout
    data = json.loads(j.stdout)
    assert data["diff_redacted"] is True and "methods GET" in data["diff"]
    # The file written with --proposal is the real config (it must work), readable by its owner only.
    assert proposal.stat().st_mode & 0o777 == 0o600
    assert quoted in proposal.read_text() and "methods GET\n" in proposal.read_text()
    check = subprocess.run([str(binary_path()), "check", "--config", str(proposal)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


@pytest.mark.timeout(120)
def test_report_on_hostile_logs_is_bounded_and_says_what_it_skipped(tmp_path):
    """A log is input: every line naming a new client and route (listing each client's routes
    scanned every pair, so 500,000 clients took a quarter of an hour at 670 MB), lines nested a
    million deep, overlong, invalid UTF-8, a gzip bomb. The report finishes, with flat memory,
    and counts what it did not itemise."""
    rec = {"time": "2026-11-30T12:00:00Z", "scheme": "http", "host": "a.example.com", "port": None,
           "path": "/v1/x", "decision": "allow", "status": 200}
    with open(tmp_path / "many.jsonl", "w") as f:
        for i in range(150_000):
            f.write(json.dumps({**rec, "client": f"c{i}", "method": f"M{i}", "route": i,
                                "scopes": f"s{i}"}) + "\n")
    with open(tmp_path / "odd.jsonl", "wb") as f:
        head = b'{"time":"2026-11-30T12:00:00Z","method":"GET","host":"a.example.com","decision":"allow","x":'
        f.write(head + b"[" * 1_000_000 + b"]" * 1_000_000 + b"}\n")
        f.write(head + b"[" * 500_000 + b"}\n")
        f.write(b'{"time":"2026-11-30T12:00:00Z","client":"\xff\xc0\x80","method":"GET","host":"a.example.com",'
                b'"path":"/\xfe","route":1,"decision":"allow"}\n')
        f.write(b"y" * 5_000_000 + b"\n")
    with gzip.open(tmp_path / "bomb.gz", "wb", compresslevel=9) as g:
        block = b"\0" * (1 << 20)
        for _ in range(256):
            g.write(block)
    started = time.monotonic()
    r = report("--format", "json", "many.jsonl", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["records"] == 150_000 and d["overflow_records"] == 150_000 - 10_000, {
        k: v for k, v in d.items() if k != "clients"}
    t = report("many.jsonl", cwd=tmp_path)
    assert "140000 records of client/route pairs past the first 10000" in t.stdout.splitlines()[0]
    assert time.monotonic() - started < 60
    base = _peak_rss_kib(["report", "odd.jsonl"], tmp_path)
    assert _peak_rss_kib(["report", "many.jsonl"], tmp_path) < base + 96 * 1024
    assert _peak_rss_kib(["report", "bomb.gz"], tmp_path) < base + 16 * 1024
    r = report("odd.jsonl", cwd=tmp_path)
    assert r.returncode == 0 and "1 records" in r.stdout and "3 lines not audit records" in r.stdout, r.stdout
    assert "the first at odd.jsonl:1 (longer than 1048576 bytes)" in r.stdout, r.stdout


def test_report_text_never_passes_control_characters_from_a_log(tmp_path):
    """A client name, path, reason, scope set or audience in a log may hold terminal escapes and
    newlines; the text report shows them as `?`, so a log cannot drive the operator's terminal or
    forge lines of the report."""
    (tmp_path / "audit.jsonl").write_bytes(
        b'{"time":"2026-11-30T12:00:00Z","client":"ci\\u001b]0;owned\\u0007\\nclient admin",'
        b'"method":"GET","scheme":"http","host":"a.example.com","path":"/v1/\\u001b[2J\\u2028x",'
        b'"route":1,"decision":"allow","scopes":"s\\r\\nforged","audience":"\\u009b31m"}\n'
        b'{"time":"2026-11-30T12:00:01Z","client":"ci","method":"GET","scheme":"http",'
        b'"host":"a.example.com","path":"/v1/x","route":1,"decision":"deny","reason":"r\\u001b[5m"}\n')
    r = report("audit.jsonl", cwd=tmp_path)
    assert r.returncode == 0 and "2 records" in r.stdout, r.stdout
    for bad in ("\x1b", "\x07", "\r", "\u2028", "\x9b"):
        assert bad not in r.stdout, (bad, r.stdout)
    lines = r.stdout.splitlines()
    assert not any(line.startswith("client admin") for line in lines), r.stdout
    assert "client ci?]0;owned??client admin" in r.stdout, r.stdout
    assert "OAuth2 scopes: s??forged" in r.stdout, r.stdout
