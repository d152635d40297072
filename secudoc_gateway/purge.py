"""
Expired transfers go: their objects first, then their rows, so a crash
between the two leaves a row whose objects are gone (the link then says
"expired" anyway) rather than objects nobody can find.  The running
server purges hourly; ``secudoc-gateway purge`` does it once.  Each
batch is claimed in the database first, so purges running at once on
several nodes (or workers) never take the same transfer.
"""

from __future__ import annotations

from typing import Any

from twisted.application.internet import TimerService
from twisted.internet.defer import ensureDeferred
from twisted.logger import Logger

log = Logger()

PURGE_INTERVAL = 3600.0
BATCH = 100


async def purgeExpired(transfers: Any, store: Any, now: float, batch: int = BATCH) -> int:
    """Delete every transfer expired at ``now``, ``batch`` at a time; returns how many."""
    count = 0
    while True:
        claimed = await transfers.claimExpired(now, limit=batch)
        if not claimed:
            break
        for transfer in claimed:
            try:
                for stored in transfer.files:
                    await store.delete(stored.object_key)
                await transfers.deleteTransfer(transfer.id)
            except Exception:
                # Its claim lapses before the next hourly purge, which
                # tries again; the others go now.
                log.failure("purging transfer {id} failed", id=transfer.id)
                continue
            count += 1
    await transfers.purgeDedup(now)
    return count


class PurgeService(TimerService):
    """Runs ``purgeExpired`` every ``interval`` seconds, logging what it did."""

    def __init__(self, transfers: Any, store: Any, reactor: Any, interval: float = PURGE_INTERVAL) -> None:
        super().__init__(interval, self._purge)
        self.clock = reactor
        self._transfers = transfers
        self._store = store
        self._reactor = reactor

    def _purge(self) -> Any:
        d = ensureDeferred(purgeExpired(self._transfers, self._store, self._reactor.seconds()))

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
        database = Database.fromConfig(config.database, reactor)
        await database.open()
        try:
            return await purgeExpired(TransferStore(database, reactor), FilesystemStore(config.storage.path, reactor),
                                      reactor.seconds())
        finally:
            database.close()

    return ensureDeferred(run())
