"""
Tests for secudoc_gateway.ingress.sink: a big part's decode, hash and
seal in the reactor's thread pool, in order, with the memory budget; a
small part's, or any part's when the budget has nothing to spare,
inline.  A real filesystem store and the real reactor's threads.
"""

from __future__ import annotations

import base64
import hashlib
import os
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import gatherResults
from twisted.trial.unittest import TestCase

from secudoc_gateway import crypto
from secudoc_gateway.ingress.reception import workerOf
from secudoc_gateway.ingress.sink import INLINE_BYTES, STEP_BYTES, AttachmentSink
from secudoc_gateway.mime.decode import decoderFor
from secudoc_gateway.spool import MemoryBudget
from secudoc_gateway.storage.fs import FilesystemStore
from secudoc_gateway.storage.objects import TransferObject
from tests.support import asyncTest

KEY = bytes(range(32))


class Steps:
    """The reactor's worker, counting the steps it was given; ``failAt`` makes that step raise."""

    def __init__(self, failAt: int = 0) -> None:
        self.worker = workerOf(reactor)
        self.count = 0
        self.failAt = failAt

    def __call__(self, f: Any, *args: Any) -> Any:
        self.count += 1
        if self.count == self.failAt:
            def broken(*args: Any) -> None:
                raise OSError("the step broke")
            return self.worker(broken, *args)
        return self.worker(f, *args)


class SinkTests(TestCase):
    def setUp(self) -> None:
        self.folder = os.path.abspath(self.mktemp())
        self.store = FilesystemStore(self.folder, reactor)
        self.target = TransferObject(self.store, "ab/abcdef")

    async def store_(self, data: bytes, budget: MemoryBudget, steps: Steps) -> AttachmentSink:
        """``data`` as a base64 part fed in 64 KiB pieces, waiting on what the sink says (as the extractor does)."""
        wire = base64.encodebytes(data).replace(b"\n", b"\r\n")
        sink = AttachmentSink(self.target, KEY, decoderFor("base64"), worker=steps, budget=budget)
        for at in range(0, len(wire), 65536):
            written = sink.feed(wire[at:at + 65536])
            if written is not None:
                await written
        await sink.finish()
        await self.target.finish()
        return sink

    def opened(self) -> bytes:
        with open(os.path.join(self.folder, "ab", "abcdef"), "rb") as f:
            sealed = f.read()
        decryptor = crypto.Decryptor(KEY)
        return decryptor.feed(sealed) + decryptor.finish()

    @asyncTest
    async def test_bigPartInSteps(self) -> None:
        """A big part goes through the worker in order: the object opens to the file, the hash is the file's."""
        data = os.urandom(4 * STEP_BYTES + 12345)
        budget, steps = MemoryBudget(64 * 2**20), Steps()
        sink = await self.store_(data, budget, steps)
        self.assertGreaterEqual(steps.count, 3)
        self.assertEqual(self.opened(), data)
        self.assertEqual(sink.sha256, hashlib.sha256(data).hexdigest())
        self.assertEqual((sink.size, sink.offset, sink.length), (len(data), 0, self.target.size))
        self.assertEqual(budget.used, 0)

    @asyncTest
    async def test_smallPartInline(self) -> None:
        data = os.urandom(INLINE_BYTES // 2)
        steps = Steps()
        sink = await self.store_(data, MemoryBudget(64 * 2**20), steps)
        self.assertEqual(steps.count, 0)
        self.assertEqual(self.opened(), data)
        self.assertEqual(sink.sha256, hashlib.sha256(data).hexdigest())

    @asyncTest
    async def test_noBudgetInline(self) -> None:
        """With the budget spent a big part is worked inline: the same bytes, no step out."""
        data = os.urandom(3 * STEP_BYTES)
        budget = MemoryBudget(64 * 2**20)
        self.assertTrue(budget.reserve(budget.limit))
        steps = Steps()
        sink = await self.store_(data, budget, steps)
        self.assertEqual(steps.count, 0)
        self.assertEqual(self.opened(), data)
        self.assertEqual(sink.sha256, hashlib.sha256(data).hexdigest())

    @asyncTest
    async def test_failedStepFailsThePart(self) -> None:
        """A step that fails fails the part: its write and the finish, never an object missing bytes."""
        budget = MemoryBudget(64 * 2**20)
        with self.assertRaises(OSError):
            await self.store_(os.urandom(4 * STEP_BYTES), budget, Steps(failAt=2))
        self.assertEqual(budget.used, 0)

    @asyncTest
    async def test_nextFileWaitsForTheSteps(self) -> None:
        """
        The next file, stored inline while the big one's steps and last
        bytes are still out, goes in behind them: each span opens to its file.
        """
        big, small = os.urandom(3 * STEP_BYTES + 777), os.urandom(5000)
        budget, steps = MemoryBudget(64 * 2**20), Steps()
        first = AttachmentSink(self.target, KEY, decoderFor("base64"), worker=steps, budget=budget)
        wire = base64.encodebytes(big).replace(b"\n", b"\r\n")
        pending = [first.feed(wire[at:at + 65536]) for at in range(0, len(wire), 65536)]
        pending.append(first.finish())
        second = AttachmentSink(self.target, KEY, decoderFor("base64"), worker=steps, budget=budget)
        pending += [second.feed(base64.encodebytes(small)), second.finish()]
        await gatherResults([d for d in pending if d is not None])
        await self.target.finish()
        self.assertGreaterEqual(steps.count, 3)
        with open(os.path.join(self.folder, "ab", "abcdef"), "rb") as f:
            stored = f.read()
        for sink, data in ((first, big), (second, small)):
            assert sink.offset is not None
            decryptor = crypto.Decryptor(KEY)
            span = stored[sink.offset:sink.offset + sink.length]
            self.assertEqual(decryptor.feed(span) + decryptor.finish(), data)
        self.assertEqual(len(stored), first.length + second.length)
