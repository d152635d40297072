"""
One object on its way up to S3 (``S3Writer``, for ``S3Store.writer``).

An object gathers its bytes in a part buffer.  A transfer that ends
before the buffer holds ``part_size`` bytes is one PUT; a larger one
becomes a multipart upload whose parts go up while the message is still
arriving, at most ``MAX_PARTS_IN_FLIGHT`` at a time (past that ``write``
answers with a Deferred that fires once a part is stored, so the
extractor pauses the SMTP client).  Each part buffer reserves
``part_size`` bytes of the gateway's ``MemoryBudget`` (``[smtp]
memory_budget``) before it fills, and keeps them until its part is
stored; when the budget has none to spare, the buffer is a temporary
file instead, and the part goes up from there (like the spool).  It
used to wait for the budget, but the bytes written meanwhile had to go
somewhere: they piled up in the buffer uncounted, four writes per
session (bench_s3: 20 x 50 MB at once with a 64 MiB budget peaked 160
MiB above idle).  A whole part at a time, not byte by byte: buffers
that each hold part of the budget could otherwise all wait for more and
none ever fill.  ``finish`` sends
the last part and completes the upload (a 200 whose body is an
``<Error>`` is a failure too); any failure aborts the upload, so a
transfer that cannot be stored leaves no object (the message gets 451).
"""

from __future__ import annotations

import tempfile
from typing import Any, BinaryIO, Optional
from xml.etree import ElementTree

from twisted.internet.defer import Deferred, DeferredList, ensureDeferred, fail, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from secudoc_gateway.errors import StorageError
from secudoc_gateway.interfaces import IObjectWriter
from secudoc_gateway.spool import MemoryBudget
from secudoc_gateway.storage.s3client import FilePayload, Payload, S3Client, errorOf, xmlText

MAX_PARTS_IN_FLIGHT = 4

OPEN, FINISHING, DONE, ABORTED = "open", "finishing", "done", "aborted"


@implementer(IObjectWriter)
class S3Writer:
    """One object on its way up: one PUT or a multipart upload (module docstring)."""

    log = Logger()

    def __init__(self, client: S3Client, key: str, budget: MemoryBudget) -> None:
        self._client = client
        self._key = key
        self._budget = budget
        self._partSize = client.settings.part_size
        self._chunks: list[bytes] = []  # the buffer filling now, in memory: its budget reserved
        self._file: Optional[BinaryIO] = None  # or on disk: the budget had none to spare
        self._buffered = 0
        self._size = 0
        self._reserved = False
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
        if not (self._reserved or self._file):
            self._reserved = self._budget.reserve(self._partSize)
            if not self._reserved:
                self._file = tempfile.TemporaryFile(prefix="secudoc-s3part-")
        if self._file is not None:
            try:
                self._file.write(data)
            except OSError as e:
                return fail(StorageError(f"object {self._key!r}: part buffer: {e}"))
        else:
            self._chunks.append(data)
        self._buffered += len(data)
        self._size += len(data)
        if self._buffered >= self._partSize:
            self._startPart()
        return self._whenReady()

    def _ready(self) -> bool:
        return len(self._inFlight) < MAX_PARTS_IN_FLIGHT

    def _whenReady(self) -> Deferred[None]:
        """Fired at once when parts are not piling up."""
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

    def _take(self) -> tuple[Payload, bool]:
        """The filling buffer as a body, and whether it holds ``part_size`` of the budget (until ``_done``)."""
        body = Payload(self._chunks) if self._file is None else FilePayload(self._file, self._buffered)
        reserved = self._reserved
        self._chunks, self._file, self._buffered, self._reserved = [], None, 0, False
        return body, reserved

    def _done(self, body: Payload, reserved: bool) -> None:
        """A buffer's bytes were stored or dropped: its budget or its file goes."""
        body.close()
        if reserved:
            self._budget.release(self._partSize)

    # -- multipart -----------------------------------------------------------

    def _startPart(self) -> Deferred:
        if self._upload is None:
            self._upload = _Shared(ensureDeferred(self._create()))
        number = self._nextPart
        self._nextPart += 1
        body, reserved = self._take()  # the part keeps its buffer's budget
        upload = self._upload
        done = ensureDeferred(self._uploadPart(upload, number, body))
        self._inFlight[number] = done

        def settled(result: Any) -> None:
            del self._inFlight[number]
            self._done(body, reserved)
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
                body, reserved = self._take()
                try:
                    await self._client.call("PUT", self._key, body=body)
                finally:
                    self._done(body, reserved)
            else:
                if self._buffered:
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
        self._done(*self._take())
        if self._error is None:
            self._error = StorageError(f"object {self._key!r} was aborted")
        self._wake()
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
