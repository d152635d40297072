"""
The gateway's mark on every relayed message: a ``Received:`` trace
field (RFC 5321 section 4.4), ``X-SecuDoc: 1.0``, ``X-SecuDoc-Status``
and, for a protected message, ``X-SecuDoc-Transfer``.  Incoming fields
of those names are dropped first (SPEC section 5), so a relayed message
carries exactly one ``X-SecuDoc``.
"""

from __future__ import annotations

import email.utils
import functools
import time
from typing import Optional

from secudoc_gateway.envelope import Envelope
from secudoc_gateway.fields import GATEWAY_HEADERS, SECUDOC, SECUDOC_STATUS, SECUDOC_TRANSFER, SECUDOC_VERSION
from secudoc_gateway.mime.headers import Headers, fieldName, lineEnding, splitFields

def withoutGatewayFields(headers: Headers) -> bytes:
    """The header block as received minus incoming X-SecuDoc, -Status and -Transfer."""
    return b"".join(f for f in headers.raw if fieldName(f) not in GATEWAY_HEADERS)


@functools.lru_cache(maxsize=4)
def _date(second: int) -> str:
    """RFC 5322 date of a whole second: every message received within it shares one formatting."""
    return email.utils.formatdate(second, localtime=False, usegmt=True)


def _addressLiteral(peer: str) -> str:
    return f"IPv6:{peer}" if ":" in peer else peer


def received(envelope: Envelope, hostname: str, queueId: str, date: Optional[float] = None) -> str:
    """
    RFC 5321 4.4 trace field; ``with`` per RFC 3848 (ESMTPS when TLS
    was on) and RFC 6531 (UTF8 variants for SMTPUTF8).
    """
    protocol = "UTF8SMTP" if envelope.smtputf8 else "ESMTP"
    if envelope.tls:
        protocol += "S"
    helo = envelope.helo or "unknown"
    forPart = f"\r\n\tfor <{envelope.recipients[0]}>" if len(envelope.recipients) == 1 else ""
    return (
        f"Received: from {helo} ([{_addressLiteral(envelope.peer)}])\r\n"
        f"\tby {hostname} (secudoc-gateway) with {protocol} id {queueId}{forPart};\r\n"
        f"\t{_date(int(time.time() if date is None else date))}"
    )


def stampFields(
    envelope: Envelope,
    hostname: str,
    queueId: str,
    status: str,
    transferId: Optional[str] = None,
    eol: bytes = b"\r\n",
    date: Optional[float] = None,
) -> bytes:
    """The gateway's fields, to put on top of the (filtered) header block."""
    fields = [
        received(envelope, hostname, queueId, date),
        f"{SECUDOC}: {SECUDOC_VERSION}",
        f"{SECUDOC_STATUS}: {status}",
    ]
    if transferId:
        fields.append(f"{SECUDOC_TRANSFER}: {transferId}")
    text = "\r\n".join(fields) + "\r\n"
    if eol != b"\r\n":
        text = text.replace("\r\n", eol.decode("ascii"))
    # helo and addresses went through the SMTP session: ASCII, or UTF-8 with SMTPUTF8.
    return text.encode("utf-8")


def stamped(block: bytes, stamp: bytes) -> list[bytes]:
    """
    The header block with the gateway's fields on top, as trace fields
    go (RFC 5321 4.4).  A block that starts with folding whitespace (a
    stray continuation line: malformed, but real mail has it) folds
    into whatever comes before it.  Our ``Received`` field stays first
    and takes that line: a trace field no rule reads, and the message
    starts with a field again, so nothing put before it (a maildir's
    envelope lines, a relay's own trace field) can absorb the line.  The
    fields rules do read (``X-SecuDoc``, ``-Status``, ``-Transfer``) go
    after the block then, where nothing folds into them.
    """
    if block[:1] not in (b" ", b"\t"):
        return [stamp, block]
    trace, *ours = splitFields(stamp)
    head = block
    if not head.endswith((b"\n", b"\r")):
        head += lineEnding(stamp)
    return [trace, head, *ours]
