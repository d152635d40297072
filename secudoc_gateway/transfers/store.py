"""
The records behind the gateway: transfers and their files, the download
audit trail, known users (``users``), and the messages already relayed
(``dedup``), all on one ``TransferStore``.

Every method returns a Deferred and runs its statements in one
transaction on the database's pool.  Times are Unix seconds from the
injected clock, read in the reactor thread before the work is handed to
the pool (a ``task.Clock`` is not thread-safe).
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Optional, Sequence

import attrs
from twisted.internet.defer import Deferred, succeed

from secudoc_gateway.db import Database
from secudoc_gateway.transfers.dedup import DEDUP_WINDOW, INFLIGHT_TIMEOUT, DedupRecords
from secudoc_gateway.transfers.events import EXTEND, REVOKE, EventRecords, eventTime, insertEvent
from secudoc_gateway.transfers.sends import SendRecords
from secudoc_gateway.transfers.records import (
    TRANSFER_COLUMNS,
    Download,
    Transfer,
    insertTransfer,
    transferFromRow,
)
from secudoc_gateway.transfers.trace import TraceRecords
from secudoc_gateway.transfers.users import UserRecords

# A purge's claim on an expired transfer lapses after this long, so one
# whose purge died is taken by the next (hourly) purge.
PURGE_CLAIM_TIMEOUT = 30 * 60


def _jsonString(address: str) -> str:
    """A LIKE pattern for ``address`` as one whole string of the stored JSON list (``!`` escapes)."""
    quoted = json.dumps(address, ensure_ascii=False)
    return "%" + quoted.replace("!", "!!").replace("%", "!%").replace("_", "!_") + "%"


class TransferStore(UserRecords, DedupRecords, EventRecords, TraceRecords, SendRecords):
    """
    Transfers, users, downloads, admin events, dedup records and the
    message trace on a ``Database``.
    ``clock`` (an ``IReactorTime``) gives the time of every record.
    """

    def __init__(
        self,
        database: Database,
        clock: Any = None,
        dedupWindow: float = DEDUP_WINDOW,
        inflightTimeout: float = INFLIGHT_TIMEOUT,
    ) -> None:
        if clock is None:
            from twisted.internet import reactor as clock
        self._db = database
        self._clock = clock
        self.dedupWindow = dedupWindow
        self.inflightTimeout = inflightTimeout

    def createTransfer(self, transfer: Transfer) -> Deferred[None]:
        """
        Store ``transfer`` and its files, all or nothing, durable before
        this fires: the message that carries its link is relayed next.
        """
        return self._db.runBatched(insertTransfer, transfer, durable=True)

    def lookup(self, tokenHash: str) -> Deferred[Optional[Transfer]]:
        """
        The transfer whose token hashes to ``tokenHash``, its files in
        message order; ``None`` when there is none.  Expired transfers
        are returned until purged, and purged ones as tombstones
        (``purged`` set, no files): the web side answers 410 for them.
        """
        return self._lookup("token_hash", tokenHash)

    def lookupSender(self, senderHash: str) -> Deferred[Optional[Transfer]]:
        """The transfer whose sender's link secret hashes to ``senderHash``."""
        return self._lookup("sender_hash", senderHash)

    def _lookup(self, column: str, value: str) -> Deferred[Optional[Transfer]]:
        def lookup(txn: Any) -> Optional[Transfer]:
            txn.execute(f"SELECT {TRANSFER_COLUMNS} FROM transfers WHERE {column} = ?", (value,))
            row = txn.fetchone()
            return None if row is None else transferFromRow(txn, row)

        return self._db.runReadTransaction(lookup)

    def recordDownload(
        self,
        transferId: str,
        n: int,
        client: Optional[str],
        userAgent: Optional[str],
        recipient: Optional[str] = None,
    ) -> Deferred[bool]:
        """
        Write one download of file ``n`` to the audit trail, naming the
        verified ``recipient`` where there is one.  Recorded even when
        the transfer was purged meanwhile (tenant and name are then
        unknown): the trail never loses a download.  Fires with whether
        it is the file's first download (under the write lock, so of two
        at once exactly one is first: one notification per file).
        """
        now = self._clock.seconds()

        def record(txn: Any) -> bool:
            txn.execute("SELECT 1 FROM downloads WHERE transfer_id = ? AND n = ? LIMIT 1", (transferId, n))
            first = txn.fetchone() is None
            txn.execute(
                "INSERT INTO downloads (transfer_id, n, tenant, name, at, client, user_agent, recipient)"
                " VALUES (?, ?,"
                " (SELECT tenant FROM transfers WHERE id = ?),"
                " (SELECT name FROM files WHERE transfer_id = ? AND n = ?),"
                " ?, ?, ?, ?)",
                (transferId, n, transferId, transferId, n, now, client, userAgent, recipient),
            )
            return first

        return self._db.runTransaction(record)

    def claimNotice(self, transferId: str, n: int) -> Deferred[bool]:
        """
        Whether the sender is still to hear that file ``n`` was downloaded
        whole: true exactly once per file, on any number of nodes (an
        update under the write lock).  A range request that stops short
        of the file's end never claims it: a link scanner fetching one
        byte is no download the sender hears of.
        """
        now = self._clock.seconds()

        def claim(txn: Any) -> bool:
            txn.execute("UPDATE files SET notified = ? WHERE transfer_id = ? AND n = ? AND notified IS NULL",
                        (now, transferId, n))
            return bool(txn.rowcount == 1)

        return self._db.runTransaction(claim)

    def downloads(self, transferId: str) -> Deferred[list[Download]]:
        """The audit trail of one transfer, oldest first."""
        return self.audit(transferId)

    def expiredTransfers(
        self, now: Optional[float] = None, limit: int = 100, offset: int = 0
    ) -> Deferred[list[Transfer]]:
        """
        Up to ``limit`` transfers not yet purged whose expiry is at or
        before ``now``, or that were revoked, soonest expired first,
        skipping the first ``offset`` (a dry run deletes nothing, so it
        pages).  The purge deletes their objects, then makes each a
        ``tombstone``, and asks again until none is left.
        """
        if now is None:
            now = self._clock.seconds()

        def expired(txn: Any) -> list[Transfer]:
            txn.execute(
                f"SELECT {TRANSFER_COLUMNS} FROM transfers"
                " WHERE (expires <= ? OR revoked IS NOT NULL) AND purged IS NULL"
                " ORDER BY expires, id LIMIT ? OFFSET ?",
                (now, limit, offset),
            )
            return [transferFromRow(txn, row) for row in txn.fetchall()]

        return self._db.runReadTransaction(expired)

    def tombstone(self, transferId: str) -> Deferred[bool]:
        """
        What the purge leaves of a transfer whose objects are gone: the
        row with its token hash, tenant, sender and dates, so the link
        answers "expired" (or "withdrawn") rather than "unknown" (SPEC
        8).  Files, subject, recipients, codes and sessions go.  Fires
        with whether there was a live transfer.
        """
        now = self._clock.seconds()

        def bury(txn: Any) -> bool:
            txn.execute(
                "UPDATE transfers SET purged = ?, subject = '', recipients = '[]'"
                " WHERE id = ? AND purged IS NULL",
                (now, transferId),
            )
            if txn.rowcount != 1:
                return False
            for table in ("files", "withheld", "codes", "sessions", "browser_sends"):
                txn.execute(f"DELETE FROM {table} WHERE transfer_id = ?", (transferId,))
            txn.execute("DELETE FROM attempts WHERE scope LIKE ?", (f"%:{transferId}",))
            return True

        return self._db.runTransaction(bury)

    def claimExpired(
        self, now: Optional[float] = None, limit: int = 100
    ) -> Deferred[list[Transfer]]:
        """
        Like ``expiredTransfers``, but each transfer returned is claimed
        for this purge, in one transaction: another purge, on this node
        or another, skips it for ``PURGE_CLAIM_TIMEOUT`` seconds (after
        which a claim whose purge died is taken again).
        """
        if now is None:
            now = self._clock.seconds()

        def claim(txn: Any) -> list[Transfer]:
            txn.execute(
                "SELECT id FROM transfers WHERE (expires <= ? OR revoked IS NOT NULL) AND purged IS NULL"
                " AND (purging IS NULL OR purging <= ?)"
                " ORDER BY expires, id LIMIT ?" + txn.dialect.skipLocked,
                (now, now - PURGE_CLAIM_TIMEOUT, limit),
            )
            ids = [id for (id,) in txn.fetchall()]
            claimed = []
            for id in ids:
                txn.execute("UPDATE transfers SET purging = ? WHERE id = ?", (now, id))
                txn.execute(f"SELECT {TRANSFER_COLUMNS} FROM transfers WHERE id = ?", (id,))
                claimed.append(transferFromRow(txn, txn.fetchone()))
            return claimed

        return self._db.runTransaction(claim)

    def unclaim(self, transferIds: Iterable[str]) -> Deferred[None]:
        """Let go of purge claims (transfers a purge could not delete), so the next purge takes them."""

        def unclaim(txn: Any) -> None:
            for transferId in transferIds:
                txn.execute("UPDATE transfers SET purging = NULL WHERE id = ?", (transferId,))

        return self._db.runTransaction(unclaim)

    def deleteTransfer(self, transferId: str) -> Deferred[bool]:
        """
        Delete a transfer and (by cascade) its files; the downloads stay
        as the audit trail.  Fires with whether there was one.
        """

        def delete(txn: Any) -> bool:
            txn.execute("DELETE FROM transfers WHERE id = ?", (transferId,))
            return bool(txn.rowcount == 1)

        return self._db.runTransaction(delete)

    def transfer(self, transferId: str) -> Deferred[Optional[Transfer]]:
        """The transfer with the public id ``transferId``, or ``None``."""

        def find(txn: Any) -> Optional[Transfer]:
            txn.execute(f"SELECT {TRANSFER_COLUMNS} FROM transfers WHERE id = ?", (transferId,))
            row = txn.fetchone()
            return None if row is None else transferFromRow(txn, row)

        return self._db.runReadTransaction(find)

    def transfers(
        self, tenant: Optional[str] = None, sender: Optional[str] = None, since: Optional[float] = None,
        limit: int = 1000, recipient: Optional[str] = None, tombstones: bool = False,
    ) -> Deferred[list[Transfer]]:
        """
        The newest ``limit`` transfers, newest first, of a tenant, a
        sender, to a recipient (any case), created since; purged ones
        (their tombstones) only with ``tombstones`` (the operator's list
        shows what ``show`` shows).
        """
        where: list[str] = [] if tombstones else ["purged IS NULL"]
        params: list[Any] = []
        for clause, value in (("tenant = ?", tenant), ("lower(sender) = lower(?)", sender),
                              ("created >= ?", since), ("lower(recipients) LIKE lower(?) ESCAPE '!'",
                                                        None if recipient is None else _jsonString(recipient))):
            if value is not None:
                where.append(clause)
                params.append(value)

        def find(txn: Any) -> list[Transfer]:
            txn.execute(
                f"SELECT {TRANSFER_COLUMNS} FROM transfers"
                f"{' WHERE ' + ' AND '.join(where) if where else ''} ORDER BY created DESC, id LIMIT ?",
                (*params, limit),
            )
            return [transferFromRow(txn, row) for row in txn.fetchall()]

        return self._db.runReadTransaction(find)

    def downloadCounts(self, transferIds: Sequence[str]) -> Deferred[dict[str, int]]:
        """How many downloads the trail holds of each of ``transferIds`` (absent: none)."""
        if not transferIds:
            return succeed({})
        marks = ", ".join("?" for _ in transferIds)
        d = self._db.runQuery(f"SELECT transfer_id, COUNT(*) FROM downloads WHERE transfer_id IN ({marks})"
                              " GROUP BY transfer_id", tuple(transferIds))
        return d.addCallback(lambda rows: {id: int(count) for id, count in rows})

    def revoke(self, transferId: str, by: Optional[str] = None) -> Deferred[bool]:
        """
        Withdraw the link now: it answers 410 "withdrawn" from then on
        and the next purge deletes its files.  Fires with whether there
        is such a transfer (revoking twice keeps the first time).  ``by``
        (an address, or ``events.OPERATOR``) is who did it: the first
        revoke is then an admin event, recorded in the same transaction.
        """
        now = self._clock.seconds()

        def revoke(txn: Any) -> bool:
            txn.execute(f"SELECT tenant, revoked FROM transfers WHERE id = ?{txn.dialect.forUpdate}",
                        (transferId,))
            row = txn.fetchone()
            if row is None:
                return False
            tenant, revoked = row
            if revoked is None:
                txn.execute("UPDATE transfers SET revoked = ? WHERE id = ?", (now, transferId))
                if by is not None:
                    insertEvent(txn, tenant, now, by, REVOKE, transferId, eventTime(None), eventTime(now))
            return True

        return self._db.runTransaction(revoke)

    def extend(self, transferId: str, days: float, by: Optional[str] = None) -> Deferred[bool]:
        """
        Give the link ``days`` more days: from its expiry, or from now
        when it has expired but not yet been purged.  Fires with whether
        it was extended: never a revoked or purged transfer, nor one a
        purge is deleting (its claim still current).  ``by``: who did it,
        as for ``revoke`` (the event holds the old and the new expiry).
        """
        now = self._clock.seconds()

        def extend(txn: Any) -> bool:
            txn.execute(f"SELECT tenant, expires FROM transfers WHERE id = ? AND revoked IS NULL AND purged IS NULL"
                        f" AND (purging IS NULL OR purging <= ?){txn.dialect.forUpdate}",
                        (transferId, now - PURGE_CLAIM_TIMEOUT))
            row = txn.fetchone()
            if row is None:
                return False
            tenant, expires = row
            extended = max(expires, now) + days * 86400
            txn.execute("UPDATE transfers SET expires = ? WHERE id = ?", (extended, transferId))
            if by is not None:
                insertEvent(txn, tenant, now, by, EXTEND, transferId, eventTime(expires), eventTime(extended))
            return True

        return self._db.runTransaction(extend)

    def audit(self, transferId: Optional[str] = None, since: Optional[float] = None,
              limit: int = 10000) -> Deferred[list[Download]]:
        """The download trail, oldest first: of one transfer, since a time."""
        where, params = [], []
        for clause, value in (("transfer_id = ?", transferId), ("at >= ?", since)):
            if value is not None:
                where.append(clause)
                params.append(value)
        d = self._db.runQuery(
            "SELECT id, transfer_id, n, tenant, name, at, client, user_agent, recipient FROM downloads"
            f"{' WHERE ' + ' AND '.join(where) if where else ''} ORDER BY id LIMIT ?",
            (*params, limit),
        )
        return d.addCallback(lambda rows: [Download(*row) for row in rows])

    def trail(self, tenant: str, sender: Optional[str] = None, recipient: Optional[str] = None,
              since: Optional[float] = None, until: Optional[float] = None,
              limit: int = 1000) -> Deferred[list[TrailEntry]]:
        """
        A tenant's download trail, newest first (SPEC 9): by the
        transfer's sender, by a recipient (the verified one, or one the
        transfer was sent to), from ``since`` until before ``until``.
        """
        where = ["d.tenant = ?"]
        params: list[Any] = [tenant]
        if sender is not None:
            where.append("lower(t.sender) = lower(?)")
            params.append(sender)
        if recipient is not None:
            where.append("(lower(d.recipient) = lower(?) OR lower(t.recipients) LIKE lower(?) ESCAPE '!')")
            params.extend((recipient, _jsonString(recipient)))
        for clause, value in (("d.at >= ?", since), ("d.at < ?", until)):
            if value is not None:
                where.append(clause)
                params.append(value)
        d = self._db.runQuery(
            "SELECT d.id, d.transfer_id, d.n, d.tenant, d.name, d.at, d.client, d.user_agent, d.recipient,"
            " t.sender, t.subject FROM downloads d LEFT JOIN transfers t ON t.id = d.transfer_id"
            f" WHERE {' AND '.join(where)} ORDER BY d.at DESC, d.id DESC LIMIT ?",
            (*params, limit),
        )
        return d.addCallback(lambda rows: [TrailEntry(Download(*row[:9]), row[9], row[10]) for row in rows])


@attrs.frozen
class TrailEntry:
    """A download with its transfer's sender and subject (``None`` once the transfer row is gone)."""

    download: Download
    sender: Optional[str]
    subject: Optional[str]

