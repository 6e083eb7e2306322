"""A throwaway PKI for the tests: CAs and server certificates, written as PEM files.

ECDSA P-256 keys: handshakes are cheap, which matters when hundreds of upstream connections are
opened at once by the concurrency test.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Names every server certificate covers. `upstream.itest.invalid` is used through `connect-to`
# (the `.invalid` TLD never resolves, so a proxy that ignored `connect-to` could not leave the box);
# `*.wild.itest.invalid` serves the wildcard-route tests.
SERVER_DNS_NAMES = ("localhost", "upstream.itest.invalid", "*.wild.itest.invalid")
SERVER_IPS = ("127.0.0.1",)


@dataclass
class CertAuthority:
    name: str
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    cert_path: Path


@dataclass
class ServerCert:
    cert_path: Path
    key_path: Path
    ca: CertAuthority

    def server_context(self, alpn: tuple[str, ...] = ("http/1.1",)) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(self.cert_path), str(self.key_path))
        if alpn:
            ctx.set_alpn_protocols(list(alpn))
        return ctx


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def make_ca(directory: Path, name: str) -> CertAuthority:
    """A self-signed CA; its certificate goes to ``directory/<name>.pem``."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"credproxy itest {name}")])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - datetime.timedelta(days=1))
        .not_valid_after(_now() + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    path = directory / f"{name}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return CertAuthority(name=name, key=key, cert=cert, cert_path=path)


def issue_server_cert(
    ca: CertAuthority,
    directory: Path,
    stem: str,
    dns_names: tuple[str, ...] = SERVER_DNS_NAMES,
    ips: tuple[str, ...] = SERVER_IPS,
) -> ServerCert:
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_names[0])]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - datetime.timedelta(days=1))
        .not_valid_after(_now() + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
        .sign(ca.key, hashes.SHA256())
    )
    cert_path = directory / f"{stem}.crt.pem"
    key_path = directory / f"{stem}.key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, key_path)
    return ServerCert(cert_path=cert_path, key_path=key_path, ca=ca)


@dataclass
class PKI:
    """The trusted CA (given to the proxy as ``ca-file``) and a rogue CA nobody trusts."""

    directory: Path
    ca: CertAuthority
    server: ServerCert
    rogue_ca: CertAuthority
    rogue_server: ServerCert

    @property
    def ca_file(self) -> Path:
        return self.ca.cert_path

    def client_context(self) -> ssl.SSLContext:
        """A client context trusting only the test CA (for talking to the upstream directly)."""
        ctx = ssl.create_default_context(cafile=str(self.ca.cert_path))
        ctx.set_alpn_protocols(["http/1.1"])
        return ctx


def make_pki(directory: Path) -> PKI:
    directory.mkdir(parents=True, exist_ok=True)
    ca = make_ca(directory, "ca")
    server = issue_server_cert(ca, directory, "upstream")
    rogue = make_ca(directory, "rogue-ca")
    rogue_server = issue_server_cert(rogue, directory, "rogue-upstream")
    return PKI(directory=directory, ca=ca, server=server, rogue_ca=rogue, rogue_server=rogue_server)
