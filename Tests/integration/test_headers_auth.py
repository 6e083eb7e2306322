"""What the upstream sees: hop-by-hop headers gone, everything else byte for byte and in order, Host
set to the target, and each auth type's credential injected — replacing the caller's, never merged."""

from __future__ import annotations

import pytest

from harness import configs, secret_values as sv
from harness.rawhttp import RawConnection, get_via_proxy


@pytest.fixture(scope="module")
def px(module_proxy_factory):
    return module_proxy_factory(configs.STANDARD, name="headers")


def echo(px, url: str, headers=(), method="GET", body=None):
    r = get_via_proxy(px.port, url, headers, method=method, body=body)
    assert r.status == 200, r
    return r.json()


def values(body, name):
    return [v for n, v in body["headers"] if n.lower() == name.lower()]


def names(body):
    return [n.lower() for n, _ in body["headers"]]


HOP_BY_HOP = [
    ("Connection", "keep-alive, X-Drop-Named"),
    ("X-Drop-Named", "named by Connection"),
    ("Keep-Alive", "timeout=5, max=100"),
    ("Proxy-Connection", "keep-alive"),
    ("Proxy-Authorization", "Basic cHJveHk6c2VjcmV0"),
    ("TE", "trailers"),
    ("Trailer", "X-Some-Trailer"),
    ("Upgrade", "websocket"),
]


def test_hop_by_hop_removed_others_forwarded_in_order(px, upstream, token):
    kept = [
        ("X-First", "1"),
        ("x-lower-case", "value with  two spaces"),
        ("X-Dup", "a"),
        ("User-Agent", "itest/1.0"),
        ("X-Dup", "b"),
        ("Accept", "application/json;q=0.9, */*;q=0.1"),
        ("X-Last", "tab\tinside"),
    ]
    sent = [kept[0], HOP_BY_HOP[0], kept[1], HOP_BY_HOP[1], kept[2], *HOP_BY_HOP[2:], *kept[3:]]
    body = echo(px, upstream.url(f"/echo/{token}"), sent)
    for name, _ in HOP_BY_HOP:
        assert name.lower() not in names(body), f"hop-by-hop {name} forwarded: {body['headers']}"
    forwarded = [[n, v] for n, v in body["headers"] if n.lower() in {k.lower() for k, _ in kept}]
    assert forwarded == [list(h) for h in kept], "end-to-end headers changed, merged or reordered"
    assert values(body, "Host") == [upstream.authority]


def test_connection_close_token_is_not_forwarded(px, upstream, token):
    with RawConnection(px.port) as c:
        r = c.request("GET", upstream.url(f"/echo/{token}"), [("Connection", "close")])
        assert r.status == 200
        assert "connection" not in names(r.json())
        assert c.wait_closed(5), "the proxy kept the connection after Connection: close"


def test_non_ascii_utf8_value_forwarded_byte_for_byte(px, upstream, token):
    value = "caf\u00e9 \u2603".encode("utf-8").decode("latin-1")  # raw UTF-8 bytes on the wire
    body = echo(px, upstream.url(f"/echo/{token}"), [("X-Utf8", value)])
    assert values(body, "X-Utf8") == [value]


def test_many_headers_keep_order(px, upstream, token):
    sent = [(f"X-H{i:03d}", f"v{i}") for i in range(100)]
    body = echo(px, upstream.url(f"/echo/{token}"), sent)
    got = [(n, v) for n, v in body["headers"] if n.startswith("X-H")]
    assert got == sent


def test_host_header_set_to_target(px, upstream, token):
    # origin-form: the Host given is the target; absolute-form: the URI's authority replaces Host.
    with RawConnection(px.port) as c:
        r = c.request("GET", f"/echo/{token}", [("Host", upstream.authority)])
    assert values(r.json(), "Host") == [upstream.authority]


def test_bearer_from_env_replaces_callers_authorization(px, upstream, token):
    body = echo(px, upstream.url(f"/bearer/echo/{token}"), [
        ("Authorization", "Bearer caller-supplied"),
        ("X-Between", "1"),
        ("authorization", "Basic Y2FsbGVyOnB3"),
    ])
    assert values(body, "Authorization") == [f"Bearer {sv.BEARER_TOKEN}"]
    assert values(body, "X-Between") == ["1"]


def test_bearer_injected_without_caller_authorization(px, upstream, token):
    body = echo(px, upstream.url(f"/bearer/echo/{token}"), method="POST", body=b"x" * 100)
    assert values(body, "Authorization") == [f"Bearer {sv.BEARER_TOKEN}"]
    assert body["body_length"] == 100


def test_header_auth_from_env(px, upstream, token):
    body = echo(px, upstream.url(f"/header/echo/{token}"), [("X-Api-Key", "caller-key")])
    assert values(body, "X-Api-Key") == [sv.HEADER_SECRET]


def test_basic_auth_from_env(px, upstream, token):
    body = echo(px, upstream.url(f"/basic/echo/{token}"), [("Authorization", "Bearer caller")])
    assert values(body, "Authorization") == [f"Basic {sv.BASIC_CREDENTIALS}"]


def test_literal_bearer(px, upstream, token):
    body = echo(px, upstream.url(f"/literal/echo/{token}"))
    assert values(body, "Authorization") == [f"Bearer {sv.LITERAL_SECRET}"]


def test_bearer_from_file_trailing_newline_trimmed(px, upstream, token):
    body = echo(px, upstream.url(f"/filetoken/echo/{token}"))
    assert values(body, "Authorization") == [f"Bearer {sv.FILE_BEARER_TOKEN}"]


def test_auth_none_passes_callers_authorization_through(px, upstream, token):
    body = echo(px, upstream.url(f"/echo/{token}"), [("Authorization", "Bearer caller-own")])
    assert values(body, "Authorization") == ["Bearer caller-own"]


def test_credentials_only_on_their_route(px, upstream, token):
    body = echo(px, upstream.url(f"/echo/{token}"))
    assert values(body, "Authorization") == []
    assert values(body, "X-Api-Key") == []


def test_injected_credential_not_echoed_in_response_headers(px, upstream, token):
    r = get_via_proxy(px.port, upstream.url(f"/bearer/echo/{token}"))
    head = r.raw_head.decode("latin-1")
    assert sv.BEARER_TOKEN not in head
