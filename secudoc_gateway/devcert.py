"""
Certificates for development and tests: a self-signed gateway
certificate for ``make run``, and a small CA issuing server and client
certificates so tests can use real, verified TLS on both sides.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import sys
from typing import Optional, Sequence

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@attrs.frozen
class Issued:
    """A certificate with its key, and the chain above it."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    chain: tuple[x509.Certificate, ...] = ()

    def certificatePEM(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def keyPEM(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def pem(self) -> bytes:
        """Certificate, chain and key in one PEM: the config's format."""
        return (
            self.certificatePEM()
            + b"".join(c.public_bytes(serialization.Encoding.PEM) for c in self.chain)
            + self.keyPEM()
        )

    def writeTo(self, path: str) -> str:
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        tmp = path + ".tmp"
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
            f.write(self.pem())
        os.replace(tmp, path)
        return path


def _name(commonName: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, commonName)])


def _builder(subject: str, issuer: x509.Name, key, days: int) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=days))
    )


def makeCA(commonName: str = "secudoc test CA", days: int = 3650) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        _builder(commonName, _name(commonName), key, days)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return Issued(cert, key)


def _altNames(names: Sequence[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for n in names:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            out.append(x509.DNSName(n))
    return out


def issue(
    ca: Optional[Issued],
    commonName: str,
    names: Sequence[str] = (),
    client: bool = False,
    days: int = 825,
) -> Issued:
    """
    A leaf certificate for ``commonName`` (and ``names`` as subject
    alternative names), signed by ``ca`` or self-signed when ``ca`` is
    ``None``.  ``client`` adds the TLS client-auth usage.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    issuerName = ca.certificate.subject if ca else _name(commonName)
    usages = [ExtendedKeyUsageOID.SERVER_AUTH]
    if client:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    builder = (
        _builder(commonName, issuerName, key, days)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(_altNames(list(names) or [commonName])), critical=False)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    )
    cert = builder.sign(ca.key if ca else key, hashes.SHA256())
    return Issued(cert, key, (ca.certificate,) if ca else ())


def ensureDevCertificate(path: str, hostname: str = "mailproxy.localhost") -> bool:
    """Write a self-signed certificate to ``path`` unless one is there."""
    if os.path.exists(path):
        return False
    issue(None, hostname, [hostname, "localhost", "127.0.0.1"]).writeTo(path)
    return True


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else "var/tls/gateway.pem"
    if ensureDevCertificate(target):
        print(f"made a self-signed development certificate: {target}")
