"""Deployment files, checked as far as this machine allows:

- deploy/systemd/credproxy.service: `systemd-analyze verify` (with the binary path pointed at the
  built binary: verify insists the ExecStart command exists) reports nothing, and
  `systemd-analyze security --offline` rates its exposure. systemd is not PID 1 here, so the unit
  is not started.
- deploy/kubernetes/*.yaml: `kubernetes-validate --strict` against Kubernetes 1.30 and its
  default version; the manifests hold what the issue asks (2 replicas, probes on /readyz and
  /healthz, preStop, non-root read-only root, requests, Service, ConfigMap, Secret, PDB, sidecar,
  Redis); their proxy.conf files pass `credproxy check`.
- `credproxy probe` (what the exec probes run) against a real admin listener, also while draining.
- deploy/container: rootfs.sh gives exactly the libraries `ldd` lists; `buildah` builds the
  Containerfile's runtime stage from that rootfs (the build stage needs the Swift image from a
  registry this machine cannot reach) and runs the binary inside the image; hadolint lints it.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest
import yaml

from harness.proxy import binary_path
from harness.rawhttp import RawConnection

pytestmark = pytest.mark.timeout(300)

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "kubernetes"


def run(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(list(map(str, args)), capture_output=True, text=True, timeout=kw.pop("timeout", 120), **kw)


def need(tool: str) -> str:
    path = shutil.which(tool)
    assert path, f"{tool} is not installed: scripts/test installs it"
    return path


# -- systemd -----------------------------------------------------------------------------------

def unit_lines() -> list[tuple[str, str]]:
    out = []
    for line in (DEPLOY / "systemd" / "credproxy.service").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            out.append((key.strip(), value.strip()))
    return out


def test_systemd_unit_verifies_and_is_locked_down(tmp_path):
    need("systemd-analyze")
    unit = tmp_path / "credproxy.service"
    unit.write_text((DEPLOY / "systemd" / "credproxy.service").read_text()
                    .replace("/usr/local/bin/credproxy", str(binary_path())))
    r = run("systemd-analyze", "verify", unit)
    assert r.returncode == 0 and not (r.stdout + r.stderr).strip(), r.stdout + r.stderr

    # The check can fail: a misspelt key is reported.
    bad = tmp_path / "bad.service"
    bad.write_text(unit.read_text().replace("DynamicUser=yes", "DynamicUsr=yes"))
    r = run("systemd-analyze", "verify", bad)
    assert "Unknown key 'DynamicUsr'" in r.stdout + r.stderr, r

    keys = unit_lines()
    values = {}
    for k, v in keys:
        values.setdefault(k, []).append(v)
    assert values["DynamicUser"] == ["yes"] and values["ProtectSystem"] == ["strict"]
    assert values["NoNewPrivileges"] == ["yes"] and values["CapabilityBoundingSet"] == [""]
    assert values["LoadCredential"] and all(":" in v for v in values["LoadCredential"])
    assert any(v.endswith("check --config /etc/credproxy/proxy.conf") for v in values["ExecStartPre"])
    assert values["ExecReload"][-1] == "/bin/kill -HUP $MAINPID"
    assert "serve --config /etc/credproxy/proxy.conf" in values["ExecStart"][0]

    r = run("systemd-analyze", "security", "--offline=true", unit)
    m = re.search(r"Overall exposure level for credproxy.service: ([0-9.]+)", r.stdout + r.stderr)
    assert m, r.stdout[-2000:] + r.stderr
    assert float(m.group(1)) <= 2.0, r.stdout[-3000:]


def test_systemd_credentials_path_works_for_file_secrets(cli, tmp_path):
    # What the unit's comment tells users to write; `check` (ExecStartPre) reads the same path.
    creds = tmp_path / "run-credentials"
    creds.mkdir()
    (creds / "api-token").write_text("not-a-real-token\n")
    conf = tmp_path / "proxy.conf"
    conf.write_text(f"route api.example.com {{\n  auth bearer file:{creds}/api-token\n}}\n")
    r = cli("check", "--config", str(conf))
    assert r.returncode == 0 and "0 warnings" in r.stdout, r.stdout + r.stderr
    assert "not-a-real-token" not in r.stdout + r.stderr
    # Started without the credential (a LoadCredential= source missing): check says so.
    (creds / "api-token").unlink()
    r = cli("check", "--config", str(conf))
    assert r.returncode == 0 and "api-token does not exist" in r.stdout, r.stdout


# -- Kubernetes --------------------------------------------------------------------------------

def manifests() -> list[dict]:
    docs = []
    for f in sorted(K8S.glob("*.yaml")):
        docs += [d | {"_file": f.name} for d in yaml.safe_load_all(f.read_text()) if d]
    return docs


def find(kind: str, name: str) -> dict:
    hits = [d for d in manifests() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(hits) == 1, (kind, name, [(d["kind"], d["metadata"]["name"]) for d in manifests()])
    return hits[0]


def test_kubernetes_manifests_validate_offline():
    need("kubernetes-validate")
    files = sorted(K8S.glob("*.yaml"))
    assert len(files) >= 7, files
    for version in ("1.30.0", None):
        args = ["kubernetes-validate", "--strict", "--quiet", *files]
        if version:
            args[1:1] = ["-k", version]
        r = run(*args)
        assert r.returncode == 0, r.stdout + r.stderr


def test_kubernetes_deployment_is_what_the_issue_asks():
    d = find("Deployment", "credproxy")
    spec = d["spec"]["template"]["spec"]
    assert d["spec"]["replicas"] == 2
    (c,) = spec["containers"]
    assert "/readyz" in " ".join(c["readinessProbe"]["exec"]["command"])
    assert "/healthz" in " ".join(c["livenessProbe"]["exec"]["command"])
    assert c["lifecycle"]["preStop"]
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] != 0
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"]
    assert "--watch-config" in c["args"]
    # The drain fits: preStop pause + shutdown-timeout < terminationGracePeriodSeconds.
    conf = find("ConfigMap", "credproxy-config")["data"]["proxy.conf"]
    shutdown = int(re.search(r"^shutdown-timeout (\d+)s", conf, re.M).group(1))
    assert c["lifecycle"]["preStop"]["sleep"]["seconds"] + shutdown < spec["terminationGracePeriodSeconds"]
    # Config from the ConfigMap, mounted as a directory (a subPath mount would never update).
    mount = next(m for m in c["volumeMounts"] if m["mountPath"] == "/etc/credproxy")
    assert "subPath" not in mount
    vol = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    assert vol["configMap"]["name"] == "credproxy-config"
    assert c["envFrom"][0]["secretRef"]["name"] == find("Secret", "credproxy-secrets")["metadata"]["name"]
    svc = find("Service", "credproxy")
    assert svc["spec"]["selector"] == d["spec"]["selector"]["matchLabels"]
    pdb = find("PodDisruptionBudget", "credproxy")
    assert pdb["spec"]["selector"]["matchLabels"] == d["spec"]["selector"]["matchLabels"]
    assert pdb["spec"]["minAvailable"] == 1
    # Redis for shared limits: the host proxy.conf names is the Service's.
    host = re.search(r"^limits-store redis ([\w.-]+):(\d+)", conf, re.M)
    assert host, conf
    rsvc = find("Service", host.group(1))
    assert rsvc["spec"]["ports"][0]["port"] == int(host.group(2))
    assert find("Deployment", host.group(1))["spec"]["replicas"] == 1
    side = find("Deployment", "app-with-credproxy")["spec"]["template"]["spec"]
    assert side["initContainers"][0]["restartPolicy"] == "Always"
    assert {"name": "HTTP_PROXY", "value": "http://127.0.0.1:8080"} in side["containers"][0]["env"]


def limits_store_known(cli, tmp_path) -> bool:
    """Whether this binary's parser has `limits-store` (added on another branch)."""
    probe = tmp_path / "probe.conf"
    probe.write_text("limits-store redis 127.0.0.1:6379\nroute a.example {\n  auth none\n}\n")
    r = cli("check", "--config", str(probe))
    return not re.search(r"unknown directive \"?limits-store", r.stderr)


