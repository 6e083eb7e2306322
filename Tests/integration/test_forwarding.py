"""Forwarding through the proxy with real clients: curl -x, Python urllib (in process and through
HTTP_PROXY in a child process), raw absolute-form and origin-form requests."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import textwrap
import urllib.request

import pytest

from harness import configs, data
from harness.proxy import clean_env
from harness.rawhttp import RawConnection, get_via_proxy, hash_body


@pytest.fixture(scope="module")
def px(module_proxy_factory):
    return module_proxy_factory(configs.STANDARD, name="forwarding")


def curl_via(px, *args: str, env=None, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["curl", "-sS", "--max-time", "20", "-x", f"http://127.0.0.1:{px.port}", *args],
        capture_output=True, timeout=timeout, env=env or clean_env(),
    )


def test_curl_get_absolute_form(px, upstream, token):
    r = curl_via(px, upstream.url(f"/echo/{token}?x=1&y=%2F"))
    assert r.returncode == 0, r.stderr
    body = json.loads(r.stdout)
    assert body["upstream"] == "main"
    assert body["method"] == "GET"
    assert body["target"] == f"/echo/{token}?x=1&y=%2F"
    assert ["Host", upstream.authority] in body["headers"]
    # The proxy spoke TLS to the upstream, with SNI, verified against ca-file.
    [rec] = upstream.requests_matching(token)
    assert rec.sni == "localhost"
    assert rec.alpn == "http/1.1"


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "OPTIONS", "POST"])
def test_curl_methods(px, upstream, token, method):
    r = curl_via(px, "-X", method, "--data-binary", "payload", upstream.url(f"/echo/{token}"))
    assert r.returncode == 0, r.stderr
    body = json.loads(r.stdout)
    assert body["method"] == method
    assert body["body_length"] == len("payload")


def test_curl_uploads_a_file_with_content_length(px, upstream, tmp_path):
    blob = b"".join(data.generate(3 * 1024 * 1024 + 5))
    path = tmp_path / "blob"
    path.write_bytes(blob)
    r = curl_via(px, "--data-binary", f"@{path}", upstream.url("/upload"))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"length": len(blob), "sha256": data.sha256_hex(blob)}


def test_curl_uploads_chunked(px, upstream, tmp_path):
    blob = b"".join(data.generate(2 * 1024 * 1024 + 77))
    path = tmp_path / "blob"
    path.write_bytes(blob)
    r = curl_via(px, "-H", "Transfer-Encoding: chunked", "--data-binary", f"@{path}",
                 upstream.url("/upload"))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"length": len(blob), "sha256": data.sha256_hex(blob)}


def test_curl_downloads_exact_bytes(px, upstream, tmp_path):
    n = 4 * 1024 * 1024 + 3
    out = tmp_path / "out"
    r = curl_via(px, "-o", str(out), upstream.url(f"/stream?bytes={n}"))
    assert r.returncode == 0, r.stderr
    assert data.sha256_hex(out.read_bytes()) == data.expected_sha256(n)
    r = curl_via(px, "-o", str(out), upstream.url(f"/stream?bytes={n}&chunked=1"))
    assert r.returncode == 0, r.stderr
    assert data.sha256_hex(out.read_bytes()) == data.expected_sha256(n)


def test_urllib_with_proxy_handler(px, upstream, token, monkeypatch):
    for var in ("no_proxy", "NO_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.delenv(var, raising=False)
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({"http": f"http://127.0.0.1:{px.port}"}))
    req = urllib.request.Request(upstream.url(f"/echo/{token}"), data=b"hello", method="POST",
                                 headers={"X-Test": "urllib"})
    with opener.open(req, timeout=15) as resp:
        assert resp.status == 200
        body = json.loads(resp.read())
    assert body["method"] == "POST"
    assert body["body_length"] == 5
    assert ["X-Test", "urllib"] in body["headers"]


def test_urllib_in_a_child_process_through_http_proxy_env(px, upstream, token, client_env):
    script = textwrap.dedent("""\
        import json, sys, urllib.request
        with urllib.request.urlopen(sys.argv[1], timeout=15) as r:
            print(json.dumps({"status": r.status, "body": json.loads(r.read())}))
        """)
    env = dict(client_env)
    env["HTTP_PROXY"] = env["http_proxy"] = f"http://127.0.0.1:{px.port}"
    r = subprocess.run([sys.executable, "-c", script, upstream.url(f"/echo/{token}")],
                       capture_output=True, text=True, env=env, timeout=30)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["status"] == 200
    assert out["body"]["target"] == f"/echo/{token}"
    assert upstream.requests_matching(token), "the request did not reach the upstream via the proxy"


def test_origin_form_with_host(px, upstream, token):
    with RawConnection(px.port) as c:
        r = c.request("GET", f"/echo/{token}", [("Host", upstream.authority)])
    assert r.status == 200, r
    body = r.json()
    assert body["target"] == f"/echo/{token}"
    assert ["Host", upstream.authority] in body["headers"]


def test_absolute_form_authority_wins_over_host(px, upstream, token):
    r = get_via_proxy(px.port, upstream.url(f"/echo/{token}"),
                      [("Host", "attacker.itest.invalid")])
    assert r.status == 200, r
    hosts = [v for n, v in r.json()["headers"] if n.lower() == "host"]
    assert hosts == [upstream.authority]


def test_http10_absolute_form_without_host(px, upstream, token):
    with RawConnection(px.port) as c:
        c.send(f"GET {upstream.url('/echo/' + token)} HTTP/1.0\r\n\r\n".encode())
        r = c.read_response()
        assert r.status == 200, r
        assert r.json()["target"] == f"/echo/{token}"
        # HTTP/1.0 without keep-alive: the proxy closes after the response.
        assert c.wait_closed(5)


def test_redirect_is_passed_back_not_followed(px, upstream, token):
    r = get_via_proxy(px.port, upstream.url(f"/redirect?id={token}"))
    assert r.status == 302, r
    assert r.header("Location") == f"https://localhost:{upstream.port}/echo/redirected/{token}"
    assert r.body == b"redirecting\n"
    assert [x.target for x in upstream.requests_matching(token)] == [f"/redirect?id={token}"]


def test_head_204_304_have_no_body(px, upstream, token):
    with RawConnection(px.port) as c:
        r = c.request("HEAD", upstream.url(f"/echo/{token}/head"))
        assert r.status == 200 and r.body == b""
        assert int(r.header("Content-Length") or "1") > 0
        r = c.request("GET", upstream.url("/status/204"))
        assert r.status == 204 and r.body == b""
        r = c.request("GET", upstream.url("/status/304"), [("If-None-Match", '"itest-etag"')])
        assert r.status == 304 and r.body == b""
        # Had any body bytes followed those responses, this one would not parse.
        r = c.request("GET", upstream.url(f"/echo/{token}/after"))
        assert r.status == 200 and r.json()["target"] == f"/echo/{token}/after"


@pytest.mark.parametrize("status", [200, 201, 400, 404, 418, 500, 503])
def test_upstream_status_and_body_passed_through(px, upstream, status):
    r = get_via_proxy(px.port, upstream.url(f"/status/{status}"))
    assert r.status == status
    assert r.body == f"status {status}\n".encode()
    assert r.error_code is None, "an upstream answer is not a credproxy error"


def test_content_encoding_not_decoded(px, upstream):
    r = get_via_proxy(px.port, upstream.url("/gzip"), [("Accept-Encoding", "gzip")])
    assert r.status == 200
    assert r.header("Content-Encoding") == "gzip"
    assert gzip.decompress(r.body) == b"credproxy must not decode this\n" * 64


def test_close_delimited_upstream_body_is_delivered_whole(px, upstream):
    with RawConnection(px.port) as c:
        c.send_request("GET", upstream.url("/no-length"))
        resp = c.read_head()
        assert resp.status == 200
        body = b"".join(c.iter_body(resp))
    assert body == b"no-length body, delimited by close\n" * 100


def test_response_hop_by_hop_headers_removed(px, upstream):
    r = get_via_proxy(px.port, upstream.url("/hop-response"))
    assert r.status == 200
    assert r.header("X-Resp-Keep") == "kept value"
    assert r.header_all("Set-Cookie") == ["a=1; Path=/", "b=2; Path=/"]
    for name in ("X-Resp-Drop", "Proxy-Connection", "Upgrade", "Trailer"):
        assert not r.has_header(name), f"{name} reached the client: {r.headers}"
    assert "timeout=30" not in r.header_all("Keep-Alive")
    for value in r.header_all("Connection"):
        assert "x-resp-drop" not in value.lower()


def test_plain_http_upstream(px, plain_upstream, token):
    r = get_via_proxy(px.port, plain_upstream.url(f"/echo/{token}"))
    assert r.status == 200, r
    assert r.json()["upstream"] == "plain"
    assert ["Host", plain_upstream.authority] in r.json()["headers"]


def test_connect_to_keeps_target_name_for_tls_and_host(px, upstream, token):
    r = get_via_proxy(px.port, f"http://upstream.itest.invalid:8443/echo/{token}")
    assert r.status == 200, r
    body = r.json()
    assert body["upstream"] == "main"
    assert body["sni"] == "upstream.itest.invalid"
    hosts = [v for n, v in body["headers"] if n.lower() == "host"]
    assert hosts == ["upstream.itest.invalid:8443"]


def test_large_download_through_raw_socket(px, upstream):
    n = 16 * 1024 * 1024 + 1
    with RawConnection(px.port, timeout=30) as c:
        c.send_request("GET", upstream.url(f"/stream?bytes={n}&chunked=1"))
        resp = c.read_head()
        assert resp.status == 200
        assert hash_body(c, resp) == (n, data.expected_sha256(n))
