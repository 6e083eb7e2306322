"""`source exec PROGRAM [ARGS…]` with `auth token`: a host program's token, injected as a bearer,
minted once per refresh however many callers wait, and failures that name the program and how it
ended, never what it printed. The programs are real /bin/sh scripts run by the proxy."""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from pathlib import Path

import pytest

from harness import secret_values as sv
from harness.rawhttp import get_via_proxy


def program(directory: Path, name: str, body: str) -> Path:
    path = directory / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return path


def token_program(directory: Path, token: str, *, sleep: float = 0.0, expires: str = '"expires_in": 3600') -> Path:
    """Prints `token` (plus a run number) after `sleep` seconds; appends a line to runs.log per run."""
    runs = directory / "runs.log"
    return program(directory, "print-token", f"""
echo "$$ $*" >> {runs}
env > {directory}/env.txt
sleep {sleep}
n=$(wc -l < {runs} | tr -d ' ')
printf '{{"token": "{token}-%s", {expires}}}' "$n"
""")


def runs(directory: Path) -> list[str]:
    path = directory / "runs.log"
    return path.read_text().splitlines() if path.exists() else []


def conf(prog: Path, *, args: str = "", extra: str = "", route_extra: str = "", upstream_port: str = "{upstream_port}") -> str:
    return f"""
listen 127.0.0.1:0
ca-file {{ca}}
credentials prog {{
  source exec {prog} {args}
  {extra}
}}
route localhost:{upstream_port} {{
  auth token
  credentials prog
  {route_extra}
}}
"""


def echo(px, upstream, path: str, headers=()):
    return get_via_proxy(px.port, upstream.url(path), list(headers))


def header(body: dict, name: str) -> list[str]:
    return [v for n, v in body["headers"] if n.lower() == name.lower()]


def test_token_injected_as_bearer_replacing_the_callers(proxy, upstream, tmp_path, token):
    secret = "exec-" + secrets.token_hex(12)
    prog = token_program(tmp_path, secret)
    px = proxy(conf(prog, args='--audience "two words" $HOME'))
    r = echo(px, upstream, f"/echo/{token}", [("Authorization", "Bearer caller-own")])
    assert r.status == 200, r
    assert header(r.json(), "Authorization") == [f"Bearer {secret}-1"]
    # No shell: arguments arrive as written, `$HOME` unexpanded.
    assert runs(tmp_path)[0].split(" ", 1)[1] == "--audience two words $HOME"
    # Cached: a second request does not run the program again.
    r = echo(px, upstream, f"/echo/{token}-2")
    assert header(r.json(), "Authorization") == [f"Bearer {secret}-1"]
    assert len(runs(tmp_path)) == 1
    assert secret not in px.stderr_text()
    assert "fingerprint=" in px.stderr_text()


def test_auth_header_carries_the_token(proxy, upstream, tmp_path, token):
    secret = "hdr-" + secrets.token_hex(12)
    prog = token_program(tmp_path, secret)
    px = proxy(conf(prog, route_extra="auth-header X-Serverless-Authorization"))
    r = echo(px, upstream, f"/echo/{token}", [("Authorization", "Bearer app-own")])
    body = r.json()
    assert header(body, "X-Serverless-Authorization") == [f"Bearer {secret}-1"]
    assert header(body, "Authorization") == ["Bearer app-own"]


def test_small_environment(proxy, upstream, tmp_path, token):
    prog = token_program(tmp_path, "env-" + secrets.token_hex(8))
    px = proxy(conf(prog), env={"CREDPROXY_ITEST_SHOULD_NOT_PASS": "nope"})
    assert echo(px, upstream, f"/echo/{token}").status == 200
    env = dict(line.split("=", 1) for line in (tmp_path / "env.txt").read_text().splitlines() if "=" in line)
    assert "CREDPROXY_ITEST_SHOULD_NOT_PASS" not in env
    assert sv.ENV_BEARER not in env, "a secret in the proxy's environment reached the program"
    assert set(env) - {"PWD", "SHLVL", "_"} <= {"PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR"}


