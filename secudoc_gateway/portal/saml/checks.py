"""
The checks SPEC 9 names on a SAML response, done by us on the response
as posted (pure; pysaml2 verifies the signature beside them, see
``signatures``), and the person its claims name.

The order matters only for what a refusal says: each check that fails
names itself (``Refused.reason``), shown on the refusal page and logged,
so an admin setting SSO up sees which one, and each has a test that
fails without it.  Accepting needs every check here and pysaml2's.

One document holds exactly one ``Assertion`` and no encrypted one, and
its signature's single reference points at it: whatever pysaml2
verified is the element read here (no signature wrapping).  Claims are
read by their URIs, never through pysaml2's attribute map, which
renames Entra's.
"""

from __future__ import annotations

import base64
import binascii
import datetime
from typing import Any, Optional

import attrs
from defusedxml import ElementTree

SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
DS = "http://www.w3.org/2000/09/xmldsig#"
SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"
BEARER = "urn:oasis:names:tc:SAML:2.0:cm:bearer"
EMAIL_FORMAT = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
SKEW = 120.0
MAX_RESPONSE = 256 * 1024

# SHA-256 and stronger only (SPEC 9): pysaml2 would take SHA-1.
SIGNATURE_METHODS = frozenset({
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384",
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512",
})
DIGEST_METHODS = frozenset({
    "http://www.w3.org/2001/04/xmlenc#sha256",
    "http://www.w3.org/2001/04/xmldsig-more#sha384",
    "http://www.w3.org/2001/04/xmlenc#sha512",
})

# Entra's claims, by URI.
OBJECT_ID = "http://schemas.microsoft.com/identity/claims/objectidentifier"
TENANT_ID = "http://schemas.microsoft.com/identity/claims/tenantid"
EMAIL = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress"
NAME = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name"
GROUPS = "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups"
# More than 150 groups: Entra sends one of these instead of the list.
OVERAGE = frozenset({"http://schemas.microsoft.com/claims/groupsoverage",
                     "http://schemas.microsoft.com/claims/groups.link", "_claim_names"})

# Why a response was refused (the refusal page names it).
NOT_A_RESPONSE = "response"
UNSOLICITED = "idp-initiated"
STATUS = "status"
DESTINATION = "destination"
ONE_ASSERTION = "assertion"
UNSIGNED = "unsigned"
ALGORITHM = "algorithm"
ISSUER = "issuer"
AUDIENCE = "audience"
RECIPIENT = "recipient"
IN_RESPONSE_TO = "in-response-to"
TIME = "time"
NAME_ID = "name-id"
SIGNATURE = "signature"
REQUEST = "request"
REPLAY = "replay"
COOKIE = "cookie"


class Refused(Exception):
    """A response we do not accept; ``reason`` is one of the names above."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@attrs.frozen
class Expected:
    """What a response must say to be ours: our entity id and ACS, the IdP's entity id, the request it answers."""

    entityId: str
    acsURL: str
    issuer: str
    requestId: str


@attrs.frozen
class Person:
    """Who the assertion names, read from its claims."""

    assertionId: str
    notOnOrAfter: float
    nameId: str
    objectId: str
    tenantId: str
    address: str
    name: str
    groups: frozenset[str]
    overage: bool


def decode(posted: str) -> bytes:
    """The XML of a ``SAMLResponse`` form field (base64, HTTP-POST binding)."""
    if len(posted) > MAX_RESPONSE * 4 // 3 + 4:
        raise Refused(NOT_A_RESPONSE, "too large")
    try:
        return base64.b64decode("".join(posted.split()), validate=True)
    except (binascii.Error, ValueError):
        raise Refused(NOT_A_RESPONSE, "not base64") from None


def parse(xml: bytes) -> Any:
    try:
        root = ElementTree.fromstring(xml, forbid_dtd=True)
    except Exception as e:
        raise Refused(NOT_A_RESPONSE, f"not XML: {e}") from None
    if root.tag != f"{{{SAMLP}}}Response":
        raise Refused(NOT_A_RESPONSE, "not a samlp:Response")
    return root


def inResponseTo(root: Any) -> str:
    """The request a response answers; none means IdP-initiated, which we refuse."""
    value = root.get("InResponseTo") or ""
    if not value:
        raise Refused(UNSOLICITED, "the response answers no request of ours")
    return value


