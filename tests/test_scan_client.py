"""
The clamd client (scan.client) against scripted clamd stand-ins on real
unix sockets: the faults a real clamd will not make on demand (silence,
an answer before the stream ends), and the per-message bound.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import TestCase

from secudoc_gateway.config.values import ScanConfig
from secudoc_gateway.scan import MAX_SCANS, ScanResult, Scanner
from tests.support import asyncTest, until


class Standin(Protocol):
    """
    Reads everything; answers ``answer`` after ``after`` bytes (never,
    when ``None``), then closes once the client has (as clamd does).
    """

    def __init__(self, server: "Server") -> None:
        self.server = server
        self.received = 0
        self.answered = False

    def connectionMade(self) -> None:
        self.server.open.add(self)

    def dataReceived(self, data: bytes) -> None:
        self.received += len(data)
        if self.server.after is not None and self.received >= self.server.after and not self.answered:
            self.answered = True
            self.transport.write(self.server.answer)

    def connectionLost(self, reason: Any = None) -> None:
        self.server.open.discard(self)


class Server(Factory):
    def __init__(self, answer: bytes = b"stream: OK\0", after: Any = None) -> None:
        self.answer = answer
        self.after = after
        self.open: set[Standin] = set()

    def buildProtocol(self, addr: Any) -> Standin:
        return Standin(self)


def socketPath(test: TestCase) -> str:
    """
    A unix socket's path in a short temporary folder: under trial's own
    folder in a deep checkout it can pass the 107 bytes AF_UNIX allows.
    """
    folder = tempfile.mkdtemp(prefix="secudoc-scan-")
    test.addCleanup(shutil.rmtree, folder, True)
    return os.path.join(folder, "clamd.sock")


class ClientTests(TestCase):
    def scanner(self, server: Server, timeout: float = 10, maxSize: int = 1 << 30) -> Scanner:
        path = socketPath(self)
        port = reactor.listenUNIX(path, server)
        self.addCleanup(port.stopListening)
        return Scanner(ScanConfig(clamd="unix:" + path, timeout=timeout, max_file_size=maxSize), reactor)

    @asyncTest
    async def test_silentClamdTimesOut(self) -> None:
        scans = self.scanner(Server(), timeout=0.3).message()
        scan = scans.open(0)
        scan.feed(b"some bytes")
        scan.finish()
        verdict = await scan.result()
        self.assertIs(verdict.result, ScanResult.ERROR)
        self.assertIn("no verdict within 0.3 s", verdict.reason)

    @asyncTest
    async def test_earlyLimitAnswerIsSkipped(self) -> None:
        """clamd's StreamMaxLength answer comes mid-stream: skipped, and the rest is not sent."""
        server = Server(b"INSTREAM size limit exceeded. ERROR\0", after=50000)
        scan = self.scanner(server).message().open(0)
        while not scan.result().called:
            waiting = scan.feed(b"x" * 16384)
            if waiting is not None:
                await waiting
        verdict = await scan.result()
        self.assertIs(verdict.result, ScanResult.SKIPPED, verdict.reason)
        self.assertIsNone(scan.feed(b"more"))

    @asyncTest
    async def test_maxFileSize(self) -> None:
        scan = self.scanner(Server(after=1 << 30), maxSize=100).message().open(0)
        self.assertIsNone(scan.feed(b"x" * 101))
        verdict = await scan.result()
        self.assertEqual((verdict.result, verdict.reason), (ScanResult.SKIPPED, "over [scan] max_file_size"))

    @asyncTest
    async def test_unreachable(self) -> None:
        path = socketPath(self)
        scan = Scanner(ScanConfig(clamd="unix:" + path), reactor).message().open(0)
        scan.finish()
        verdict = await scan.result()
        self.assertIs(verdict.result, ScanResult.ERROR)
        self.assertIn("clamd unreachable", verdict.reason)

    @asyncTest
    async def test_boundedPerMessage(self) -> None:
        """One message's files talk to clamd at most MAX_SCANS at a time; the rest wait, their bytes kept."""
        server = Server()
        scans = self.scanner(server).message()
        files = [scans.open(n) for n in range(MAX_SCANS + 2)]
        waiting = [f.feed(b"data %d" % n) for n, f in enumerate(files)]
        for f in files:
            f.finish()
        await until(lambda: len(server.open) == MAX_SCANS, "the first scans connected")
        self.assertTrue(all(isinstance(w, Deferred) for w in waiting[MAX_SCANS:]))
        self.assertFalse(any(w.called for w in waiting[MAX_SCANS:] if w is not None))
        server.after = 0  # answer from now on: the first four answer, the rest follow
        for standin in list(server.open):
            standin.dataReceived(b"")
        verdicts = [await scans.verdict(n) for n in range(len(files))]
        self.assertEqual([v.result for v in verdicts], [ScanResult.CLEAN] * len(files))

    @asyncTest
    async def test_health(self) -> None:
        scanner = self.scanner(Server(b"PONG\0", after=1))
        await scanner.check()
        broken = self.scanner(Server(b"NOPE\0", after=1))
        with self.assertRaises(Exception):
            await broken.check()
