"""
What the rules read from a message's top-level header block: the
parser's ``Headers`` turned into the few facts SPEC section 5 asks
about, with every field kept for ``required_header``.
"""

from __future__ import annotations

import re
from email.headerregistry import HeaderRegistry
from email.utils import getaddresses
from typing import Optional

import attrs

from secudoc_gateway.fields import CROSS_TENANT_ID, FROM, MESSAGE_ID, NETWORK_MESSAGE_ID, SECUDOC, SECUDOC_ENABLED
from secudoc_gateway.mime.headers import DEFAULT_TYPE, Headers
from secudoc_gateway.mime.names import decodeHeader

# Lowercased, as the facts name fields.
_SECUDOC = SECUDOC.lower()
_SECUDOC_ENABLED = SECUDOC_ENABLED.lower()
_CROSS_TENANT_ID = CROSS_TENANT_ID.lower()
_NETWORK_MESSAGE_ID = NETWORK_MESSAGE_ID.lower()
_MESSAGE_ID = MESSAGE_ID.lower()

_ADDRESS_HEADERS = HeaderRegistry()

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_DOT_ATOM = rf"{_ATEXT}+(?:\.{_ATEXT}+)*"
_SIMPLE_MAILBOX = re.compile(
    rf'[ \t]*(?:(?:"(?P<quoted>[^"\\\r\n]*)"|(?P<atoms>{_ATEXT}+(?: {_ATEXT}+)*))?[ \t]*'
    rf"<(?P<angled>{_DOT_ATOM}@{_DOT_ATOM})>|(?P<bare>{_DOT_ATOM}@{_DOT_ATOM}))[ \t]*")
"""
The From values most mail carries: a bare address, or one in angle
brackets after a display name of plain words or one quoted string.
They are read here at a fraction of the full parser's cost (it was a
twentieth of a protected message's time); anything else (encoded-words,
comments, groups, escapes, several mailboxes) goes to the full parser.
"""


def parseFromAddress(value: str) -> str:
    """The first mailbox's bare address of a From value, or ``""``."""
    return parseFromMailbox(value)[1]


def parseFromMailbox(value: str) -> tuple[str, str]:
    """
    The first mailbox of a From value as (display name, bare address),
    ``("", "")`` when none has an address.  Display names (RFC 2047
    encoded or not, also the encoded-words some clients put inside
    quotes), comments, angle brackets and groups are the standard
    library's RFC 5322 parser's job; a value it cannot read yields its
    best effort, never an exception.
    """
    simple = _SIMPLE_MAILBOX.fullmatch(value)
    if simple is not None and "=?" not in value:
        name = simple["quoted"] if simple["quoted"] is not None else simple["atoms"] or ""
        return name.strip(), simple["angled"] or simple["bare"]
    return fullParse(value)


def fullParse(value: str) -> tuple[str, str]:
    """``parseFromMailbox`` by the standard library's parser, for every form."""
    try:
        mailboxes = [(a.display_name, a.addr_spec) for a in _ADDRESS_HEADERS(FROM, value).addresses]  # type: ignore[attr-defined]
    except Exception:
        mailboxes = getaddresses([value])
    for name, address in mailboxes:
        local, at, domain = address.rpartition("@")
        if at and local and domain:
            return decodeHeader(name).strip(), address
    return "", ""


@attrs.frozen
class HeaderFacts:
    """
    What the policy needs from the message's top-level header block.

    ``fields`` keeps every field as ``(lowercased name, value)`` for
    ``required_header``; the block is bounded by ``max_header_bytes``,
    so this is too.  ``secudocEnabledValues`` keeps every
    ``X-SecuDoc-Enabled`` value: one ``0`` among them opts out.
    Repeated single-instance fields (Content-Type, From, the ids) are
    read from their first occurrence.
    """

    crossTenantIds: tuple[str, ...] = ()
    hasSecuDoc: bool = False
    secudocEnabledValues: tuple[str, ...] = ()
    fields: tuple[tuple[str, str], ...] = ()
    topContentType: str = DEFAULT_TYPE
    networkMessageId: Optional[str] = None
    messageId: Optional[str] = None

    @property
    def fromAddress(self) -> str:
        """
        The From field's first address, parsed only when asked: only a
        null-sender message needs it, and parsing RFC 5322 addresses is
        the most expensive step of reading the header block.
        """
        values = self.values(FROM)
        return parseFromAddress(values[0]) if values else ""

    @property
    def fromMailbox(self) -> tuple[str, str]:
        """The From field's first (display name, address), for the banner."""
        values = self.values(FROM)
        return parseFromMailbox(values[0]) if values else ("", "")

    @property
    def dedupId(self) -> Optional[str]:
        """The id a resend is recognised by (SPEC section 4), if any."""
        return self.networkMessageId or self.messageId

    def has(self, name: str) -> bool:
        """Whether a field called ``name`` (any case) is present."""
        lowered = name.strip().lower()
        return any(fieldName == lowered for fieldName, _ in self.fields)

    def values(self, name: str) -> tuple[str, ...]:
        """Every value of the field ``name`` (any case), in order."""
        lowered = name.strip().lower()
        return tuple(value for fieldName, value in self.fields if fieldName == lowered)


def headerFacts(headers: Headers) -> HeaderFacts:
    """Facts from the top-level header block, as the parser read it."""
    fields: list[tuple[str, str]] = []
    first: dict[str, str] = {}
    crossTenantIds: list[str] = []
    enabled: list[str] = []
    for name, value in headers.unfolded():
        lowered = name.strip().lower()
        fields.append((lowered, value))
        first.setdefault(lowered, value)
        if lowered == _CROSS_TENANT_ID:
            crossTenantIds.append(value)
        elif lowered == _SECUDOC_ENABLED:
            enabled.append(value)
    return HeaderFacts(
        crossTenantIds=tuple(crossTenantIds),
        hasSecuDoc=_SECUDOC in first,
        secudocEnabledValues=tuple(enabled),
        fields=tuple(fields),
        topContentType=headers.contentType,
        networkMessageId=first.get(_NETWORK_MESSAGE_ID) or None,
        messageId=first.get(_MESSAGE_ID) or None,
    )
