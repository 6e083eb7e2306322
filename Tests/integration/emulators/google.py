"""Offline emulators of Google's token services, for credproxy's integration tests.

Three threaded HTTP servers on 127.0.0.1 (port 0 unless told otherwise), speaking the wire
protocols described in /work/shared/google-auth-protocol.md:

- ``TokenServer``    — ``POST /token`` (jwt-bearer, refresh_token, client_credentials grants),
  ``GET /tokeninfo``, ``GET /oauth2/v3/certs`` (JWKS of the ID-token signing key), and
  ``POST /v1/token``: Google's STS (sts.googleapis.com), the RFC 8693 exchange of workload identity
  federation, which verifies the subject token's RS256 signature, issuer, audience and expiry
  against a registered pool provider (``add_workload_provider``) before it grants.
- ``MetadataServer`` — the GCE/Cloud Run metadata server (``GCE_METADATA_HOST=127.0.0.1:PORT``).
- ``IAMServer``      — IAM Credentials ``:generateAccessToken`` / ``:generateIdToken``.

Every RS256 assertion is verified with ``cryptography`` (PKCS#1 v1.5 + SHA-256), an implementation
independent of credproxy's libcrypto signer. Every token issued is recorded in a shared
``Registry`` (``lookup(token)``, ``mint_count(...)``), so an upstream in a test can check exactly
what credential it was handed.

Each server owns a ``Behaviour`` (thread-safe runtime switches): ``fail_next(n, kind)``,
``outage(on)``, ``set_delay(seconds, count)``, ``set_lifetime(seconds)``, ``reset()``.

``Emulators`` starts all three and wires them to one registry and one ID-token signing key.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import os
import re
import secrets
import shutil
import socket
import socketserver
import ssl
import struct
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

__all__ = [
    "GOOGLE_TOKEN_URI",
    "GOOGLE_ISSUER",
    "CLOUD_PLATFORM_SCOPE",
    "IAM_SCOPE",
    "JWT_BEARER_GRANT",
    "TOKEN_EXCHANGE_GRANT",
    "ACCESS_TOKEN_TYPE",
    "JWT_TOKEN_TYPES",
    "WorkloadProvider",
    "FAILURE_KINDS",
    "b64url_encode",
    "b64url_decode",
    "encode_jwt",
    "parse_jwt",
    "verify_rs256",
    "verify_id_token",
    "normalize_scopes",
    "generate_rsa_key",
    "private_key_pem",
    "public_key_pem",
    "make_service_account",
    "make_authorized_user",
    "make_impersonated",
    "ServiceAccountKey",
    "AuthorizedUser",
    "IssuedToken",
    "Registry",
    "IdTokenSigner",
    "Behaviour",
    "TokenServer",
    "MetadataServer",
    "IAMServer",
    "Emulators",
]

GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
GOOGLE_ISSUER = "https://accounts.google.com"
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
IAM_SCOPE = "https://www.googleapis.com/auth/iam"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
JWT_TOKEN_TYPES = ("urn:ietf:params:oauth:token-type:jwt", "urn:ietf:params:oauth:token-type:id_token")
DEFAULT_PROJECT_ID = "credproxy-test"
DEFAULT_METADATA_EMAIL = "default-sa@credproxy-test.iam.gserviceaccount.com"

# Failure kinds accepted by Behaviour.fail_next(). Any three-digit HTTP status is also accepted.
FAILURE_KINDS = frozenset(
    {
        "500",
        "503",
        "timeout",  # hold the request (no response) for Behaviour.timeout_hold seconds, then close
        "invalid_grant",  # a non-retryable auth failure in the server's own dialect
        "garbage",  # 200 with a non-JSON (or, for metadata identity, non-JWT) body
        "missing_token",  # 200 JSON (or empty text) without the token
        "error_200",  # 200 JSON carrying an "error" member
        "reset",  # close the connection with a TCP RST, no response
        "no_flavor",  # metadata only: a genuine answer but without the Metadata-Flavor header
        "hostile",  # token endpoint only: 400 invalid_grant whose error_description is
        # Behaviour.hostile_description (control characters, escapes, huge, secrets…)
        "echo_credential",  # token endpoint only: 400 invalid_grant whose error_description quotes
        # what was sent (an STS subject_token, a JWT assertion) in full, as a careless server might
    }
)
_STATUS_KIND = re.compile(r"^[1-5][0-9][0-9]$")
_MAX_BODY = 1 << 20

_REASONS_TOKEN = {
    400: "invalid_request",
    401: "invalid_client",
    403: "access_denied",
    408: "server_error",
    429: "rate_limit_exceeded",
    500: "internal_failure",
    502: "server_error",
    503: "temporarily_unavailable",
    504: "server_error",
}
_GRPC_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED",
    409: "ALREADY_EXISTS",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_GOOGLE_AUTH_HELP = (
    "Expected OAuth 2 access token, login cookie or other valid authentication credential. "
    "See https://developers.google.com/identity/sign-in/web/devconsole-project."
)


# ---------------------------------------------------------------------------------------------
# Encoding, keys and JWTs
# ---------------------------------------------------------------------------------------------

_B64URL_RE = re.compile(r"^[A-Za-z0-9_-]*$")


def b64url_encode(data: bytes) -> str:
    """Unpadded base64url."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str, strict: bool = True) -> bytes:
    """Decode base64url. ``strict``: only the unpadded base64url alphabet is accepted."""
    if strict:
        if not _B64URL_RE.match(text):
            raise ValueError("segment is not unpadded base64url")
    else:
        text = text.rstrip("=")
    if len(text) % 4 == 1:
        raise ValueError("impossible base64 length")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _json_compact(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=False).encode("utf-8")


