"""
The seed's section 5 check, "Uw mailserver is ingesteld": one plain
test message through a tenant's relay target, on a connection of its
own (a pooled one would hide a broken handshake).  ``secudoc-gateway
test-relay`` and the portal's "test the mail server" both send it.
"""

from __future__ import annotations

import email.utils
import uuid
from typing import Any

from twisted.internet.defer import Deferred

from secudoc_gateway.config import Tenant
from secudoc_gateway.envelope import Envelope
from secudoc_gateway.outgoing import OutgoingMessage
from secudoc_gateway.relay.smtp import relayFor
from secudoc_gateway.spool import MemoryBudget, Spool


def testMessage(tenant: Tenant, hostname: str, recipient: str) -> bytes:
    """A plain note, marked as ours (``X-SecuDoc``) so EXO's rule does not route it again."""
    subject = {"nl": "Uw mailserver is ingesteld", "en": "Your mail server is set up"}[tenant.language]
    body = {
        "nl": "Dit is een testbericht van secudoc-gateway: de relay naar uw mailserver werkt.",
        "en": "This is a test message from secudoc-gateway: relaying to your mail server works.",
    }[tenant.language]
    lines = [
        f"From: {tenant.facility_sender}",
        f"To: {recipient}",
        f"Subject: {subject}",
        f"Date: {email.utils.formatdate(localtime=False, usegmt=True)}",
        f"Message-ID: <{uuid.uuid4().hex}@{hostname}>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 7bit",
        "X-SecuDoc: 1.0",
        "X-SecuDoc-Status: passed; reason=test-relay",
        "",
        body,
        "",
    ]
    return "\r\n".join(lines).encode("ascii")


def probeRelay(tenant: Tenant, hostname: str, reactor: Any, recipient: str) -> Deferred[str]:
    """
    Send the test message to ``recipient``; fires with the remote's
    reply, or fails with its ``RelayError``.  The connection is closed
    (QUIT) before the result is given.
    """
    relay = relayFor(tenant, hostname, reactor)
    message = OutgoingMessage(Spool(MemoryBudget(1 << 20)), [testMessage(tenant, hostname, recipient)])
    d: Deferred[str] = relay.send(Envelope(sender=tenant.facility_sender, recipients=(recipient,)), message)
    return d.addBoth(lambda result: relay.close().addCallback(lambda _: result))
