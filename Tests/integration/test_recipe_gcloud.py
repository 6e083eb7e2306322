"""The gcloud recipe: an unmodified `gcloud storage` on its default https endpoint, through an
`intercept` route, holding only a placeholder from credproxy's metadata-server stub (found through
`GCE_METADATA_ROOT`: gcloud ignores `GCE_METADATA_HOST`), or a dummy access-token file; the route
replaces either with a real token minted for a service account by the Google token emulator. The
endpoint is a TLS front of `gcp-storage-emulator` that credproxy reaches through `connect-to`; the
client is configured only with `HTTPS_PROXY` and the CA bundle from `credproxy trust`."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from gcs_front import HOST, GCSFront, StorageEmulator  # noqa: F401
from google_support import (  # noqa: F401 - fixtures
    assert_no_leaks,
    emu,
    gtmp,
    reset_emu,
    start_refresh_scenario_early,
    tokens_never_logged,
)
from test_gcs_sdk import assert_all_carry_real_token, ca_dir, sdk_env, setup, storage_upstream  # noqa: F401

pytestmark = pytest.mark.timeout(240)

GCLOUD = shutil.which("gcloud")


@pytest.mark.skipif(GCLOUD is None, reason="gcloud is not installable from Debian or PyPI")
@pytest.mark.parametrize("credential", ["metadata-stub", "token-file"])
def test_gcloud_storage_through_intercept(credential, setup, ca_dir, storage_upstream, emu, tmp_path):
    env = sdk_env(setup, ca_dir, tmp_path / "home")
    for k in ("GCE_METADATA_HOST", "GCE_METADATA_IP"):
        env.pop(k)
    # gcloud properties as environment variables (CLOUDSDK_SECTION_NAME): `gcloud config set
    # core/project` would first look the project up in Cloud Resource Manager, which only the
    # storage route of this test's proxy serves.
    env.update(CLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE=str(ca_dir["bundle"]), CLOUDSDK_CORE_PROJECT="itest",
               CLOUDSDK_CORE_DISABLE_USAGE_REPORTING="true")
    if credential == "metadata-stub":
        env["GCE_METADATA_ROOT"] = f"127.0.0.1:{setup['meta']}"    # NO_PROXY has 127.0.0.1
    else:
        token_file = tmp_path / "token"
        token_file.write_text("not-a-real-token\n")              # any text: the route replaces it
        env["CLOUDSDK_AUTH_ACCESS_TOKEN_FILE"] = str(token_file)

    def gcloud(*args):
        return subprocess.run([GCLOUD, *args], env=env, capture_output=True, text=True, timeout=120)
    bucket = f"gs://itest-gcloud-{credential}"
    before = storage_upstream.count()
    r = gcloud("storage", "buckets", "create", bucket)
    assert r.returncode == 0, (r.stderr[-3000:], setup["px"].stderr_text()[-2000:])
    r = gcloud("storage", "ls")
    assert r.returncode == 0 and f"{bucket}/" in r.stdout, r.stderr[-3000:]
    recs = storage_upstream.since(before)
    assert_all_carry_real_token(recs, setup["sa"])
    assert_no_leaks("gcloud output", r.stdout + r.stderr, emu)
    if credential == "metadata-stub":
        # gcloud took the stub for a GCE metadata server: the account it names, a placeholder token.
        r = gcloud("auth", "list", "--format=value(account)")
        assert r.stdout.strip() == setup["sa"].email, r
        r = gcloud("auth", "print-access-token")
        assert r.stdout.startswith("credproxy-placeholder."), "gcloud holds a placeholder only"
