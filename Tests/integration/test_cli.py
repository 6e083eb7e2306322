"""The command line: --version, --help on every command, exit codes, `check` (summary and
file:line:col diagnostics), `explain`, and serve's start/stop behaviour."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import time

import pytest

from harness import configs, secret_values as sv
from harness.proxy import binary_path, clean_env, render
from harness.rawhttp import get_via_proxy

COMMANDS = ["serve", "check", "explain"]


def no_secrets(*texts: str) -> None:
    leaks = sv.find_leaks("\n".join(texts))
    assert not leaks, f"secrets printed: {leaks}"


def test_version(cli):
    r = cli("--version")
    assert r.returncode == 0, r.stderr
    assert re.search(r"credproxy\D*\d+\.\d+", r.stdout + r.stderr), (r.stdout, r.stderr)


def test_help(cli):
    r = cli("--help")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    for command in COMMANDS:
        assert command in out, f"--help does not mention {command}: {out!r}"


@pytest.mark.parametrize("command", COMMANDS)
def test_help_on_every_command(cli, command):
    r = cli(command, "--help")
    assert r.returncode == 0, (r.returncode, r.stderr)
    assert r.stdout.strip(), "empty help"
    assert "--config" in r.stdout, r.stdout


def test_unknown_command_is_a_usage_error(cli):
    r = cli("frobnicate")
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert r.stderr.strip()


@pytest.mark.parametrize("args", [["serve", "--bogus-flag"], ["check", "--config"], ["explain", "--config", "/nonexistent"]])
def test_usage_errors_exit_2(cli, args):
    r = cli(*args)
    assert r.returncode == 2, (args, r.returncode, r.stdout, r.stderr)
    assert r.stderr.strip()


def test_check_valid_config_prints_summary(cli, proxy_factory, upstream):
    path = proxy_factory.config(configs.STANDARD)
    r = cli("check", "--config", str(path))
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert out.strip(), "no summary"
    assert f"localhost:{upstream.port}/bearer" in out, out
    assert "127.0.0.1" in out, out  # the listen address
    assert re.search(r"bearer", out, re.I) and re.search(r"basic", out, re.I), out
    no_secrets(r.stdout, r.stderr)


def test_check_never_prints_secrets_even_literal_ones(cli, proxy_factory):
    path = proxy_factory.config("""\
