"""A token endpoint's error text is not trusted: a hostile `error_description` (control characters,
ANSI escapes, 10 KB, the text of configured secrets) reaches the caller's error body, /status,
/readyz and the log capped, printable and with every configured secret replaced by
``[redacted]``."""

from __future__ import annotations

import re

import pytest

from google_support import (  # noqa: F401 - fixtures
    conf,
    creds,
    emu,
    fetch,
    genv,
    gtmp,
    gup,
    new_user,
    reset_emu,
    route,
    tokens_never_logged,
)
from harness import secret_values
from policy_support import admin_get, admin_port

pytestmark = pytest.mark.timeout(60)

CAP = 200


def _printable(text: str) -> bool:
    return all(0x20 <= ord(c) < 0x7F for c in text)


def _described(text: str, marker: str) -> list[str]:
    """The stretches of `text` that came from the hostile description (marker to end of line)."""
    return [m.group(0) for m in re.finditer(re.escape(marker) + r"[^\n]*", text)]


def test_hostile_error_description_is_capped_stripped_and_redacted(emu, gup, proxy_factory, genv, pki):
    user = new_user(emu)
    marker = "HOSTILE-"
    hostile = (
        marker + "\x1b[31mred\x1b[0m\r\nInjected: header\x00\x07bell "
        + f"refresh={user.refresh_token} secret={user.client_secret} "
        + f"bearer={secret_values.BEARER_TOKEN} "
        + "A" * 10_000
    )
    emu.token.behaviour.hostile_description = hostile
    emu.token.fail_next(1, "hostile")
    px = proxy_factory(conf(
        pki.ca_file,
        "admin 127.0.0.1:0\n",
        creds("hostile", f"source key-file {user.path}"),
        route(f"localhost:{gup.port}/oauth", "auth OAuth2", "credentials hostile"),
        route(f"localhost:{gup.port}/static", f"auth bearer env:{secret_values.ENV_BEARER}"),
    ), env=genv())
    aport = admin_port(px)
    r = fetch(px, gup.url("/oauth/a"))
    assert r.status == 503, r
    assert marker in r.text, r.text
    secrets = [user.refresh_token, user.client_secret, secret_values.BEARER_TOKEN]

    status = admin_get(aport, "/status").text
    ready = admin_get(aport, "/readyz").text
    log = px.stderr_text()
    for where, text in (("error body", r.text), ("/status", status), ("/readyz", ready),
                        ("stderr", log)):
        found = _described(text, marker)
        assert found, f"{where} does not show the endpoint's error at all:\n{text[-2000:]}"
        for piece in found:
            assert "[redacted]" in piece, f"{where}: secrets not redacted in {piece[:300]!r}"
            for s in secrets:
                assert s not in piece, f"{where} echoes a configured secret"
            assert "\x1b" not in piece and "\r" not in piece and "\x00" not in piece, \
                f"{where} carries control characters: {piece[:120]!r}"
            assert _printable(piece), f"{where}: not printable ASCII: {piece[:120]!r}"
            assert "A" * (CAP + 1) not in piece, f"{where}: the 10 KB description was not capped"
        for s in secrets:
            assert s not in text, f"{where} echoes a configured secret"
    # The body the caller got stays small too.
    assert len(r.body) < 2048, len(r.body)
