"""
An Entra-like SAML identity provider for the tests (SPEC 9): pysaml2's
``Server`` with RSA keys made here, federation metadata shaped like
Entra's (entityID ``https://sts.windows.net/<tenant-id>/``, the
signing certificates, one sign-on URL for both bindings), and responses
shaped like Entra's (a signed assertion, RSA-SHA256, its claims by URI).

``respond`` makes the honest response to a request and every forgery a
test needs (another audience, issuer, destination, recipient, an
expired one, SHA-1, unsigned, signed by a key the metadata does not
list, no InResponseTo).  ``IdPSite`` serves the metadata over https
(a devcert CA's certificate) and a sign-on page over http: it takes
the AuthnRequest by HTTP-Redirect and shows the response in a form that
posts to the ACS, with a button a test (or Chromium) presses.
"""

from __future__ import annotations

import base64
import datetime
import html
import os
import uuid
from typing import Optional, Sequence
from xml.sax.saxutils import escape, quoteattr

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from twisted.web.resource import Resource
from twisted.web.server import Request

from secudoc_gateway.portal.saml.checks import EMAIL, GROUPS, NAME, OBJECT_ID, TENANT_ID

SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
MD = "urn:oasis:names:tc:SAML:2.0:metadata"
REDIRECT = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"
POST = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
RSA_SHA1 = "http://www.w3.org/2000/09/xmldsig#rsa-sha1"
SHA1 = "http://www.w3.org/2000/09/xmldsig#sha1"


@attrs.frozen
class SigningKey:
    """An RSA key and its self-signed certificate, as files xmlsec1 reads."""

    keyFile: str
    certFile: str
    certificate: str  # base64 DER, as metadata carries it


def signingKey(folder: str, name: str) -> SigningKey:
    """A 2048-bit RSA key with a certificate like Entra's ("Microsoft Azure Federated SSO Certificate")."""
    os.makedirs(folder, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Microsoft Azure Federated SSO Certificate")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=365 * 3)).sign(key, hashes.SHA256()))
    keyFile, certFile = os.path.join(folder, f"{name}.key"), os.path.join(folder, f"{name}.crt")
    with open(keyFile, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                  serialization.NoEncryption()))
    pem = cert.public_bytes(serialization.Encoding.PEM)
    with open(certFile, "wb") as f:
        f.write(pem)
    der = cert.public_bytes(serialization.Encoding.DER)
    return SigningKey(keyFile, certFile, base64.b64encode(der).decode("ascii"))


@attrs.frozen
class Person:
    """Who signs in at the IdP, and the claims Entra sends for them."""

    address: str
    name: str = "Alice de Vries"
    objectId: str = attrs.field(factory=lambda: str(uuid.uuid4()))
    groups: tuple[str, ...] = ()
    overage: bool = False
    email: bool = True  # the emailaddress claim (else only the NameID says it)


