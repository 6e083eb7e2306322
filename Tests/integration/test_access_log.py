"""The access log: one line per request (text or JSON) with time, client, method, host, path without
its query string, route, status, bytes and duration; to stderr, a file, or off. The module-level
secret guard (conftest) checks every proxy's stderr for secrets afterwards."""

from __future__ import annotations

import json
import re
import time

import pytest

from harness import configs
from harness.rawhttp import RawConnection, get_via_proxy

JSON_CONFIG = configs.STANDARD.replace("listen 127.0.0.1:0\n", "listen 127.0.0.1:0\nlog-format json\n")


def find_line(p, needle: str, timeout: float = 5.0, path=None) -> str:
    """The last line of the log (stderr, or the file at ``path``) that contains ``needle``."""
    deadline = time.monotonic() + timeout
    while True:
        if path is None:
            text = p.stderr_text()
        else:
            text = path.read_text() if path.exists() else ""
        lines = [line for line in text.splitlines() if needle in line]
        if lines:
            return lines[-1]
        if time.monotonic() >= deadline:
            raise AssertionError(f"no access-log line containing {needle!r} in:\n{text[-3000:]}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def px(module_proxy_factory):
    return module_proxy_factory(configs.STANDARD, name="accesslog-text")


@pytest.fixture(scope="module")
def px_json(module_proxy_factory):
    return module_proxy_factory(JSON_CONFIG, name="accesslog-json")


def test_text_line_fields(px, upstream, token):
    body = b"q" * 1234
    r = get_via_proxy(px.port, upstream.url(f"/bearer/echo/{token}?qmark-{token}=secretish"),
                      method="POST", body=body)
    assert r.status == 200
    line = find_line(px, f"/bearer/echo/{token}")
    assert "POST" in line, line
    assert "127.0.0.1" in line, line  # the client address
    assert "localhost" in line, line  # the host (its port is optional)
    # The route: its patterns as written, or its 1-based position in the file (#1 in STANDARD).
    assert f"localhost:{upstream.port}/bearer" in line or re.search(r"#1\b", line), line
    assert re.search(r"\b200\b", line), line
    assert re.search(r"\b1234\b", line), f"bytes in not logged: {line}"
    assert re.search(r"\d{4}-\d{2}-\d{2}|\d{2}:\d{2}:\d{2}", line), f"no time: {line}"
    assert re.search(r"\b(dur\w*|duration\w*|elapsed\w*|ms|time_ms)[=:]\s*\d|\b\d+(\.\d+)?\s*(ms|s|us|µs)\b",
                     line), f"no duration: {line}"
    assert f"qmark-{token}" not in px.stderr_text(), "the query string reached the log"
    assert "secretish" not in px.stderr_text()


def test_one_line_per_request(px, upstream, token):
    with RawConnection(px.port) as c:
        for i in range(5):
            assert c.request("GET", upstream.url(f"/echo/{token}/n{i}")).status == 200
    find_line(px, f"/echo/{token}/n4")
    lines = [line for line in px.stderr_lines() if f"/echo/{token}/n" in line]
    assert len(lines) == 5, lines


def test_refusals_are_logged(px, upstream, token):
    get_via_proxy(px.port, f"http://nothing-routes-here.invalid/{token}")
    line = find_line(px, token)
    assert re.search(r"\b403\b", line), line
    assert "nothing-routes-here.invalid" in line, line
    get_via_proxy(px.port, upstream.url(f"/deny-me/{token}-d"))
    assert re.search(r"\b403\b", find_line(px, f"{token}-d"))


def test_upstream_errors_are_logged(px, upstream, token):
    get_via_proxy(px.port, upstream.url(f"/status/503?{token}"))
    # the query is not logged, so look for the path and status
    line = find_line(px, "/status/503")
    assert re.search(r"\b503\b", line), line


def _values(obj) -> list:
    if isinstance(obj, dict):
        return [v for x in obj.values() for v in _values(x)]
    if isinstance(obj, list):
        return [v for x in obj for v in _values(x)]
    return [obj]


def test_json_lines(px_json, upstream, token):
    r = get_via_proxy(px_json.port, upstream.url(f"/header/echo/{token}?qmark-{token}=1"),
                      method="PUT", body=b"z" * 1234)
    assert r.status == 200
    line = find_line(px_json, f"/header/echo/{token}")
    record = json.loads(line)
    assert isinstance(record, dict)
    values = _values(record)
    assert "PUT" in values, record
    assert f"/header/echo/{token}" in values, f"path not logged exactly (without query): {record}"
    assert 200 in values or "200" in values, record
    assert 1234 in values or "1234" in values, f"bytes in not logged: {record}"
    assert any(isinstance(v, str) and "127.0.0.1" in v for v in values), record
    # The route: its patterns as written, or its position in the file (#2 in STANDARD).
    assert any(v in (2, "#2") or (isinstance(v, str) and f"localhost:{upstream.port}/header" in v)
               for v in values), record
    assert f"qmark-{token}" not in px_json.stderr_text()


def test_json_every_request_line_parses(px_json, upstream, token):
    for i in range(3):
        get_via_proxy(px_json.port, upstream.url(f"/echo/{token}/{i}"))
    get_via_proxy(px_json.port, f"http://nothing-routes-here.invalid/{token}")
    find_line(px_json, "nothing-routes-here.invalid")
    for line in px_json.stderr_lines():
        if token in line:
            json.loads(line)


def test_access_log_to_file(proxy_factory, upstream, token, tmp_path):
    log = tmp_path / "access.log"
    p = proxy_factory(configs.STANDARD.replace("listen 127.0.0.1:0\n", f"listen 127.0.0.1:0\naccess-log {log}\n"))
    assert get_via_proxy(p.port, upstream.url(f"/echo/{token}")).status == 200
    line = find_line(p, f"/echo/{token}", path=log)
    assert "GET" in line
    assert f"/echo/{token}" not in p.stderr_text(), "logged to stderr although access-log is a file"


def test_access_log_off(proxy_factory, upstream, token):
    p = proxy_factory(configs.STANDARD.replace("listen 127.0.0.1:0\n", "listen 127.0.0.1:0\naccess-log off\n"))
    assert get_via_proxy(p.port, upstream.url(f"/echo/{token}")).status == 200
    time.sleep(0.5)
    assert token not in p.stderr_text()
