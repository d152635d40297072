"""
Tests for secudoc_gateway.storage.fs: atomic writes, streaming reads
with backpressure (driven by a Clock, then over a real socket through
twisted.web), deletion, key validation and the health check.
"""

from __future__ import annotations

import os
from typing import Any, Optional

from twisted.internet import reactor
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint, connectProtocol
from twisted.internet.interfaces import IConsumer, IPushProducer
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, readBody
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
from zope.interface import implementer
from zope.interface.verify import verifyObject

from secudoc_gateway import crypto
from secudoc_gateway.errors import ObjectNotFound, ProducerStopped, StorageError
from secudoc_gateway.interfaces import IObjectStore, IObjectWriter
from secudoc_gateway.storage.fs import TEMPORARY_PREFIX, FilesystemStore, validateKey
from secudoc_gateway.testing.polling import until

LONGEST_KEY = "/".join(["y" * 255] * 3 + ["y" * 254, "z"])
assert len(LONGEST_KEY) == 1024
BAD_KEYS = [
    "",
    "/abs",
    "a/../b",
    "..",
    "a..b",
    ".hidden",
    "a/.tmp-1234",
    "a//b",
    "a/",
    "-dash",
    "sp ace",
    "a\\b",
    "nul\x00",
    "ü",
    "a" * 256,
    LONGEST_KEY + "z",
]
GOOD_KEYS = ["a", "abc/0", "t/2h3k4l5m6n7p8q/12", "A.b_c-d", "0/1/2/3", "x" * 255, LONGEST_KEY]


def allFiles(root: str) -> list[str]:
    """Every file under ``root``, relative, sorted: what is really on disk."""
    found = []
    for folder, _, names in os.walk(root):
        for name in names:
            found.append(os.path.relpath(os.path.join(folder, name), root))
    return sorted(found)


def result(d: Deferred[Any]) -> Any:
    """The result of an already-fired Deferred (test helper for SynchronousTestCase)."""
    box: list[Any] = []
    d.addBoth(box.append)
    assert box, "Deferred has not fired"
    if isinstance(box[0], Failure):
        box[0].raiseException()
    return box[0]


@implementer(IConsumer)
class RecordingConsumer:
    """A consumer that can pause its producer after each write, like a full socket."""

    def __init__(self, pauseEveryWrite: bool = False) -> None:
        self.chunks: list[bytes] = []
        self.producer: Optional[IPushProducer] = None
        self.streaming: Optional[bool] = None
        self.unregistered = False
        self.pauseEveryWrite = pauseEveryWrite

    def registerProducer(self, producer: IPushProducer, streaming: bool) -> None:
        assert self.producer is None
        self.producer = producer
        self.streaming = streaming

    def unregisterProducer(self) -> None:
        self.producer = None
        self.unregistered = True

    def write(self, data: bytes) -> None:
        self.chunks.append(data)
        if self.pauseEveryWrite:
            assert self.producer is not None
            self.producer.pauseProducing()


class TurnClock(Clock):
    """
    A Clock whose ``turn()`` runs only the calls due when it starts, as one
    reactor iteration does (``callLater(0)`` from a call runs on the next).
    """

    def turn(self) -> None:
        for call in [c for c in self.getDelayedCalls() if c.getTime() <= self.seconds()]:
            if call.active():
                self.calls.remove(call)
                call.called = 1
                call.func(*call.args, **call.kw)


class StoreTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.root = self.mktemp()
        self.clock = Clock()
        self.store = FilesystemStore(self.root, reactor=self.clock, chunkSize=1000)

    def put(self, key: str, data: bytes) -> int:
        w = self.store.writer(key)
        for i in range(0, len(data), 777):
            result(w.write(data[i : i + 777]))
        return result(w.finish())

    def read(self, key: str, offset: int = 0) -> bytes:
        consumer = RecordingConsumer()
        d = self.store.produce(key, consumer, offset)
        while self.clock.getDelayedCalls():
            self.clock.advance(0)
        result(d)
        self.assertTrue(consumer.unregistered)
        self.assertTrue(consumer.streaming)
        return b"".join(consumer.chunks)

    def test_interfaces(self) -> None:
        self.assertTrue(verifyObject(IObjectStore, self.store))
        writer = self.store.writer("k")
        self.assertTrue(verifyObject(IObjectWriter, writer))
        result(writer.abort())

    def test_roundTrip(self) -> None:
        data = os.urandom(10_000)
        self.assertEqual(self.put("t/abc/0", data), len(data))
        self.assertEqual(result(self.store.size("t/abc/0")), len(data))
        self.assertEqual(self.read("t/abc/0"), data)
        self.assertEqual(allFiles(self.root), [os.path.join("t", "abc", "0")])
        with open(os.path.join(self.root, "t", "abc", "0"), "rb") as f:
            self.assertEqual(f.read(), data)

    def test_emptyObject(self) -> None:
        self.assertEqual(self.put("empty", b""), 0)
        self.assertEqual(self.read("empty"), b"")

    def test_offset(self) -> None:
        data = os.urandom(5000)
        self.put("k", data)
        self.assertEqual(self.read("k", 1234), data[1234:])
        self.assertEqual(self.read("k", 5000), b"")
        self.assertEqual(self.read("k", 9999), b"")
        self.assertRaises(ValueError, self.store.produce, "k", RecordingConsumer(), -1)

    def test_encryptedRoundTrip(self) -> None:
        """The pipeline's use: encrypt while writing, decrypt while reading."""
        key = crypto.fileKey(crypto.newToken(), crypto.newTransferId(), 0)
        plain = os.urandom(300_000)
        enc = crypto.Encryptor(key, 4096)
        w = self.store.writer("x/0")
        for i in range(0, len(plain), 10_000):
            result(w.write(enc.feed(plain[i : i + 10_000])))
        result(w.write(enc.finish()))
        stored = result(w.finish())
        self.assertEqual(stored, crypto.ciphertextSize(len(plain), 4096))
        self.assertEqual(crypto.plaintextSize(result(self.store.size("x/0")), 4096), len(plain))
        dec = crypto.Decryptor(key)
        self.assertEqual(dec.feed(self.read("x/0")) + dec.finish(), plain)

    def test_invisibleUntilFinished(self) -> None:
        """A half-written object is never visible under its key (SPEC 7)."""
        w = self.store.writer("a/b")
        result(w.write(b"x" * 5000))
        self.assertRaises(ObjectNotFound, result, self.store.size("a/b"))
        self.assertRaises(ObjectNotFound, result, self.store.produce("a/b", RecordingConsumer()))
        self.assertFalse(os.path.exists(os.path.join(self.root, "a", "b")))
        folder = os.path.join(self.root, "a")  # made with the first bytes on disk
        names = os.listdir(folder) if os.path.exists(folder) else []
        self.assertTrue(all(name.startswith(TEMPORARY_PREFIX) for name in names))
        self.assertEqual(result(w.finish()), 5000)
        self.assertEqual(os.listdir(os.path.join(self.root, "a")), ["b"])

    def test_replaceIsAtomic(self) -> None:
        """Rewriting a key shows the old object until the new one is finished."""
        self.put("k", b"old")
        w = self.store.writer("k")
        result(w.write(b"new contents"))
        self.assertEqual(self.read("k"), b"old")
        result(w.finish())
        self.assertEqual(self.read("k"), b"new contents")
        self.assertEqual(allFiles(self.root), ["k"])

    def test_abortLeavesNothing(self) -> None:
        w = self.store.writer("d/e")
        result(w.write(b"x" * 100))
        result(w.abort())
        self.assertEqual(allFiles(self.root), [])
        self.assertRaises(ObjectNotFound, result, self.store.size("d/e"))
        self.assertRaises(StorageError, result, w.write(b"more"))
        self.assertRaises(StorageError, result, w.finish())
        result(w.abort())  # idempotent

    def test_abortAfterFinishKeepsObject(self) -> None:
        w = self.store.writer("k")
        result(w.write(b"kept"))
        result(w.finish())
        result(w.abort())
        self.assertEqual(self.read("k"), b"kept")
        self.assertRaises(StorageError, result, w.write(b"x"))

    def test_concurrentWriters(self) -> None:
        """Two writers of one key use distinct temporary files; the last finish wins."""
        a = self.store.writer("k")
        b = self.store.writer("k")
        result(a.write(b"A" * 10))
        result(b.write(b"B" * 20))
        self.assertTrue(all(os.path.basename(f).startswith(TEMPORARY_PREFIX) for f in allFiles(self.root)))
        result(b.finish())
        result(a.finish())
        self.assertEqual(self.read("k"), b"A" * 10)
        self.assertEqual(allFiles(self.root), ["k"])

    def test_missing(self) -> None:
        consumer = RecordingConsumer()
        error = self.assertRaises(ObjectNotFound, result, self.store.produce("nope", consumer))
        self.assertIsInstance(error, KeyError)
        self.assertIsInstance(error, StorageError)
        self.assertEqual(str(error), "nope")
        self.assertIsNone(consumer.producer)
        self.assertRaises(ObjectNotFound, result, self.store.size("nope"))
        self.put("folder/x", b"1")
        self.assertRaises(ObjectNotFound, result, self.store.size("folder"))
        self.assertRaises(ObjectNotFound, result, self.store.produce("folder", consumer))
        self.assertRaises(ObjectNotFound, result, self.store.size("folder/x/y"))

    def test_delete(self) -> None:
        self.put("t/abc/0", b"zero")
        self.put("t/abc/1", b"one")
        self.put("t/def/0", b"other")
        result(self.store.delete("t/abc/0"))
        self.assertRaises(ObjectNotFound, result, self.store.size("t/abc/0"))
        self.assertEqual(self.read("t/abc/1"), b"one")
        result(self.store.delete("t/abc/1"))
        # The transfer's emptied folder goes; its neighbours and the root stay.
        self.assertEqual(sorted(os.listdir(os.path.join(self.root, "t"))), ["def"])
        result(self.store.delete("t/def/0"))
        self.assertEqual(os.listdir(self.root), [])
        result(self.store.delete("t/def/0"))
        result(self.store.delete("never/was"))

    def test_deleteKeepsFolderWithWriterInProgress(self) -> None:
        self.put("t/a", b"1")
        w = self.store.writer("t/b")
        result(self.store.delete("t/a"))
        result(w.write(b"2"))
        self.assertEqual(result(w.finish()), 1)
        self.assertEqual(self.read("t/b"), b"2")

    def test_keyValidation(self) -> None:
        for key in BAD_KEYS:
            self.assertRaises(ValueError, validateKey, key)
            self.assertRaises(ValueError, self.store.writer, key)
            self.assertRaises(ValueError, self.store.produce, key, RecordingConsumer())
            self.assertRaises(ValueError, self.store.size, key)
            self.assertRaises(ValueError, self.store.delete, key)
        for key in GOOD_KEYS:
            self.assertEqual(validateKey(key), key)
            self.put(key, key.encode())
            self.assertEqual(self.read(key), key.encode())
        self.assertFalse(os.path.exists(os.path.join(os.path.dirname(self.root), "abs")))

    def test_check(self) -> None:
        result(self.store.check())
        self.assertEqual(allFiles(self.root), [])

    def test_checkFails(self) -> None:
        """A folder that cannot be written fails the check (and /healthz)."""
        os.rmdir(self.root)
        with open(self.root, "wb") as f:
            f.write(b"a file where the folder was")
        self.assertRaises(StorageError, result, self.store.check())
        writer = self.store.writer("k")
        writer.write(b"x")
        self.assertRaises(StorageError, result, writer.finish())

    def test_createsFolder(self) -> None:
        root = os.path.join(self.mktemp(), "deep", "objects")
        store = FilesystemStore(root, reactor=self.clock)
        self.assertTrue(os.path.isdir(root))
        result(store.check())

    def test_unusableFolder(self) -> None:
        path = self.mktemp()
        with open(path, "wb"):
            pass
        self.assertRaises(StorageError, FilesystemStore, path, self.clock)


