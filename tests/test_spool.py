"""The spool: memory first, disk past a bound or the shared budget, holes for bytes nobody reads."""

from __future__ import annotations

from hypothesis import given, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from secudoc_gateway.spool import MemoryBudget, Spool


class SpoolTests(SynchronousTestCase):
    def test_smallStaysInMemory(self) -> None:
        budget = MemoryBudget(1000)
        spool = Spool(budget, memoryLimit=100)
        spool.write(b"a" * 60)
        spool.write(b"b" * 40)
        self.assertFalse(spool.onDisk)
        self.assertEqual(budget.used, 100)
        self.assertEqual(b"".join(spool.read(50, 70)), b"a" * 10 + b"b" * 10)
        spool.close()
        self.assertEqual(budget.used, 0)

    def test_pastTheBoundGoesToDisk(self) -> None:
        budget = MemoryBudget(1000)
        spool = Spool(budget, memoryLimit=100)
        spool.write(b"a" * 60)
        spool.write(b"b" * 60)
        self.assertTrue(spool.onDisk)
        self.assertEqual(budget.used, 0)
        self.assertEqual(b"".join(spool.read(0, 120)), b"a" * 60 + b"b" * 60)
        spool.close()

    def test_sharedBudget(self) -> None:
        """When other spools used the budget up, the next one goes to disk at once."""
        budget = MemoryBudget(100)
        first = Spool(budget, memoryLimit=100)
        first.write(b"x" * 90)
        second = Spool(budget, memoryLimit=100)
        second.write(b"y" * 20)
        self.assertFalse(first.onDisk)
        self.assertTrue(second.onDisk)
        first.close()
        second.close()
        self.assertEqual(budget.used, 0)

    def test_skipLeavesAHole(self) -> None:
        spool = Spool(MemoryBudget(0), memoryLimit=0)
        spool.write(b"head")
        spool.skip(1000)
        spool.write(b"tail")
        self.assertEqual(spool.size, 1008)
        self.assertEqual(b"".join(spool.read(0, 4)), b"head")
        self.assertEqual(b"".join(spool.read(1004, 1008)), b"tail")
        spool.close()

    def test_runsOfSkipsAndEmptyWrites(self) -> None:
        """As a skipped attachment comes, a chunk at a time: the holes add up, whatever is read meanwhile."""
        spool = Spool(MemoryBudget(0), memoryLimit=0)
        spool.write(b"head")
        for n in (10, 20, 5):
            spool.skip(n)
            spool.write(b"")
            self.assertEqual(b"".join(spool.read(0, 4)), b"head")
        spool.write(b"mid")
        spool.skip(5)
        spool.skip(7)
        spool.write(b"tail")
        self.assertEqual(spool.size, 4 + 35 + 3 + 12 + 4)
        self.assertEqual(b"".join(spool.read(39, 42)), b"mid")
        self.assertEqual(b"".join(spool.read(54, 58)), b"tail")
        spool.close()

    def test_skipInMemoryWritesZeros(self) -> None:
        spool = Spool(MemoryBudget(100), memoryLimit=100)
        spool.write(b"a")
        spool.skip(3)
        self.assertEqual(b"".join(spool.read(0, 4)), b"a\0\0\0")
        spool.close()

    @given(st.lists(st.binary(max_size=300), max_size=20), st.integers(1, 200), st.integers(1, 97))
    def test_readBackInPieces(self, pieces: list[bytes], limit: int, size: int) -> None:
        spool = Spool(MemoryBudget(10_000), memoryLimit=limit)
        for piece in pieces:
            spool.write(piece)
        whole = b"".join(pieces)
        chunks = list(spool.read(0, None, size))
        self.assertEqual(b"".join(chunks), whole)
        self.assertTrue(all(len(c) <= size for c in chunks))
        spool.close()


    def test_writesWhileAReaderWaits(self) -> None:
        """
        A reader paused between pieces (a copy waiting on the store) lets
        writes go on, in memory and across the move to disk, and reads
        the range it was asked for.
        """
        spool = Spool(MemoryBudget(1 << 20), memoryLimit=100)
        spool.write(b"a" * 40)
        reader = spool.read(0, 40, size=10)
        self.assertEqual(next(reader), b"a" * 10)
        spool.write(b"b" * 40)
        self.assertEqual(next(reader), b"a" * 10)
        spool.write(b"c" * 40)
        self.assertTrue(spool.onDisk)
        self.assertEqual(b"".join(reader), b"a" * 20)
        self.assertEqual(b"".join(spool.read(0, 120)), b"a" * 40 + b"b" * 40 + b"c" * 40)
        spool.close()


class MemoryBudgetWaitTests(SynchronousTestCase):
    def test_waitersGrantedInTurnAsBytesAreReleased(self) -> None:
        budget = MemoryBudget(100)
        granted: list[str] = []
        self.assertTrue(budget.reserveOrWait(60, lambda: granted.append("first")))
        self.assertFalse(budget.reserveOrWait(60, lambda: granted.append("second")))
        self.assertFalse(budget.reserveOrWait(30, lambda: granted.append("third")))
        self.assertFalse(budget.reserve(10))  # a spool does not jump the queue: it goes to disk
        budget.release(60)
        self.assertEqual((granted, budget.used), (["second", "third"], 90))

    def test_largerThanTheBudgetWhenNothingIsHeld(self) -> None:
        budget = MemoryBudget(100)
        granted: list[int] = []
        self.assertTrue(budget.reserve(10))
        self.assertFalse(budget.reserveOrWait(500, lambda: granted.append(500)))
        budget.release(10)
        self.assertEqual((granted, budget.used), ([500], 500))
