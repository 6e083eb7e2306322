"""An OIDC issuer for credproxy's tests: what GitHub Actions, GitLab or a Kubernetes cluster is to
a runner. Serves ``/.well-known/openid-configuration`` and the JWKS it names over plain HTTP on
127.0.0.1 (credproxy allows http to loopback), signs tokens with Python ``cryptography`` (RS256
and ES256), and can rotate its keys. Counts every discovery and JWKS fetch.

    issuer = OIDCIssuer().start()
    token = issuer.token(aud="credproxy", repository="myorg/deploy")
    issuer.rotate()            # a new key replaces the old ones in the JWKS
"""

from __future__ import annotations

import base64
import http.server
import json
import secrets
import threading
import time
from typing import Any, Dict, List, Optional

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from .jsonhttp import JSONHandler, serve, stop


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _int_bytes(n: int, length: Optional[int] = None) -> bytes:
    length = length or (n.bit_length() + 7) // 8
    return n.to_bytes(length, "big")


class SigningKey:
    """An RS256 (RSA 2048) or ES256 (P-256) key with its kid."""

    def __init__(self, alg: str = "RS256", kid: Optional[str] = None) -> None:
        self.alg = alg
        self.kid = kid or "k-" + secrets.token_hex(4)
        if alg == "RS256":
            self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        elif alg == "ES256":
            self.key = ec.generate_private_key(ec.SECP256R1())
        else:
            raise ValueError(alg)

    def jwk(self) -> Dict[str, Any]:
        pub = self.key.public_key()
        if self.alg == "RS256":
            nums = pub.public_numbers()
            return {"kty": "RSA", "kid": self.kid, "use": "sig", "alg": "RS256",
                    "n": b64url(_int_bytes(nums.n)), "e": b64url(_int_bytes(nums.e))}
        nums = pub.public_numbers()
        return {"kty": "EC", "kid": self.kid, "use": "sig", "alg": "ES256", "crv": "P-256",
                "x": b64url(_int_bytes(nums.x, 32)), "y": b64url(_int_bytes(nums.y, 32))}

    def sign(self, data: bytes) -> bytes:
        if self.alg == "RS256":
            return self.key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        r, s = decode_dss_signature(self.key.sign(data, ec.ECDSA(hashes.SHA256())))
        return _int_bytes(r, 32) + _int_bytes(s, 32)


def encode(header: Dict[str, Any], claims: Dict[str, Any], sign) -> str:
    """A compact JWS; ``sign`` maps the signing input to signature bytes (or None: empty)."""
    h = b64url(json.dumps(header, separators=(",", ":")).encode())
    c = b64url(json.dumps(claims, separators=(",", ":")).encode())
    signature = sign(f"{h}.{c}".encode()) if sign else b""
    return f"{h}.{c}.{b64url(signature)}"


class OIDCIssuer:
    def __init__(self, alg: str = "RS256") -> None:
        self.keys: List[SigningKey] = [SigningKey(alg)]
        self.lock = threading.Lock()
        self.discovery_fetches = 0
        self.jwks_fetches = 0
        self.fail_status: Optional[int] = None  # answer every request with this status
        self.delay = 0.0  # seconds before each JWKS answer
        self.discovery_overrides: Dict[str, Any] = {}  # members replaced in the discovery document
        self._server: Optional[http.server.ThreadingHTTPServer] = None

    # -- keys and tokens --------------------------------------------------------------------
    @property
    def key(self) -> SigningKey:
        return self.keys[-1]

    def rotate(self, alg: Optional[str] = None) -> SigningKey:
        """A new key replaces every published key."""
        with self.lock:
            self.keys = [SigningKey(alg or self.key.alg)]
            return self.keys[-1]

    def token(self, key: Optional[SigningKey] = None, header: Optional[Dict[str, Any]] = None,
              lifetime: int = 300, **claims: Any) -> str:
        """A token signed by the current key (or ``key``); ``iss``, ``iat``, ``exp`` filled in."""
        key = key or self.key
        now = int(time.time())
        body = {"iss": self.url, "iat": now, "nbf": now, "exp": now + lifetime, "sub": "repo:x"}
        body.update(claims)
        hdr = {"alg": key.alg, "typ": "JWT", "kid": key.kid}
        hdr.update(header or {})
        return encode(hdr, body, key.sign)

    # -- the HTTP side ------------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> "OIDCIssuer":
        issuer = self

        class Handler(JSONHandler):
            def do_GET(self) -> None:
                if issuer.fail_status:
                    return self.send_json(issuer.fail_status, {"error": "unavailable"})
                if self.path == "/.well-known/openid-configuration":
                    with issuer.lock:
                        issuer.discovery_fetches += 1
                    return self.send_json(200, {
                        "issuer": issuer.url, "jwks_uri": issuer.url + "/jwks",
                        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
                        "response_types_supported": ["id_token"],
                        "subject_types_supported": ["public"],
                        **issuer.discovery_overrides})
                if self.path == "/jwks":
                    if issuer.delay:
                        time.sleep(issuer.delay)
                    with issuer.lock:
                        issuer.jwks_fetches += 1
                        keys = [k.jwk() for k in issuer.keys]
                    return self.send_json(200, {"keys": keys})
                self.send_json(404, {"error": "not_found"})


        self._server = serve(Handler)
        return self

    def stop(self) -> None:
        stop(self._server)
