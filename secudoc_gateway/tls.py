"""
TLS contexts from the config's PEM files: one file holding the
certificate chain and the key.  TLS 1.2 is the floor on both sides.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from twisted.internet import ssl
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator

if TYPE_CHECKING:
    # Twisted names the trust root's interface only in its private module.
    from twisted.internet._sslverify import IOpenSSLTrustRoot


def _certificates(pem: bytes) -> list[ssl.Certificate]:
    """The certificates of a PEM bundle, in order."""
    certs = []
    marker = b"-----BEGIN CERTIFICATE-----"
    end = b"-----END CERTIFICATE-----"
    at = pem.find(marker)
    while at >= 0:
        stop = pem.index(end, at) + len(end)
        certs.append(ssl.Certificate.loadPEM(pem[at:stop]))
        at = pem.find(marker, stop)
    return certs


def loadPrivateCertificate(path: str) -> tuple[ssl.PrivateCertificate, list[ssl.Certificate]]:
    """The leaf with its key, and the rest of the chain."""
    with open(path, "rb") as f:
        pem = f.read()
    certs = _certificates(pem)
    if not certs:
        raise ValueError(f"{path}: no certificate in PEM file")
    private = ssl.PrivateCertificate.loadPEM(pem)
    return private, certs[1:]


def loadTrustRoots(path: str) -> IOpenSSLTrustRoot:
    """A CA bundle as a trust root for verifying the other side."""
    with open(path, "rb") as f:
        certs = _certificates(f.read())
    if not certs:
        raise ValueError(f"{path}: no certificate in PEM file")
    return ssl.trustRootFromCertificates(certs)


def serverOptions(path: str, clientCA: Optional[str] = None) -> ssl.CertificateOptions:
    """
    Options for the SMTP listener's STARTTLS.  With ``clientCA`` the
    peer must present a certificate issued by it (used by tests that
    stand in for Exchange Online's inbound connector).
    """
    private, chain = loadPrivateCertificate(path)
    caCerts = None
    if clientCA is not None:
        with open(clientCA, "rb") as f:
            caCerts = [c.original for c in _certificates(f.read())]
    return ssl.CertificateOptions(
        privateKey=private.privateKey.original,
        certificate=private.original,
        extraCertChain=[c.original for c in chain],
        raiseMinimumTo=ssl.TLSVersion.TLSv1_2,
        verify=caCerts is not None,
        caCerts=caCerts,
    )


def clientOptions(
    hostname: str,
    caFile: str = "",
    clientCertificate: str = "",
) -> IOpenSSLClientConnectionCreator:
    """
    Options for the relay's STARTTLS: the server certificate verified
    against ``caFile`` (else the system trust) for ``hostname`` with
    service-identity, ``clientCertificate`` presented when given.
    """
    trustRoot = loadTrustRoots(caFile) if caFile else ssl.platformTrust()
    extra: dict = {"raiseMinimumTo": ssl.TLSVersion.TLSv1_2}
    private = None
    if clientCertificate:
        private, chain = loadPrivateCertificate(clientCertificate)
        if chain:
            extra["extraCertChain"] = [c.original for c in chain]
    return ssl.optionsForClientTLS(
        hostname,
        trustRoot=trustRoot,
        clientCertificate=private,
        extraCertificateOptions=extra,
    )


def expiry(path: str) -> float:
    """When the first certificate of the PEM file at ``path`` expires (Unix seconds)."""
    from cryptography import x509

    with open(path, "rb") as f:
        leaf = x509.load_pem_x509_certificates(f.read())[0]
    return leaf.not_valid_after_utc.timestamp()
