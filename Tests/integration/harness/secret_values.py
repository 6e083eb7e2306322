"""Secret values handed to the proxy. None of them may ever appear in its stderr/stdout, in error
bodies, or in ``check``/``explain`` output. They are random per test session, so a match is never a
coincidence."""

from __future__ import annotations

import base64
import secrets as _secrets

_SUFFIX = _secrets.token_hex(10)

BEARER_TOKEN = f"itest-bearer-{_SUFFIX}"
HEADER_SECRET = f"itest-header-{_SUFFIX}"
BASIC_USER = "itest-user"
BASIC_PASSWORD = f"itest-basic-pw-{_SUFFIX}"
LITERAL_SECRET = f"itest-literal-{_SUFFIX}"
FILE_BEARER_TOKEN = f"itest-file-bearer-{_SUFFIX}"

ENV_BEARER = "ITEST_BEARER_TOKEN"
ENV_HEADER = "ITEST_HEADER_SECRET"
ENV_BASIC_PASSWORD = "ITEST_BASIC_PASSWORD"

BASIC_CREDENTIALS = base64.b64encode(f"{BASIC_USER}:{BASIC_PASSWORD}".encode()).decode()

# Every form in which a secret could leak.
ALL = {
    "bearer token": BEARER_TOKEN,
    "header secret": HEADER_SECRET,
    "basic password": BASIC_PASSWORD,
    "basic credentials (base64)": BASIC_CREDENTIALS,
    "literal secret": LITERAL_SECRET,
    "file bearer token": FILE_BEARER_TOKEN,
}


def proxy_env() -> dict[str, str]:
    """The environment variables through which the proxy reads the env: secrets."""
    return {
        ENV_BEARER: BEARER_TOKEN,
        ENV_HEADER: HEADER_SECRET,
        ENV_BASIC_PASSWORD: BASIC_PASSWORD,
    }


def find_leaks(text: str, extra: dict[str, str] | None = None) -> list[str]:
    """Labels of the secrets that occur in ``text``."""
    table = dict(ALL)
    if extra:
        table.update(extra)
    return [label for label, value in table.items() if value and value in text]


class SecretGuard:
    """Collects every proxy a test module starts; at the module's end no secret may be in any of
    their stderr/stdout (which hold the access log and every diagnostic). Reports name the secret,
    never print it."""

    def __init__(self) -> None:
        self.proxies: list[tuple[str, object]] = []  # (test node id, ProxyProcess)
        self.extra: dict[str, str] = {}

    def add_secret(self, label: str, value: str) -> None:
        self.extra[label] = value

    def leaks(self) -> list[str]:
        found = []
        for test, p in self.proxies:
            for stream, text in (("stderr", p.stderr_text()), ("stdout", p.stdout_text())):
                for label in find_leaks(text, self.extra):
                    found.append(f"{label} in the {stream} of {p.name} (started by {test})")
        return found