def instant(text: Optional[str]) -> Optional[float]:
    if not text:
        return None
    try:
        moment = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise Refused(TIME, f"not a time: {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp()


def _text(element: Any) -> str:
    return (element.text or "").strip() if element is not None else ""


def _signature(assertion: Any, assertionId: str) -> None:
    signatures = assertion.findall(f"{{{DS}}}Signature")
    if len(signatures) != 1:
        raise Refused(UNSIGNED, "the assertion carries no signature")
    info = signatures[0].find(f"{{{DS}}}SignedInfo")
    method = info.find(f"{{{DS}}}SignatureMethod") if info is not None else None
    references = info.findall(f"{{{DS}}}Reference") if info is not None else []
    if method is None or method.get("Algorithm") not in SIGNATURE_METHODS:
        raise Refused(ALGORITHM, f"signature method {method.get('Algorithm') if method is not None else None}")
    if len(references) != 1 or references[0].get("URI") != f"#{assertionId}":
        raise Refused(UNSIGNED, "the signature does not sign the assertion")
    digest = references[0].find(f"{{{DS}}}DigestMethod")
    if digest is None or digest.get("Algorithm") not in DIGEST_METHODS:
        raise Refused(ALGORITHM, f"digest method {digest.get('Algorithm') if digest is not None else None}")


def _claims(assertion: Any) -> dict[str, list[str]]:
    claims: dict[str, list[str]] = {}
    for statement in assertion.findall(f"{{{SAML}}}AttributeStatement"):
        for attribute in statement.findall(f"{{{SAML}}}Attribute"):
            values = claims.setdefault(attribute.get("Name") or "", [])
            values.extend(_text(v) for v in attribute.findall(f"{{{SAML}}}AttributeValue"))
    return claims


def check(root: Any, expected: Expected, now: float) -> Person:
    """Every check of SPEC 9 but the signature's own verification (pysaml2's); the person named."""
    if root.get("Destination") != expected.acsURL:
        raise Refused(DESTINATION, f"Destination {root.get('Destination')!r}")
    if root.get("InResponseTo") != expected.requestId:
        raise Refused(IN_RESPONSE_TO, "the response answers another request")
    status = root.find(f"{{{SAMLP}}}Status/{{{SAMLP}}}StatusCode")
    if status is None or status.get("Value") != SUCCESS:
        raise Refused(STATUS, f"status {status.get('Value') if status is not None else None}")
    issuer = root.find(f"{{{SAML}}}Issuer")
    if issuer is not None and _text(issuer) != expected.issuer:
        raise Refused(ISSUER, f"response Issuer {_text(issuer)!r}")
    assertions = list(root.iter(f"{{{SAML}}}Assertion"))
    if len(assertions) != 1 or list(root.iter(f"{{{SAML}}}EncryptedAssertion")):
        raise Refused(ONE_ASSERTION, f"{len(assertions)} assertions")
    assertion = assertions[0]
    if assertion not in list(root):
        raise Refused(ONE_ASSERTION, "the assertion is not the response's own")
    assertionId = assertion.get("ID") or ""
    if not assertionId:
        raise Refused(ONE_ASSERTION, "the assertion has no ID")
    _signature(assertion, assertionId)
    if _text(assertion.find(f"{{{SAML}}}Issuer")) != expected.issuer:
        raise Refused(ISSUER, f"Issuer {_text(assertion.find(f'{{{SAML}}}Issuer'))!r}")
    conditions = assertion.find(f"{{{SAML}}}Conditions")
    if conditions is None:
        raise Refused(AUDIENCE, "no Conditions")
    restrictions = conditions.findall(f"{{{SAML}}}AudienceRestriction")
    if not restrictions or any(expected.entityId not in [_text(a) for a in r.findall(f"{{{SAML}}}Audience")]
                               for r in restrictions):
        raise Refused(AUDIENCE, "our entity id is not the audience")
    notBefore = instant(conditions.get("NotBefore"))
    notOnOrAfter = instant(conditions.get("NotOnOrAfter"))
    if notOnOrAfter is None or now >= notOnOrAfter + SKEW or (notBefore is not None and now < notBefore - SKEW):
        raise Refused(TIME, "outside the assertion's time window")
    subject = assertion.find(f"{{{SAML}}}Subject")
    nameId = subject.find(f"{{{SAML}}}NameID") if subject is not None else None
    if nameId is None or not _text(nameId):
        raise Refused(NAME_ID, "the assertion names nobody")
    bearer = [c.find(f"{{{SAML}}}SubjectConfirmationData") for c in subject.findall(f"{{{SAML}}}SubjectConfirmation")
              if c.get("Method") == BEARER]
    data = [d for d in bearer if d is not None]
    if not data:
        raise Refused(RECIPIENT, "no bearer SubjectConfirmationData")
    for d in data:
        if d.get("Recipient") != expected.acsURL:
            raise Refused(RECIPIENT, f"Recipient {d.get('Recipient')!r}")
        if d.get("InResponseTo") != expected.requestId:
            raise Refused(IN_RESPONSE_TO, "the subject confirmation answers another request")
        until = instant(d.get("NotOnOrAfter"))
        if until is None or now >= until + SKEW:
            raise Refused(TIME, "the subject confirmation expired")
    claims = _claims(assertion)

    def one(uri: str) -> str:
        values = claims.get(uri, [])
        return values[0] if values else ""

    address = one(EMAIL)
    if not address and nameId.get("Format") == EMAIL_FORMAT:
        address = _text(nameId)
    return Person(
        assertionId=assertionId, notOnOrAfter=notOnOrAfter, nameId=_text(nameId), objectId=one(OBJECT_ID),
        tenantId=one(TENANT_ID), address=address, name=one(NAME),
        groups=frozenset(g.lower() for g in claims.get(GROUPS, []) if g),
        overage=any(uri in claims for uri in OVERAGE),
    )