@pytest.mark.timeout(120)
def test_cold_burst_of_100_runs_the_program_once(proxy, upstream, tmp_path):
    secret = "burst-" + secrets.token_hex(12)
    prog = token_program(tmp_path, secret, sleep=1.0)
    px = proxy(conf(prog))
    results: list = [None] * 100
    barrier = threading.Barrier(100)

    def one(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[i] = echo(px, upstream, f"/echo/burst-{i}")
        except BaseException as exc:  # noqa: BLE001 - checked below
            results[i] = exc

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    statuses = [getattr(r, "status", r) for r in results]
    assert statuses == [200] * 100, statuses
    assert {header(r.json(), "Authorization")[0] for r in results} == {f"Bearer {secret}-1"}
    assert len(runs(tmp_path)) == 1, runs(tmp_path)


@pytest.mark.parametrize(
    "case, body, extra, needle",
    [
        ("fails", 'echo "{{\\"token\\": \\"{secret}\\", \\"expires_in\\": 60}}"; echo "{secret}" >&2; exit 3', "",
         "exited with status 3"),
        ("garbage", 'echo "hello {secret}"', "", "exited with status 0 but printed no JSON object"),
        ("no-expiry", 'echo "{{\\"token\\": \\"{secret}\\"}}"', "", "printed neither expires_in nor expires_at"),
        ("times-out", 'echo "{secret}"; sleep 30', "exec-timeout 500ms", "timed out after 500 ms and was killed"),
        ("killed", 'echo "{secret}"; kill -9 $$', "", "was killed by signal 9"),
    ],
)
def test_failures_name_the_program_never_its_output(proxy, upstream, tmp_path, token, secret_guard, case, body, extra, needle):
    secret = f"{case}-" + secrets.token_hex(12)
    secret_guard.add_secret(f"program output ({case})", secret)
    prog = program(tmp_path, f"bad-{case}", body.format(secret=secret))
    px = proxy(conf(prog, extra=extra))
    r = echo(px, upstream, f"/echo/{token}")
    assert r.status == 503, r
    assert r.error_code == "token_unavailable", r
    assert f"program {prog}" in r.text and needle in r.text, r.text
    assert secret not in r.text
    assert not upstream.requests_matching(token)
    # Backoff: the next request does not run the program at once, and says when it will.
    r2 = echo(px, upstream, f"/echo/{token}-again")
    assert r2.status == 503 and "next attempt in" in r2.text, r2.text


def test_missing_program_is_credential_unavailable(proxy, upstream, tmp_path, token):
    px = proxy(conf(tmp_path / "does-not-exist"))
    r = echo(px, upstream, f"/echo/{token}")
    assert r.status == 503 and r.error_code == "credential_unavailable", r
    assert "is not an executable file" in r.text


def test_check_and_explain_show_program_not_arguments(cli, proxy_factory, tmp_path):
    prog = token_program(tmp_path, "x")
    cfg = proxy_factory.config(conf(prog, args="--secret-arg hunter2", extra="exec-timeout 4s"))
    out = cli("check", "--config", str(cfg))
    assert out.returncode == 0, out.stderr
    assert f"exec {prog} (2 arguments) timeout 4s" in out.stdout
    assert "hunter2" not in out.stdout
    bad = proxy_factory.config(conf(prog).replace("auth token", "auth OAuth2"), name="bad.conf")
    out = cli("check", "--config", str(bad))
    assert out.returncode != 0
    assert "(source exec), which prints one token and takes no scopes or audience; expected auth token" in out.stderr


def test_refresh_ahead_and_a_failing_refresh_keeps_the_cached_token(proxy, upstream, tmp_path, token):
    """First run: a 40 s token. Later runs fail. With refresh-window 39s the second request is
    served from the cache while one background run fails; the token keeps being used."""
    secret = "ahead-" + secrets.token_hex(12)
    runs_log = tmp_path / "runs.log"
    prog = program(tmp_path, "flaky", f"""
echo run >> {runs_log}
[ "$(wc -l < {runs_log})" -gt 1 ] && exit 5
printf '{{"token": "{secret}", "expires_in": 40}}'
""")
    px = proxy(conf(prog, extra="refresh-window 39s"))
    first = echo(px, upstream, f"/echo/{token}-1")
    assert header(first.json(), "Authorization") == [f"Bearer {secret}"]
    time.sleep(1.5)
    second = echo(px, upstream, f"/echo/{token}-2")
    assert second.status == 200 and header(second.json(), "Authorization") == [f"Bearer {secret}"]
    deadline = time.monotonic() + 10
    while len(runs(tmp_path)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(runs(tmp_path)) == 2, "no background refresh ran"
    assert px.wait_for_stderr(r"token mint failed for .*program .*exited with status 5", timeout=5)
    third = echo(px, upstream, f"/echo/{token}-3")
    assert third.status == 200 and header(third.json(), "Authorization") == [f"Bearer {secret}"]
