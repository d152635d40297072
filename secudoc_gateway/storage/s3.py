"""
The S3 object store (SPEC 7): any S3-compatible API (AWS, MinIO, Ceph).

Theory of operation
-------------------

Uploads.  An object gathers its bytes in a part buffer.  A transfer
that ends before the buffer holds ``part_size`` bytes is one PUT; a
larger one becomes a multipart upload whose parts go up while the
message is still arriving, at most ``MAX_PARTS_IN_FLIGHT`` at a time.
Each part buffer reserves ``part_size`` bytes of the gateway's
``MemoryBudget`` (``[smtp] memory_budget``) before it fills, and keeps
them until its part is stored: when the budget is spent, ``write``
answers with a Deferred that fires only once bytes are released, so the
extractor pauses the SMTP client; nothing fails for want of memory.  A
whole part at a time, not byte by byte: buffers that each hold part of
the budget could otherwise all wait for more and none ever fill (a
writer waiting for a buffer holds only parts going up, which end on
their own).  ``finish`` sends the last part and completes the
upload (a 200 whose body is an ``<Error>`` is a failure too); any
failure aborts the upload, so a transfer that cannot be stored leaves
no object (the message gets 451).

Downloads.  A ranged GET whose body is handed to the consumer as it
arrives; the consumer's pause pauses the HTTP response's transport, so
a slow downloader stops the S3 read and nothing is buffered whole.  A
connection lost midway is resumed from the byte reached.

At start, multipart uploads older than the longest possible
transaction are aborted: a crashed gateway leaves them behind, and S3
bills their parts until they go.
"""

from __future__ import annotations

import datetime
from typing import Any, Callable, Optional
from xml.etree import ElementTree

from twisted.internet.defer import Deferred, DeferredList, ensureDeferred, fail, succeed
from twisted.internet.interfaces import IConsumer, IPushProducer
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.http import PotentialDataLoss
from zope.interface import implementer

from secudoc_gateway.errors import ProducerStopped, StorageError
from secudoc_gateway.interfaces import IObjectStore, IObjectWriter
from secudoc_gateway.spool import MemoryBudget
from secudoc_gateway.storage.s3client import (
    ATTEMPTS, Payload, S3Client, S3Settings, errorOf, failure, xmlAll, xmlText,
)

MAX_PARTS_IN_FLIGHT = 4
STALE_UPLOAD_AGE = 24 * 3600.0
"""
Seconds after which a multipart upload belongs to no live transaction:
longer than any message can take to arrive and be relayed, so an upload
of another node still receiving is never aborted.
"""


OPEN, FINISHING, DONE, ABORTED = "open", "finishing", "done", "aborted"


class _Reservation:
    """The budget of one part buffer: granted now or later, released once."""

    def __init__(self, budget: MemoryBudget, size: int, granted: Callable[[], None]) -> None:
        self._budget = budget
        self._size = size
        self._onGrant = granted
        self._released = False
        self.granted = budget.reserveOrWait(size, self._grant)

    def _grant(self) -> None:
        if self._released:
            self._budget.release(self._size)
            return
        self.granted = True
        self._onGrant()

    def release(self) -> None:
        if not self._released:
            self._released = True
            if self.granted:
                self._budget.release(self._size)


