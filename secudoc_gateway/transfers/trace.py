"""
The message trace (SPEC 7): one row per message the gateway gave a
final reply to, so an admin can see what became of a test mail.

A row is written before the reply, inside the transaction that marks
the message's last relay leg done for dedup (``DedupRecords.markDone``)
when there is one, so a relayed message costs no extra round trip;
else with the rows of other messages answered at the same time
(``recordTraces``, the ingress ``Tracer``'s group commit).  Its envelope recipients go into a rows table of their own
as well, so a search by recipient reads an index.  Rows older than
``trace_days`` go with the hourly purge.
"""

from __future__ import annotations

import json
from typing import Any, Optional

import attrs
from twisted.internet.defer import Deferred

from secudoc_gateway.addresses import addressKey
from secudoc_gateway.db import Database

TRACE_COLUMNS = (
    "id, at, tenant, queue_id, message_id, sender, recipients, size, decision, reason, transfer_id,"
    " reply_code, reply_text, relay_reply, scan"
)


@attrs.frozen
class TraceEntry:
    """
    One answered message.  ``decision`` is what became of it (protected,
    passed, rejected, tempfailed), ``reason`` the ``X-SecuDoc-Status``
    reason or why it was refused; ``reply_code`` and ``reply_text`` the
    final reply; ``relay_reply`` what the relay target answered; ``scan``
    the malware verdict (``None``: not scanned).  ``id`` is the
    database's, ``None`` before it is written.
    """

    at: float
    tenant: str
    queue_id: str
    message_id: Optional[str]
    sender: str
    recipients: tuple[str, ...]
    size: int
    decision: str
    reason: str
    transfer_id: Optional[str]
    reply_code: int
    reply_text: str
    relay_reply: str = ""
    scan: Optional[str] = None
    id: Optional[int] = None

    @property
    def reply(self) -> str:
        """The final reply as one line (``250 2.0.0 Ok: queued as ...``)."""
        return f"{self.reply_code} {self.reply_text}".strip()


def insertTrace(txn: Any, entry: TraceEntry) -> None:
    """``entry`` and its recipient rows, inside the caller's transaction."""
    txn.execute(
        "INSERT INTO message_trace (at, tenant, queue_id, message_id, sender, recipients, size, decision,"
        " reason, transfer_id, reply_code, reply_text, relay_reply, scan)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (entry.at, entry.tenant, entry.queue_id, entry.message_id, entry.sender,
         json.dumps(list(entry.recipients), ensure_ascii=False), entry.size, entry.decision, entry.reason,
         entry.transfer_id, entry.reply_code, entry.reply_text, entry.relay_reply, entry.scan),
    )
    row = txn.fetchone()
    assert row is not None
    recipients = sorted({addressKey(r) for r in entry.recipients})
    if recipients:
        # One statement for all of them: the reply waits on this.
        values = ", ".join(["(?, ?, ?)"] * len(recipients))
        params: list[Any] = []
        for recipient in recipients:
            params.extend((row[0], recipient, entry.at))
        txn.execute(f"INSERT INTO message_trace_recipients (trace_id, recipient, at) VALUES {values}", params)


def entryFromRow(row: tuple[Any, ...]) -> TraceEntry:
    (id_, at, tenant, queueId, messageId, sender, recipients, size, decision, reason, transferId,
     replyCode, replyText, relayReply, scan) = row
    return TraceEntry(at=at, tenant=tenant, queue_id=queueId, message_id=messageId, sender=sender,
                      recipients=tuple(json.loads(recipients)), size=size, decision=decision, reason=reason,
                      transfer_id=transferId, reply_code=replyCode, reply_text=replyText,
                      relay_reply=relayReply, scan=scan, id=id_)


def messageIdForms(messageId: str) -> tuple[str, str]:
    """A Message-ID as typed, with and without its angle brackets: an admin copies either."""
    bare = messageId.strip().strip("<>").strip()
    return f"<{bare}>", bare


class TraceRecords:
    """The message trace part of ``TransferStore``."""

    _db: Database
    _clock: Any  # an IReactorTime

    def recordTrace(self, entry: TraceEntry) -> Deferred[None]:
        """Write ``entry``, group-committed with the message path's other writes."""
        return self._db.runBatched(insertTrace, entry)

    def traceEntries(
        self, tenant: Optional[str] = None, sender: Optional[str] = None, recipient: Optional[str] = None,
        messageId: Optional[str] = None, since: Optional[float] = None, limit: int = 1000,
    ) -> Deferred[list[TraceEntry]]:
        """
        The newest ``limit`` rows that match every filter given, oldest
        first (as a log reads).  Sender and recipient match in any case.
        """
        where: list[str] = []
        params: list[Any] = []
        if tenant is not None:
            where.append("tenant = ?")
            params.append(tenant)
        if sender is not None:
            where.append("lower(sender) = lower(?)")
            params.append(sender)
        if messageId is not None:
            where.append("message_id IN (?, ?)")
            params.extend(messageIdForms(messageId))
        if since is not None:
            where.append("at >= ?")
            params.append(since)
        if recipient is not None:
            inner = "SELECT trace_id FROM message_trace_recipients WHERE recipient = ?"
            params.append(addressKey(recipient))
            if since is not None:
                inner += " AND at >= ?"
                params.append(since)
            where.append(f"id IN ({inner})")
        sql = (f"SELECT {TRACE_COLUMNS} FROM message_trace"
               f"{' WHERE ' + ' AND '.join(where) if where else ''} ORDER BY at DESC, id DESC LIMIT ?")

        def find(txn: Any) -> list[TraceEntry]:
            txn.execute(sql, (*params, limit))
            return [entryFromRow(row) for row in reversed(txn.fetchall())]

        return self._db.runReadTransaction(find)

    def purgeTrace(self, before: float) -> Deferred[int]:
        """Delete the rows written before ``before``; fires with how many messages went."""

        def purge(txn: Any) -> int:
            txn.execute("DELETE FROM message_trace_recipients WHERE at < ?", (before,))
            txn.execute("DELETE FROM message_trace WHERE at < ?", (before,))
            return int(txn.rowcount)

        return self._db.runTransaction(purge)