def test_kubernetes_proxy_conf_files_pass_check(cli, tmp_path):
    secret_env = find("Secret", "credproxy-secrets")["stringData"]
    conf = find("ConfigMap", "credproxy-config")["data"]["proxy.conf"]
    if not limits_store_known(cli, tmp_path):
        # Checked without that one line until the branch that adds `limits-store` is merged;
        # the line is still checked for shape above (host and port match the Redis Service).
        print("NOTE: this binary has no limits-store directive; checking the ConfigMap without it")
        conf = re.sub(r"^limits-store .*\n", "", conf, flags=re.M)
    path = tmp_path / "proxy.conf"
    path.write_text(conf)
    r = cli("check", "--config", str(path), env=secret_env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert not any(v in r.stdout + r.stderr for v in secret_env.values())

    side = find("ConfigMap", "app-credproxy-config")["data"]["proxy.conf"]
    token = tmp_path / "api-token"
    token.write_text("x\n")
    side_path = tmp_path / "sidecar.conf"
    side_path.write_text(side.replace("/var/run/secrets/credproxy/api-token", str(token)))
    r = cli("check", "--config", str(side_path))
    assert r.returncode == 0, r.stdout + r.stderr


# -- credproxy probe ---------------------------------------------------------------------------

PROBE_CONF = """\
listen 127.0.0.1:0
ca-file {ca}
admin 127.0.0.1:0 token env:PROBE_ADMIN_TOKEN
shutdown-timeout 20s
route localhost:{upstream_port} {
  auth none
}
"""


def test_probe_command_against_the_admin_listener(proxy_factory, upstream):
    admin_token = "probe-" + uuid.uuid4().hex
    px = proxy_factory(PROBE_CONF, env={"PROBE_ADMIN_TOKEN": admin_token})
    m = re.search(r"admin listening on ([\d.]+:\d+)", px.stderr_text())
    assert m, px.stderr_text()
    base = f"http://{m.group(1)}"
    env = {**os.environ, "PROBE_ADMIN_TOKEN": admin_token}

    def probe(path, *extra):
        return run(binary_path(), "probe", base + path, *extra, env=env, timeout=10)

    r = probe("/readyz", "--token-env", "PROBE_ADMIN_TOKEN")
    assert r.returncode == 0 and "ready" in r.stdout, r
    assert probe("/healthz", "--token-env", "PROBE_ADMIN_TOKEN").returncode == 0
    r = probe("/healthz")
    assert r.returncode == 1 and "401" in r.stdout, r
    assert admin_token not in r.stdout + r.stderr
    assert run(binary_path(), "probe", "http://127.0.0.1:1/healthz", timeout=10).returncode == 1
    assert run(binary_path(), "probe", "ftp://x", timeout=10).returncode == 2

    # Draining (SIGTERM with a request in flight): readiness fails, liveness holds.
    token = uuid.uuid4().hex[:12]
    c = RawConnection(px.port, timeout=30)
    c.send_request("GET", upstream.url(f"/hang?id={token}"), [("Host", "x")])
    assert upstream.wait_event("hang_start", token, timeout=10)
    px.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 5
    while True:
        r = probe("/readyz", "--token-env", "PROBE_ADMIN_TOKEN")
        if r.returncode == 1 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert r.returncode == 1 and "503" in r.stdout and "draining" in r.stdout, r
    assert probe("/healthz", "--token-env", "PROBE_ADMIN_TOKEN").returncode == 0
    c.close()


def test_probe_an_ipv6_admin_listener(proxy_factory, upstream):
    """`admin [::1]:PORT`: the probe's Host must be `[::1]:PORT`; a bare `::1` is refused (400)."""
    px = proxy_factory("listen 127.0.0.1:0\nadmin [::1]:0\n")
    m = re.search(r"admin listening on (\[::1\]:\d+)", px.stderr_text())
    assert m, px.stderr_text()
    r = run(binary_path(), "probe", f"http://{m.group(1)}/readyz", timeout=10)
    assert r.returncode == 0 and "ready" in r.stdout, r


def test_probe_timeout_bounds_the_whole_exchange(tmp_path):
    """--timeout is the probe's whole budget: an admin port that answers a byte at a time (or a
    stuck process holding it) must not keep an exec probe running past it."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    stop = threading.Event()

    def dribble():
        c, _ = srv.accept()
        with c:
            c.recv(4096)
            for b in b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 100000:
                if stop.wait(0.3):
                    return
                try:
                    c.sendall(bytes([b]))
                except OSError:
                    return

    t = threading.Thread(target=dribble, daemon=True)
    t.start()
    started = time.monotonic()
    r = run(binary_path(), "probe", f"http://127.0.0.1:{port}/readyz", "--timeout", "1", timeout=30)
    took = time.monotonic() - started
    stop.set()
    srv.close()
    assert r.returncode == 1 and took < 4, (took, r)


# -- container ---------------------------------------------------------------------------------

def ldd_paths(binary: Path) -> set[str]:
    out = run("ldd", binary).stdout
    paths = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1] == "=>" and parts[2].startswith("/"):
            paths.add(parts[2])
        elif parts and parts[0].startswith("/"):
            paths.add(parts[0])
    return paths


def make_rootfs(dest: Path) -> Path:
    r = run(DEPLOY / "container" / "rootfs.sh", binary_path(), dest)
    assert r.returncode == 0, r.stderr
    return dest


def test_rootfs_holds_exactly_the_binary_and_its_libraries(tmp_path):
    root = make_rootfs(tmp_path / "rootfs")
    libs = ldd_paths(binary_path())
    assert any("libcurl" in p for p in libs) and any("libz.so" in p for p in libs), libs
    files = {"/" + str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    extra = {"/usr/local/bin/credproxy", "/etc/ssl/certs/ca-certificates.crt", "/etc/passwd", "/etc/group"}
    assert files == libs | extra, (files - libs - extra, libs - files)
    assert (root / "usr/local/bin/credproxy").read_bytes() == binary_path().read_bytes()


def test_containerfile_lints_clean():
    r = run(need("hadolint"), DEPLOY / "container" / "Containerfile")
    assert r.returncode == 0, r.stdout + r.stderr


def test_container_image_runtime_stage_builds_and_runs_with_buildah(tmp_path):
    need("buildah")
    context = tmp_path / "build-stage"
    make_rootfs(context / "rootfs")
    tag = f"localhost/credproxy-itest-{uuid.uuid4().hex[:8]}"
    # The build stage is replaced by the rootfs it would produce (same script, local binary).
    r = run("buildah", "bud", "--quiet", "--build-context", f"build={context}", "-f",
            DEPLOY / "container" / "Containerfile", "-t", tag, REPO, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    ctr = None
    try:
        cfg = json.loads(run("buildah", "inspect", "--type", "image", tag).stdout)["OCIv1"]["config"]
        assert cfg["User"] == "65532:65532"
        assert cfg["Entrypoint"] == ["/usr/local/bin/credproxy"]
        assert cfg["Cmd"] == ["serve", "--config", "/etc/credproxy/proxy.conf", "--watch-config"]
        ctr = run("buildah", "from", tag).stdout.strip()
        assert ctr

        def inside(*args):
            return run("buildah", "run", "--isolation", "chroot", "--user", "65532:65532", ctr,
                       "--", "/usr/local/bin/credproxy", *args)

        r = inside("--version")
        assert r.returncode == 0 and r.stdout.startswith("credproxy "), r
        conf = tmp_path / "proxy.conf"
        conf.write_text("listen 127.0.0.1:8080\nroute api.example.com {\n  auth none\n}\n")
        log = tmp_path / "audit.jsonl.1.gz"
        log.write_bytes(gzip.compress(json.dumps({
            "time": "2026-11-30T12:00:00Z", "client": None, "method": "GET", "scheme": "http",
            "host": "api.example.com", "port": None, "path": "/v1/x", "route": 1,
            "decision": "allow", "reason": None, "status": 200}).encode() + b"\n"))
        for f in (conf, log):
            assert run("buildah", "copy", "--chmod", "0644", ctr, f, f"/etc/credproxy/{f.name}").returncode == 0
        r = inside("check", "--config", "/etc/credproxy/proxy.conf")
        assert r.returncode == 0 and "1 route" in r.stdout, r
        r = inside("report", "--config", "/etc/credproxy/proxy.conf", "/etc/credproxy/audit.jsonl.1.gz")
        assert r.returncode == 0 and "1 records" in r.stdout and "methods GET" in r.stdout, r
    finally:
        if ctr:
            run("buildah", "rm", ctr)
        run("buildah", "rmi", "-f", tag)