@implementer(IObjectWriter)
class S3Writer:
    """One object on its way up: one PUT or a multipart upload (module docstring)."""

    log = Logger()

    def __init__(self, client: S3Client, key: str, budget: MemoryBudget) -> None:
        self._client = client
        self._key = key
        self._budget = budget
        self._partSize = client.settings.part_size
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._size = 0
        self._reservation: Optional[_Reservation] = None  # of the buffer filling now
        self._upload: Optional[_Shared] = None  # the upload id, once created
        self._parts: dict[int, tuple[str, str]] = {}  # part number -> ETag, CRC32
        self._inFlight: dict[int, Deferred] = {}
        self._nextPart = 1
        self._waiters: list[Deferred] = []
        self._error: Optional[StorageError] = None
        self._state = OPEN

    # -- writing -------------------------------------------------------------

    def write(self, data: bytes) -> Deferred[None]:
        if self._state != OPEN:
            return fail(StorageError(f"object {self._key!r}: write after finish or abort"))
        if self._error is not None:
            return fail(self._error)
        if self._reservation is None:
            self._reservation = _Reservation(self._budget, self._partSize, self._wake)
        self._chunks.append(data)
        self._buffered += len(data)
        self._size += len(data)
        if self._buffered >= self._partSize:
            self._startPart()
        return self._whenReady()

    def _ready(self) -> bool:
        return (self._reservation is None or self._reservation.granted) and \
            len(self._inFlight) < MAX_PARTS_IN_FLIGHT

    def _whenReady(self) -> Deferred[None]:
        """Fired at once when the buffer has its budget and parts are not piling up."""
        if self._error is not None:
            return fail(self._error)
        if self._ready():
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiters.append(d)
        return d

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            if self._error is not None:
                d.errback(self._error)
            elif self._ready():
                d.callback(None)
            else:
                self._waiters.append(d)

    def _release(self) -> None:
        """The filling buffer's budget goes (its bytes were stored or dropped)."""
        if self._reservation is not None:
            self._reservation.release()
            self._reservation = None

    def _take(self) -> Payload:
        body = Payload(self._chunks)
        self._chunks = []
        self._buffered = 0
        return body

    # -- multipart -----------------------------------------------------------

    def _startPart(self) -> Deferred:
        if self._upload is None:
            self._upload = _Shared(ensureDeferred(self._create()))
        number = self._nextPart
        self._nextPart += 1
        body = self._take()
        reservation, self._reservation = self._reservation, None  # the part keeps its buffer's budget
        upload = self._upload
        done = ensureDeferred(self._uploadPart(upload, number, body))
        self._inFlight[number] = done

        def settled(result: Any) -> None:
            del self._inFlight[number]
            if reservation is not None:
                reservation.release()
            if isinstance(result, Failure) and self._error is None:
                self._error = result.value if isinstance(result.value, StorageError) else \
                    StorageError(f"object {self._key!r}: {result.getErrorMessage()}")
            self._wake()

        done.addBoth(settled)
        return done

    async def _create(self) -> str:
        _, body = await self._client.call("POST", self._key, query=[("uploads", "")],
                                          headers={"x-amz-checksum-algorithm": "CRC32"}, idempotent=False)
        uploadId = xmlText(ElementTree.fromstring(body), "UploadId")
        if not uploadId:
            raise StorageError(f"S3 create multipart upload of {self._key!r}: no UploadId in the answer")
        return uploadId

    async def _uploadPart(self, upload: _Shared, number: int, body: Payload) -> None:
        uploadId = await upload.get()
        response, _ = await self._client.call(
            "PUT", self._key, query=[("partNumber", str(number)), ("uploadId", uploadId)], body=body)
        etag = response.headers.getRawHeaders(b"etag", [b""])[0].decode("latin-1")
        if not etag:
            raise StorageError(f"S3 part {number} of {self._key!r}: no ETag in the answer")
        self._parts[number] = (etag, body.crc32())

    def _completion(self) -> bytes:
        root = ElementTree.Element("CompleteMultipartUpload")
        for number in sorted(self._parts):
            part = ElementTree.SubElement(root, "Part")
            etag, crc32 = self._parts[number]
            ElementTree.SubElement(part, "PartNumber").text = str(number)
            ElementTree.SubElement(part, "ETag").text = etag
            ElementTree.SubElement(part, "ChecksumCRC32").text = crc32
        return ElementTree.tostring(root, encoding="utf-8", xml_declaration=True)

    # -- the end ---------------------------------------------------------------

    def finish(self) -> Deferred[int]:
        if self._state != OPEN:
            return fail(StorageError(f"object {self._key!r}: finish after finish or abort"))
        self._state = FINISHING
        return ensureDeferred(self._finish())

    async def _finish(self) -> int:
        try:
            if self._error is not None:
                raise self._error
            if self._upload is None:
                await self._client.call("PUT", self._key, body=self._take())
                self._release()
            else:
                if self._chunks:
                    self._startPart()
                await DeferredList(list(self._inFlight.values()), consumeErrors=True)
                if self._error is not None:
                    raise self._error
                uploadId = await self._upload.get()
                _, answer = await self._client.call(
                    "POST", self._key, query=[("uploadId", uploadId)], body=self._completion(), idempotent=False)
                # S3 may answer 200 and still fail the completion in the body.
                error = errorOf(answer)
                if error is not None:
                    raise StorageError(f"S3 complete multipart upload of {self._key!r}: {error[0]}: {error[1]}")
        except BaseException as e:
            await self._abort()
            if isinstance(e, StorageError):
                raise
            raise StorageError(f"object {self._key!r}: {e}") from e
        self._state = DONE
        return self._size

    def abort(self) -> Deferred[None]:
        """Discard everything; an upload begun is aborted on the server."""
        if self._state in (DONE, ABORTED):
            return succeed(None)
        return ensureDeferred(self._abort())

    async def _abort(self) -> None:
        self._state = ABORTED
        self._chunks = []
        self._buffered = 0
        if self._error is None:
            self._error = StorageError(f"object {self._key!r} was aborted")
        self._wake()
        self._release()
        if self._inFlight:
            await DeferredList(list(self._inFlight.values()), consumeErrors=True)
        if self._upload is None:
            return
        try:
            uploadId = await self._upload.get()
            await self._client.call("DELETE", self._key, query=[("uploadId", uploadId)], expect=(204, 200, 404))
        except Exception as e:
            # Left for the abort at the next start (or the bucket's lifecycle rule).
            self.log.warn("S3 abort of the upload of {key} failed: {error}", key=self._key, error=str(e))


