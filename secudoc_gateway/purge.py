"""
Expired transfers go: their objects first, then their rows, so a crash
between the two leaves a row whose objects are gone (the link then says
"expired" anyway) rather than objects nobody can find.  The running
server purges at start and hourly; ``secudoc-gateway purge`` does it
once.  Each purge also removes the store's crash leftovers: temporary
objects older than the longest possible transaction.
"""

from __future__ import annotations

from typing import Any

from twisted.application.internet import TimerService
from twisted.internet.defer import ensureDeferred
from twisted.logger import Logger

log = Logger()

PURGE_INTERVAL = 3600.0
BATCH = 100


async def removeLeftovers(store: Any, olderThan: float, now: float) -> None:
    try:
        removed = await store.removeLeftovers(olderThan, now)
    except Exception:
        log.failure("removing the store's leftovers failed")
        return
    if removed:
        log.info("removed {count} temporary object(s) a crash left", count=removed)


async def purgeExpired(transfers: Any, store: Any, now: float) -> int:
    """Delete every transfer expired at ``now``; returns how many."""
    count = 0
    failed: set[str] = set()
    while True:
        batch = [t for t in await transfers.expiredTransfers(now, limit=BATCH) if t.id not in failed]
        if not batch:
            break
        for transfer in batch:
            try:
                for stored in transfer.files:
                    await store.delete(stored.object_key)
                await transfers.deleteTransfer(transfer.id)
            except Exception:
                # Tried again next hour; the others go now.
                log.failure("purging transfer {id} failed", id=transfer.id)
                failed.add(transfer.id)
                continue
            count += 1
    await transfers.purgeDedup(now)
    return count


class PurgeService(TimerService):
    """Runs ``purgeExpired`` every ``interval`` seconds, logging what it did."""

    def __init__(self, transfers: Any, store: Any, reactor: Any, leftoverAge: float,
                 interval: float = PURGE_INTERVAL) -> None:
        super().__init__(interval, self._purge)
        self.clock = reactor
        self._transfers = transfers
        self._store = store
        self._reactor = reactor
        self._leftoverAge = leftoverAge

    def _purge(self) -> Any:
        now = self._reactor.seconds()
        d = ensureDeferred(removeLeftovers(self._store, self._leftoverAge, now))
        d.addCallback(lambda _: ensureDeferred(purgeExpired(self._transfers, self._store, now)))

        def done(count: int) -> None:
            if count:
                log.info("purged {count} expired transfer(s)", count=count)

        d.addCallbacks(done, lambda f: log.failure("purge failed", f))
        return d


def purgeOnce(config: Any, reactor: Any) -> Any:
    """For the command line: open the store and database, purge, close."""
    from secudoc_gateway.db import Database
    from secudoc_gateway.storage.fs import FilesystemStore
    from secudoc_gateway.transfers import TransferStore

    async def run() -> int:
        store = FilesystemStore(config.storage.path, reactor)
        await removeLeftovers(store, config.smtp.longestTransaction, reactor.seconds())
        database = Database.fromURL(config.database.url, reactor)
        await database.open()
        try:
            return await purgeExpired(TransferStore(database, reactor), store, reactor.seconds())
        finally:
            database.close()

    return ensureDeferred(run())
