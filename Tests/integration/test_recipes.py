"""The README's client recipes, run as written: each client sends a plain request through
credproxy to `upstream.itest.invalid` (a name only the proxy resolves, through `connect-to`), and the
local HTTPS upstream must see the injected bearer token that the client never held.

curl, Python requests / httpx / aiohttp, Go net/http, Node's http.request (and that Node's
built-in fetch ignores HTTP_PROXY), git over http (dumb HTTP from a static HTTPS server that
insists on the token). Every client here is installed by scripts/test."""

from __future__ import annotations

import http.server
import os
import shutil
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

from harness import secret_values as sv
from harness.proxy import clean_env

pytestmark = pytest.mark.timeout(180)

HOST = "upstream.itest.invalid"

CONF = """\
listen 127.0.0.1:0
ca-file {ca}
route git.wild.itest.invalid {
  connect-to 127.0.0.1:{git_port}
  auth bearer env:{env_bearer}
  methods GET HEAD
}
route upstream.itest.invalid {
  connect-to 127.0.0.1:{upstream_port}
  auth bearer env:{env_bearer}
}
route localhost:{upstream_port} {
  auth bearer env:{env_bearer}
}
"""


class _GitFiles(http.server.SimpleHTTPRequestHandler):
    """A static file server that answers 401 without the bearer token credproxy injects."""

    def do_GET(self):  # noqa: N802
        if self.headers.get("Authorization") != f"Bearer {sv.BEARER_TOKEN}":
            self.send_response(401)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        super().do_GET()

    def log_message(self, *args):  # quiet
        pass


@pytest.fixture(scope="module")
def git_server(pki, tmp_path_factory):
    root = tmp_path_factory.mktemp("git-http")
    work = root / "work"
    env = {**clean_env(), "HOME": str(root), "GIT_CONFIG_NOSYSTEM": "1"}
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True, env=env)
    (work / "README").write_text("served through credproxy\n")
    subprocess.run(["git", "-C", str(work), "add", "README"], check=True, env=env)
    subprocess.run(["git", "-C", str(work), "-c", "user.name=t", "-c", "user.email=t@example.com",
                    "commit", "-q", "-m", "first"], check=True, env=env)
    bare = root / "srv" / "repo.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True, env=env)
    subprocess.run(["git", "-C", str(bare), "update-server-info"], check=True, env=env)

    handler = lambda *a, **kw: _GitFiles(*a, directory=str(root / "srv"), **kw)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.socket = pki.server.server_context().wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


@pytest.fixture(scope="module")
def px(module_proxy_factory, git_server):
    module_proxy_factory.values["git_port"] = git_server
    return module_proxy_factory(CONF, name="recipes")


def proxy_env(px, tmp_path: Path) -> dict[str, str]:
    url = f"http://127.0.0.1:{px.port}"
    return clean_env({"HTTP_PROXY": url, "http_proxy": url, "HOME": str(tmp_path)})


def injected(upstream, tag: str, count: int = 1) -> None:
    seen = upstream.requests_matching(tag)
    assert len(seen) == count, [r.target for r in seen]
    for r in seen:
        assert r.header_values("Authorization") == [f"Bearer {sv.BEARER_TOKEN}"], r.headers


def run(args, env, **kw):
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=kw.pop("timeout", 60), **kw)


def test_curl(px, upstream, tmp_path):
    tag = uuid.uuid4().hex[:10]
    env = clean_env({"HOME": str(tmp_path)})
    # -x, or http_proxy (curl reads only the lowercase name for http:// URLs).
    r = run(["curl", "-sS", "-x", f"http://127.0.0.1:{px.port}", f"http://{HOST}/echo/{tag}-x"], env)
    assert r.returncode == 0 and '"method": "GET"' in r.stdout.replace('":"', '": "'), r
    r = run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", f"http://{HOST}/echo/{tag}-env"],
            {**env, "http_proxy": f"http://127.0.0.1:{px.port}"})
    assert r.stdout == "200", r
    injected(upstream, f"{tag}-x")
    injected(upstream, f"{tag}-env")


PY_CLIENTS = {
    "requests": """
import requests, sys
r = requests.get(sys.argv[1], timeout=10)          # HTTP_PROXY from the environment
print(r.status_code)
""",
    "httpx": """
import httpx, sys
r = httpx.get(sys.argv[1], timeout=10)             # trust_env=True by default
print(r.status_code)
with httpx.Client(proxy=sys.argv[2]) as c:         # or name the proxy
    print(c.get(sys.argv[1] + "-explicit").status_code)
""",
    "aiohttp": """
import aiohttp, asyncio, sys
async def main():
    async with aiohttp.ClientSession(trust_env=True) as s:   # without it HTTP_PROXY is ignored
        async with s.get(sys.argv[1]) as r:
            print(r.status)
        async with s.get(sys.argv[1] + "-explicit", proxy=sys.argv[2]) as r:
            print(r.status)
asyncio.run(main())
""",
}


@pytest.mark.parametrize("client", sorted(PY_CLIENTS))
def test_python_clients(client, px, upstream, tmp_path):
    tag = uuid.uuid4().hex[:10]
    script = tmp_path / f"{client}_client.py"
    script.write_text(PY_CLIENTS[client])
    r = run([sys.executable, str(script), f"http://{HOST}/echo/{tag}", f"http://127.0.0.1:{px.port}"],
            proxy_env(px, tmp_path))
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.split()
    assert lines and set(lines) == {"200"}, r.stdout
    injected(upstream, tag, count=len(lines))


