"""The headline case: unmodified Google SDKs on their default https endpoint, through an
``intercept`` route, holding no credential.

``google-cloud-storage`` with ``google-auth``'s Compute Engine credentials runs in a child process
with only ``HTTPS_PROXY``, the CA bundle from ``credproxy trust`` and ``GCE_METADATA_HOST`` (the
proxy's metadata-server stub) set; no api_endpoint override, so it talks to
``https://storage.googleapis.com`` and follows the ``Location`` / ``mediaLink`` URLs the server
returns. The route (``intercept``, ``connect-to`` a TLS front of ``gcp-storage-emulator``) injects
a token minted for a service account by the Google token emulator.

Sequence: create a bucket, upload 20 MiB (resumable, 8 MiB chunks), fetch its metadata and
download it through its ``mediaLink``, list, delete the object and the bucket. Every upstream
request must carry the route's real token; no placeholder may reach the upstream; no real token may
reach the client; neither may appear in the proxy's log, ``/metrics`` or ``/status``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("google.cloud.storage", reason="installed by scripts/test")
pytest.importorskip("gcp_storage_emulator", reason="installed by scripts/test")

from gcs_front import HOST, PLACEHOLDER, GCSFront, StorageEmulator  # noqa: E402
from google_support import (  # noqa: E402,F401 - fixtures
    assert_no_leaks,
    conf,
    creds,
    emu,
    gtmp,
    new_sa,
    reset_emu,
    route,
    start_refresh_scenario_early,
    tokens_never_logged,
)
from harness.certs import issue_server_cert  # noqa: E402
from harness.proxy import clean_env  # noqa: E402
from policy_support import admin_get, admin_port, curl  # noqa: E402

pytestmark = pytest.mark.timeout(240)

META_RE = re.compile(r"credproxy: metadata server listening on (\S+):(\d+)\s*$", re.MULTILINE)
SCOPES = ("https://www.googleapis.com/auth/devstorage.full_control",
          "https://www.googleapis.com/auth/cloud-platform")
SIZE = 20 * 1024 * 1024
CHUNK = 8 * 1024 * 1024

CLIENT = r"""
import hashlib, json, os, sys, time
from google.cloud import storage

bucket_name, size, chunk = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
out = {"steps": []}
t0 = time.monotonic()
client = storage.Client(project="itest")
out["api_base_url"] = client._connection.API_BASE_URL
out["credentials_type"] = type(client._credentials).__module__ + "." + type(client._credentials).__name__
# Everything the client received from storage (heads, and bodies but the 20 MiB download) goes to
# stdout, which the test scans for real tokens.
out["responses"] = []
def _seen(r, *args, **kwargs):
    body = r.content if len(r.content) < 65536 else b""
    out["responses"].append({"url": r.url, "status": r.status_code, "headers": dict(r.headers),
                             "body": body.decode("utf-8", "replace")})
client._http.hooks["response"].append(_seen)

bucket = client.create_bucket(bucket_name)
out["steps"].append("create_bucket")
out["bucket_self_link"] = bucket.self_link

data = os.urandom(size)
want = hashlib.sha256(data).hexdigest()
blob = bucket.blob("big/object.bin", chunk_size=chunk)
blob.upload_from_string(data, content_type="application/octet-stream")
out["steps"].append("upload")
out["uploaded_size"] = blob.size

got_blob = bucket.get_blob("big/object.bin")
out["media_link"] = got_blob.media_link
out["size"] = got_blob.size
got = got_blob.download_as_bytes()
out["steps"].append("download")
out["download_sha256_matches"] = hashlib.sha256(got).hexdigest() == want
out["download_length"] = len(got)

out["listed"] = [b.name for b in client.list_blobs(bucket_name)]
out["buckets"] = [b.name for b in client.list_buckets()]
out["steps"].append("list")

got_blob.delete()
bucket.delete()
out["steps"].append("delete")
out["listed_after"] = [b.name for b in client.list_buckets()]