def generate_rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def private_key_pem(key: rsa.RSAPrivateKey) -> str:
    """PKCS#8 PEM, as in a Google service-account key file."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def public_key_pem(key: Union[rsa.RSAPrivateKey, rsa.RSAPublicKey]) -> str:
    """SubjectPublicKeyInfo PEM (``-----BEGIN PUBLIC KEY-----``)."""
    pub = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
    return pub.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def _load_public_key(pem: Union[str, bytes, rsa.RSAPublicKey]) -> rsa.RSAPublicKey:
    if isinstance(pem, rsa.RSAPublicKey):
        return pem
    data = pem.encode("ascii") if isinstance(pem, str) else pem
    key = serialization.load_pem_public_key(data)
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("not an RSA public key")
    return key


def encode_jwt(
    private_key: rsa.RSAPrivateKey,
    claims: Mapping[str, Any],
    kid: Optional[str] = None,
    header: Optional[Mapping[str, Any]] = None,
) -> str:
    """A compact RS256 JWT signed with ``cryptography``."""
    hdr: Dict[str, Any] = {"alg": "RS256", "typ": "JWT"}
    if kid is not None:
        hdr["kid"] = kid
    if header:
        hdr.update(header)
    signing_input = b64url_encode(_json_compact(hdr)) + "." + b64url_encode(_json_compact(claims))
    sig = private_key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
    return signing_input + "." + b64url_encode(sig)


@dataclass
class ParsedJWT:
    header: Dict[str, Any]
    claims: Dict[str, Any]
    signing_input: bytes
    signature: bytes


def parse_jwt(token: str, strict: bool = True) -> ParsedJWT:
    """Split and decode a compact JWS; no signature check. Raises ValueError when malformed."""
    if not isinstance(token, str):
        raise ValueError("JWT must be a string")
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("JWT must have exactly three segments")
    try:
        header = json.loads(b64url_decode(parts[0], strict).decode("utf-8"))
        claims = json.loads(b64url_decode(parts[1], strict).decode("utf-8"))
        signature = b64url_decode(parts[2], strict)
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError, TypeError) as exc:
        raise ValueError(f"JWT is not decodable: {exc}") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise ValueError("JWT header and payload must be JSON objects")
    return ParsedJWT(header, claims, (parts[0] + "." + parts[1]).encode("ascii"), signature)


def verify_rs256(public_key: Union[str, bytes, rsa.RSAPublicKey], signing_input: bytes, sig: bytes) -> bool:
    """RSASSA-PKCS1-v1_5 with SHA-256, checked by ``cryptography``."""
    try:
        _load_public_key(public_key).verify(sig, signing_input, padding.PKCS1v15(), hashes.SHA256())
        return True
    except InvalidSignature:
        return False


def verify_id_token(
    token: str,
    public_key: Union[str, bytes, rsa.RSAPublicKey],
    audience: Optional[str] = None,
    kid: Optional[str] = None,
    leeway: float = 0.0,
) -> Dict[str, Any]:
    """Verify an ID token (signature, alg, kid, iss, exp, optional aud); return its claims.

    Raises ValueError on any failure.
    """
    parsed = parse_jwt(token)
    if parsed.header.get("alg") != "RS256":
        raise ValueError("ID token alg is not RS256")
    if kid is not None and parsed.header.get("kid") != kid:
        raise ValueError("ID token kid does not match the signing key")
    if not verify_rs256(public_key, parsed.signing_input, parsed.signature):
        raise ValueError("ID token signature is invalid")
    claims = parsed.claims
    if claims.get("iss") not in (GOOGLE_ISSUER, "accounts.google.com"):
        raise ValueError("ID token issuer is not Google")
    exp = claims.get("exp")
    if not isinstance(exp, (int, float)) or exp + leeway <= time.time():
        raise ValueError("ID token is expired")
    if audience is not None and claims.get("aud") != audience:
        raise ValueError("ID token audience does not match")
    return claims


def normalize_scopes(scopes: Union[None, str, Iterable[str]]) -> List[str]:
    """Sorted, de-duplicated scope list. A string is split on whitespace and commas."""
    if scopes is None:
        return []
    if isinstance(scopes, str):
        items = re.split(r"[\s,]+", scopes)
    else:
        items = list(scopes)
    return sorted({s for s in items if s})


def _random_numeric_id() -> str:
    return str(10**20 + secrets.randbelow(9 * 10**20))


def _numeric_id_for(email: str) -> str:
    digest = int.from_bytes(hashlib.sha256(email.encode("utf-8")).digest()[:9], "big")
    return str(10**20 + digest % (9 * 10**20))


def _rfc3339(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


# ---------------------------------------------------------------------------------------------
# Credential files
# ---------------------------------------------------------------------------------------------


@dataclass
class ServiceAccountKey:
    """A key file written by ``make_service_account`` and (through Emulators) registered."""

    path: str
    email: str
    private_key_id: str
    public_key_pem: str
    unique_id: str
    project_id: str

    @property
    def kid(self) -> str:
        return self.private_key_id


@dataclass
class AuthorizedUser:
    path: str
    client_id: str
    client_secret: str
    refresh_token: str


def _write_json(path: str, obj: Mapping[str, Any]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=2)
        fh.write("\n")


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


def _service_account_info(
    email: str,
    token_uri: str,
    *,
    project_id: Optional[str] = None,
    private_key_id: Optional[str] = None,
    client_id: Optional[str] = None,
    universe_domain: str = "googleapis.com",
    key_bits: int = 2048,
) -> Tuple[Dict[str, Any], rsa.RSAPrivateKey]:
    key = generate_rsa_key(key_bits)
    if project_id is None:
        m = re.match(r"^[^@]+@([a-z0-9-]+)\.iam\.gserviceaccount\.com$", email)
        project_id = m.group(1) if m else DEFAULT_PROJECT_ID
    info = {
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": private_key_id or secrets.token_hex(20),
        "private_key": private_key_pem(key),
        "client_email": email,
        "client_id": client_id or _random_numeric_id(),
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/"
        + urllib.parse.quote(email, safe=""),
        "universe_domain": universe_domain,
    }
    return info, key


def make_service_account(
    email: str,
    token_uri: str,
    dir: Union[str, os.PathLike],
    *,
    project_id: Optional[str] = None,
    private_key_id: Optional[str] = None,
    client_id: Optional[str] = None,
    universe_domain: str = "googleapis.com",
    filename: Optional[str] = None,
    key_bits: int = 2048,
) -> Tuple[str, str]:
    """Generate an RSA key and write a Google-format service-account key file.

    Returns ``(key_json_path, public_key_pem)``. The file is mode 0600. Register it with a
    ``Registry`` (``register_service_account_file``) — ``Emulators.new_service_account`` does both.
    """
    info, key = _service_account_info(
        email,
        token_uri,
        project_id=project_id,
        private_key_id=private_key_id,
        client_id=client_id,
        universe_domain=universe_domain,
        key_bits=key_bits,
    )
    os.makedirs(dir, exist_ok=True)
    path = os.path.join(os.fspath(dir), filename or f"sa-{_safe_name(email)}-{info['private_key_id'][:8]}.json")
    _write_json(path, info)
    return path, public_key_pem(key)


def make_authorized_user(
    client_id: str,
    client_secret: str,
    refresh_token: str,
    token_uri: str,
    dir: Union[str, os.PathLike],
    *,
    quota_project_id: Optional[str] = None,
    filename: Optional[str] = None,
) -> str:
    """Write a gcloud-ADC-style ``authorized_user`` file (with an explicit ``token_uri``)."""
    info: Dict[str, Any] = {
        "type": "authorized_user",
        "client_id": client_id,
        "client_secret": client_secret,
        "refresh_token": refresh_token,
        "token_uri": token_uri,
        "universe_domain": "googleapis.com",
        "account": "",
    }
    if quota_project_id:
        info["quota_project_id"] = quota_project_id
    os.makedirs(dir, exist_ok=True)
    path = os.path.join(os.fspath(dir), filename or f"authorized-user-{_safe_name(client_id)[:24]}.json")
    _write_json(path, info)
    return path


def make_impersonated(
    target_email: str,
    source_credentials: Union[str, os.PathLike, Mapping[str, Any]],
    iam_endpoint: str,
    dir: Union[str, os.PathLike],
    *,
    delegates: Sequence[str] = (),
    filename: Optional[str] = None,
) -> str:
    """Write an ``impersonated_service_account`` file.

    ``source_credentials`` is a dict or the path of a service_account / authorized_user file
    (nested verbatim). ``iam_endpoint`` is the IAM base URL (e.g. ``Emulators.iam_url``).
    """
    if isinstance(source_credentials, Mapping):
        source = dict(source_credentials)
    else:
        with open(source_credentials, encoding="utf-8") as fh:
            source = json.load(fh)
    info = {
        "type": "impersonated_service_account",
        "service_account_impersonation_url": iam_endpoint.rstrip("/")
        + f"/v1/projects/-/serviceAccounts/{target_email}:generateAccessToken",
        "delegates": list(delegates),
        "source_credentials": source,
    }
    os.makedirs(dir, exist_ok=True)
    path = os.path.join(os.fspath(dir), filename or f"impersonated-{_safe_name(target_email)}.json")
    _write_json(path, info)
    return path


# ---------------------------------------------------------------------------------------------
# Registry of identities and issued tokens
# ---------------------------------------------------------------------------------------------


@dataclass
class IssuedToken:
    token: str
    kind: str  # "access" | "id"
    source: str  # "jwt-bearer" | "refresh_token" | "client_credentials" | "metadata" | "iam"
    email: Optional[str]  # service account (or the refresh token's user) the token stands for
    client_id: Optional[str]  # OAuth client for refresh_token / client_credentials
    scopes: List[str]  # sorted; empty for ID tokens
    audience: Optional[str]  # ID tokens only
    issued_at: float
    expiry: float  # epoch seconds
    subject: Optional[str] = None  # jwt-bearer `sub` claim (domain-wide delegation)
    delegates: List[str] = field(default_factory=list)  # IAM only
    source_identity: Optional[str] = None  # IAM only: email/client of the bearer token used
    server: str = ""

    def expired(self, now: Optional[float] = None) -> bool:
        return (time.time() if now is None else now) >= self.expiry

    @property
    def identity(self) -> Optional[str]:
        return self.email or self.client_id

    def as_dict(self, include_token: bool = False) -> Dict[str, Any]:
        d = {
            "kind": self.kind,
            "source": self.source,
            "email": self.email,
            "client_id": self.client_id,
            "scopes": list(self.scopes),
            "audience": self.audience,
            "issued_at": self.issued_at,
            "expiry": self.expiry,
            "expired": self.expired(),
            "subject": self.subject,
            "delegates": list(self.delegates),
            "source_identity": self.source_identity,
            "server": self.server,
        }
        if include_token:
            d["token"] = self.token
        return d

    def __repr__(self) -> str:  # never show the token itself
        return (
            f"IssuedToken(kind={self.kind!r}, source={self.source!r}, email={self.email!r}, "
            f"client_id={self.client_id!r}, scopes={self.scopes!r}, audience={self.audience!r}, "
            f"expiry={self.expiry:.0f})"
        )


@dataclass
class _Account:
    email: str
    unique_id: str
    keys: Dict[str, rsa.RSAPublicKey]


@dataclass
class _Client:
    client_id: str
    client_secret: str
    grants: Tuple[str, ...]
    scopes: Optional[List[str]]  # None: any scope


@dataclass
class _RefreshGrant:
    client_id: str
    scopes: Optional[List[str]]  # None: any scope
    email: Optional[str]


class Registry:
    """Identities the emulators accept, and every token they issued. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._accounts: Dict[str, _Account] = {}
        self._clients: Dict[str, _Client] = {}
        self._refresh: Dict[str, _RefreshGrant] = {}
        self._tokens: Dict[str, IssuedToken] = {}
        self._log: List[IssuedToken] = []
        self._revoked: set = set()

    # -- identities --------------------------------------------------------------------------

    def register_service_account(
        self,
        email: str,
        kid: str,
        public_key: Union[str, bytes, rsa.RSAPublicKey],
        unique_id: Optional[str] = None,
    ) -> None:
        key = _load_public_key(public_key)
        with self._lock:
            acct = self._accounts.get(email)
            if acct is None:
                acct = _Account(email, unique_id or _numeric_id_for(email), {})
                self._accounts[email] = acct
            elif unique_id:
                acct.unique_id = unique_id
            acct.keys[kid] = key

    def register_service_account_file(self, path: Union[str, os.PathLike]) -> ServiceAccountKey:
        with open(path, encoding="utf-8") as fh:
            info = json.load(fh)
        priv = serialization.load_pem_private_key(info["private_key"].encode("ascii"), None)
        pub_pem = public_key_pem(priv)  # type: ignore[arg-type]
        self.register_service_account(info["client_email"], info["private_key_id"], pub_pem, info.get("client_id"))
        return ServiceAccountKey(
            path=os.fspath(path),
            email=info["client_email"],
            private_key_id=info["private_key_id"],
            public_key_pem=pub_pem,
            unique_id=self.unique_id_for(info["client_email"]),
            project_id=info.get("project_id", ""),
        )

    def remove_key(self, email: str, kid: str) -> None:
        """Forget one key (as if deleted in the console): assertions with that kid then fail."""
        with self._lock:
            acct = self._accounts.get(email)
            if acct:
                acct.keys.pop(kid, None)

    def remove_service_account(self, email: str) -> None:
        with self._lock:
            self._accounts.pop(email, None)

    def has_service_account(self, email: str) -> bool:
        with self._lock:
            return email in self._accounts

    def _key_for(self, email: str, kid: Optional[str]) -> Tuple[bool, Optional[rsa.RSAPublicKey]]:
        """(account known, key for kid or None)."""
        with self._lock:
            acct = self._accounts.get(email)
            if acct is None:
                return False, None
            if kid is None:
                return True, None
            return True, acct.keys.get(kid)

    def _all_keys(self, email: str) -> List[rsa.RSAPublicKey]:
        with self._lock:
            acct = self._accounts.get(email)
            return list(acct.keys.values()) if acct else []

    def unique_id_for(self, email: str) -> str:
        with self._lock:
            acct = self._accounts.get(email)
            return acct.unique_id if acct else _numeric_id_for(email)

    def register_client(
        self,
        client_id: str,
        client_secret: str,
        grants: Sequence[str] = ("refresh_token", "client_credentials"),
        scopes: Union[None, str, Iterable[str]] = None,
    ) -> None:
        with self._lock:
            self._clients[client_id] = _Client(
                client_id, client_secret, tuple(grants), None if scopes is None else normalize_scopes(scopes)
            )

    def register_refresh_token(
        self,
        client_id: str,
        refresh_token: str,
        scopes: Union[None, str, Iterable[str]] = None,
        email: Optional[str] = None,
    ) -> None:
        with self._lock:
            self._refresh[refresh_token] = _RefreshGrant(
                client_id, None if scopes is None else normalize_scopes(scopes), email
            )

    def revoke_refresh_token(self, refresh_token: str) -> None:
        with self._lock:
            self._refresh.pop(refresh_token, None)

    def _client(self, client_id: str) -> Optional[_Client]:
        with self._lock:
            return self._clients.get(client_id)

    def _refresh_grant(self, refresh_token: str) -> Optional[_RefreshGrant]:
        with self._lock:
            return self._refresh.get(refresh_token)

    # -- tokens ------------------------------------------------------------------------------

    def record(self, rec: IssuedToken) -> None:
        with self._lock:
            self._tokens[rec.token] = rec
            self._log.append(rec)

    def lookup(self, token: str) -> Optional[IssuedToken]:
        """The record of a token this emulator issued (access token or ID-token JWT), or None."""
        if token is None:
            return None
        with self._lock:
            return self._tokens.get(token.strip())

    def lookup_bearer(self, authorization: Optional[str]) -> Optional[IssuedToken]:
        """``lookup`` on an ``Authorization: Bearer <token>`` header value (None if not Bearer)."""
        if not authorization:
            return None
        scheme, _, tok = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not tok.strip():
            return None
        return self.lookup(tok.strip())

    def valid_access_token(self, token: str, now: Optional[float] = None) -> Optional[IssuedToken]:
        """The record if ``token`` is an unexpired, unrevoked access token issued here."""
        rec = self.lookup(token)
        with self._lock:
            revoked = token in self._revoked if token else True
        if rec is None or rec.kind != "access" or revoked or rec.expired(now):
            return None
        return rec

    def revoke(self, token: str) -> None:
        with self._lock:
            self._revoked.add(token)

    def issued(
        self,
        kind: Optional[str] = None,
        scopes: Union[None, str, Iterable[str]] = None,
        audience: Optional[str] = None,
        source: Optional[str] = None,
        email: Optional[str] = None,
    ) -> List[IssuedToken]:
        """Issued tokens, oldest first, filtered by the given fields (scopes compare normalized)."""
        want_scopes = None if scopes is None else normalize_scopes(scopes)
        with self._lock:
            log = list(self._log)
        out = []
        for rec in log:
            if kind is not None and rec.kind != kind:
                continue
            if want_scopes is not None and rec.scopes != want_scopes:
                continue
            if audience is not None and rec.audience != audience:
                continue
            if source is not None and rec.source != source:
                continue
            if email is not None and rec.email != email:
                continue
            out.append(rec)
        return out

    def mint_count(self, kind: Optional[str] = None, scopes=None, audience=None, source=None, email=None) -> int:
        return len(self.issued(kind, scopes, audience, source, email))

    def counts(self) -> Dict[Tuple[str, str], int]:
        """Mints per (kind, key): key is the space-joined sorted scopes, or the audience."""
        out: Dict[Tuple[str, str], int] = {}
        with self._lock:
            log = list(self._log)
        for rec in log:
            key = (rec.kind, " ".join(rec.scopes) if rec.kind == "access" else (rec.audience or ""))
            out[key] = out.get(key, 0) + 1
        return out

    def clear_tokens(self) -> None:
        """Forget issued tokens and counters (identities are kept)."""
        with self._lock:
            self._tokens.clear()
            self._log.clear()
            self._revoked.clear()


