"""
The messages already relayed (SPEC 4): a record per relay leg, claimed
before the relay and marked done after, so a copy EXO sends again is
not relayed twice.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable, Optional

from twisted.internet.defer import Deferred

from secudoc_gateway.addresses import addressKey
from secudoc_gateway.db import Database
from secudoc_gateway.transfers.trace import TraceEntry, insertTrace

# SPEC 4: a message relayed in the last 24 hours is not relayed again.
DEDUP_WINDOW = 24 * 60 * 60
# A claim left "inflight" this long belongs to a process that died (or a
# relay that hung past every SMTP timeout, RFC 5321 4.5.3.2): the next
# copy may relay.  Longer than the slowest relay we expect of a 150 MB
# message, shorter than EXO's retry schedule gives up on.
INFLIGHT_TIMEOUT = 15 * 60

# Answers of ``TransferStore.claim``.
NEW = "new"
INFLIGHT = "inflight"
DONE = "done"

_DEDUP_VERSION = "secudoc-dedup-1"


class DedupRecords:
    """The dedup part of ``TransferStore``."""

    _db: Database
    _clock: Any  # an IReactorTime
    dedupWindow: float
    inflightTimeout: float

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

        return self._db.runBatched(claim)

    def markDone(self, key: str, tenant: str = "", trace: Optional[TraceEntry] = None) -> Deferred[None]:
        """
        The relay target accepted the leg ``key``: copies arriving within
        the window get 250.  Works without a prior claim too.  ``trace``,
        the message's trace row when this was its last leg, is written in
        the same transaction: a relayed message costs one round trip.
        """
        now = self._clock.seconds()
        done = (
            "INSERT INTO relayed (dedup_key, tenant, state, created, updated)"
            " VALUES (?, ?, 'done', ?, ?)"
            " ON CONFLICT (dedup_key) DO UPDATE SET state = 'done', updated = excluded.updated"
        )

        def mark(txn: Any) -> None:
            txn.execute(done, (key, tenant, now, now))
            if trace is not None:
                insertTrace(txn, trace)

        return self._db.runBatched(mark)

    def release(self, key: str) -> Deferred[None]:
        """
        The relay of ``key`` failed: forget the claim so EXO's retry
        relays.  A "done" record is kept.
        """
        return self._db.runBatched(
            lambda txn: txn.execute("DELETE FROM relayed WHERE dedup_key = ? AND state = 'inflight'", (key,)))

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
