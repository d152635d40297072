"""
The header blocks the rewriter writes anew from the parsed fields: the
top block (incoming gateway fields and a stale ``X-MS-Has-Attach``
out, Content-* fields replaced or dropped) and the block of a body that
gets the banner.  Fields are passed on byte for byte; only the ones
named are replaced, each in the place of the first of its name.
"""

from __future__ import annotations

from typing import Callable, Mapping, Optional

from secudoc_gateway.fields import GATEWAY_HEADERS
from secudoc_gateway.mime.headers import Headers, isFieldName

HAS_ATTACH = "x-ms-has-attach"
"""Exchange's "has attachments" flag: removed when none is left (SPEC 6)."""

_CANONICAL = {
    "mime-version": "MIME-Version",
    "content-type": "Content-Type",
    "content-transfer-encoding": "Content-Transfer-Encoding",
}


def field(name: str, value: bytes, eol: bytes) -> bytes:
    return name.encode("latin-1") + b":" + value + eol


def isContentField(lowerName: str) -> bool:
    """RFC 2045 9: the fields that describe a body, not the message."""
    return lowerName.startswith("content-")


def headerBlock(
    headers: Headers,
    replace: Mapping[str, bytes],
    eol: bytes,
    drop: Optional[Callable[[str], bool]] = None,
    gateway: bool = False,
    hasAttachment: bool = True,
) -> bytes:
    """
    A header block from the parsed fields, in order: ``replace``
    (lowercased name -> new value) takes the place of the first field
    of that name (or goes at the end), later ones and those ``drop``
    names go.
    ``gateway``: the message's top block, without incoming gateway
    fields, and without ``X-MS-Has-Attach`` unless ``hasAttachment``.
    """
    pending = dict(replace)
    names = {name.lower(): name for name in replace}
    out = []
    for name, value in headers.fields:
        lower = name.lower()
        if not isFieldName(name) or (gateway and lower in GATEWAY_HEADERS):
            # An mbox "From " line or junk is no field to pass on.
            continue
        if gateway and lower == HAS_ATTACH and not hasAttachment:
            continue
        if lower in replace:
            if lower in pending:
                out.append(field(name, pending.pop(lower), eol))
            continue
        if drop is not None and drop(lower):
            continue
        out.append(field(name, value, eol))
    for lower, value in pending.items():
        out.append(field(_CANONICAL.get(lower, names[lower]), value, eol))
    return b"".join(out)


def contentFields(headers: Headers, eol: bytes) -> bytes:
    """The Content-* fields of a block, to move down onto a part of their own."""
    return b"".join(
        field(name, value, eol)
        for name, value in headers.fields
        if isContentField(name.lower()) and isFieldName(name)
    )


def isFlowed(headers: Headers) -> bool:
    """RFC 3676 format=flowed text."""
    return headers.params.get("format", "").strip().lower() == "flowed"


def plainContentType(headers: Headers) -> bytes:
    """text/plain in UTF-8, keeping RFC 3676 format and delsp."""
    value = b' text/plain; charset="utf-8"'
    if isFlowed(headers):
        value += b"; format=flowed"
        if headers.params.get("delsp", "").strip().lower() == "yes":
            value += b"; delsp=yes"
    return value
