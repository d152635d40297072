"""
Hostile part counts (issue 7): a finished part holds no buffer, a
refused message gives its memory back, and a part too small to be worth
a file costs no file system work unless the message is protected.
"""

from __future__ import annotations

import gc
import os
import sys
import tracemalloc
from typing import Any

from twisted.internet import reactor, task
from twisted.trial.unittest import TestCase

from secudoc_gateway.envelope import Envelope
from secudoc_gateway.ingress.gateway import Gateway
from secudoc_gateway import replies
from secudoc_gateway.testing import MemoryStore, envelopeFor, ingressOn, startGateway, writeConfig
from tests.support import asyncTest, inThread, maildirMessages, sendBDAT
from tests.test_ingress_transaction import Producer


def tinyParts(count: int, extra: bytes = b"") -> bytes:
    """``count`` attachments of four bytes each, every one a candidate."""
    part = b"--B\r\nContent-Type: application/octet-stream; name=a.bin\r\n\r\nAAAA\r\n"
    return (b"From: alice@example.test\r\nTo: bob@external.test\r\nSubject: parts\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n"
            + part * count + extra + b"--B--\r\n")


class PartMemory(TestCase):
    """A transaction fed thousands of parts, its memory traced."""

    def setUp(self) -> None:
        tracemalloc.start()
        self.addCleanup(tracemalloc.stop)

    def gateway(self, store: MemoryStore, **smtp: Any) -> Gateway:
        return ingressOn(task.Clock(), os.path.abspath(self.mktemp()), smtp=smtp, store=store)

    def envelope(self, gateway: Gateway) -> Envelope:
        return envelopeFor(gateway)

    def fed(self, gateway: Gateway, message: bytes) -> tuple[Any, int]:
        """A transaction fed ``message``, and the bytes it holds (traced) while open."""
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        tx = gateway.begin(self.envelope(gateway), Producer())
        for at in range(0, len(message), 65536):
            tx.write(message[at:at + 65536])
        gc.collect()
        return tx, tracemalloc.get_traced_memory()[0] - before

    def test_partStateCountsInTheBudget(self) -> None:
        """
        1,000 finished tiny attachments hold no more than the budget
        counts for them (each held a 64 KiB frame buffer, uncounted).
        """
        gateway = self.gateway(MemoryStore())
        tx, held = self.fed(gateway, tinyParts(1000))
        self.assertLess(held, gateway.budget.used, f"{held} bytes held, {gateway.budget.used} counted")
        tx.abort()
        self.assertEqual(gateway.budget.used, 0)

    def test_refusedMessageGivesItsMemoryBack(self) -> None:
        """Past max_mime_parts the parts already ended let go at once, and all of it after the reply."""
        store = MemoryStore()
        gateway = self.gateway(store, max_mime_parts=300)
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        tx, held = self.fed(gateway, tinyParts(400))
        self.assertLess(held, gateway.budget.used, f"{held} bytes held, {gateway.budget.used} counted")
        self.assertEqual(self.successResultOf(tx.finish()), replies.MIME_LIMIT)
        del tx
        gc.collect()
        self.assertEqual(gateway.budget.used, 0)
        self.assertEqual(store.objects, {})
        self.assertLess(tracemalloc.get_traced_memory()[0] - before, 64 * 1024)

    def test_budgetUsedUp(self) -> None:
        """Parts past the memory budget: 452 4.3.1 (EXO retries), nothing stored, the budget back."""
        store = MemoryStore()
        gateway = self.gateway(store, memory_budget=200_000)
        tx, _ = self.fed(gateway, tinyParts(1000))
        self.assertLessEqual(gateway.budget.used, 200_000)
        self.assertEqual(self.successResultOf(tx.finish()), replies.OUT_OF_MEMORY)
        self.assertEqual(gateway.budget.used, 0)
        self.assertEqual(store.objects, {})

    def test_ordinaryMessageNeedsNoBudget(self) -> None:
        """A message of a few parts is received whole when the spools of a busy moment hold the budget."""
        store = MemoryStore()
        gateway = self.gateway(store, memory_budget=1)
        tx, _ = self.fed(gateway, tinyParts(5))
        self.assertFalse(tx.reception.overBudget)
        tx.abort()

    def test_smallObjectsWaitForTheDecision(self) -> None:
        """Tiny parts reach the store only when the message is protected (the object's writer buffers them)."""
        store = MemoryStore()
        gateway = self.gateway(store)
        tx, _ = self.fed(gateway, tinyParts(20))
        self.assertEqual(store.objects, {})
        tx.abort()
        self.assertEqual(gateway.budget.used, 0)


class FileSystemWork(TestCase):
    """The real service and fs store; Python's audit events count the store's file work."""

    events: list[tuple[str, str]] = []
    watched: str = ""
    hooked = False  # an audit hook stays for the process: it records only while ``watched`` is set

    @classmethod
    def _audit(cls, event: str, args: tuple) -> None:
        if cls.watched and event in ("open", "os.rename", "os.remove", "os.mkdir", "os.rmdir") and args:
            path = args[0]
            if isinstance(path, bytes):
                path = os.fsdecode(path)
            if isinstance(path, str) and path.startswith(cls.watched):
                cls.events.append((event, path))

    @asyncTest
    async def test_tinyPartsCostNoFileSystemWork(self) -> None:
        """A passed message of 300 tiny attachments creates, renames and deletes no object file."""
        if not FileSystemWork.hooked:
            sys.addaudithook(FileSystemWork._audit)
            FileSystemWork.hooked = True
        folder = os.path.abspath(self.mktemp())
        gateway = await startGateway(writeConfig(folder), reactor)
        self.addCleanup(gateway.stop)
        FileSystemWork.events = []
        FileSystemWork.watched = os.path.join(folder, "objects")
        try:
            code, text = await inThread(sendBDAT, gateway.smtpPort, "alice@example.test",
                                        ["bob@external.test"], tinyParts(300))
        finally:
            FileSystemWork.watched = ""
        self.assertEqual(code, 250, text)
        self.assertIn(b"X-SecuDoc-Status: passed", maildirMessages(os.path.join(folder, "outbox", "example"))[0])
        self.maxDiff = None
        self.assertEqual(FileSystemWork.events, [])