class LeftoverTests(SynchronousTestCase):
    """A crash mid-message leaves a temporary file; it goes once no transaction can still own it."""

    def test_removeLeftovers(self) -> None:
        root = self.mktemp()
        store = FilesystemStore(root, reactor=Clock())
        result(store.writer("ab/done.0").finish())
        now = 1_000_000_000.0
        leftovers = {}
        for name, age in [("old", 7200), ("young", 60)]:
            path = os.path.join(root, "ab", TEMPORARY_PREFIX + name)
            with open(path, "wb") as f:
                f.write(b"half an object")
            os.utime(path, (now - age, now - age))
            leftovers[name] = path
        self.assertEqual(result(store.removeLeftovers(3600, now)), 1)
        self.assertEqual(allFiles(root), ["ab/.tmp-young", "ab/done.0"])
        self.assertEqual(result(store.removeLeftovers(3600, now + 7200)), 1)
        self.assertEqual(allFiles(root), ["ab/done.0"])


class ProducerTests(SynchronousTestCase):
    """The read side as an IPushProducer, driven turn by turn."""

    def setUp(self) -> None:
        self.clock = TurnClock()
        self.store = FilesystemStore(self.mktemp(), reactor=self.clock, chunkSize=100)
        self.data = os.urandom(1050)
        w = self.store.writer("k")
        result(w.write(self.data))
        result(w.finish())

    def test_oneChunkPerTurn(self) -> None:
        """Nothing is read inside produce(); each reactor turn reads one chunk."""
        consumer = RecordingConsumer()
        d = self.store.produce("k", consumer)
        self.assertIs(consumer.streaming, True)
        self.assertEqual(consumer.chunks, [])
        for turn in range(1, 12):
            self.clock.turn()
            self.assertEqual(len(consumer.chunks), turn)
        self.assertNoResult(d)
        self.clock.turn()
        self.assertIsNone(self.successResultOf(d))
        self.assertTrue(consumer.unregistered)
        self.assertEqual(b"".join(consumer.chunks), self.data)
        self.assertEqual([len(c) for c in consumer.chunks], [100] * 10 + [50])

    def test_pauseStopsWrites(self) -> None:
        """A paused producer writes nothing, however long the reactor runs, until resumed."""
        consumer = RecordingConsumer(pauseEveryWrite=True)
        d = self.store.produce("k", consumer)
        producer = consumer.producer
        assert producer is not None
        self.clock.turn()
        self.assertEqual(len(consumer.chunks), 1)
        for _ in range(10):
            self.clock.advance(1)
            self.clock.turn()
        self.assertEqual(len(consumer.chunks), 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        for n in range(2, 12):
            producer.resumeProducing()
            self.assertEqual(len(consumer.chunks), n - 1)  # not synchronously
            self.clock.turn()
            self.assertEqual(len(consumer.chunks), n)
            self.clock.turn()
            self.assertEqual(len(consumer.chunks), n)
        producer.resumeProducing()
        self.clock.turn()
        self.successResultOf(d)
        self.assertEqual(b"".join(consumer.chunks), self.data)

    def test_pauseBeforeFirstRead(self) -> None:
        consumer = RecordingConsumer()
        d = self.store.produce("k", consumer)
        assert consumer.producer is not None
        consumer.producer.pauseProducing()
        self.clock.turn()
        self.assertEqual(consumer.chunks, [])
        consumer.producer.resumeProducing()
        consumer.producer.resumeProducing()  # twice: still one read a turn
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        while self.clock.getDelayedCalls():
            self.clock.turn()
        self.successResultOf(d)
        self.assertEqual(b"".join(consumer.chunks), self.data)

    def test_stop(self) -> None:
        """The consumer going away stops the reads and fails the Deferred."""
        consumer = RecordingConsumer()
        d = self.store.produce("k", consumer)
        self.clock.turn()
        assert consumer.producer is not None
        consumer.producer.stopProducing()
        self.failureResultOf(d, ProducerStopped)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(len(consumer.chunks), 1)
        consumer.producer.stopProducing()  # a second stop is harmless
        consumer.producer.resumeProducing()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_cancel(self) -> None:
        consumer = RecordingConsumer()
        d = self.store.produce("k", consumer)
        self.clock.turn()
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertTrue(consumer.unregistered)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_consumerRaises(self) -> None:
        class Broken(RecordingConsumer):
            def write(self, data: bytes) -> None:
                raise RuntimeError("socket on fire")

        d = self.store.produce("k", Broken())
        self.clock.turn()
        self.failureResultOf(d, RuntimeError)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_deletedWhileReading(self) -> None:
        """An open object stays readable to the end when deleted meanwhile (POSIX unlink)."""
        consumer = RecordingConsumer()
        d = self.store.produce("k", consumer)
        self.clock.turn()
        result(self.store.delete("k"))
        while self.clock.getDelayedCalls():
            self.clock.turn()
        self.successResultOf(d)
        self.assertEqual(b"".join(consumer.chunks), self.data)


class ObjectResource(Resource):
    """Serves objects as twisted.web does for downloads: the request is the consumer."""

    isLeaf = True

    def __init__(self, store: FilesystemStore) -> None:
        super().__init__()
        self.store = store
        self.requests: list[Request] = []
        self.outcomes: list[Deferred[None]] = []

    def render_GET(self, request: Request) -> Any:
        key = request.path.decode("ascii").lstrip("/")
        size = self.store.size(key)
        request.setHeader(b"content-length", b"%d" % (result(size),))
        self.requests.append(request)
        outcome: Deferred[None] = Deferred()
        self.outcomes.append(outcome)

        def done(_: None) -> None:
            request.finish()
            outcome.callback(None)

        d = self.store.produce(key, request)
        d.addCallbacks(done, outcome.errback)
        return NOT_DONE_YET


class RawClient(Protocol):
    """An HTTP/1.0 client that can stop reading, as a slow recipient does."""

    def __init__(self, path: bytes, pauseAfterFirst: bool = False, abortAfterFirst: bool = False):
        self.path = path
        self.pauseAfterFirst = pauseAfterFirst
        self.abortAfterFirst = abortAfterFirst
        self.received: list[bytes] = []
        self.count = 0
        self.done: Deferred[bytes] = Deferred()

    def connectionMade(self) -> None:
        self.transport.write(b"GET /" + self.path + b" HTTP/1.0\r\nHost: test\r\n\r\n")

    def dataReceived(self, data: bytes) -> None:
        first = self.count == 0
        self.received.append(data)
        self.count += len(data)
        if first and self.pauseAfterFirst:
            self.transport.pauseProducing()
        if first and self.abortAfterFirst:
            self.transport.abortConnection()

    def connectionLost(self, reason: Failure) -> None:
        self.done.callback(b"".join(self.received))


class SocketTests(TestCase):
    """Downloads over a real TCP connection through twisted.web."""

    @inlineCallbacks
    def setUp(self) -> Any:
        self.store = FilesystemStore(self.mktemp())
        self.resource = ObjectResource(self.store)
        endpoint = TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
        self.port = yield endpoint.listen(Site(self.resource))
        self.addCleanup(self.port.stopListening)

    @inlineCallbacks
    def test_download(self) -> Any:
        w = self.store.writer("t/x/0")
        data = os.urandom(3 * 2**20 + 17)
        yield w.write(data)
        yield w.finish()
        agent = Agent(reactor)
        url = b"http://127.0.0.1:%d/t/x/0" % (self.port.getHost().port,)
        response = yield agent.request(b"GET", url)
        body = yield readBody(response)
        self.assertEqual(response.code, 200)
        self.assertEqual(body, data)
        yield self.resource.outcomes[0]

    def connect(self, client: RawClient) -> Deferred[Any]:
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.port.getHost().port)
        return connectProtocol(endpoint, client)

    @inlineCallbacks
    def test_slowClientPausesReads(self) -> Any:
        """
        ARCHITECTURE "Backpressure": a client that stops reading stops the
        disk reads once the socket buffers are full, instead of the file
        piling up in memory; reading again finishes the download intact.
        """
        size = 64 * 2**20
        w = self.store.writer("big")
        block = os.urandom(2**20)
        for i in range(size // 2**20):
            yield w.write(bytes([i]) + block[1:])
        yield w.finish()
        client = RawClient(b"big", pauseAfterFirst=True)
        yield self.connect(client)
        yield ensureDeferred(until(lambda: self.resource.requests, "the request"))
        request = self.resource.requests[0]
        producer = request.producer
        # The full socket buffers paused the disk reads: paused, and no
        # read scheduled, so none happens until the client reads again.
        # A producer that ignored the pause never gets here (a failure
        # at the deadline), however slow the machine.
        yield ensureDeferred(until(lambda: producer._paused and producer._call is None, "the disk reads to pause",
                                   30))
        self.assertLess(request.sentLength, size // 2)
        self.assertEqual(producer._file.tell(), request.sentLength)  # nothing read piles up unsent
        self.assertEqual(len(self.resource.outcomes), 1)
        self.assertFalse(self.resource.outcomes[0].called)
        client.transport.resumeProducing()
        raw = yield client.done
        yield self.resource.outcomes[0]
        head, body = raw.split(b"\r\n\r\n", 1)
        self.assertIn(b"200", head.split(b"\r\n")[0])
        self.assertEqual(len(body), size)
        self.assertEqual(body, b"".join(bytes([i]) + block[1:] for i in range(size // 2**20)))

    @inlineCallbacks
    def test_clientGoneStopsReads(self) -> Any:
        """A client that disconnects mid-download stops the producer (ProducerStopped)."""
        w = self.store.writer("big")
        block = os.urandom(2**20)
        for _ in range(32):
            yield w.write(block)
        yield w.finish()
        client = RawClient(b"big", abortAfterFirst=True)
        yield self.connect(client)
        yield client.done
        yield ensureDeferred(until(lambda: self.resource.outcomes, "the download's outcome"))
        with self.assertRaises(ProducerStopped):
            yield self.resource.outcomes[0]
        self.assertLess(self.resource.requests[0].sentLength, 32 * 2**20)


class FolderCacheTests(TestCase):
    def test_folderRemovedBehindTheStoresBack(self) -> None:
        """Another process (a command-line purge) removed an empty fan-out folder."""
        import shutil

        root = self.mktemp()
        store = FilesystemStore(root)
        os.makedirs(os.path.join(root, "ab"))
        shutil.rmtree(os.path.join(root, "ab"))
        writer = store.writer("ab/second")
        writer.write(b"x")
        return writer.finish().addCallback(self.assertEqual, 1)

    def test_largeObjectWrittenAsItGrows(self) -> None:
        """Past the buffer the bytes go to the file, in order, in the thread pool."""
        from secudoc_gateway.storage.fs import BUFFER_SIZE

        store = FilesystemStore(self.mktemp())
        writer = store.writer("big/one")
        pieces = [os.urandom(300_000) for _ in range(12)]
        acknowledged = [writer.write(piece) for piece in pieces]
        self.assertTrue(any(not d.called for d in acknowledged))  # disk work waits in the pool
        d = writer.finish()

        def check(size: int) -> None:
            self.assertEqual(size, sum(map(len, pieces)))
            self.assertGreater(size, BUFFER_SIZE)
            with open(os.path.join(store._root, "big", "one"), "rb") as f:
                self.assertEqual(f.read(), b"".join(pieces))

        return d.addCallback(check)
