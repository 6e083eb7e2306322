"""Interception edge cases a hostile or unusual client tries: SNI spellings the router treats as
the same host, IP-literal targets, clients that stall or never start the handshake."""

from __future__ import annotations

import socket
import ssl
import time

import pytest

from harness import secret_values as sv
from policy_support import connect_tunnel, tls_over
from test_intercept import ca_context, ca_dir  # noqa: F401 - fixture

pytestmark = pytest.mark.timeout(120)

CONF = """\
listen 127.0.0.1:0
ca-file {ca}
ca-cert {ca_dir}/ca.pem
ca-key {ca_dir}/ca-key.pem
header-timeout 2s
idle-timeout 30s
route localhost:{upstream_port} {
  intercept
  auth bearer env:{env_bearer}
}
route 127.0.0.1:{upstream_port} {
  intercept
  auth bearer env:{env_bearer}
}
"""


@pytest.fixture(scope="module")
def px(module_proxy_factory, ca_dir):  # noqa: F811
    module_proxy_factory.values["ca_dir"] = ca_dir
    return module_proxy_factory(CONF, name="intercept-edges")


@pytest.mark.parametrize("authority,sni", [
    ("localhost", "localhost."),      # an absolute name, as Python's ssl sends it when told so
    ("localhost", "LocalHost."),
    ("localhost.", "localhost."),     # a CONNECT to the absolute name the router reads as localhost
    ("LOCALHOST", "localhost"),
])
def test_sni_spelled_as_the_router_reads_it_is_the_same_host(px, upstream, ca_dir, token,  # noqa: F811
                                                             authority, sni):
    """The router reads `localhost.` and `LOCALHOST` as `localhost`; the SNI check must too, or a
    client naming the host in its absolute form cannot get through an intercept route."""
    conn, resp = connect_tunnel(px.port, f"{authority}:{upstream.port}")
    with conn:
        assert resp.status == 200, resp
        ctx = ca_context(ca_dir)
        ctx.check_hostname = False  # the leaf names `localhost`; the SNI spelling is under test
        tls_over(conn, ctx, server_hostname=sni)
        r = conn.request("GET", f"/echo/{token}-sni", [("Host", f"{authority}:{upstream.port}")])
        assert r.status == 200, r
    seen = upstream.requests_matching(f"{token}-sni")
    assert seen and seen[-1].header_values("Authorization") == [f"Bearer {sv.BEARER_TOKEN}"]


def test_sni_for_another_host_still_fails_in_any_spelling(px, upstream, ca_dir):  # noqa: F811
    for sni in ["localhost.evil.example", "evil.example.", "localhos"]:
        conn, resp = connect_tunnel(px.port, f"localhost:{upstream.port}")
        with conn:
            assert resp.status == 200
            ctx = ca_context(ca_dir)
            ctx.check_hostname = False
            with pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME"):
                tls_over(conn, ctx, server_hostname=sni)
