"""
Expired and revoked transfers go: their object first, then their file
rows, so a crash between the two leaves a row whose object is gone (the
link then says "expired" anyway) rather than an object nobody can find.
The transfer's row stays as a tombstone, so its link keeps saying
"expired" or "withdrawn" instead of "unknown".  The running server
purges at start and hourly; ``secudoc-gateway purge`` does it once.
Each batch is claimed in the database first, so purges running at once
on several nodes (or workers) never take the same transfer.  Each purge
also removes the store's crash leftovers: temporary objects (S3:
multipart uploads) older than the longest possible transaction, and
the message trace's rows older than ``[portal] trace_days``.
"""

from __future__ import annotations

from typing import Any, Optional

import attrs
from twisted.application.internet import TimerService
from twisted.internet.defer import ensureDeferred
from twisted.logger import Logger

log = Logger()

PURGE_INTERVAL = 3600.0
BATCH = 100
DAY = 86400.0


async def removeLeftovers(store: Any, olderThan: float, now: float) -> None:
    try:
        removed = await store.removeLeftovers(olderThan, now)
    except Exception:
        log.failure("removing the store's leftovers failed")
        return
    if removed:
        log.info("removed {count} temporary object(s) a crash left", count=removed)


class PurgeIncomplete(Exception):
    """Some expired or revoked transfers could not be purged (each was logged); the rest were."""


@attrs.frozen
class Purged:
    """How many transfers a purge deleted, by why they went: an operator tells a revoke from an expiry."""

    expired: int = 0
    revoked: int = 0

    @property
    def total(self) -> int:
        return self.expired + self.revoked

    def __str__(self) -> str:
        return f"{self.total} transfer(s): {self.expired} expired, {self.revoked} revoked"


def reason(transfer: Any) -> str:
    """Why a transfer is purged: ``revoked`` when it was, though it may have expired since."""
    return "expired" if transfer.revoked is None else "revoked"


async def purgeExpired(transfers: Any, store: Any, now: float, batch: int = BATCH,
                       traceDays: Optional[float] = None) -> Purged:
    """
    Delete every transfer expired or revoked at ``now``, ``batch`` at a
    time; returns how many of each.  Raises ``PurgeIncomplete`` after
    the rest when some could not be deleted; their claims are let go,
    so the next purge tries them again.  With ``traceDays``, the message
    trace's rows older than that go too.
    """
    counts = {"expired": 0, "revoked": 0}
    failed: list[str] = []
    while True:
        claimed = await transfers.claimExpired(now, limit=batch)
        if not claimed:
            break
        for transfer in claimed:
            try:
                for key in sorted({stored.object_key for stored in transfer.files}):
                    await store.delete(key)
                await transfers.tombstone(transfer.id)
            except Exception:
                # Let go at the end, so the next purge tries again; the others go now.
                log.failure("purging {reason} transfer {id} failed", id=transfer.id, reason=reason(transfer))
                failed.append(transfer.id)
                continue
            counts[reason(transfer)] += 1
    await transfers.purgeDedup(now)
    purged = Purged(**counts)
    if traceDays is not None:
        traced = await transfers.purgeTrace(now - traceDays * DAY)
        if traced:
            log.info("purged {count} message trace row(s) older than {days:g} days", count=traced, days=traceDays)
    if failed:
        await transfers.unclaim(failed)
        raise PurgeIncomplete(f"{len(failed)} transfer(s) could not be purged, {purged.total} were ({purged})")
    return purged


async def expiredList(transfers: Any, now: float) -> list[Any]:
    """What ``purgeExpired`` would delete at ``now`` (expired or revoked), deleting nothing (``purge --dry-run``)."""
    found: list[Any] = []
    while True:
        batch = await transfers.expiredTransfers(now, limit=BATCH, offset=len(found))
        found.extend(batch)
        if len(batch) < BATCH:
            return found


class PurgeService(TimerService):
    """Runs ``purgeExpired`` every ``interval`` seconds, logging what it did."""

    def __init__(self, transfers: Any, store: Any, reactor: Any, metrics: Any, leftoverAge: float,
                 interval: float = PURGE_INTERVAL, traceDays: Optional[float] = None) -> None:
        super().__init__(interval, self._purge)
        self.clock = reactor
        self._transfers = transfers
        self._store = store
        self._reactor = reactor
        self._metrics = metrics
        self._leftoverAge = leftoverAge
        self._traceDays = traceDays

    def _purge(self) -> Any:
        now = self._reactor.seconds()
        d = ensureDeferred(removeLeftovers(self._store, self._leftoverAge, now))
        d.addCallback(lambda _: ensureDeferred(purgeExpired(self._transfers, self._store, now,
                                                            traceDays=self._traceDays)))

        def done(purged: Purged) -> None:
            self._metrics.purgeTimestamp.set(self._reactor.seconds())
            if purged.total:
                log.info("purged {purged}", purged=purged, expired=purged.expired, revoked=purged.revoked)

        def failed(f: Any) -> None:
            if f.check(PurgeIncomplete):
                log.error("{error}; tried again next hour", error=f.getErrorMessage())
            else:
                log.failure("purge failed", f)

        d.addCallbacks(done, failed)
        return d


def purgeOnce(config: Any, reactor: Any, dryRun: bool = False) -> Any:
    """
    For the command line: open the store and database, purge, close.
    Fires with what was ``Purged``, or with the expired and revoked
    transfers when ``dryRun``.
    """
    from secudoc_gateway.db import Database
    from secudoc_gateway.spool import MemoryBudget
    from secudoc_gateway.storage import storeFor
    from secudoc_gateway.transfers import TransferStore

    async def run() -> Any:
        database = Database.fromConfig(config.database, reactor)
        await database.open()
        store = storeFor(config, reactor, MemoryBudget(config.smtp.memory_budget))
        try:
            transfers = TransferStore(database, reactor)
            if dryRun:
                return await expiredList(transfers, reactor.seconds())
            await removeLeftovers(store, config.smtp.longestTransaction, reactor.seconds())
            return await purgeExpired(transfers, store, reactor.seconds(), traceDays=config.portal.trace_days)
        finally:
            database.close()
            await store.close()

    return ensureDeferred(run())
