"""
The purge: expired transfers go, one that cannot be deleted is left for
the next hour without holding up the rest, and only a complete purge
counts as the last success (``secudoc_purge_last_success_timestamp_seconds``).
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet import defer, task
from twisted.trial.unittest import TestCase

from secudoc_gateway.db import Database
from secudoc_gateway.errors import StorageError
from secudoc_gateway.metrics import Metrics
from secudoc_gateway.purge import PurgeIncomplete, PurgeService, expiredList, purgeExpired
from secudoc_gateway.testing import MemoryStore
from secudoc_gateway.transfers import TransferStore
from tests.test_transfers import DAY, START, makeTransfer


class _StuckStore(MemoryStore):
    """An object store that cannot delete one key (a disk error cannot be made on demand as root)."""

    def __init__(self, stuck: str) -> None:
        super().__init__()
        self.stuck = stuck

    def delete(self, key: str) -> defer.Deferred:
        if key == self.stuck:
            return defer.fail(StorageError(f"cannot delete {key}"))
        return super().delete(key)


class PurgeTests(TestCase):
    @defer.inlineCallbacks
    def setUp(self) -> Any:
        self.db = Database(os.path.abspath(self.mktemp()))
        yield self.db.open()
        self.addCleanup(self.db.close)
        self.clock = task.Clock()
        self.clock.advance(START)
        self.transfers = TransferStore(self.db, self.clock)
        for id in ("T1", "T2", "T3"):
            yield self.transfers.createTransfer(makeTransfer(id, days=1 if id != "T3" else 30))
        self.store = _StuckStore("T1")  # one object per transfer, keyed by its id
        self.clock.advance(2 * DAY)

    @defer.inlineCallbacks
    def test_dryRun(self) -> Any:
        expired = yield defer.ensureDeferred(expiredList(self.transfers, self.clock.seconds()))
        self.assertEqual([t.id for t in expired], ["T1", "T2"])
        self.assertEqual(len((yield self.transfers.transfers())), 3)

    @defer.inlineCallbacks
    def test_incomplete(self) -> Any:
        """T1's object cannot go: T2 goes anyway, then the purge says it was incomplete."""
        d = defer.ensureDeferred(purgeExpired(self.transfers, self.store, self.clock.seconds()))
        failure = yield self.assertFailure(d, PurgeIncomplete)
        self.assertIn("1 transfer(s) could not be purged, 1 were (1 transfer(s): 1 expired, 0 revoked)", str(failure))
        self.assertEqual(sorted(t.id for t in (yield self.transfers.transfers())), ["T1", "T3"])
        self.assertEqual(len(self.flushLoggedErrors(StorageError)), 1)  # logged with the transfer's id

    @defer.inlineCallbacks
    def test_lastSuccess(self) -> Any:
        metrics = Metrics()
        gauge = lambda: metrics.registry.get_sample_value("secudoc_purge_last_success_timestamp_seconds")
        yield PurgeService(self.transfers, self.store, self.clock, metrics, 3600)._purge()
        self.assertEqual(gauge(), 0)
        self.flushLoggedErrors(StorageError)
        self.store.stuck = ""
        yield PurgeService(self.transfers, self.store, self.clock, metrics, 3600)._purge()
        self.assertEqual(gauge(), self.clock.seconds())
        self.assertEqual([t.id for t in (yield self.transfers.transfers())], ["T3"])
