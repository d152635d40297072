"""
The message trace's notifier (SPEC 7): the transaction says what became
of a message, the ``Tracer`` makes its row and hands it to the
database, so the ingress never builds SQL and a trace that cannot be
written never changes a reply.

Rows that do not ride with a dedup record are group-committed with the
message path's other writes (``Database.runBatched``): each reply still
waits for its own row (an admin who got 250 finds the row at once), but
under load many messages share one transaction.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from secudoc_gateway.config.values import Tenant
from secudoc_gateway.envelope import Envelope
from secudoc_gateway.mime.facts import HeaderFacts
from secudoc_gateway.replies import Reply
from secudoc_gateway.transfers import TraceEntry

_REASON = "reason="


def statusReason(status: str) -> str:
    """The reason of an ``X-SecuDoc-Status`` value (``"passed; reason=no-attachment"``), ``""`` for none."""
    _, found, reason = status.partition(_REASON)
    return reason.strip() if found else ""


class Tracer:
    """
    Writes one trace row per answered message.  Without a database, or
    made with ``enabled=False`` (the bench's "without", never a config
    key), it writes nothing.
    """

    log = Logger()

    def __init__(self, transfers: Any, clock: Any, enabled: bool = True) -> None:
        self.transfers = transfers
        self.clock = clock
        self.enabled = enabled and transfers is not None

    def entry(self, tenant: Tenant, queueId: str, envelope: Envelope, facts: Optional[HeaderFacts], size: int,
              decision: str, reason: str, reply: Reply, transferId: Optional[str] = None,
              relayReply: str = "", scan: Optional[str] = None) -> Optional[TraceEntry]:
        """
        The row of a message answered ``reply`` now; ``None`` when the
        trace is off.  A refused message keeps no transfer (it is deleted
        with the refusal), so its row names none.
        """
        if not self.enabled:
            return None
        text = f"{reply.enhanced} {reply.text}".strip()
        return TraceEntry(
            at=self.clock.seconds(), tenant=tenant.id, queue_id=queueId,
            message_id=facts.messageId.strip() if facts is not None and facts.messageId else None,
            sender=envelope.sender, recipients=envelope.recipients, size=size, decision=decision,
            reason=reason, transfer_id=transferId if reply.positive else None, reply_code=reply.code,
            reply_text=text, relay_reply=relayReply, scan=scan,
        )

    def record(self, entry: Optional[TraceEntry]) -> Deferred[None]:
        """Fires once ``entry`` is written; a failure is logged, never raised."""
        if entry is None:
            return succeed(None)

        def written(result: Any) -> None:
            if isinstance(result, Failure):
                self.log.failure("writing the message trace row of {queueId} failed", result,
                                 queueId=entry.queue_id)

        return self.transfers.recordTrace(entry).addBoth(written)
