"""
Tests for secudoc_gateway.storage.objects: a transfer's files appended
to one object in message order, even while an attached message is
being copied; discarded whole, finished or not.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from secudoc_gateway.errors import StorageError
from secudoc_gateway.storage.objects import TransferObject, objectKey
from secudoc_gateway.testing import MemoryStore


class TransferObjectTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.store = MemoryStore()
        self.target = TransferObject(self.store, objectKey("abcdefghijklmnop"))

    def test_key(self) -> None:
        self.assertEqual(self.target.key, "ab/abcdefghijklmnop")

    def test_stepsAfterExclusiveWorkWait(self) -> None:
        """Bytes of the next file wait until the attached message before it is in."""
        self.successResultOf(self.target.run(lambda: self.target.append(b"first")))
        copying: Deferred = Deferred()
        copied = self.target.exclusive(lambda: copying)
        later = self.target.run(lambda: self.target.append(b"third"))
        self.assertNoResult(later)
        self.target.append(b"second")
        copying.callback(None)
        self.successResultOf(copied)
        self.successResultOf(later)
        self.assertEqual(self.successResultOf(self.target.finish()), len(b"firstsecondthird"))
        self.assertEqual(self.store.objects, {self.target.key: b"firstsecondthird"})

    def test_failedExclusiveWorkReleases(self) -> None:
        def work() -> Deferred:
            raise StorageError("the store went away")

        copied = self.target.exclusive(work)
        later = self.target.run(lambda: self.target.append(b"next"))
        self.successResultOf(later)
        self.failureResultOf(copied, StorageError)

    def test_discardUnfinished(self) -> None:
        self.target.run(lambda: self.target.append(b"bytes"))
        self.successResultOf(self.target.discard())
        self.assertEqual(self.store.objects, {})
        self.failureResultOf(self.target.run(lambda: self.target.append(b"more")), StorageError)

    def test_discardFinished(self) -> None:
        self.target.run(lambda: self.target.append(b"bytes"))
        self.successResultOf(self.target.finish())
        self.assertEqual(list(self.store.objects), [self.target.key])
        self.successResultOf(self.target.discard())
        self.assertEqual(self.store.objects, {})

    def test_discardNothingWritten(self) -> None:
        self.successResultOf(self.target.discard())
        self.assertEqual(self.store.objects, {})