# ---------------------------------------------------------------------------------------------
# ID-token signing key
# ---------------------------------------------------------------------------------------------


class IdTokenSigner:
    """The emulator's own RSA key, standing in for Google's ID-token signing keys."""

    def __init__(self, key: Optional[rsa.RSAPrivateKey] = None, kid: Optional[str] = None) -> None:
        self._key = key or generate_rsa_key(2048)
        self.kid = kid or secrets.token_hex(20)
        self.public_key_pem = public_key_pem(self._key)

    @property
    def public_key(self) -> rsa.RSAPublicKey:
        return self._key.public_key()

    def sign(self, claims: Mapping[str, Any]) -> str:
        return encode_jwt(self._key, claims, kid=self.kid)

    def jwks(self) -> Dict[str, Any]:
        nums = self._key.public_key().public_numbers()

        def b(n: int) -> str:
            return b64url_encode(n.to_bytes((n.bit_length() + 7) // 8, "big"))

        return {"keys": [{"kty": "RSA", "alg": "RS256", "use": "sig", "kid": self.kid, "n": b(nums.n), "e": b(nums.e)}]}

    def verify(self, token: str, audience: Optional[str] = None, leeway: float = 0.0) -> Dict[str, Any]:
        return verify_id_token(token, self.public_key, audience=audience, kid=self.kid, leeway=leeway)


# ---------------------------------------------------------------------------------------------
# Runtime behaviour switches
# ---------------------------------------------------------------------------------------------


class Behaviour:
    """Thread-safe failure and timing switches for one server.

    ``fail_next``/``set_delay`` apply to *mint* requests only (token endpoint ``/token``; metadata
    ``…/token`` and ``…/identity``; IAM ``:generate*``). ``outage`` applies to every request.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failures: List[str] = []
        self._outage = False
        self._delay = 0.0
        self._delay_count: Optional[int] = None
        self.lifetime: Optional[int] = None  # seconds; None = the server's default
        self.timeout_hold = 30.0  # how long a "timeout" failure holds the request
        self.expires_in_as_string = False  # send "expires_in":"3599" (Google sometimes does)
        self.clock_offset = 0.0  # shifts the emulator's "now" when checking assertion iat/exp
        self.hostile_description = ""  # the error_description of a "hostile" failure
        self.requests = 0
        self.mint_requests = 0
        self.mints = 0
        self.failures_served = 0
        self.inflight = 0
        self.max_inflight = 0

    # -- switches ------------------------------------------------------------------------------

    def fail_next(self, n: int = 1, kind: str = "503") -> None:
        """The next ``n`` mint requests fail with ``kind`` (queued after earlier failures)."""
        kind = str(kind)
        if kind not in FAILURE_KINDS and not _STATUS_KIND.match(kind):
            raise ValueError(f"unknown failure kind {kind!r}; one of {sorted(FAILURE_KINDS)} or an HTTP status")
        with self._lock:
            self._failures.extend([kind] * int(n))

    def clear_failures(self) -> None:
        with self._lock:
            self._failures.clear()

    def pending_failures(self) -> List[str]:
        with self._lock:
            return list(self._failures)

    def outage(self, on: bool = True) -> None:
        """While on, every request gets a 503."""
        with self._lock:
            self._outage = bool(on)

    @property
    def in_outage(self) -> bool:
        with self._lock:
            return self._outage

    def set_delay(self, seconds: float, count: Optional[int] = None) -> None:
        """Delay mint requests by ``seconds``: the next ``count`` of them, or all when None."""
        with self._lock:
            self._delay = float(seconds)
            self._delay_count = None if count is None else int(count)

    def set_lifetime(self, seconds: Optional[int]) -> None:
        """Lifetime of issued tokens (access ``expires_in``, ID token ``exp - iat``); None = default."""
        with self._lock:
            self.lifetime = None if seconds is None else int(seconds)

    def reset(self) -> None:
        """Back to defaults; counters are zeroed too."""
        with self._lock:
            self._failures.clear()
            self._outage = False
            self._delay = 0.0
            self._delay_count = None
            self.lifetime = None
            self.timeout_hold = 30.0
            self.expires_in_as_string = False
            self.clock_offset = 0.0
            self.hostile_description = ""
            self.requests = self.mint_requests = self.mints = self.failures_served = 0
            self.max_inflight = self.inflight

    def stats(self) -> Dict[str, Any]:
        with self._lock:
            return {
                "requests": self.requests,
                "mint_requests": self.mint_requests,
                "mints": self.mints,
                "failures_served": self.failures_served,
                "inflight": self.inflight,
                "max_inflight": self.max_inflight,
                "pending_failures": list(self._failures),
                "outage": self._outage,
                "lifetime": self.lifetime,
            }

    def now(self) -> float:
        return time.time() + self.clock_offset

    # -- used by the servers -------------------------------------------------------------------

    def _count_request(self) -> None:
        with self._lock:
            self.requests += 1

    def _count_mint(self) -> None:
        with self._lock:
            self.mints += 1

    def _begin_mint(self) -> Tuple[Optional[str], float]:
        with self._lock:
            self.mint_requests += 1
            self.inflight += 1
            self.max_inflight = max(self.max_inflight, self.inflight)
            failure = self._failures.pop(0) if self._failures else None
            if failure is not None:
                self.failures_served += 1
            delay = 0.0
            if self._delay > 0 and (self._delay_count is None or self._delay_count > 0):
                delay = self._delay
                if self._delay_count is not None:
                    self._delay_count -= 1
            return failure, delay

    def _end_mint(self) -> None:
        with self._lock:
            self.inflight -= 1


# ---------------------------------------------------------------------------------------------
# HTTP plumbing
# ---------------------------------------------------------------------------------------------


@dataclass
class Request:
    method: str
    path: str
    query: Dict[str, List[str]]
    headers: Any  # email.message.Message (case-insensitive get)
    body: bytes
    client: Tuple[str, int]

    def q(self, name: str, default: Optional[str] = None) -> Optional[str]:
        vals = self.query.get(name)
        return vals[0] if vals else default


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: List[Tuple[str, str]] = field(default_factory=list)
    action: Optional[str] = None  # "close" (no response) | "reset" (RST, no response)
    no_flavor: bool = False


def _json_response(status: int, obj: Any, headers: Sequence[Tuple[str, str]] = ()) -> Response:
    return Response(
        status,
        json.dumps(obj, indent=2).encode("utf-8") + b"\n",
        [("Content-Type", "application/json; charset=utf-8")] + list(headers),
    )


def _text_response(status: int, text: str, content_type: str = "text/plain; charset=utf-8") -> Response:
    return Response(status, text.encode("utf-8"), [("Content-Type", content_type)])


class _HTTPServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 512

    def __init__(self, addr, handler, emulator: "_EmulatorServer", ssl_context: Optional[ssl.SSLContext]):
        self.emulator = emulator
        self.ssl_context = ssl_context
        super().__init__(addr, handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn): skip it, we are offline.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = host
        self.server_port = port

    def get_request(self):
        sock, addr = self.socket.accept()
        if self.ssl_context is not None:
            # Handshake in the handler thread, so a stalled client cannot block accept().
            sock = self.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr

    def handle_error(self, request, client_address) -> None:
        if self.emulator.verbose:
            traceback.print_exc()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    sys_version = ""
    timeout = 120  # idle keep-alive connections are closed after this

    @property
    def emu(self) -> "_EmulatorServer":
        return self.server.emulator  # type: ignore[attr-defined]

    def version_string(self) -> str:
        return self.emu.server_header

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(10)
            self.request.do_handshake()
        super().setup()
        self.emu._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.emu._track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:
        if self.emu.verbose:
            sys.stderr.write(f"[{self.emu.name}] {self.address_string()} {format % args}\n")

    def _read_body(self) -> bytes:
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            chunks = []
            total = 0
            while True:
                line = self.rfile.readline(1024)
                if not line:
                    raise ValueError("truncated chunked body")
                size = int(line.split(b";", 1)[0].strip(), 16)
                if size == 0:
                    while True:  # trailers
                        t = self.rfile.readline(8192)
                        if t in (b"\r\n", b"\n", b""):
                            break
                    break
                total += size
                if total > _MAX_BODY:
                    raise ValueError("body too large")
                chunks.append(self.rfile.read(size))
                self.rfile.readline(8)
            return b"".join(chunks)
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        n = int(length)
        if n < 0 or n > _MAX_BODY:
            raise ValueError("bad Content-Length")
        data = self.rfile.read(n)
        if len(data) != n:
            raise ValueError("truncated body")
        return data

    def _handle(self, method: str) -> None:
        try:
            body = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True
            self._write(_text_response(400, "Bad Request\n"))
            return
        parts = urllib.parse.urlsplit(self.path)
        req = Request(
            method=method,
            path=parts.path,
            query=urllib.parse.parse_qs(parts.query, keep_blank_values=True),
            headers=self.headers,
            body=body,
            client=self.client_address,
        )
        resp = self.emu._dispatch(req)
        self._write(resp)

    def _write(self, resp: Response) -> None:
        if resp.action in ("close", "reset"):
            self.close_connection = True
            try:
                if resp.action == "reset":
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                else:
                    self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        try:
            self.send_response(resp.status)
            for k, v in resp.headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(resp.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(resp.body)
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_HEAD(self) -> None:
        self._handle("HEAD")


class _EmulatorServer:
    """Common lifecycle, failure injection and minting for the three servers."""

    name = "emulator"
    server_header = "Google Emulator"

    def __init__(
        self,
        registry: Optional[Registry] = None,
        signer: Optional[IdTokenSigner] = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: Optional[ssl.SSLContext] = None,
        certfile: Optional[str] = None,
        keyfile: Optional[str] = None,
        verbose: bool = False,
    ) -> None:
        self.registry = registry or Registry()
        self.signer = signer or IdTokenSigner()
        self.behaviour = Behaviour()
        self.verbose = verbose
        if ssl_context is None and certfile:
            ssl_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ssl_context.load_cert_chain(certfile, keyfile)
        self._ssl_context = ssl_context
        self._host = host
        self._port = port
        self._httpd: Optional[_HTTPServer] = None
        self._thread: Optional[threading.Thread] = None
        self._stop_event = threading.Event()
        self._conns: set = set()
        self._conns_lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> "_EmulatorServer":
        if self._httpd is not None:
            return self
        self._stop_event.clear()
        self._httpd = _HTTPServer((self._host, self._port), _Handler, self, self._ssl_context)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=f"emu-{self.name}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop_event.set()  # releases held ("timeout") and delayed requests
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        with self._conns_lock:
            conns = list(self._conns)
            self._conns.clear()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread:
            self._thread.join(5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _track(self, conn, add: bool) -> None:
        with self._conns_lock:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def host(self) -> str:
        return self._host

    @property
    def scheme(self) -> str:
        return "https" if self._ssl_context is not None else "http"

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self._host}:{self.port}"

    # -- behaviour shortcuts -------------------------------------------------------------------

    def fail_next(self, n: int = 1, kind: str = "503") -> None:
        self.behaviour.fail_next(n, kind)

    def clear_failures(self) -> None:
        self.behaviour.clear_failures()

    def outage(self, on: bool = True) -> None:
        self.behaviour.outage(on)

    def set_delay(self, seconds: float, count: Optional[int] = None) -> None:
        self.behaviour.set_delay(seconds, count)

    def set_lifetime(self, seconds: Optional[int]) -> None:
        self.behaviour.set_lifetime(seconds)

    def reset(self) -> None:
        self.behaviour.reset()

    def stats(self) -> Dict[str, Any]:
        return self.behaviour.stats()

    def lookup(self, token: str) -> Optional[IssuedToken]:
        return self.registry.lookup(token)

    # -- dispatch ------------------------------------------------------------------------------

    def _dispatch(self, req: Request) -> Response:
        try:
            if req.path.startswith("/__emulator/"):
                return self._finalize(self._control(req), req)
            self.behaviour._count_request()
            pre = self._precheck(req)
            if pre is not None:
                return self._finalize(pre, req)
            if self.behaviour.in_outage:
                return self._finalize(self._failure("outage", req), req)
            if not self._is_mint(req):
                return self._finalize(self._route(req), req)
            failure, delay = self.behaviour._begin_mint()
            try:
                if delay > 0:
                    self._stop_event.wait(delay)
                if failure == "no_flavor":
                    resp = self._route(req)
                    resp.no_flavor = True
                elif failure == "timeout":
                    self._stop_event.wait(self.behaviour.timeout_hold)
                    resp = Response(0, action="close")
                elif failure == "reset":
                    resp = Response(0, action="reset")
                elif failure is not None:
                    resp = self._failure(failure, req)
                else:
                    resp = self._route(req)
            finally:
                self.behaviour._end_mint()
            return self._finalize(resp, req)
        except Exception:  # a bug in the emulator: say so loudly, answer 500
            traceback.print_exc()
            return self._finalize(_text_response(500, "emulator internal error\n"), req)

    def _precheck(self, req: Request) -> Optional[Response]:
        return None

    def _is_mint(self, req: Request) -> bool:
        return False

    def _route(self, req: Request) -> Response:
        return _text_response(404, "Not Found\n")

    def _failure(self, kind: str, req: Request) -> Response:
        raise NotImplementedError

    def _finalize(self, resp: Response, req: Request) -> Response:
        return resp

    def _control(self, req: Request) -> Response:
        """Loopback control API for shell demos: stats, lookup, switches."""
        if req.path == "/__emulator/stats" and req.method == "GET":
            return _json_response(
                200,
                {
                    "server": self.name,
                    "behaviour": self.behaviour.stats(),
                    "mints": [{"kind": k, "key": v, "count": n} for (k, v), n in self.registry.counts().items()],
                },
            )
        if req.path == "/__emulator/lookup" and req.method in ("GET", "POST"):
            token = req.q("token")
            if token is None and req.body:
                token = urllib.parse.parse_qs(req.body.decode("utf-8", "replace")).get("token", [None])[0]
            rec = self.registry.lookup(token) if token else None
            if rec is None:
                return _json_response(404, {"error": "unknown token"})
            return _json_response(200, rec.as_dict())
        if req.path == "/__emulator/control" and req.method == "POST":
            try:
                cmd = json.loads(req.body.decode("utf-8") or "{}")
                b = self.behaviour
                if cmd.get("reset"):
                    b.reset()
                if "fail_next" in cmd:
                    f = cmd["fail_next"]
                    b.fail_next(int(f.get("n", 1)), str(f.get("kind", "503")))
                if "outage" in cmd:
                    b.outage(bool(cmd["outage"]))
                if "delay" in cmd:
                    d = cmd["delay"]
                    b.set_delay(float(d.get("seconds", 0)), d.get("count"))
                if "lifetime" in cmd:
                    b.set_lifetime(cmd["lifetime"])
                if "timeout_hold" in cmd:
                    b.timeout_hold = float(cmd["timeout_hold"])
            except (ValueError, TypeError, AttributeError) as exc:
                return _json_response(400, {"error": str(exc)})
            return _json_response(200, {"server": self.name, "behaviour": self.behaviour.stats()})
        return _json_response(404, {"error": "unknown control endpoint"})

    # -- minting -------------------------------------------------------------------------------

    def _mint_access(
        self,
        source: str,
        scopes: Iterable[str],
        *,
        default_lifetime: int = 3599,
        email: Optional[str] = None,
        client_id: Optional[str] = None,
        subject: Optional[str] = None,
        delegates: Sequence[str] = (),
        source_identity: Optional[str] = None,
    ) -> IssuedToken:
        lifetime = self.behaviour.lifetime if self.behaviour.lifetime is not None else default_lifetime
        now = time.time()
        rec = IssuedToken(
            token="ya29." + secrets.token_urlsafe(96),
            kind="access",
            source=source,
            email=email,
            client_id=client_id,
            scopes=normalize_scopes(scopes),
            audience=None,
            issued_at=now,
            expiry=now + lifetime,
            subject=subject,
            delegates=list(delegates),
            source_identity=source_identity,
            server=self.name,
        )
        self.registry.record(rec)
        self.behaviour._count_mint()
        return rec

    def _mint_id(
        self,
        source: str,
        audience: str,
        *,
        email: str,
        azp: Optional[str] = None,
        include_email: bool = True,
        extra_claims: Optional[Mapping[str, Any]] = None,
        default_lifetime: int = 3600,
        delegates: Sequence[str] = (),
        source_identity: Optional[str] = None,
    ) -> IssuedToken:
        lifetime = self.behaviour.lifetime if self.behaviour.lifetime is not None else default_lifetime
        iat = int(time.time())
        unique_id = self.registry.unique_id_for(email)
        claims: Dict[str, Any] = {
            "aud": audience,
            "azp": azp or unique_id,
            "exp": iat + lifetime,
            "iat": iat,
            "iss": GOOGLE_ISSUER,
            "sub": unique_id,
        }
        if include_email:
            claims["email"] = email
            claims["email_verified"] = True
        if extra_claims:
            claims.update(extra_claims)
        jwt = self.signer.sign(claims)
        rec = IssuedToken(
            token=jwt,
            kind="id",
            source=source,
            email=email,
            client_id=None,
            scopes=[],
            audience=audience,
            issued_at=float(iat),
            expiry=float(iat + lifetime),
            delegates=list(delegates),
            source_identity=source_identity,
            server=self.name,
        )
        self.registry.record(rec)
        self.behaviour._count_mint()
        return rec

    def _expires_in(self, rec: IssuedToken) -> Union[int, str]:
        value = max(0, int(round(rec.expiry - rec.issued_at)))
        return str(value) if self.behaviour.expires_in_as_string else value


# ---------------------------------------------------------------------------------------------
# OAuth 2.0 token endpoint
# ---------------------------------------------------------------------------------------------

_NO_CACHE = [
    ("Cache-Control", "no-cache, no-store, max-age=0, must-revalidate"),
    ("Pragma", "no-cache"),
    ("Expires", "Mon, 01 Jan 1990 00:00:00 GMT"),
]
_SHORT_LIVED = (
    "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. "
    "Check your iat and exp values in the JWT claim."
)


def _oauth_error(status: int, error: str, description: str, headers: Sequence[Tuple[str, str]] = ()) -> Response:
    return _json_response(status, {"error": error, "error_description": description}, list(_NO_CACHE) + list(headers))


@dataclass
class WorkloadProvider:
    """A workload (or workforce) identity pool provider, as STS knows it: the external issuer it
    trusts, that issuer's signing keys (kid → public key) and the audiences it accepts."""

    audience: str  # //iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/P/providers/X
    issuer: str
    keys: Dict[str, rsa.RSAPublicKey]
    allowed_audiences: List[str]

    @property
    def workforce(self) -> bool:
        return "/workforcePools/" in self.audience

    def principal(self, subject: str) -> str:
        pool = self.audience.split("/providers/", 1)[0].removeprefix("//iam.googleapis.com/")
        return f"principal://iam.googleapis.com/{pool}/subject/{subject}"


class TokenServer(_EmulatorServer):
    """``POST /token`` — Google's OAuth 2.0 token endpoint (oauth2.googleapis.com); ``POST
    /v1/token`` — Google's Security Token Service (sts.googleapis.com)."""

    name = "token"
    server_header = "scaffolding on HTTPServer2"

    def __init__(self, registry: Optional[Registry] = None, signer: Optional[IdTokenSigner] = None, **kw: Any) -> None:
        super().__init__(registry, signer, **kw)
        self.iat_skew = 300  # |iat - now| allowed, seconds
        self.max_assertion_lifetime = 3600  # exp - iat
        self.require_kid = True  # reject assertions without a kid header
        self.strict_base64 = True  # reject padded / non-url-safe base64 in the assertion
        self.strict_scope_format = True  # scope claim: non-empty items joined by single spaces
        self.extra_audiences: set = set()  # more accepted `aud` values
        self.workload_providers: Dict[str, WorkloadProvider] = {}
        # Every STS exchange that was granted: the form without the subject token, with `options`
        # decoded, the subject's claims and whether the client authenticated.
        self.sts_exchanges: List[Dict[str, Any]] = []
        self._sts_lock = threading.Lock()

    @property
    def token_url(self) -> str:
        return self.base_url + "/token"

    @property
    def sts_url(self) -> str:
        return self.base_url + "/v1/token"

    def add_workload_provider(
        self,
        audience: str,
        issuer: str,
        public_key: Union[str, bytes, rsa.RSAPublicKey],
        kid: str,
        allowed_audiences: Optional[Sequence[str]] = None,
    ) -> WorkloadProvider:
        """Trust ``issuer``'s tokens signed by ``public_key`` (``kid``) for ``audience``. Google's
        default allowed audience is the provider's own resource name as an https URL."""
        provider = self.workload_providers.get(audience)
        if provider is None:
            default = "https:" + audience if audience.startswith("//") else audience
            provider = WorkloadProvider(audience, issuer, {}, list(allowed_audiences or [default]))
            self.workload_providers[audience] = provider
        provider.keys[kid] = _load_public_key(public_key)
        return provider

    @property
    def tokeninfo_url(self) -> str:
        return self.base_url + "/tokeninfo"

    @property
    def jwks_url(self) -> str:
        return self.base_url + "/oauth2/v3/certs"

    def accepted_audiences(self) -> set:
        return {GOOGLE_TOKEN_URI, self.token_url} | set(self.extra_audiences)

    def _is_mint(self, req: Request) -> bool:
        return req.path in ("/token", "/v1/token")

    # -- failures ------------------------------------------------------------------------------

    def _failure(self, kind: str, req: Request) -> Response:
        if kind == "outage":
            return _oauth_error(503, "temporarily_unavailable", "The service is currently unavailable.")
        if _STATUS_KIND.match(kind):
            status = int(kind)
            return _oauth_error(status, _REASONS_TOKEN.get(status, "server_error"), f"Emulated HTTP {status}.")
        if kind == "invalid_grant":
            form = self._form(req) or {}
            if form.get("grant_type") == JWT_BEARER_GRANT:
                return _oauth_error(400, "invalid_grant", "Invalid JWT Signature.")
            return _oauth_error(400, "invalid_grant", "Bad Request")
        if kind == "garbage":
            return Response(
                200,
                b"<!DOCTYPE html><html><body>Emulated garbage: not JSON</body></html>\n",
                [("Content-Type", "text/html; charset=utf-8")],
            )
        if kind == "missing_token":
            return _json_response(200, {"expires_in": 3599, "token_type": "Bearer"}, _NO_CACHE)
        if kind == "error_200":
            return _json_response(
                200, {"error": "invalid_grant", "error_description": "Emulated error in a 200 response."}, _NO_CACHE
            )
        if kind == "hostile":
            return _oauth_error(400, "invalid_grant", self.behaviour.hostile_description)
        if kind == "echo_credential":
            form = self._form(req) or {}
            sent = form.get("subject_token") or form.get("assertion") or ""
            return _oauth_error(400, "invalid_grant", f"Invalid subject_token or assertion: {sent}")
        raise ValueError(kind)

    # -- routing -------------------------------------------------------------------------------

    def _route(self, req: Request) -> Response:
        if req.path == "/token":
            if req.method != "POST":
                return _oauth_error(405, "invalid_request", "The token endpoint only accepts POST.")
            return self._token(req)
        if req.path == "/v1/token":
            if req.method != "POST":
                return _oauth_error(405, "invalid_request", "The token endpoint only accepts POST.")
            return self._sts(req)
        if req.path in ("/tokeninfo", "/oauth2/v3/tokeninfo"):
            return self._tokeninfo(req)
        if req.path in ("/oauth2/v3/certs", "/oauth2/v1/certs"):
            return _json_response(200, self.signer.jwks())
        if req.path == "/.well-known/openid-configuration":
            return _json_response(
                200,
                {
                    "issuer": GOOGLE_ISSUER,
                    "token_endpoint": self.token_url,
                    "jwks_uri": self.jwks_url,
                    "id_token_signing_alg_values_supported": ["RS256"],
                },
            )
        return _text_response(404, "Not Found\n")

    @staticmethod
    def _form(req: Request) -> Optional[Dict[str, str]]:
        """The form body, or None when it is not a well-formed form with unique keys."""
        try:
            pairs = urllib.parse.parse_qsl(req.body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError:
            return None
        form: Dict[str, str] = {}
        for k, v in pairs:
            if k in form:
                return None
            form[k] = v
        return form

    def _read_form(self, req: Request) -> Tuple[Optional[Dict[str, str]], Optional[Response]]:
        """The form of a token request, or the 400 that refuses it."""
        ctype = (req.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            return None, _oauth_error(400, "invalid_request", "Content-Type must be application/x-www-form-urlencoded.")
        form = self._form(req)
        if form is None:
            return None, _oauth_error(400, "invalid_request", "Malformed form body (repeated parameter?).")
        return form, None

    def _token(self, req: Request) -> Response:
        form, refused = self._read_form(req)
        if form is None:
            return refused
        grant = form.get("grant_type")
        if not grant:
            return _oauth_error(400, "invalid_request", "Missing required parameter: grant_type")
        if grant == JWT_BEARER_GRANT:
            return self._jwt_bearer(form)
        if grant == "refresh_token":
            return self._refresh_token(req, form)
        if grant == "client_credentials":
            return self._client_credentials(req, form)
        return _oauth_error(400, "unsupported_grant_type", f"Invalid grant_type: {grant}")

    # -- jwt-bearer ----------------------------------------------------------------------------

    def _jwt_bearer(self, form: Dict[str, str]) -> Response:
        assertion = form.get("assertion")
        if not assertion:
            return _oauth_error(400, "invalid_request", "Missing required parameter: assertion")
        try:
            jwt = parse_jwt(assertion, strict=self.strict_base64)
        except ValueError as exc:
            return _oauth_error(400, "invalid_grant", f"Invalid JWT: {exc}")
        hdr, claims = jwt.header, jwt.claims
        if hdr.get("alg") != "RS256":
            return _oauth_error(400, "invalid_grant", "Invalid JWT: alg must be RS256.")
        if hdr.get("typ") != "JWT":
            return _oauth_error(400, "invalid_grant", "Invalid JWT: typ must be JWT.")
        iss = claims.get("iss")
        if not isinstance(iss, str) or not iss:
            return _oauth_error(400, "invalid_grant", "Invalid JWT: iss claim is missing.")
        kid = hdr.get("kid")
        if kid is not None and not isinstance(kid, str):
            return _oauth_error(400, "invalid_grant", "Invalid JWT Signature.")
        known, key = self.registry._key_for(iss, kid)
        if not known:
            return _oauth_error(400, "invalid_grant", "Invalid grant: account not found")
        if kid is None:
            if self.require_kid:
                return _oauth_error(400, "invalid_grant", "Invalid JWT: kid header is missing.")
            ok = any(verify_rs256(k, jwt.signing_input, jwt.signature) for k in self.registry._all_keys(iss))
        else:
            # Unknown (e.g. deleted) key id: Google answers exactly as for a bad signature.
            ok = key is not None and verify_rs256(key, jwt.signing_input, jwt.signature)
        if not ok:
            return _oauth_error(400, "invalid_grant", "Invalid JWT Signature.")

        now = self.behaviour.now()
        iat, exp = claims.get("iat"), claims.get("exp")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (iat, exp)):
            return _oauth_error(400, "invalid_grant", _SHORT_LIVED)
        if abs(iat - now) > self.iat_skew or exp <= now or exp <= iat or exp - iat > self.max_assertion_lifetime:
            return _oauth_error(400, "invalid_grant", _SHORT_LIVED)
        aud = claims.get("aud")
        if not isinstance(aud, str) or aud not in self.accepted_audiences():
            return _oauth_error(
                400,
                "invalid_grant",
                f"Invalid JWT: Failed audience check. The expected value was {GOOGLE_TOKEN_URI} "
                f"but the actual value was {aud!r}.",
            )

        scope = claims.get("scope")
        target = claims.get("target_audience")
        has_scope = scope is not None and scope != ""
        has_target = target is not None and target != ""
        if has_scope and has_target:
            return _oauth_error(400, "invalid_request", "Only one of scope and target_audience may be given.")
        if not has_scope and not has_target:
            return _oauth_error(400, "invalid_request", "Invalid oauth scope or ID token audience provided.")
        subject = claims.get("sub")
        if subject is not None and not isinstance(subject, str):
            return _oauth_error(400, "invalid_grant", "Invalid JWT: sub must be a string.")

        if has_target:
            if not isinstance(target, str):
                return _oauth_error(400, "invalid_request", "target_audience must be a string.")
            rec = self._mint_id("jwt-bearer", target, email=iss, azp=iss)
            return _json_response(200, {"id_token": rec.token}, _NO_CACHE)

        if not isinstance(scope, str):
            return _oauth_error(400, "invalid_scope", "scope must be a space-delimited string.")
        if self.strict_scope_format:
            items = scope.split(" ")
            if any(not s or re.search(r"[\s,]", s) for s in items):
                return _oauth_error(
                    400, "invalid_scope", "Invalid OAuth scope: scopes must be non-empty and joined by single spaces."
                )
        rec = self._mint_access("jwt-bearer", scope.split(), email=iss, subject=subject)
        return _json_response(
            200, {"access_token": rec.token, "expires_in": self._expires_in(rec), "token_type": "Bearer"}, _NO_CACHE
        )

    # -- client authentication -----------------------------------------------------------------

    @staticmethod
    def _client_auth(req: Request, form: Dict[str, str]) -> Tuple[Optional[str], Optional[str], bool, Optional[str]]:
        """(client_id, client_secret, used_basic, error)."""
        auth = req.headers.get("Authorization")
        body_id, body_secret = form.get("client_id"), form.get("client_secret")
        if auth:
            scheme, _, rest = auth.partition(" ")
            if scheme.lower() != "basic":
                return None, None, False, "Unsupported client authentication scheme."
            try:
                decoded = base64.b64decode(rest.strip(), validate=True).decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                return None, None, True, "Malformed HTTP Basic credentials."
            if ":" not in decoded:
                return None, None, True, "Malformed HTTP Basic credentials."
            cid, _, csec = decoded.partition(":")
            # RFC 6749 §2.3.1: id and secret are form-urlencoded before Basic encoding.
            cid, csec = urllib.parse.unquote_plus(cid), urllib.parse.unquote_plus(csec)
            if body_secret is not None or (body_id is not None and body_id != cid):
                return None, None, True, "Client authentication must use only one method."
            return cid, csec, True, None
        return body_id, body_secret, False, None

    def _bad_client(self, used_basic: bool, description: str = "Unauthorized") -> Response:
        headers = [("WWW-Authenticate", 'Basic realm="oauth2"')] if used_basic else []
        return _oauth_error(401, "invalid_client", description, headers)

    # -- refresh_token -------------------------------------------------------------------------

    def _refresh_token(self, req: Request, form: Dict[str, str]) -> Response:
        cid, csec, basic, err = self._client_auth(req, form)
        if err:
            return _oauth_error(400, "invalid_request", err)
        rt = form.get("refresh_token")
        if not rt:
            return _oauth_error(400, "invalid_request", "Missing required parameter: refresh_token")
        if not cid:
            return _oauth_error(400, "invalid_request", "Missing required parameter: client_id")
        client = self.registry._client(cid)
        if client is None:
            return self._bad_client(basic, "The OAuth client was not found.")
        if not csec or not secrets.compare_digest(client.client_secret, csec):
            return self._bad_client(basic, "Unauthorized")
        grant = self.registry._refresh_grant(rt)
        if grant is None or grant.client_id != cid:
            return _oauth_error(400, "invalid_grant", "Bad Request")
        requested = normalize_scopes(form.get("scope")) if form.get("scope") else None
        if requested is not None and grant.scopes is not None and not set(requested) <= set(grant.scopes):
            return _oauth_error(400, "invalid_scope", "Some requested scopes were invalid.")
        scopes = requested if requested is not None else (grant.scopes or [CLOUD_PLATFORM_SCOPE])
        rec = self._mint_access("refresh_token", scopes, email=grant.email, client_id=cid)
        return _json_response(
            200,
            {
                "access_token": rec.token,
                "expires_in": self._expires_in(rec),
                "scope": " ".join(rec.scopes),
                "token_type": "Bearer",
            },
            _NO_CACHE,
        )

    # -- client_credentials --------------------------------------------------------------------

    def _client_credentials(self, req: Request, form: Dict[str, str]) -> Response:
        cid, csec, basic, err = self._client_auth(req, form)
        if err:
            return _oauth_error(400, "invalid_request", err)
        if not cid:
            return self._bad_client(basic, "Client authentication is required.")
        client = self.registry._client(cid)
        if client is None:
            return self._bad_client(basic, "The OAuth client was not found.")
        if not csec or not secrets.compare_digest(client.client_secret, csec):
            return self._bad_client(basic, "Unauthorized")
        if "client_credentials" not in client.grants:
            return _oauth_error(400, "unauthorized_client", "The client is not authorized for client_credentials.")
        requested = normalize_scopes(form.get("scope")) if form.get("scope") else []
        if client.scopes is not None and not set(requested) <= set(client.scopes):
            return _oauth_error(400, "invalid_scope", "Some requested scopes were invalid.")
        rec = self._mint_access("client_credentials", requested, client_id=cid)
        body: Dict[str, Any] = {"access_token": rec.token, "expires_in": self._expires_in(rec), "token_type": "Bearer"}
        if rec.scopes:
            body["scope"] = " ".join(rec.scopes)
        return _json_response(200, body, _NO_CACHE)

    # -- STS (RFC 8693 token exchange) ---------------------------------------------------------

    def _sts(self, req: Request) -> Response:
        form, refused = self._read_form(req)
        if form is None:
            return refused
        if form.get("grant_type") != TOKEN_EXCHANGE_GRANT:
            return _oauth_error(400, "unsupported_grant_type", f"Invalid grant_type: {form.get('grant_type')}")
        if form.get("requested_token_type") != ACCESS_TOKEN_TYPE:
            return _oauth_error(400, "invalid_request", "Invalid requested_token_type.")
        provider = self.workload_providers.get(form.get("audience") or "")
        if provider is None:
            return _oauth_error(
                400, "invalid_target",
                "The target service indicated by the \"audience\" parameters is invalid. This might either be "
                "because the pool or provider is disabled or deleted or because it doesn't exist.",
            )
        if form.get("subject_token_type") not in JWT_TOKEN_TYPES:
            return _oauth_error(400, "invalid_request", "Invalid subject_token_type (this emulator speaks OIDC).")
        scopes = (form.get("scope") or "").split()
        if not scopes:
            return _oauth_error(400, "invalid_scope", "Scope is required.")
        options: Dict[str, Any] = {}
        if "options" in form:
            try:
                options = json.loads(urllib.parse.unquote(form["options"]))
            except json.JSONDecodeError:
                return _oauth_error(400, "invalid_request", "Invalid options: not URL-encoded JSON.")
            if not isinstance(options, dict):
                return _oauth_error(400, "invalid_request", "Invalid options: not a JSON object.")
        client_authenticated = (req.headers.get("Authorization") or "").lower().startswith("basic ")
        if provider.workforce and not client_authenticated and not options.get("userProject"):
            return _oauth_error(400, "invalid_request", "A workforce pool needs options.userProject.")
        claims, why = self._verify_subject(form.get("subject_token") or "", provider)
        if claims is None:
            return _oauth_error(400, "invalid_grant", why)
        record = {k: v for k, v in form.items() if k != "subject_token"}
        record["options"] = options
        record["claims"] = claims
        record["client_authenticated"] = client_authenticated
        with self._sts_lock:
            self.sts_exchanges.append(record)
        rec = self._mint_access("sts", scopes, subject=provider.principal(str(claims.get("sub"))))
        return _json_response(
            200,
            {
                "access_token": rec.token,
                "issued_token_type": ACCESS_TOKEN_TYPE,
                "token_type": "Bearer",
                "expires_in": self._expires_in(rec),
            },
            _NO_CACHE,
        )

    @staticmethod
    def _verify_subject(token: str, provider: WorkloadProvider) -> Tuple[Optional[Dict[str, Any]], str]:
        """Google's checks on an OIDC subject token: RS256 by a known key, issuer, audience, time."""
        try:
            parsed = parse_jwt(token.strip())
        except ValueError:
            return None, "Unable to parse the ID Token."
        if parsed.header.get("alg") != "RS256":
            return None, "The ID Token must be signed with RS256."
        key = provider.keys.get(parsed.header.get("kid"))
        if key is None:
            return None, "The ID Token's kid is not in the provider's JWKS."
        if not verify_rs256(key, parsed.signing_input, parsed.signature):
            return None, "Invalid ID Token signature."
        c = parsed.claims
        if c.get("iss") != provider.issuer:
            return None, f"The issuer in ID Token {c.get('iss')} does not match the expected ones."
        aud = c.get("aud")
        auds = aud if isinstance(aud, list) else [aud]
        if not set(auds) & set(provider.allowed_audiences):
            return None, f"The audience in ID Token {auds} does not match the expected audience."
        now = time.time()
        exp = c.get("exp")
        if not isinstance(exp, (int, float)) or exp <= now:
            return None, "ID Token has expired."
        iat = c.get("iat")
        if not isinstance(iat, (int, float)) or iat > now + 300:
            return None, "ID Token issued in the future."
        if not c.get("sub"):
            return None, "ID Token has no sub."
        return c, ""

    # -- tokeninfo -----------------------------------------------------------------------------

    def _tokeninfo(self, req: Request) -> Response:
        params = dict(req.query)
        if req.method == "POST":
            params.update(urllib.parse.parse_qs(req.body.decode("utf-8", "replace")))
        access = (params.get("access_token") or [None])[0]
        id_token = (params.get("id_token") or [None])[0]
        if access:
            rec = self.registry.valid_access_token(access)
            if rec is None:
                return _oauth_error(400, "invalid_token", "Invalid Value")
            info = {
                "azp": rec.client_id or self.registry.unique_id_for(rec.email or ""),
                "aud": rec.client_id or self.registry.unique_id_for(rec.email or ""),
                "scope": " ".join(rec.scopes),
                "exp": str(int(rec.expiry)),
                "expires_in": str(max(0, int(rec.expiry - time.time()))),
                "access_type": "online",
            }
            if rec.email:
                info["email"] = rec.email
                info["email_verified"] = "true"
            return _json_response(200, info)
        if id_token:
            try:
                claims = self.signer.verify(id_token)
            except ValueError:
                return _oauth_error(400, "invalid_token", "Invalid Value")
            info = {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in claims.items()}
            info.update({"alg": "RS256", "kid": self.signer.kid, "typ": "JWT"})
            return _json_response(200, info)
        return _oauth_error(400, "invalid_request", "Either access_token or id_token is required.")


# ---------------------------------------------------------------------------------------------
# Metadata server
# ---------------------------------------------------------------------------------------------

_META_SA = "/computeMetadata/v1/instance/service-accounts/"
_META_SA_RE = re.compile(r"^/computeMetadata/v1/instance/service-accounts/([^/]+)/([a-z]*)/?$")


class MetadataServer(_EmulatorServer):
    """The GCE / Cloud Run / GKE metadata server (plain HTTP only)."""

    name = "metadata"
    server_header = "Metadata Server for VM"

    def __init__(
        self,
        registry: Optional[Registry] = None,
        signer: Optional[IdTokenSigner] = None,
        *,
        email: str = DEFAULT_METADATA_EMAIL,
        project_id: str = DEFAULT_PROJECT_ID,
        default_scopes: Sequence[str] = (CLOUD_PLATFORM_SCOPE,),
        **kw: Any,
    ) -> None:
        if kw.get("ssl_context") or kw.get("certfile"):
            raise ValueError("the metadata server is plain HTTP")
        super().__init__(registry, signer, **kw)
        self.email = email
        self.project_id = project_id
        self.numeric_project_id = _numeric_id_for(project_id)[:12]
        self.default_scopes = list(default_scopes)
        self.instance_id = _numeric_id_for(email + "/instance")[:19]

    @property
    def host_port(self) -> str:
        """The value for ``GCE_METADATA_HOST``."""
        return f"{self._host}:{self.port}"

    @property
    def url(self) -> str:
        return self.base_url + "/computeMetadata/v1/"

    def _precheck(self, req: Request) -> Optional[Response]:
        if req.headers.get("X-Forwarded-For") is not None:
            return _text_response(403, "Request had a X-Forwarded-For header and was rejected.\n", "text/html")
        if req.headers.get("Metadata-Flavor") != "Google":
            return _text_response(
                403,
                f"Your client does not have permission to get URL {req.path} from this server. "
                "Missing Metadata-Flavor:Google header.\n",
                "text/html; charset=UTF-8",
            )
        return None

    def _is_mint(self, req: Request) -> bool:
        m = _META_SA_RE.match(req.path)
        return bool(m and m.group(2) in ("token", "identity"))

    def _finalize(self, resp: Response, req: Request) -> Response:
        if resp.action is None and not resp.no_flavor:
            resp.headers.append(("Metadata-Flavor", "Google"))
        return resp

    def _failure(self, kind: str, req: Request) -> Response:
        identity = req.path.rstrip("/").endswith("/identity")
        if kind == "outage":
            return _text_response(503, "Service Unavailable\n")
        if _STATUS_KIND.match(kind):
            status = int(kind)
            return _text_response(status, f"Emulated HTTP {status}\n")
        if kind == "invalid_grant":  # non-retryable: what GCE says for a missing service account
            return _text_response(404, "Not Found\n", "text/html; charset=UTF-8")
        if kind == "garbage":
            if identity:
                return _text_response(200, "this is not a JWT", "application/text")
            return _text_response(200, "<html>Emulated garbage: not JSON</html>\n", "text/html")
        if kind == "missing_token":
            if identity:
                return _text_response(200, "", "application/text")
            return _json_response(200, {"expires_in": 3599, "token_type": "Bearer"})
        if kind == "error_200":
            if identity:
                return _text_response(200, '{"error":"server_error"}', "application/text")
            return _json_response(200, {"error": "server_error", "error_description": "Emulated error."})
        raise ValueError(kind)

    def _route(self, req: Request) -> Response:
        if req.method not in ("GET", "HEAD"):
            return _text_response(405, "Method Not Allowed\n")
        p = req.path
        if p == "/":
            return _text_response(200, "computeMetadata/\n", "application/text")
        if p in ("/computeMetadata/", "/computeMetadata"):
            return _text_response(200, "v1/\n", "application/text")
        if p == "/computeMetadata/v1/project/project-id":
            return _text_response(200, self.project_id, "application/text")
        if p == "/computeMetadata/v1/project/numeric-project-id":
            return _text_response(200, self.numeric_project_id, "application/text")
        if p in (_META_SA, _META_SA.rstrip("/")):
            return _text_response(200, f"default/\n{self.email}/\n", "application/text")
        m = _META_SA_RE.match(p)
        if not m:
            return _text_response(404, "Not Found\n", "text/html; charset=UTF-8")
        account, leaf = urllib.parse.unquote(m.group(1)), m.group(2)
        if account not in ("default", self.email):
            return _text_response(404, "Not Found\n", "text/html; charset=UTF-8")
        if leaf == "":
            return _text_response(200, "aliases\nemail\nidentity\nscopes\ntoken\n", "application/text")
        if leaf == "email":
            return _text_response(200, self.email, "application/text")
        if leaf == "aliases":
            return _text_response(200, "default\n", "application/text")
        if leaf == "scopes":
            return _text_response(200, "".join(s + "\n" for s in self.default_scopes), "application/text")
        if leaf == "token":
            raw = req.query.get("scopes")
            scopes: List[str] = []
            for value in raw or []:
                scopes.extend(s.strip() for s in value.split(",") if s.strip())
            rec = self._mint_access("metadata", scopes or self.default_scopes, email=self.email)
            return _json_response(
                200, {"access_token": rec.token, "expires_in": self._expires_in(rec), "token_type": "Bearer"}
            )
        if leaf == "identity":
            audience = req.q("audience", "")
            if not audience:
                return _text_response(400, "non-empty audience parameter required\n")
            fmt = req.q("format", "standard")
            if fmt not in ("standard", "full"):
                return _text_response(400, "invalid format parameter\n")
            full = fmt == "full"
            extra = None
            if full:
                now = int(time.time())
                extra = {
                    "google": {
                        "compute_engine": {
                            "instance_creation_timestamp": now - 86400,
                            "instance_id": self.instance_id,
                            "instance_name": "credproxy-emulator",
                            "project_id": self.project_id,
                            "project_number": int(self.numeric_project_id),
                            "zone": "us-central1-a",
                        }
                    }
                }
            rec = self._mint_id("metadata", audience, email=self.email, include_email=full, extra_claims=extra)
            return _text_response(200, rec.token, "application/text")
        return _text_response(404, "Not Found\n", "text/html; charset=UTF-8")


# ---------------------------------------------------------------------------------------------
# IAM Credentials
# ---------------------------------------------------------------------------------------------

_IAM_RE = re.compile(r"^/v1/projects/([^/]+)/serviceAccounts/([^/:]+):(generateAccessToken|generateIdToken)$")
_DELEGATE_RE = re.compile(r"^projects/-/serviceAccounts/[^/]+$")
_DURATION_RE = re.compile(r"^([0-9]+)(\.[0-9]{1,9})?s$")


def _google_error(status: int, message: str, headers: Sequence[Tuple[str, str]] = ()) -> Response:
    return _json_response(
        status,
        {"error": {"code": status, "message": message, "status": _GRPC_STATUS.get(status, "UNKNOWN")}},
        headers,
    )


class IAMServer(_EmulatorServer):
    """IAM Credentials API: ``:generateAccessToken`` and ``:generateIdToken``."""

    name = "iam"
    server_header = "ESF"

    def __init__(self, registry: Optional[Registry] = None, signer: Optional[IdTokenSigner] = None, **kw: Any) -> None:
        super().__init__(registry, signer, **kw)
        self.max_lifetime = 3600
        self.allowed_targets: Optional[set] = None  # None: the caller may impersonate anyone
        self.source_scopes = {CLOUD_PLATFORM_SCOPE, IAM_SCOPE}  # any one of these is required

    @property
    def url(self) -> str:
        """The IAM Credentials endpoint base (stands for https://iamcredentials.googleapis.com)."""
        return self.base_url

    def access_token_url(self, email: str) -> str:
        return f"{self.base_url}/v1/projects/-/serviceAccounts/{email}:generateAccessToken"

    def id_token_url(self, email: str) -> str:
        return f"{self.base_url}/v1/projects/-/serviceAccounts/{email}:generateIdToken"

    def _is_mint(self, req: Request) -> bool:
        return bool(_IAM_RE.match(req.path))

    def _failure(self, kind: str, req: Request) -> Response:
        if kind == "outage":
            return _google_error(503, "The service is currently unavailable.")
        if _STATUS_KIND.match(kind):
            return _google_error(int(kind), f"Emulated HTTP {kind}.")
        if kind == "invalid_grant":
            return _google_error(403, "Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist).")
        if kind == "garbage":
            return Response(200, b"<html>Emulated garbage: not JSON</html>\n", [("Content-Type", "text/html")])
        if kind == "missing_token":
            if req.path.endswith(":generateIdToken"):
                return _json_response(200, {})
            return _json_response(200, {"expireTime": _rfc3339(time.time() + 3600)})
        if kind == "error_200":
            return _json_response(200, {"error": {"code": 500, "message": "Emulated error.", "status": "INTERNAL"}})
        raise ValueError(kind)

    def _route(self, req: Request) -> Response:
        m = _IAM_RE.match(req.path)
        if not m:
            return _google_error(404, f"The requested URL {req.path} was not found on this server.")
        if req.method != "POST":
            return _google_error(405, "Method not allowed.")
        target = urllib.parse.unquote(m.group(2))
        method = m.group(3)

        auth = req.headers.get("Authorization")
        realm = [("WWW-Authenticate", 'Bearer realm="https://accounts.google.com/"')]
        if not auth:
            return _google_error(401, "Request is missing required authentication credential. " + _GOOGLE_AUTH_HELP, realm)
        scheme, _, tok = auth.partition(" ")
        tok = tok.strip()
        source = self.registry.valid_access_token(tok) if scheme.lower() == "bearer" and tok else None
        if source is None:
            return _google_error(401, "Request had invalid authentication credentials. " + _GOOGLE_AUTH_HELP, realm)
        if not (set(source.scopes) & self.source_scopes):
            return _google_error(
                403,
                "Request had insufficient authentication scopes.",
                [("WWW-Authenticate", f'Bearer realm="https://accounts.google.com/", error="insufficient_scope", scope="{CLOUD_PLATFORM_SCOPE}"')],
            )
        permission = "getAccessToken" if method == "generateAccessToken" else "getOpenIdToken"
        if self.allowed_targets is not None and target not in self.allowed_targets:
            return _google_error(
                403, f"Permission 'iam.serviceAccounts.{permission}' denied on resource (or it may not exist)."
            )

        try:
            body = json.loads(req.body.decode("utf-8")) if req.body else {}
        except (UnicodeDecodeError, json.JSONDecodeError):
            return _google_error(400, "Invalid JSON payload received.")
        if not isinstance(body, dict):
            return _google_error(400, "Invalid JSON payload received. Expected an object.")
        known = {"delegates", "scope", "lifetime"} if method == "generateAccessToken" else {
            "delegates",
            "audience",
            "includeEmail",
            "organizationNumberIncluded",
        }
        for k in body:
            if k not in known:
                return _google_error(400, f'Invalid JSON payload received. Unknown name "{k}": Cannot find field.')
        delegates = body.get("delegates") or []  # proto3 JSON: null is the empty list (google-auth sends it)
        if not isinstance(delegates, list) or not all(isinstance(d, str) and _DELEGATE_RE.match(d) for d in delegates):
            return _google_error(
                400, "Invalid form of delegates: each must be projects/-/serviceAccounts/{ACCOUNT_EMAIL_OR_UNIQUEID}."
            )
        source_identity = source.email or source.client_id or source.subject

        if method == "generateAccessToken":
            scope = body.get("scope")
            if not isinstance(scope, list) or not scope or not all(isinstance(s, str) and s for s in scope):
                return _google_error(400, "Scope is required and must be a non-empty list of strings.")
            lifetime_s = 3600
            if "lifetime" in body:
                lm = _DURATION_RE.match(body["lifetime"]) if isinstance(body["lifetime"], str) else None
                if not lm:
                    return _google_error(400, 'Invalid value at \'lifetime\' (type.googleapis.com/google.protobuf.Duration), Field \'lifetime\', Illegal duration format; duration must end with \'s\'')
                lifetime_s = int(lm.group(1))
                if lifetime_s < 1 or lifetime_s > self.max_lifetime:
                    return _google_error(
                        400, f"The lifetime must be between 1s and {self.max_lifetime}s (got {body['lifetime']})."
                    )
            rec = self._mint_access(
                "iam",
                scope,
                default_lifetime=lifetime_s,
                email=target,
                delegates=delegates,
                source_identity=source_identity,
            )
            return _json_response(200, {"accessToken": rec.token, "expireTime": _rfc3339(rec.expiry)})

        audience = body.get("audience")
        if not isinstance(audience, str) or not audience:
            return _google_error(400, "Audience is required.")
        include_email = body.get("includeEmail", False)
        if not isinstance(include_email, bool):
            return _google_error(400, "Invalid value at 'include_email' (TYPE_BOOL).")
        rec = self._mint_id(
            "iam",
            audience,
            email=target,
            include_email=include_email,
            delegates=delegates,
            source_identity=source_identity,
        )
        return _json_response(200, {"token": rec.token})


# ---------------------------------------------------------------------------------------------
# All three together
# ---------------------------------------------------------------------------------------------


class Emulators:
    """Token endpoint + metadata server + IAM Credentials, sharing one registry and signing key.

    >>> emu = Emulators(workdir).start()
    >>> sa = emu.new_service_account()          # key file whose token_uri is emu.token_url
    >>> ... run credproxy with GOOGLE_APPLICATION_CREDENTIALS=sa.path ...
    >>> emu.lookup(token_seen_upstream)         # IssuedToken or None
    >>> emu.stop()

    ``tls`` = ``(certfile, keyfile)`` or an ``ssl.SSLContext``: serve the token endpoint and IAM over
    HTTPS (the metadata server is always plain HTTP, as in production).
    """

    def __init__(
        self,
        workdir: Union[None, str, os.PathLike] = None,
        *,
        tls: Union[None, ssl.SSLContext, Tuple[str, str]] = None,
        metadata_email: str = DEFAULT_METADATA_EMAIL,
        project_id: str = DEFAULT_PROJECT_ID,
        verbose: bool = False,
    ) -> None:
        self._own_workdir = workdir is None
        self.workdir = os.fspath(workdir) if workdir is not None else tempfile.mkdtemp(prefix="credproxy-emu-")
        os.makedirs(self.workdir, exist_ok=True)
        self.project_id = project_id
        self.registry = Registry()
        self.signer = IdTokenSigner()
        ctx: Optional[ssl.SSLContext] = None
        if isinstance(tls, ssl.SSLContext):
            ctx = tls
        elif tls is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(tls[0], tls[1])
        common = dict(verbose=verbose)
        self.token = TokenServer(self.registry, self.signer, ssl_context=ctx, **common)
        self.metadata = MetadataServer(
            self.registry, self.signer, email=metadata_email, project_id=project_id, **common
        )
        self.iam = IAMServer(self.registry, self.signer, ssl_context=ctx, **common)
        self._started = False

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> "Emulators":
        if not self._started:
            self.token.start()
            self.metadata.start()
            self.iam.start()
            self._started = True
        return self

    def stop(self) -> None:
        for s in (self.token, self.metadata, self.iam):
            s.stop()
        self._started = False
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "Emulators":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def servers(self) -> Tuple[_EmulatorServer, ...]:
        return (self.token, self.metadata, self.iam)

    # -- addresses ---------------------------------------------------------------------------

    @property
    def token_url(self) -> str:
        return self.token.token_url

    @property
    def tokeninfo_url(self) -> str:
        return self.token.tokeninfo_url

    @property
    def sts_url(self) -> str:
        return self.token.sts_url

    @property
    def jwks_url(self) -> str:
        return self.token.jwks_url

    @property
    def metadata_host(self) -> str:
        """For ``GCE_METADATA_HOST``: ``127.0.0.1:PORT``."""
        return self.metadata.host_port

    @property
    def metadata_url(self) -> str:
        return self.metadata.url

    @property
    def metadata_email(self) -> str:
        return self.metadata.email

    @property
    def iam_url(self) -> str:
        """IAM Credentials endpoint base (where credproxy's ``iamcredentials`` endpoint points)."""
        return self.iam.url

    # -- ID tokens ---------------------------------------------------------------------------

    @property
    def id_token_public_key_pem(self) -> str:
        return self.signer.public_key_pem

    @property
    def id_token_kid(self) -> str:
        return self.signer.kid

    def verify_id_token(self, token: str, audience: Optional[str] = None, leeway: float = 0.0) -> Dict[str, Any]:
        """Verify signature/iss/exp (and aud when given) of an ID token from any of the emulators."""
        return self.signer.verify(token, audience=audience, leeway=leeway)

    # -- tokens ------------------------------------------------------------------------------

    def lookup(self, token: str) -> Optional[IssuedToken]:
        return self.registry.lookup(token)

    def lookup_bearer(self, authorization: Optional[str]) -> Optional[IssuedToken]:
        """Record for an ``Authorization`` header value ``Bearer <token>``, as an upstream sees it."""
        return self.registry.lookup_bearer(authorization)

    def valid_access_token(self, token: str) -> Optional[IssuedToken]:
        return self.registry.valid_access_token(token)

    def mint_count(self, kind=None, scopes=None, audience=None, source=None, email=None) -> int:
        return self.registry.mint_count(kind, scopes, audience, source, email)

    def counts(self) -> Dict[Tuple[str, str], int]:
        return self.registry.counts()

    def reset(self) -> None:
        """Reset every server's switches and counters and forget issued tokens."""
        for s in self.servers:
            s.reset()
        self.registry.clear_tokens()

    # -- identities --------------------------------------------------------------------------

    def new_service_account(
        self,
        email: Optional[str] = None,
        dir: Union[None, str, os.PathLike] = None,
        *,
        token_uri: Optional[str] = None,
        register: bool = True,
        filename: Optional[str] = None,
    ) -> ServiceAccountKey:
        """Write a service-account key file (token_uri = this token endpoint) and register it."""
        email = email or f"sa-{secrets.token_hex(4)}@{self.project_id}.iam.gserviceaccount.com"
        path, pub = make_service_account(
            email, token_uri or self.token_url, dir or self.workdir, project_id=self.project_id, filename=filename
        )
        with open(path, encoding="utf-8") as fh:
            info = json.load(fh)
        if register:
            self.registry.register_service_account(email, info["private_key_id"], pub, info["client_id"])
        return ServiceAccountKey(path, email, info["private_key_id"], pub, info["client_id"], info["project_id"])

    def new_authorized_user(
        self,
        dir: Union[None, str, os.PathLike] = None,
        *,
        scopes: Union[None, str, Iterable[str]] = None,
        email: Optional[str] = "user@example.com",
        token_uri: Optional[str] = None,
        filename: Optional[str] = None,
    ) -> AuthorizedUser:
        """Write an authorized_user file and register its client and refresh token."""
        cid = f"{secrets.randbelow(10**12):012d}-{secrets.token_hex(16)}.apps.googleusercontent.com"
        csec = "GOCSPX-" + secrets.token_urlsafe(21)
        rt = "1//" + secrets.token_urlsafe(72)
        self.registry.register_client(cid, csec, grants=("refresh_token",))
        self.registry.register_refresh_token(cid, rt, scopes=scopes, email=email)
        path = make_authorized_user(cid, csec, rt, token_uri or self.token_url, dir or self.workdir, filename=filename)
        return AuthorizedUser(path, cid, csec, rt)

    def new_client(
        self,
        client_id: Optional[str] = None,
        client_secret: Optional[str] = None,
        *,
        scopes: Union[None, str, Iterable[str]] = None,
    ) -> Tuple[str, str]:
        """Register a client_credentials client; returns (client_id, client_secret)."""
        cid = client_id or f"client-{secrets.token_hex(6)}"
        csec = client_secret or secrets.token_urlsafe(24)
        self.registry.register_client(cid, csec, grants=("client_credentials",), scopes=scopes)
        return cid, csec

    def new_impersonated(
        self,
        target_email: str,
        source: Union[str, os.PathLike, Mapping[str, Any], ServiceAccountKey, AuthorizedUser],
        *,
        delegates: Sequence[str] = (),
        dir: Union[None, str, os.PathLike] = None,
        filename: Optional[str] = None,
    ) -> str:
        """Write an impersonated_service_account file pointing at this IAM emulator."""
        if isinstance(source, (ServiceAccountKey, AuthorizedUser)):
            source = source.path
        return make_impersonated(
            target_email, source, self.iam_url, dir or self.workdir, delegates=delegates, filename=filename
        )

    def describe(self) -> Dict[str, Any]:
        """Addresses as a JSON-able dict."""
        return {
            "token_url": self.token_url,
            "tokeninfo_url": self.tokeninfo_url,
            "jwks_url": self.jwks_url,
            "metadata_host": self.metadata_host,
            "metadata_url": self.metadata_url,
            "metadata_email": self.metadata_email,
            "iam_url": self.iam_url,
            "control": {s.name: s.base_url + "/__emulator/" for s in self.servers},
            "id_token_kid": self.id_token_kid,
        }
