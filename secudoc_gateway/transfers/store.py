"""
The records behind the gateway: transfers and their files, the download
audit trail, known users, and the messages already relayed (dedup).

Every method returns a Deferred and runs its statements in one
transaction on the database's pool.  Times are Unix seconds from the
injected clock, read in the reactor thread before the work is handed to
the pool (a ``task.Clock`` is not thread-safe).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable, Optional

import attrs
from twisted.internet.defer import Deferred

from secudoc_gateway.addresses import addressKey
from secudoc_gateway.db import Database

# SPEC 4: a message relayed in the last 24 hours is not relayed again.
DEDUP_WINDOW = 24 * 60 * 60
# A claim left "inflight" this long belongs to a process that died (or a
# relay that hung past every SMTP timeout, RFC 5321 4.5.3.2): the next
# copy may relay.  Longer than the slowest relay we expect of a 150 MB
# message, shorter than EXO's retry schedule gives up on.
INFLIGHT_TIMEOUT = 15 * 60
# A purge's claim on an expired transfer lapses after this long, so one
# whose purge died is taken by the next (hourly) purge.
PURGE_CLAIM_TIMEOUT = 30 * 60

# Answers of ``TransferStore.claim``.
NEW = "new"
INFLIGHT = "inflight"
DONE = "done"

# How a user came to be known (``users.how``).
USER_SOURCES = ("config", "welcome", "silent")

_DEDUP_VERSION = "secudoc-dedup-1"


@attrs.frozen
class StoredFile:
    """
    One file of a transfer: ``n`` is its 0-based place in the message.
    Its sealed stream is ``object_length`` bytes at ``object_offset`` in
    the transfer's object ``object_key``, under the key HKDF derives for
    ``key_index``.
    """

    n: int
    name: str
    content_type: str
    size: int
    sha256: str
    object_key: str
    object_offset: int
    object_length: int
    key_index: int


def _files(files: Iterable[StoredFile]) -> tuple[StoredFile, ...]:
    return tuple(files)


def _strings(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(values)


@attrs.frozen
class Transfer:
    """
    One protected message's files (SPEC 7).  ``token_hash`` is the only
    trace of the URL token; ``created`` and ``expires`` are Unix seconds.
    """

    id: str
    token_hash: str
    tenant: str
    sender: str
    recipients: tuple[str, ...] = attrs.field(converter=_strings)
    subject: str
    created: float
    expires: float
    files: tuple[StoredFile, ...] = attrs.field(default=(), converter=_files)
    message_id: Optional[str] = None
    sender_name: str = ""
    sender_hash: Optional[str] = None
    revoked: Optional[float] = None
    purged: Optional[float] = None


@attrs.frozen
class Download:
    """
    One row of the audit trail (SPEC 8).  ``tenant`` and ``name`` are
    copied from the transfer when recorded, so the row still says what
    was downloaded after the transfer is purged.
    """

    id: int
    transfer_id: str
    n: int
    tenant: Optional[str]
    name: Optional[str]
    at: float
    client: Optional[str]
    user_agent: Optional[str]
    recipient: Optional[str] = None


_FILE_COLUMNS = "n, name, content_type, size, sha256, object_key, object_offset, object_length, key_index"
_TRANSFER_COLUMNS = (
    "id, token_hash, tenant, sender, recipients, subject, created, expires, message_id,"
    " sender_name, sender_hash, revoked, purged"
)


def _transferFromRow(txn: Any, row: tuple[Any, ...]) -> Transfer:
    (id, tokenHash, tenant, sender, recipients, subject, created, expires, messageId,
     senderName, senderHash, revoked, purged) = row
    txn.execute(
        f"SELECT {_FILE_COLUMNS} FROM files"
        " WHERE transfer_id = ? ORDER BY n",
        (id,),
    )
    files = tuple(StoredFile(*fileRow) for fileRow in txn.fetchall())
    return Transfer(
        id=id,
        token_hash=tokenHash,
        tenant=tenant,
        sender=sender,
        recipients=json.loads(recipients),
        subject=subject,
        created=created,
        expires=expires,
        files=files,
        message_id=messageId,
        sender_name=senderName,
        sender_hash=senderHash,
        revoked=revoked,
        purged=purged,
    )


class TransferStore:
    """
    Transfers, users, downloads and dedup records on a ``Database``.
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

    # Transfers

    def createTransfer(self, transfer: Transfer) -> Deferred[None]:
        """Store ``transfer`` and its files, all or nothing."""

        def create(txn: Any) -> None:
            txn.execute(
                f"INSERT INTO transfers ({_TRANSFER_COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    transfer.id,
                    transfer.token_hash,
                    transfer.tenant,
                    transfer.sender,
                    json.dumps(list(transfer.recipients), ensure_ascii=False),
                    transfer.subject,
                    transfer.created,
                    transfer.expires,
                    transfer.message_id,
                    transfer.sender_name,
                    transfer.sender_hash,
                    transfer.revoked,
                    transfer.purged,
                ),
            )
            txn.executemany(
                f"INSERT INTO files (transfer_id, {_FILE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(transfer.id, *attrs.astuple(f)) for f in transfer.files],
            )

        return self._db.runTransaction(create)

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
            txn.execute(f"SELECT {_TRANSFER_COLUMNS} FROM transfers WHERE {column} = ?", (value,))
            row = txn.fetchone()
            return None if row is None else _transferFromRow(txn, row)

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
                f"SELECT {_TRANSFER_COLUMNS} FROM transfers"
                " WHERE (expires <= ? OR revoked IS NOT NULL) AND purged IS NULL"
                " ORDER BY expires, id LIMIT ? OFFSET ?",
                (now, limit, offset),
            )
            return [_transferFromRow(txn, row) for row in txn.fetchall()]

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
            for table in ("files", "codes", "sessions"):
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
                txn.execute(f"SELECT {_TRANSFER_COLUMNS} FROM transfers WHERE id = ?", (id,))
                claimed.append(_transferFromRow(txn, txn.fetchone()))
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
            txn.execute(f"SELECT {_TRANSFER_COLUMNS} FROM transfers WHERE id = ?", (transferId,))
            row = txn.fetchone()
            return None if row is None else _transferFromRow(txn, row)

        return self._db.runReadTransaction(find)

    def transfers(
        self, tenant: Optional[str] = None, sender: Optional[str] = None, since: Optional[float] = None,
        limit: int = 1000,
    ) -> Deferred[list[Transfer]]:
        """
        The newest ``limit`` transfers not yet purged (tombstones are the
        links' business, not the operator's list), newest first, of a
        tenant, a sender, created since.
        """
        where, params = ["purged IS NULL"], []
        for clause, value in (("tenant = ?", tenant), ("lower(sender) = lower(?)", sender),
                              ("created >= ?", since)):
            if value is not None:
                where.append(clause)
                params.append(value)

        def find(txn: Any) -> list[Transfer]:
            txn.execute(
                f"SELECT {_TRANSFER_COLUMNS} FROM transfers"
                f" WHERE {' AND '.join(where)} ORDER BY created DESC, id LIMIT ?",
                (*params, limit),
            )
            return [_transferFromRow(txn, row) for row in txn.fetchall()]

        return self._db.runReadTransaction(find)

    def revoke(self, transferId: str) -> Deferred[bool]:
        """
        Withdraw the link now: it answers 410 "withdrawn" from then on
        and the next purge deletes its files.  Fires with whether there
        is such a transfer (revoking twice keeps the first time).
        """
        now = self._clock.seconds()

        def revoke(txn: Any) -> bool:
            txn.execute("UPDATE transfers SET revoked = COALESCE(revoked, ?) WHERE id = ?", (now, transferId))
            return bool(txn.rowcount == 1)

        return self._db.runTransaction(revoke)

    def extend(self, transferId: str, days: float) -> Deferred[bool]:
        """
        Give the link ``days`` more days: from its expiry, or from now
        when it has expired but not yet been purged.  Fires with whether
        there is such a transfer.
        """
        now = self._clock.seconds()

        def extend(txn: Any) -> bool:
            txn.execute("UPDATE transfers SET expires = CASE WHEN expires > ? THEN expires ELSE ? END + ?"
                        " WHERE id = ?", (now, now, days * 86400, transferId))
            return bool(txn.rowcount == 1)

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
        d.addCallback(lambda rows: [Download(*row) for row in rows])
        return d

    # Users

    def isKnownUser(self, tenant: str, address: str) -> Deferred[bool]:
        """
        Whether ``address`` is a stored user of ``tenant`` (the tenant
        file's ``users`` patterns are the policy's to check).
        """
        d = self._db.runQuery(
            "SELECT 1 FROM users WHERE tenant = ? AND address = ?",
            (tenant, addressKey(address)),
        )
        d.addCallback(bool)
        return d

    def createUser(self, tenant: str, address: str, how: str) -> Deferred[bool]:
        """
        Make ``address`` a known user of ``tenant``; ``how`` is one of
        ``USER_SOURCES``.  Fires with ``True`` only when the user is new,
        so a welcome mail goes out once even when two messages race.
        """
        if how not in USER_SOURCES:
            raise ValueError(f"how must be one of {USER_SOURCES}, not {how!r}")
        now = self._clock.seconds()

        def create(txn: Any) -> bool:
            txn.execute(
                "INSERT INTO users (tenant, address, created, how) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (tenant, address) DO NOTHING",
                (tenant, addressKey(address), now, how),
            )
            return bool(txn.rowcount == 1)

        return self._db.runTransaction(create)

    # Dedup (SPEC 4)

    @staticmethod
    def dedupKey(
        tenant: str, messageId: str, sender: str, recipients: Iterable[str], leg: str
    ) -> str:
        """
        The record key of one relay leg of one message: a SHA-256 over
        the tenant, the message id (EXO's network message id, else the
        ``Message-ID``, exactly as given), the normalised sender and the
        set of normalised envelope recipients (order and repeats do not
        matter), and the leg ("protected", "internal", ...).  JSON keeps
        the fields apart whatever they contain.  A message without an id
        is never a duplicate: there is no key for it.
        """
        messageId = messageId.strip()
        if not messageId:
            raise ValueError("a message without an id has no dedup key")
        canonical = json.dumps(
            [
                _DEDUP_VERSION,
                tenant,
                messageId,
                addressKey(sender),
                sorted({addressKey(r) for r in recipients}),
                leg,
            ],
            ensure_ascii=False,
            separators=(",", ":"),
        )
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def claim(self, key: str, tenant: str = "") -> Deferred[str]:
        """
        Before relaying the leg ``key``.  Fires with:

        - ``NEW``: relay it; the record now says "inflight".  Also when
          the last record is a "done" older than the dedup window or an
          "inflight" older than ``inflightTimeout`` (its process died).
        - ``DONE``: relayed within the window: answer 250, relay nothing.
        - ``INFLIGHT``: another copy is being relayed now: answer 451,
          EXO retries later.

        One transaction that locks the record it reads, so of two copies
        arriving together, on one node or two, exactly one gets ``NEW``.
        """
        now = self._clock.seconds()

        def claim(txn: Any) -> str:
            # The insert either makes the record or waits for the
            # transaction that is making it (PostgreSQL) and then does
            # nothing; the SELECT then holds the row until commit, so of
            # two copies on two nodes exactly one gets NEW.
            txn.execute(
                "INSERT INTO relayed (dedup_key, tenant, state, created, updated)"
                " VALUES (?, ?, 'inflight', ?, ?) ON CONFLICT (dedup_key) DO NOTHING",
                (key, tenant, now, now),
            )
            if txn.rowcount == 1:
                return NEW
            txn.execute(
                "SELECT state, updated FROM relayed WHERE dedup_key = ?"
                + txn.dialect.forUpdate,
                (key,),
            )
            row = txn.fetchone()
            if row is not None:
                state, updated = row
                age = now - updated
                if state == DONE and age < self.dedupWindow:
                    return DONE
                if state == INFLIGHT and age < self.inflightTimeout:
                    return INFLIGHT
            # Stale, or released since the insert above: take it over.
            txn.execute(
                "INSERT INTO relayed (dedup_key, tenant, state, created, updated)"
                " VALUES (?, ?, 'inflight', ?, ?)"
                " ON CONFLICT (dedup_key) DO UPDATE SET tenant = excluded.tenant,"
                " state = 'inflight', created = excluded.created, updated = excluded.updated",
                (key, tenant, now, now),
            )
            return NEW

        return self._db.runTransaction(claim)

    def markDone(self, key: str, tenant: str = "") -> Deferred[None]:
        """
        The relay target accepted the leg ``key``: copies arriving within
        the window get 250.  Works without a prior claim too.
        """
        now = self._clock.seconds()
        return self._db.runOperation(
            "INSERT INTO relayed (dedup_key, tenant, state, created, updated)"
            " VALUES (?, ?, 'done', ?, ?)"
            " ON CONFLICT (dedup_key) DO UPDATE SET state = 'done', updated = excluded.updated",
            (key, tenant, now, now),
        )

    def release(self, key: str) -> Deferred[None]:
        """
        The relay of ``key`` failed: forget the claim so EXO's retry
        relays.  A "done" record is kept.
        """
        return self._db.runOperation(
            "DELETE FROM relayed WHERE dedup_key = ? AND state = 'inflight'", (key,)
        )

    def purgeDedup(self, now: Optional[float] = None) -> Deferred[int]:
        """
        Delete the records no claim would honour any more (last changed
        a dedup window ago or earlier).  Fires with how many went.
        """
        if now is None:
            now = self._clock.seconds()

        def purge(txn: Any) -> int:
            txn.execute("DELETE FROM relayed WHERE updated <= ?", (now - self.dedupWindow,))
            return int(txn.rowcount)

        return self._db.runTransaction(purge)