def test_aiohttp_without_trust_env_ignores_http_proxy(px, tmp_path):
    script = tmp_path / "aiohttp_plain.py"
    script.write_text("""
import aiohttp, asyncio, sys
async def main():
    async with aiohttp.ClientSession() as s:
        try:
            async with s.get(sys.argv[1]) as r:
                print(r.status)
        except aiohttp.ClientConnectorError:
            print("direct: name not resolved")
asyncio.run(main())
""")
    r = run([sys.executable, str(script), f"http://{HOST}/echo/x"], proxy_env(px, tmp_path))
    assert r.stdout.strip() == "direct: name not resolved", r


GO_CLIENT = """
package main

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
)

func main() {
	// HTTP_PROXY from the environment (http.DefaultTransport uses ProxyFromEnvironment)...
	resp, err := http.Get(os.Args[1])
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	fmt.Println(resp.StatusCode)
	// ...which never proxies localhost or loopback addresses:
	for _, target := range []string{"http://localhost:9/", "http://127.0.0.1:9/", os.Args[1]} {
		req, _ := http.NewRequest("GET", target, nil)
		p, _ := http.ProxyFromEnvironment(req)
		fmt.Println(target, "proxy:", p != nil)
	}
	// For those, name the proxy on the transport: then every request goes through it.
	proxy, _ := url.Parse(os.Args[3])
	client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxy)}}
	resp, err = client.Get(os.Args[2])
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	fmt.Println(resp.StatusCode)
}
"""


def test_go_net_http(px, upstream, tmp_path):
    go = shutil.which("go")
    assert go, "go is needed (scripts/test installs golang-go)"
    tag = uuid.uuid4().hex[:10]
    src = tmp_path / "main.go"
    src.write_text(GO_CLIENT)
    env = proxy_env(px, tmp_path)
    env.update(GOCACHE=str(tmp_path / "gocache"), GO111MODULE="off", GOFLAGS="", GOPROXY="off")
    target = f"http://{HOST}/echo/{tag}-env"
    loopback = f"http://localhost:{upstream.port}/echo/{tag}-loopback"
    r = run([go, "run", str(src), target, loopback, f"http://127.0.0.1:{px.port}"], env, timeout=170)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.splitlines() == [
        "200",
        "http://localhost:9/ proxy: false",
        "http://127.0.0.1:9/ proxy: false",
        f"{target} proxy: true",
        "200",
    ], r.stdout
    injected(upstream, f"{tag}-env")
    injected(upstream, f"{tag}-loopback")


NODE_CLIENT = """
const http = require('node:http');
const [proxyHost, proxyPort] = process.argv[2].split(':');
const target = process.argv[3];
// http.request does not read HTTP_PROXY either: send the absolute URL as the path (absolute-form).
const req = http.request({host: proxyHost, port: Number(proxyPort), method: 'GET', path: target,
                          headers: {Host: new URL(target).host}}, (res) => {
  res.resume();
  res.on('end', async () => {
    console.log(res.statusCode);
    // Node's built-in fetch ignores HTTP_PROXY: this goes direct and the name does not resolve.
    try {
      const r = await fetch(target + '-fetch');
      console.log('fetch', r.status);
    } catch (e) {
      console.log('fetch direct:', e.cause && e.cause.code);
    }
  });
});
req.on('error', (e) => { console.error(e); process.exit(1); });
req.end();
"""


def test_node_http_request_and_fetch(px, upstream, tmp_path):
    node = shutil.which("node")
    assert node, "node is needed (scripts/test installs nodejs)"
    tag = uuid.uuid4().hex[:10]
    src = tmp_path / "client.js"
    src.write_text(NODE_CLIENT)
    r = run([node, str(src), f"127.0.0.1:{px.port}", f"http://{HOST}/echo/{tag}"], proxy_env(px, tmp_path))
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.splitlines() == ["200", "fetch direct: ENOTFOUND"], r.stdout
    injected(upstream, f"/echo/{tag}")
    assert not upstream.requests_matching(f"{tag}-fetch")


def test_git_over_http(px, tmp_path, git_server):
    env = clean_env({"HOME": str(tmp_path), "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0"})
    dest = tmp_path / "clone"
    r = run(["git", "-c", f"http.proxy=http://127.0.0.1:{px.port}", "clone", "-q",
             "http://git.wild.itest.invalid/repo.git", str(dest)], env)
    assert r.returncode == 0, r.stderr
    assert (dest / "README").read_text() == "served through credproxy\n"
    # The same through the environment.
    dest2 = tmp_path / "clone2"
    r = run(["git", "clone", "-q", "http://git.wild.itest.invalid/repo.git", str(dest2)],
            {**env, "http_proxy": f"http://127.0.0.1:{px.port}"})
    assert r.returncode == 0 and (dest2 / "README").exists(), r.stderr
    # Without the proxy the server refuses: the token really comes from credproxy.
    r = run(["git", "-c", "http.sslVerify=false", "clone", "-q",
             f"https://127.0.0.1:{git_server}/repo.git", str(tmp_path / "direct")], env)
    assert r.returncode != 0 and "could not read Username" in r.stderr, r.stderr  # a 401