class _Body(Protocol):
    """Receives a GET's body for ``S3Producer``."""

    def __init__(self, producer: "S3Producer") -> None:
        self._producer = producer
        self.done: Deferred = Deferred()

    def connectionMade(self) -> None:
        self._producer._body(self.transport)

    def dataReceived(self, data: bytes) -> None:
        self._producer._received(data)

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        if reason.check(ResponseDone, PotentialDataLoss):
            self.done.callback(None)
        else:
            self.done.errback(reason)


@implementer(IPushProducer)
class S3Producer:
    """Streams a byte range of an object into a consumer, the consumer's pauses reaching the socket."""

    def __init__(self, client: S3Client, key: str, consumer: IConsumer, offset: int,
                 length: Optional[int]) -> None:
        self._client = client
        self._key = key
        self._consumer = consumer
        self._offset = offset
        self._length = length
        self._sent = 0
        self._transport: Any = None
        self._paused = False
        self._stopped = False
        self._refused: Optional[Failure] = None  # the consumer raised (a file that fails to decrypt)
        self.deferred: Deferred[None] = Deferred()

    def start(self) -> None:
        self._consumer.registerProducer(self, True)
        ensureDeferred(self._run()).addCallbacks(self._ended, self._failed)

    def _range(self) -> Optional[str]:
        start = self._offset + self._sent
        if self._length is None:
            return f"bytes={start}-" if start else None
        return f"bytes={start}-{self._offset + self._length - 1}"

    def _remaining(self) -> Optional[int]:
        return None if self._length is None else self._length - self._sent

    async def _run(self) -> None:
        losses = 0
        while self._remaining() != 0 and not self._stopped:
            wanted = self._range()
            response = await self._client.request("GET", self._key, headers={"Range": wanted} if wanted else {},
                                                  stream=True)
            if response.code not in (200, 206):
                raise failure("GET", self._key, response.code, await response.content())
            body = _Body(self)
            before = self._sent
            self._transport = None
            response.deliverBody(body)
            try:
                await body.done
            except Exception:
                if self._refused is None:
                    losses += 1
                    if self._stopped or losses >= ATTEMPTS:
                        raise
                    continue
            if self._refused is not None:
                self._refused.raiseException()
            if self._length is None:
                return
            if self._sent == before:
                raise StorageError(f"object {self._key!r} ends {self._remaining()} bytes short of the range")

    def _received(self, data: bytes) -> None:
        if self._stopped:
            return
        remaining = self._remaining()
        if remaining is not None and len(data) > remaining:
            data = data[:remaining]  # a server that ignored the range
        self._sent += len(data)
        try:
            self._consumer.write(data)
        except Exception:
            self._refused = Failure()
            self._transport.stopProducing()

    def _ended(self, _: Any) -> None:
        if not self._stopped:
            self._stopped = True
            self._consumer.unregisterProducer()
            self.deferred.callback(None)

    def _failed(self, failure: Failure) -> None:
        if not self._stopped:
            self._stopped = True
            self._consumer.unregisterProducer()
            self.deferred.errback(failure)

    def _body(self, transport: Any) -> None:
        self._transport = transport
        if self._stopped:
            transport.stopProducing()
        elif self._paused:
            transport.pauseProducing()

    def pauseProducing(self) -> None:
        self._paused = True
        if self._transport is not None:
            self._transport.pauseProducing()

    def resumeProducing(self) -> None:
        self._paused = False
        if self._transport is not None:
            self._transport.resumeProducing()

    def stopProducing(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self._transport is not None:
            self._transport.stopProducing()
        self.deferred.errback(ProducerStopped("the consumer stopped the transfer"))


@implementer(IObjectStore)
class S3Store:
    """Objects in one bucket of an S3-compatible API; see the module docstring."""

    log = Logger()

    def __init__(self, settings: S3Settings, reactor: Any, budget: MemoryBudget, agent: Any = None,
                 staleAfter: float = STALE_UPLOAD_AGE) -> None:
        self.client = S3Client(settings, reactor, agent)
        self._reactor = reactor
        self._budget = budget
        self._staleAfter = staleAfter

    def writer(self, key: str) -> S3Writer:
        return S3Writer(self.client, key, self._budget)

    def produce(self, key: str, consumer: IConsumer, offset: int = 0,
                length: Optional[int] = None) -> Deferred[None]:
        if offset < 0 or (length is not None and length < 0):
            raise ValueError("offset and length must not be negative")
        producer = S3Producer(self.client, key, consumer, offset, length)
        producer.start()
        return producer.deferred

    def size(self, key: str) -> Deferred[int]:
        async def size() -> int:
            response, _ = await self.client.call("HEAD", key)
            return int(response.headers.getRawHeaders(b"content-length", [b"0"])[0])

        return ensureDeferred(size())

    def delete(self, key: str) -> Deferred[None]:
        return ensureDeferred(self.client.call("DELETE", key, expect=(204, 200, 404))).addCallback(lambda _: None)

    def check(self) -> Deferred[None]:
        """HEAD of the bucket: it answers and our key may use it (for /healthz)."""
        return ensureDeferred(self.client.call("HEAD", idempotent=False, timeout=10)).addCallback(lambda _: None)

    def start(self) -> Deferred[int]:
        """Abort the multipart uploads a crash left behind; fires with how many."""
        return self.removeLeftovers(self._staleAfter, self._reactor.seconds())

    def removeLeftovers(self, olderThan: float, now: float) -> Deferred[int]:
        """The multipart uploads started more than ``olderThan`` seconds before ``now``, aborted."""
        return ensureDeferred(self._abortStale(now - olderThan))

    async def _abortStale(self, before: float) -> int:
        cutoff = datetime.datetime.fromtimestamp(before, datetime.timezone.utc)
        aborted = 0
        markers: list[tuple[str, str]] = []
        while True:
            query = [("uploads", ""), ("prefix", self.client.settings.prefix), *markers]
            _, body = await self.client.call("GET", query=query)
            root = ElementTree.fromstring(body)
            for upload in xmlAll(root, "Upload"):
                initiated = datetime.datetime.fromisoformat(xmlText(upload, "Initiated").replace("Z", "+00:00"))
                if initiated.tzinfo is None:
                    initiated = initiated.replace(tzinfo=datetime.timezone.utc)
                if initiated > cutoff:
                    continue
                fullKey = xmlText(upload, "Key")
                key = fullKey[len(self.client.settings.prefix):]
                await self.client.call("DELETE", key, query=[("uploadId", xmlText(upload, "UploadId"))],
                                       expect=(204, 200, 404))
                aborted += 1
            if xmlText(root, "IsTruncated") != "true":
                break
            markers = [("key-marker", xmlText(root, "NextKeyMarker")),
                       ("upload-id-marker", xmlText(root, "NextUploadIdMarker"))]
        if aborted:
            self.log.info("aborted {count} multipart upload(s) left by an earlier run", count=aborted)
        return aborted

    def close(self) -> Deferred[None]:
        return ensureDeferred(self.client.close())


class _Shared:
    """A result several callers wait for (an upload id), failure included, each getting their own."""

    def __init__(self, d: Deferred) -> None:
        self._result: Any = None
        self._done = False
        self._waiters: list[Deferred] = []
        d.addBoth(self._settle)

    def _settle(self, result: Any) -> None:
        self._result, self._done = result, True
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            self._fire(waiter)

    def _fire(self, waiter: Deferred) -> None:
        if isinstance(self._result, Failure):
            waiter.errback(self._result)
        else:
            waiter.callback(self._result)

    def get(self) -> Deferred:
        waiter: Deferred = Deferred()
        if self._done:
            self._fire(waiter)
        else:
            self._waiters.append(waiter)
        return waiter
