"""The gcloud recipe: an unmodified `gcloud storage` on its default https endpoint, through an
`intercept` route, holding only a dummy access token that the route replaces with a real one
(minted for a service account by the Google token emulator). The endpoint is a TLS front of
`gcp-storage-emulator` that credproxy reaches through `connect-to`; the client is configured only
with `HTTPS_PROXY` and the CA bundle from `credproxy trust`."""

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
def test_gcloud_storage_through_intercept(setup, ca_dir, storage_upstream, emu, tmp_path):
    env = sdk_env(setup, ca_dir, tmp_path / "home")
    for k in ("GCE_METADATA_HOST", "GCE_METADATA_IP"):
        env.pop(k)
    token_file = tmp_path / "token"
    token_file.write_text("not-a-real-token\n")       # any text: the route replaces it

    def gcloud(*args):
        return subprocess.run([GCLOUD, *args], env=env, capture_output=True, text=True, timeout=120)

    for prop, value in (("core/custom_ca_certs_file", str(ca_dir["bundle"])),
                        ("auth/access_token_file", str(token_file)),
                        ("core/project", "itest"), ("core/disable_usage_reporting", "true")):
        r = gcloud("config", "set", prop, value)
        assert r.returncode == 0, r.stderr
    before = storage_upstream.count()
    r = gcloud("storage", "buckets", "create", "gs://itest-gcloud")
    assert r.returncode == 0, (r.stderr[-3000:], setup["px"].stderr_text()[-2000:])
    r = gcloud("storage", "ls")
    assert r.returncode == 0 and "gs://itest-gcloud/" in r.stdout, r.stderr[-3000:]
    recs = storage_upstream.since(before)
    assert_all_carry_real_token(recs, setup["sa"])
    assert_no_leaks("gcloud output", r.stdout + r.stderr, emu)