listen 127.0.0.1:0
route a.itest.invalid {
  auth bearer "{literal_secret}"
}
route b.itest.invalid {
  auth basic {basic_user} env:{env_basic_password}
}
route c.itest.invalid {
  auth header X-Api-Key env:{env_header}
}
route d.itest.invalid {
  auth bearer file:{secret_file}
}
""")
    r = cli("check", "--config", str(path))
    assert r.returncode == 0, r.stderr
    no_secrets(r.stdout, r.stderr)


def write_conf(tmp_path, text: str):
    path = tmp_path / "proxy.conf"
    path.write_text(text)
    return path


def diagnostic_lines(stderr: str) -> list[tuple[int, int, str]]:
    return [(int(m[1]), int(m[2]), m[3]) for m in re.finditer(r"proxy\.conf:(\d+):(\d+): (.*)", stderr)]


def test_check_unknown_directive(cli, tmp_path):
    path = write_conf(tmp_path, "listen 127.0.0.1:0\n# comment\nfrobnicate yes\n")
    r = cli("check", "--config", str(path))
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    diags = diagnostic_lines(r.stderr)
    assert diags and diags[0][:2] == (3, 1), r.stderr
    assert "frobnicate" in diags[0][2], r.stderr
    assert str(path) in r.stderr or "proxy.conf:3:1:" in r.stderr


def test_check_unknown_auth_type(cli, tmp_path):
    text = "listen 127.0.0.1:0\n\nroute api.itest.invalid {\n    auth oauth\n}\n"
    path = write_conf(tmp_path, text)
    r = cli("check", "--config", str(path))
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert 'unknown auth type "oauth"' in r.stderr, r.stderr
    diags = diagnostic_lines(r.stderr)
    assert diags, r.stderr
    line, col, _ = diags[0]
    # Column of the directive (5) or of the offending word (10) are both precise.
    assert (line, col) in ((4, 5), (4, 10)), r.stderr


@pytest.mark.parametrize("text,line", [
    ("listen 127.0.0.1:0\nconnect-timeout 5parsecs\n", 2),
    ("listen 127.0.0.1:0\nmax-body lots\n", 2),
    ("listen 127.0.0.1:99999\n", 1),
    ("listen 127.0.0.1:0\nlog-format yaml\n", 2),
    ("listen 127.0.0.1:0\nroute x.itest.invalid {\n  upstream ftp\n}\n", 3),
    ("listen 127.0.0.1:0\nroute x.itest.invalid {\n  bogus-setting 1\n}\n", 3),
    ("listen 127.0.0.1:0\nroute x.itest.invalid {\n  auth bearer\n}\n", 3),
    ("listen 127.0.0.1:0\nroute x.itest.invalid {\n  methods\n}\n", 3),
    ('listen 127.0.0.1:0\naccess-log "unterminated\n', 2),
], ids=["duration", "size", "port", "log-format", "upstream-scheme", "route-directive", "auth-missing-secret",
        "empty-methods", "unterminated-string"])
def test_check_reports_line_and_column(cli, tmp_path, text, line):
    path = write_conf(tmp_path, text)
    r = cli("check", "--config", str(path))
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    diags = diagnostic_lines(r.stderr)
    assert diags, f"no proxy.conf:LINE:COL: diagnostic in {r.stderr!r}"
    assert diags[0][0] == line, r.stderr
    assert diags[0][1] >= 1


def test_check_unclosed_block(cli, tmp_path):
    path = write_conf(tmp_path, "listen 127.0.0.1:0\nroute x.itest.invalid {\n  auth none\n")
    r = cli("check", "--config", str(path))
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert diagnostic_lines(r.stderr), r.stderr


def test_config_defaults_to_proxy_conf_in_cwd(cli, tmp_path):
    r = cli("check")  # in an empty directory
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "proxy.conf" in r.stderr
    write_conf(tmp_path, "listen 127.0.0.1:0\nroute x.itest.invalid {\n  auth none\n}\n")
    r = cli("check", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "x.itest.invalid" in r.stdout


def test_check_missing_file(cli, tmp_path):
    r = cli("check", "--config", str(tmp_path / "nope.conf"))
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "nope.conf" in r.stderr


def test_check_warns_about_unset_secret_variable(cli, tmp_path):
    path = write_conf(tmp_path, "listen 127.0.0.1:0\nroute x.itest.invalid {\n  auth bearer env:ITEST_SURELY_UNSET\n}\n")
    r = cli("check", "--config", str(path))
    assert r.returncode in (0, 2), (r.returncode, r.stderr)
    assert "ITEST_SURELY_UNSET" in r.stdout + r.stderr


def test_serve_with_bad_config_exits_2_with_diagnostic(tmp_path):
    path = write_conf(tmp_path, "listen 127.0.0.1:0\nroute api.itest.invalid {\n  auth oauth\n}\n")
    r = subprocess.run([str(binary_path()), "serve", "--config", str(path)], capture_output=True,
                       text=True, timeout=15, env=clean_env(), stdin=subprocess.DEVNULL)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert 'unknown auth type "oauth"' in r.stderr
    assert re.search(r"proxy\.conf:3:\d+:", r.stderr)


def test_explain_allowed_route(cli, proxy_factory, upstream):
    path = proxy_factory.config(configs.STANDARD)
    r = cli("explain", f"http://localhost:{upstream.port}/bearer/x?q=1", "--config", str(path))
    assert r.returncode == 0, (r.returncode, r.stderr)
    out = r.stdout
    assert f"localhost:{upstream.port}/bearer" in out, out
    assert re.search(r"bearer", out, re.I), out
    no_secrets(r.stdout, r.stderr)


@pytest.mark.parametrize("route", ["basic", "header", "literal", "filetoken"])
def test_explain_never_prints_secrets(cli, proxy_factory, upstream, route):
    path = proxy_factory.config(configs.STANDARD)
    r = cli("explain", f"http://localhost:{upstream.port}/{route}/x", "--config", str(path))
    assert r.returncode == 0, (r.returncode, r.stderr)
    no_secrets(r.stdout, r.stderr)


def test_explain_denied_host(cli, proxy_factory):
    path = proxy_factory.config(configs.STANDARD)
    r = cli("explain", "http://nothing-routes-here.invalid/x", "--config", str(path))
    out = r.stdout + r.stderr
    assert r.returncode in (0, 1), (r.returncode, out)
    assert re.search(r"no_route|deny|denied|no route", out, re.I), out


def test_explain_deny_route(cli, proxy_factory, upstream):
    path = proxy_factory.config(configs.STANDARD)
    r = cli("explain", f"http://localhost:{upstream.port}/deny-me/x", "--config", str(path))
    out = r.stdout + r.stderr
    assert r.returncode in (0, 1), (r.returncode, out)
    assert re.search(r"denied|deny", out, re.I), out
    assert "/deny-me" in out, out


def test_explain_method(cli, proxy_factory, upstream):
    path = proxy_factory.config(configs.STANDARD)
    url = f"http://localhost:{upstream.port}/readonly/x"
    ok = cli("explain", url, "--method", "GET", "--config", str(path))
    bad = cli("explain", url, "--method", "DELETE", "--config", str(path))
    assert ok.returncode == 0, ok.stderr
    assert bad.returncode in (0, 1), bad.stderr
    assert ok.stdout != bad.stdout
    assert re.search(r"method|405", bad.stdout + bad.stderr, re.I), bad.stdout


def test_explain_bad_url_is_usage_error(cli, proxy_factory):
    path = proxy_factory.config(configs.STANDARD)
    r = cli("explain", "not a url", "--config", str(path))
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)


@pytest.mark.timeout(30)
def test_sigterm_stops_serve_cleanly(proxy_factory):
    p = proxy_factory(configs.STANDARD)
    start = time.monotonic()
    p.proc.send_signal(signal.SIGTERM)
    p.proc.wait(timeout=10)
    assert p.proc.returncode == 0, (p.proc.returncode, p.stderr_text()[-2000:])
    assert time.monotonic() - start < 5


def test_two_listeners(proxy_factory, upstream, token):
    p = proxy_factory(configs.STANDARD.replace("listen 127.0.0.1:0\n", "listen 127.0.0.1:0\nlisten 127.0.0.1:0\n"))
    assert len(p.ports) == 2 and p.ports[0] != p.ports[1], p.stderr_text()
    for port in p.ports:
        assert get_via_proxy(port, upstream.url(f"/echo/{token}")).status == 200


@pytest.mark.timeout(30)
def test_listen_address_in_use_is_a_runtime_failure(tmp_path, substitutions):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        port = busy.getsockname()[1]
        text = render(configs.STANDARD, substitutions).replace("listen 127.0.0.1:0", f"listen 127.0.0.1:{port}")
        path = write_conf(tmp_path, text)
        r = subprocess.run([str(binary_path()), "serve", "--config", str(path)], capture_output=True,
                           text=True, timeout=15, env=clean_env(sv.proxy_env()), stdin=subprocess.DEVNULL)
    finally:
        busy.close()
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert str(port) in r.stderr
    no_secrets(r.stdout, r.stderr)
