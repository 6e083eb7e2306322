"""A GitHub REST API emulator for GitHub App installation tokens, for credproxy's tests.

``POST /app/installations/{id}/access_tokens`` checks the app JWT the way GitHub does: RS256 only,
the signature verified with Python ``cryptography`` against the app's public key, ``iss`` the app
ID, ``iat`` not in the future, ``exp`` at most 10 minutes ahead. The optional body narrows the token
(``repositories`` must be the installation's, ``permissions`` no more than it has). Every other path
is an API call that answers 200 with what the token may do when ``Authorization`` carries a live
installation token (``Bearer``, ``token`` or git's Basic ``x-access-token:TOKEN``), else 401.
Plain HTTP on 127.0.0.1 (credproxy allows http to loopback).
"""

from __future__ import annotations

import base64
import http.server
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from .jsonhttp import JSONHandler, serve, stop

_LEVELS = {"read": 1, "write": 2, "admin": 3}


def _b64url_decode(text: str) -> bytes:
    if not re.fullmatch(r"[A-Za-z0-9_-]*", text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Mint:
    installation: str
    token: str
    expires_at: float
    repositories: List[str]
    permissions: Dict[str, str]
    jwt_claims: Dict[str, Any]


@dataclass
class Installation:
    repositories: List[str]
    permissions: Dict[str, str]


class GitHubAPI:
    def __init__(self, app_id: int = 424242) -> None:
        self.app_id = app_id
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.installations: Dict[str, Installation] = {}
        self.mints: List[Mint] = []
        self.rejections: List[str] = []
        self.api_calls: List[Dict[str, Any]] = []
        self.lifetime = 3600  # seconds from mint to expires_at
        self.mint_delay = 0.0
        # When set, a mint is refused with 401 and this message, "{authorization}" replaced by the
        # Authorization header it carried (as a careless front proxy of GitHub Enterprise might).
        self.refusal_quoting_authorization: Optional[str] = None
        self.token_suffix = ""  # appended to every minted token (to hand out a malformed one)
        self.lock = threading.Lock()
        self._server: Optional[http.server.ThreadingHTTPServer] = None

    def private_key_pem(self) -> str:
        """PKCS#1, as GitHub hands app keys out (``BEGIN RSA PRIVATE KEY``)."""
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption()).decode()

    def add_installation(self, installation_id: str, repositories: List[str],
                         permissions: Dict[str, str]) -> None:
        self.installations[str(installation_id)] = Installation(repositories, permissions)

    def mint_count(self) -> int:
        with self.lock:
            return len(self.mints)

    # -- the app JWT, as GitHub checks it -------------------------------------------------------
    def check_app_jwt(self, authorization: Optional[str]) -> Dict[str, Any]:
        if not authorization or not authorization.startswith("Bearer "):
            raise ValueError("no Bearer app JWT")
        parts = authorization[len("Bearer "):].split(".")
        if len(parts) != 3:
            raise ValueError("A JSON web token could not be decoded")
        header = json.loads(_b64url_decode(parts[0]))
        claims = json.loads(_b64url_decode(parts[1]))
        if header.get("alg") != "RS256":
            raise ValueError("alg must be RS256")
        try:
            self.key.public_key().verify(
                _b64url_decode(parts[2]), f"{parts[0]}.{parts[1]}".encode(),
                padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            raise ValueError("signature does not verify") from None
        now = time.time()
        if str(claims.get("iss")) != str(self.app_id):
            raise ValueError("iss is not the app")
        iat, exp = claims.get("iat"), claims.get("exp")
        if not isinstance(iat, int) or not isinstance(exp, int):
            raise ValueError("iat and exp must be integers")
        if iat > now + 1:
            raise ValueError("'Issued at' claim ('iat') must be an Integer representing a time in the past")
        if exp <= now or exp > now + 600:
            raise ValueError("'Expiration time' claim ('exp') is too far in the future")
        return claims

    # -- HTTP -----------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def _live(self, token: str) -> Optional[Mint]:
        with self.lock:
            for m in self.mints:
                if m.token == token and m.expires_at > time.time():
                    return m
        return None

    def start(self) -> "GitHubAPI":
        api = self

        class Handler(JSONHandler):

            def _body(self) -> bytes:
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def do_POST(self) -> None:
                m = re.fullmatch(r"/app/installations/([0-9]+)/access_tokens", self.path)
                raw = self._body()
                if not m:
                    return self.api_call("POST")
                if api.refusal_quoting_authorization:
                    sent = self.headers.get("Authorization") or ""
                    with api.lock:
                        api.rejections.append(sent)
                    message = api.refusal_quoting_authorization.replace("{authorization}", sent)
                    return self.send_json(401, {"message": message})
                try:
                    claims = api.check_app_jwt(self.headers.get("Authorization"))
                except (ValueError, json.JSONDecodeError) as exc:
                    with api.lock:
                        api.rejections.append(str(exc))
                    return self.send_json(401, {"message": str(exc)})
                if not self.headers.get("User-Agent"):
                    return self.send_json(403, {"message": "Request forbidden: a User-Agent is required"})
                installation = api.installations.get(m.group(1))
                if installation is None:
                    return self.send_json(404, {"message": "Not Found"})
                body = json.loads(raw) if raw.strip() else {}
                repos = body.get("repositories") or installation.repositories
                perms = body.get("permissions") or installation.permissions
                if any(r not in installation.repositories for r in repos):
                    return self.send_json(422, {"message": "There is at least one repository that does not exist or is not accessible to the parent installation."})
                for name, level in perms.items():
                    have = installation.permissions.get(name)
                    if have is None or _LEVELS.get(level, 99) > _LEVELS[have]:
                        return self.send_json(422, {"message": f"The permissions requested are not granted to this installation ({name})."})
                if api.mint_delay:
                    time.sleep(api.mint_delay)
                token = "ghs_" + secrets.token_urlsafe(27) + api.token_suffix
                expires = time.time() + api.lifetime
                with api.lock:
                    api.mints.append(Mint(m.group(1), token, expires, list(repos), dict(perms), claims))
                stamp = datetime.fromtimestamp(int(expires), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
                self.send_json(201, {"token": token, "expires_at": stamp, "permissions": perms,
                                 "repository_selection": "selected" if body.get("repositories") else "all",
                                 "repositories": [{"name": r} for r in repos]})

            def do_GET(self) -> None:
                self.api_call("GET")

            def api_call(self, method: str) -> None:
                auth = self.headers.get("Authorization") or ""
                scheme, _, value = auth.partition(" ")
                token = value
                if scheme.lower() == "basic":
                    user, _, token = base64.b64decode(value).decode().partition(":")
                    if user != "x-access-token":
                        token = ""
                elif scheme.lower() not in ("bearer", "token"):
                    token = ""
                mint = api._live(token) if token else None
                with api.lock:
                    api.api_calls.append({"path": self.path, "scheme": scheme, "ok": mint is not None,
                                          "headers": list(self.headers.keys())})
                if mint is None:
                    return self.send_json(401, {"message": "Bad credentials"})
                self.send_json(200, {"path": self.path, "scheme": scheme.lower(),
                                 "repositories": mint.repositories, "permissions": mint.permissions})

        self._server = serve(Handler)
        return self

    def stop(self) -> None:
        stop(self._server)