def _moment(at: float) -> str:
    """Entra's times: UTC with milliseconds and a Z."""
    return datetime.datetime.fromtimestamp(at, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _attribute(name: str, values: Sequence[str]) -> str:
    return (f"<Attribute Name={quoteattr(name)}>"
            + "".join(f"<AttributeValue>{escape(v)}</AttributeValue>" for v in values) + "</Attribute>")


class EntraIdP:
    """
    One Entra tenant's enterprise application.  ``keys`` are the signing
    keys its metadata lists (the first signs); ``folder`` holds the key
    files and pysaml2's scratch files.
    """

    def __init__(self, folder: str, keys: Sequence[SigningKey], tenantId: str = "",
                 signOnURL: str = "https://login.microsoftonline.com/saml2") -> None:
        from saml2.config import IdPConfig
        from saml2.server import Server
        from saml2.sigver import get_xmlsec_binary

        self.folder = folder
        self.keys = list(keys)
        self.tenantId = tenantId or str(uuid.uuid4())
        self.entityId = f"https://sts.windows.net/{self.tenantId}/"
        self.signOnURL = signOnURL
        config = IdPConfig()
        config.load({
            "entityid": self.entityId, "xmlsec_binary": get_xmlsec_binary(),
            "key_file": self.keys[0].keyFile, "cert_file": self.keys[0].certFile,
            "service": {"idp": {"endpoints": {"single_sign_on_service": [(signOnURL, REDIRECT)]}}},
        })
        self.server = Server(config=config)

    def metadata(self, keys: Optional[Sequence[SigningKey]] = None) -> bytes:
        """Federation metadata as Entra's "App Federation Metadata Url" answers it (unsigned here)."""
        descriptors = "".join(
            '<KeyDescriptor use="signing"><KeyInfo xmlns="http://www.w3.org/2000/09/xmldsig#"><X509Data>'
            f"<X509Certificate>{k.certificate}</X509Certificate></X509Data></KeyInfo></KeyDescriptor>"
            for k in (keys if keys is not None else self.keys))
        return (
            f'<?xml version="1.0" encoding="utf-8"?><EntityDescriptor ID="_{uuid.uuid4()}"'
            f' entityID={quoteattr(self.entityId)} xmlns="{MD}">'
            f'<IDPSSODescriptor protocolSupportEnumeration="{SAMLP}">{descriptors}'
            f'<SingleLogoutService Binding="{REDIRECT}" Location={quoteattr(self.signOnURL)}/>'
            f'<SingleSignOnService Binding="{REDIRECT}" Location={quoteattr(self.signOnURL)}/>'
            f'<SingleSignOnService Binding="{POST}" Location={quoteattr(self.signOnURL)}/>'
            "</IDPSSODescriptor></EntityDescriptor>"
        ).encode("utf-8")

    def request(self, samlRequest: str) -> tuple[str, str, str]:
        """An HTTP-Redirect AuthnRequest's id, ACS URL and issuer (pysaml2's Server reads it)."""
        parsed = self.server.parse_authn_request(samlRequest, REDIRECT)
        message = parsed.message
        return message.id, message.assertion_consumer_service_url or "", message.issuer.text

    def respond(self, person: Person, inResponseTo: Optional[str], acsURL: str, audience: str, *,
                issuer: Optional[str] = None, destination: Optional[str] = None, recipient: Optional[str] = None,
                at: Optional[float] = None, sha1: bool = False, signed: bool = True,
                key: Optional[SigningKey] = None, assertionId: Optional[str] = None,
                confirmationInResponseTo: Optional[str] = None) -> str:
        """A base64 ``SAMLResponse`` for the ACS form: Entra's, or the forgery the keywords ask for."""
        from saml2.sigver import pre_signature_part

        now = at if at is not None else datetime.datetime.now(datetime.timezone.utc).timestamp()
        issuer = issuer or self.entityId
        assertionId = assertionId or f"_{uuid.uuid4()}"
        answers = f" InResponseTo={quoteattr(inResponseTo)}" if inResponseTo else ""
        confirms = confirmationInResponseTo if confirmationInResponseTo is not None else inResponseTo
        confirmsAttr = f" InResponseTo={quoteattr(confirms)}" if confirms else ""
        claims = [_attribute(TENANT_ID, [self.tenantId]), _attribute(OBJECT_ID, [person.objectId])]
        if person.email:
            claims.append(_attribute(EMAIL, [person.address]))
        claims.append(_attribute(NAME, [person.address]))
        claims.append(_attribute("http://schemas.microsoft.com/identity/claims/displayname", [person.name]))
        if person.overage:
            claims.append(_attribute("http://schemas.microsoft.com/claims/groups.link",
                                     [f"https://graph.windows.net/{self.tenantId}/users/{person.objectId}"
                                      "/getMemberObjects"]))
        elif person.groups:
            claims.append(_attribute(GROUPS, person.groups))
        signature = ""
        if signed:
            algorithm = {"sign_alg": RSA_SHA1, "digest_alg": SHA1} if sha1 else {"sign_alg": RSA_SHA256,
                                                                               "digest_alg": SHA256}
            signature = str(pre_signature_part(assertionId, **algorithm))
        nameIdFormat = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
        assertion = (
            f'<Assertion ID="{assertionId}" IssueInstant="{_moment(now)}" Version="2.0" xmlns="{SAML}">'
            f"<Issuer>{escape(issuer)}</Issuer>{signature}"
            f'<Subject><NameID Format="{nameIdFormat}">{escape(person.address)}</NameID>'
            '<SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer">'
            f'<SubjectConfirmationData{confirmsAttr} NotOnOrAfter="{_moment(now + 300)}"'
            f" Recipient={quoteattr(recipient or acsURL)}/></SubjectConfirmation></Subject>"
            f'<Conditions NotBefore="{_moment(now - 300)}" NotOnOrAfter="{_moment(now + 3600)}">'
            f"<AudienceRestriction><Audience>{escape(audience)}</Audience></AudienceRestriction></Conditions>"
            f'<AttributeStatement>{"".join(claims)}</AttributeStatement>'
            f'<AuthnStatement AuthnInstant="{_moment(now - 5)}" SessionIndex="{assertionId}"><AuthnContext>'
            "<AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:Password</AuthnContextClassRef>"
            "</AuthnContext></AuthnStatement></Assertion>"
        )
        response = (
            f'<samlp:Response ID="_{uuid.uuid4()}" Version="2.0" IssueInstant="{_moment(now)}"'
            f" Destination={quoteattr(destination or acsURL)}{answers} xmlns:samlp=\"{SAMLP}\">"
            f'<Issuer xmlns="{SAML}">{escape(issuer)}</Issuer>'
            f'<samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status>'
            f"{assertion}</samlp:Response>"
        )
        if signed:
            signer = key or self.keys[0]
            response = self.server.sec.sign_statement(response, "urn:oasis:names:tc:SAML:2.0:assertion:Assertion",
                                                      key_file=signer.keyFile, node_id=assertionId)
        return base64.b64encode(response.encode("utf-8") if isinstance(response, str) else response).decode("ascii")


def postForm(acsURL: str, samlResponse: str) -> bytes:
    """The page Entra answers with: a form that posts the response to the ACS (here with a button to press)."""
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Working...</title></head><body><main>'
        f'<form method="post" action="{html.escape(acsURL)}">'
        f'<input type="hidden" name="SAMLResponse" value="{html.escape(samlResponse)}">'
        '<button type="submit" id="continue">Continue</button></form></main></body></html>'
    ).encode("utf-8")


class IdPSite(Resource):
    """
    ``/federationmetadata.xml`` (``metadata``, a test may make it garbage)
    and ``/saml2`` (the sign-on page for ``person``).
    """

    isLeaf = True

    def __init__(self, idp: EntraIdP, audience: str) -> None:
        super().__init__()
        self.idp = idp
        self.audience = audience
        self.metadata = idp.metadata()
        self.person: Optional[Person] = None
        self.fetches = 0

    def render_GET(self, request: Request) -> bytes:
        path = request.path.decode("ascii", "replace")
        if path.endswith("/federationmetadata.xml"):
            self.fetches += 1
            request.setHeader(b"Content-Type", b"application/xml")
            return self.metadata
        if path.endswith("/saml2") and self.person is not None:
            args: dict[bytes, list[bytes]] = request.args or {}
            samlRequest = (args.get(b"SAMLRequest") or [b""])[0].decode("ascii")
            requestId, acsURL, _ = self.idp.request(samlRequest)
            request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
            return postForm(acsURL, self.idp.respond(self.person, requestId, acsURL, self.audience))
        request.setResponseCode(404)
        return b"not found"