token = client._credentials.token or ""
out["token_is_placeholder"] = token.startswith("credproxy-placeholder.")
out["token_length"] = len(token)
out["seconds"] = round(time.monotonic() - t0, 2)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def ca_dir(tmp_path_factory, credproxy_bin, secret_guard):
    d = tmp_path_factory.mktemp("gcs-local-ca")
    r = subprocess.run([str(credproxy_bin), "ca", "init", "--dir", str(d)], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    for line in (d / "ca-key.pem").read_text().strip().splitlines()[1:-1]:
        secret_guard.add_secret("local CA key line", line)
    out = tmp_path_factory.mktemp("gcs-trust")
    r = subprocess.run([str(credproxy_bin), "trust", "--dir", str(d), "--out", str(out)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (out / "ca-bundle.pem").exists()
    return {"dir": d, "ca": d / "ca.pem", "bundle": out / "ca-bundle.pem"}


@pytest.fixture(scope="module")
def storage_upstream(pki, emu, gtmp):
    backend = StorageEmulator().start()
    cert = issue_server_cert(pki.ca, gtmp, "gcs-front", dns_names=(HOST,), ips=())
    front = GCSFront(cert.server_context(), backend.port, [emu]).start()
    yield front
    front.stop()
    backend.stop()


@pytest.fixture(scope="module")
def setup(emu, pki, ca_dir, storage_upstream, module_proxy_factory, gtmp, closed_port):
    from google_support import google_env

    sa = new_sa(emu)
    text = conf(
        pki.ca_file,
        f"ca-cert {ca_dir['ca']}\nca-key {ca_dir['dir'] / 'ca-key.pem'}\n"
        "metadata-server 127.0.0.1:0\nadmin 127.0.0.1:0\n",
        creds("sa", f"source key-file {sa.path}"),
        route(HOST, "intercept", f"connect-to 127.0.0.1:{storage_upstream.port}",
              "auth OAuth2 scopes " + " ".join(SCOPES), "credentials sa"),
    )
    px = module_proxy_factory(text, env=google_env(gtmp, closed_port), name="gcs")
    m = px.wait_for_stderr(META_RE, timeout=5)
    assert m, "no 'metadata server listening' line:\n" + px.stderr_text()[-2000:]
    return {"px": px, "sa": sa, "meta": int(m.group(2)), "admin": admin_port(px)}


def sdk_env(setup, ca_dir, home: Path) -> dict[str, str]:
    px, meta = setup["px"], setup["meta"]
    home.mkdir(parents=True, exist_ok=True)
    (home / "gcloud").mkdir(exist_ok=True)
    env = {k: v for k, v in clean_env().items()
           if "proxy" not in k.lower() and not k.startswith(("GOOGLE_", "GCE_", "CLOUDSDK_",
                                                             "STORAGE_EMULATOR"))}
    env.update({
        "HOME": str(home), "CLOUDSDK_CONFIG": str(home / "gcloud"),
        "HTTPS_PROXY": f"http://127.0.0.1:{px.port}", "https_proxy": f"http://127.0.0.1:{px.port}",
        "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
        "REQUESTS_CA_BUNDLE": str(ca_dir["bundle"]), "SSL_CERT_FILE": str(ca_dir["bundle"]),
        "GCE_METADATA_HOST": f"127.0.0.1:{meta}", "GCE_METADATA_IP": f"127.0.0.1:{meta}",
    })
    return env


def assert_all_carry_real_token(records, sa) -> None:
    assert records, "the upstream saw no request"
    for r in records:
        where = f"{r.method} {r.path[:120]}"
        assert not r.placeholder_headers, f"placeholder reached the upstream in {r.placeholder_headers}: {where}"
        assert r.authorization_count == 1, f"{r.authorization_count} Authorization headers: {where}"
        a = r.auth
        assert a and a["known"] and a["kind"] == "access", f"{where}: {a}"
        assert a["email"] == sa.email and a["scopes"] == sorted(SCOPES) and not a["expired"], f"{where}: {a}"
        assert r.host == HOST, f"{where}: Host {r.host!r}"


def test_storage_sdk_default_endpoint_through_intercept(setup, ca_dir, storage_upstream, emu, tmp_path):
    px, sa, front = setup["px"], setup["sa"], storage_upstream
    before = front.count()
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-c", CLIENT, "itest-gcs-sdk", str(SIZE), str(CHUNK)],
                         env=sdk_env(setup, ca_dir, tmp_path / "home"), capture_output=True,
                         text=True, timeout=200)
    elapsed = time.monotonic() - started
    assert_no_leaks("client output", run.stdout + run.stderr, emu)
    assert PLACEHOLDER not in run.stdout + run.stderr
    assert run.returncode == 0, (run.stderr[-4000:], "\nproxy:\n" + px.stderr_text()[-3000:],
                                 front.errors)
    out = json.loads(run.stdout)
    print(f"\nSDK sequence took {elapsed:.1f}s (client-side {out['seconds']}s)")

    # The SDK stayed on its defaults and held only a placeholder.
    assert out["api_base_url"] == f"https://{HOST}", out
    assert out["credentials_type"] == "google.auth.compute_engine.credentials.Credentials", out
    assert out["token_is_placeholder"] is True, out
    assert out["steps"] == ["create_bucket", "upload", "download", "list", "delete"], out
    assert out["uploaded_size"] == SIZE and out["size"] == SIZE, out
    assert out["media_link"].startswith(f"https://{HOST}/download/storage/v1/b/itest-gcs-sdk/o/"), out
    assert out["download_sha256_matches"] and out["download_length"] == SIZE, out
    assert out["listed"] == ["big/object.bin"] and "itest-gcs-sdk" in out["buckets"], out
    assert "itest-gcs-sdk" not in out["listed_after"], out

    recs = front.since(before)
    assert not front.errors, front.errors
    assert_all_carry_real_token(recs, sa)
    # One upstream request per SDK request, all on the default https endpoint.
    assert len(out["responses"]) == len(recs), (len(out["responses"]), len(recs))
    assert all(r["url"].startswith(f"https://{HOST}/") for r in out["responses"]), out["responses"]
    summary = [(r.method, r.path.split("?")[0], r.status) for r in recs]
    print("upstream saw:", *[f"  {m} {p[:70]} -> {s}" for m, p, s in summary], sep="\n")
    # The resumable upload: one initiation, then the chunks to the returned Location (8+8+4 MiB).
    inits = [r for r in recs if r.method == "POST" and "uploadType=resumable" in r.path
             and "upload_id" not in r.path]
    chunks = [r for r in recs if r.method == "PUT" and "upload_id=" in r.path]
    assert len(inits) == 1 and inits[0].status == 200, summary
    assert [c.body_length for c in chunks] == [CHUNK, CHUNK, SIZE - 2 * CHUNK], summary
    assert [c.status for c in chunks] == [308, 308, 200], summary
    downloads = [r for r in recs if r.method == "GET" and r.path.startswith("/download/storage/v1/")]
    assert len(downloads) == 1 and downloads[0].status == 200, summary
    assert ("POST", "/storage/v1/b", 200) in summary, summary
    deletes = [(p, s) for m, p, s in summary if m == "DELETE"]
    assert [p for p, _ in deletes] == ["/storage/v1/b/itest-gcs-sdk/o/big%2Fobject.bin",
                                      "/storage/v1/b/itest-gcs-sdk"], summary
    assert all(200 <= s < 300 for _, s in deletes), summary
    # All minted once and reused: one real token for the route, fingerprint the same everywhere.
    assert len({r.auth["fingerprint"] for r in recs}) == 1
    assert len([t for t in emu.registry.issued(email=sa.email) if t.kind == "access"]) == 1

    # The inner requests were logged as intercepted; no token or placeholder anywhere.
    log = px.stderr_text()
    assert any("via=intercept" in ln and "/upload/storage/v1/" in ln for ln in log.splitlines()), log[-2000:]
    assert PLACEHOLDER not in log
    assert_no_leaks("proxy stderr", log, emu)
    for path in ("/metrics", "/status"):
        page = admin_get(setup["admin"], path)
        assert page.status == 200, (path, page)
        assert PLACEHOLDER not in page.text, path
        assert_no_leaks(path, page.text, emu)


def test_curl_through_intercept_gets_the_token_injected(setup, ca_dir, storage_upstream, emu):
    front = storage_upstream
    before = front.count()
    r = curl("--proxy", f"http://127.0.0.1:{setup['px'].port}", "--cacert", str(ca_dir["ca"]),
             f"https://{HOST}/storage/v1/b?project=itest")
    assert r.status == 200, (r.stderr, r.body[:300])
    assert json.loads(r.body)["kind"] == "storage#buckets", r.body[:300]
    recs = front.since(before)
    assert len(recs) == 1
    assert_all_carry_real_token(recs, setup["sa"])
    assert_no_leaks("curl output", r.body.decode("utf-8", "replace") + r.stderr, emu)
