"""
Attachments on their way into storage while the message streams in.

Theory of operation
-------------------

``Extractor`` sees the parser's events.  At a part's start it decides,
from the part's own headers, whether the part is a candidate (SPEC 5);
a candidate's body is then transfer-decoded, hashed, encrypted and
written to the object store chunk by chunk (``AttachmentSink``), so no
attachment is ever whole in memory.  An attached message is one
candidate, stored byte-exact from the spool when it ends; nothing
inside it, or inside a signed or encrypted subtree, is a candidate of
its own.  HTML bodies are scanned for ``cid:`` references on the way:
an inline part that turns out to be shown by one is no attachment
after all, and its stored object is dropped at the end.

The store may lag: while more than ``MAX_PENDING_WRITES`` writes wait
for acknowledgement, the SMTP client is paused.

A finished part keeps only its size and hash, never a buffer.  A small
object (up to ``SMALL_OBJECT`` sealed bytes) is not committed to the
store when its part ends: it waits, counted in the memory budget, until
the message is known to be protected.  So a message of thousands of
tiny parts that passes costs no file system work per part; when the
budget is used up, small objects are committed at once, as big ones are.
"""

from __future__ import annotations

import hashlib
from typing import Any, Optional

import attrs
from twisted.internet.defer import Deferred, DeferredList, ensureDeferred, fail, succeed
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure

from secudoc_gateway import crypto
from secudoc_gateway.crypto import Encryptor
from secudoc_gateway.errors import StorageError
from secudoc_gateway.interfaces import IObjectStore, IObjectWriter
from secudoc_gateway.mime.decode import AnyDecoder, IdentityDecoder, decoderFor
from secudoc_gateway.mime.parser import BodyData, PartEnd, PartStart
from secudoc_gateway.mime.structure import (
    LEAF, MESSAGE, MESSAGE_TYPES, SEALED_TYPES, CidScanner, Part, Structure, attachments, isAttachment,
)
from secudoc_gateway.spool import MemoryBudget, Spool

NO_CIDS: frozenset[str] = frozenset()
MAX_PENDING_WRITES = 4
"""Store writes not yet acknowledged before the client is paused."""
SMALL_OBJECT = 64 * 1024
"""Sealed bytes up to which a finished object waits for the decision in memory."""

Path = tuple[int, ...]


def objectKey(transferId: str, slot: int) -> str:
    """
    Where file ``slot`` of a transfer lives; the slot also keys its
    encryption.  Fanned out by the id's first characters, no folder per
    transfer: creating folders costs as much as creating files.
    """
    return f"{transferId[:2]}/{transferId}.{slot}"


def slotOf(key: str) -> int:
    return int(key.rsplit(".", 1)[1])


class AttachmentSink:
    """
    One attachment: decode, hash, encrypt, write.  ``feed`` returns the
    store's Deferred for the bytes it wrote (``None`` when nothing was
    written yet), so the caller can pause the client while the store lags.

    The store is not touched until more than ``SMALL_OBJECT`` sealed
    bytes have gathered or the object is committed: a small object can
    wait in memory for the message's decision and be dropped for free.
    """

    def __init__(self, store: IObjectStore, key: str, fileKey: bytes, decoder: AnyDecoder) -> None:
        self.key = key
        self._store = store
        self._writer: Optional[IObjectWriter] = None
        self._gathered: list[bytes] = []
        self._decoder: Optional[AnyDecoder] = decoder
        self._hash = hashlib.sha256()
        self._encryptor: Optional[Encryptor] = Encryptor(fileKey)
        self.size = 0
        self.sealed = 0
        self.sha256 = ""

    @property
    def opened(self) -> bool:
        """Whether the store was asked to write (the object costs store work to drop)."""
        return self._writer is not None

    def feed(self, raw: bytes) -> Optional[Deferred]:
        assert self._decoder is not None, "fed after close"
        return self._plain(self._decoder.feed(raw))

    def _plain(self, plain: bytes) -> Optional[Deferred]:
        if not plain:
            return None
        self._hash.update(plain)
        self.size += len(plain)
        assert self._encryptor is not None
        sealed = self._encryptor.feed(plain)
        return self._write(sealed) if sealed else None

    def _write(self, sealed: bytes) -> Optional[Deferred]:
        self.sealed += len(sealed)
        if self._writer is not None:
            return self._writer.write(sealed)
        self._gathered.append(sealed)
        return self._open() if self.sealed > SMALL_OBJECT else None

    def _open(self) -> Deferred:
        gathered, self._gathered = b"".join(self._gathered), []
        try:
            self._writer = self._store.writer(self.key)
        except Exception:
            return fail()
        return self._writer.write(gathered)

    def close(self) -> list[Deferred]:
        """
        The end of the input: the last bytes are sealed, the codec state
        goes; returns the writes still to be acknowledged.  The object is
        not complete under its key until ``commit``.
        """
        assert self._decoder is not None and self._encryptor is not None, "closed twice"
        written = [self._plain(self._decoder.close()), self._write(self._encryptor.finish())]
        self.sha256 = self._hash.hexdigest()
        self._decoder = self._encryptor = None
        return [d for d in written if d is not None]

    def commit(self) -> Deferred:
        """Fires when the object is complete under its key."""
        if self._writer is None:
            return self._open().addCallback(lambda _: self._finishWriter())
        return self._finishWriter()

    def _finishWriter(self) -> Deferred:
        assert self._writer is not None
        return self._writer.finish()

    def abort(self) -> Deferred:
        self._gathered = []
        if self._writer is None:
            return succeed(None)
        return self._writer.abort()


class _Stopped(StorageError):
    """Extraction was stopped while an attached message was being copied."""


@attrs.define
class Candidate:
    """
    A part that is an attachment unless an HTML body shows it by cid:.
    ``sink`` is set while its object is written or while a small object
    waits to be committed (``held``, with ``reserved`` bytes of the
    memory budget); ``size`` and ``sha256`` are final once it ended.
    """

    path: Path
    slot: int
    kind: str
    headers: Any
    sink: Optional[AttachmentSink] = None
    stored: bool = False
    held: bool = False
    reserved: int = 0
    size: int = 0
    sha256: str = ""


class Extractor:
    """Candidates of one message, from parser events to stored objects."""

    log = Logger()

    def __init__(self, store: Optional[IObjectStore], producer: IPushProducer, spool: Spool,
                 structure: Structure, queueId: str, budget: MemoryBudget) -> None:
        self.store = store
        self.budget = budget
        self.producer = producer
        self.spool = spool
        self.structure = structure
        self.queueId = queueId
        self.active = store is not None
        self.token = crypto.newToken()
        self.transferId = crypto.newTransferId()
        self.candidates: list[Candidate] = []
        self.byPath: dict[Path, Candidate] = {}  # per-part work stays constant however many parts
        self.sinks: dict[Path, Candidate] = {}
        self.enclosing: set[Path] = set()
        self.scanners: dict[Path, tuple[Any, CidScanner]] = {}
        self.referencedCids: set[str] = set()
        self.storing: list[Deferred] = []  # commits and copies under way
        self.settled: list[Deferred] = []  # those awaited already
        self.failure: Optional[Failure] = None
        self.pendingWrites = 0
        self.paused = False

    # -- events --------------------------------------------------------------

    def partStart(self, event: PartStart) -> None:
        if any(event.path[:n] in self.enclosing for n in range(len(event.path))):
            return
        headers = event.headers
        contentType = headers.contentType
        if contentType in SEALED_TYPES:
            self.enclosing.add(event.path)
        if contentType.startswith("multipart/"):
            return
        kind = MESSAGE if contentType in MESSAGE_TYPES and headers.transferEncoding not in (
            "base64", "quoted-printable") else LEAF
        # Judged on its own headers: its ancestors are not complete yet.
        provisional = Part(event.path, headers, event.headerStart, event.bodyStart,
                           event.bodyStart, event.bodyStart, kind, event.path[:-1] or None)
        if isAttachment(provisional, self.structure, NO_CIDS):
            candidate = Candidate(event.path, len(self.candidates), kind, headers)
            self.candidates.append(candidate)
            self.byPath[event.path] = candidate
            if kind == MESSAGE:
                self.enclosing.add(event.path)
            if self.active:
                self._open(candidate)
        elif contentType == "text/html":
            self.scanners[event.path] = (decoderFor(headers.transferEncoding) or IdentityDecoder(), CidScanner())

    def bodyData(self, event: BodyData) -> None:
        candidate = self.sinks.get(event.path)
        if candidate is not None:
            self._wrote(candidate.sink.feed(event.data))
        elif event.path in self.scanners:
            decoder, scanner = self.scanners[event.path]
            scanner.feed(decoder.feed(event.data))

    def partEnd(self, event: PartEnd) -> None:
        scanner = self.scanners.pop(event.path, None)
        if scanner is not None:
            decoder, cids = scanner
            cids.feed(decoder.close())
            self.referencedCids |= cids.close()
            return
        candidate = self.sinks.pop(event.path, None)
        if candidate is not None:
            for written in candidate.sink.close():
                self._wrote(written)
            self._ended(candidate)
        elif event.path in self.enclosing:
            candidate = self.byPath.get(event.path)
            if candidate is not None and candidate.sink is not None:
                start = self.structure[event.path].bodyStart
                self.storing.append(ensureDeferred(self._copy(candidate, start, event.bodyEnd)))

    async def _copy(self, candidate: Candidate, start: int, end: int) -> None:
        """
        An attached message is stored byte-exact from the spool, a chunk
        at a time, waiting for the store: never in memory as a whole.
        """
        sink = candidate.sink
        assert sink is not None
        try:
            for chunk in self.spool.read(start, end):
                if not self.active:
                    sink.abort()
                    raise _Stopped()
                written = sink.feed(chunk)
                if written is not None:
                    await written
            for written in sink.close():
                await written
        except Exception:
            self._failed(Failure())
            return
        if not self.active:
            candidate.sink = None
            sink.abort()
            return
        self._ended(candidate)

    def _ended(self, candidate: Candidate) -> None:
        """
        The part's object has all its bytes: keep its size and hash; a
        small one waits in memory for the decision, a big one is committed.
        """
        sink = candidate.sink
        assert sink is not None
        candidate.size, candidate.sha256 = sink.size, sink.sha256
        if not sink.opened and self.budget.reserve(sink.sealed):
            candidate.held, candidate.reserved = True, sink.sealed
            return
        self._commit(candidate)

    def _commit(self, candidate: Candidate) -> None:
        sink, candidate.sink = candidate.sink, None
        assert sink is not None
        self._release(candidate)

        def stored(_: Any) -> None:
            candidate.stored = True

        self.storing.append(sink.commit().addCallbacks(stored, self._failed))

    def _release(self, candidate: Candidate) -> None:
        if candidate.held:
            candidate.held = False
            self.budget.release(candidate.reserved)
            candidate.reserved = 0

    # -- state ---------------------------------------------------------------

    def leaving(self, path: Path, minimum: int) -> bool:
        """
        The part is an attachment that cannot stay: past the size that
        makes a message protected, and no HTML body can show it by cid:.
        """
        candidate = self.sinks.get(path)
        if candidate is None:
            return False
        headers = candidate.headers
        return candidate.sink.size >= minimum and (
            headers.disposition == "attachment" or headers.contentId is None)

    def stop(self) -> None:
        """No protection after all: abort open sinks and the objects that wait."""
        if not self.active:
            return
        self.active = False
        for candidate in self.sinks.values():
            candidate.sink.abort()
        self.sinks.clear()
        self._abortHeld(frozenset())

    def _abortHeld(self, keep: frozenset) -> None:
        for candidate in self.candidates:
            if candidate.held and candidate.slot not in keep:
                self._release(candidate)
                sink, candidate.sink = candidate.sink, None
                assert sink is not None
                sink.abort()

    async def attachments(self) -> list[Candidate]:
        """
        The message's attachments in order, each complete (stored, or
        waiting for ``commit``); StorageError when one could not be.
        """
        await self._settled()
        found = {part.path for part in attachments(self.structure, self.referencedCids)}
        files = [c for c in self.candidates if c.path in found]
        if any(not (c.stored or c.held) for c in files):
            raise StorageError("attachments were not stored")
        return files

    async def _settled(self) -> None:
        while self.storing:
            storing, self.storing = self.storing, []
            self.settled.extend(storing)
            await DeferredList(storing, consumeErrors=True)
        if self.failure is not None:
            raise StorageError(self.failure.getErrorMessage())

    async def commit(self, files: list[Candidate]) -> None:
        """The message is protected: store ``files`` that wait in memory, drop the others."""
        keep = frozenset(c.slot for c in files)
        self._abortHeld(keep)
        for candidate in files:
            if candidate.held:
                self._commit(candidate)
        await self._settled()

    def discard(self, keep: frozenset = frozenset()) -> None:
        """Delete stored objects (all but the ``keep`` slots) once their writes settle."""
        self._abortHeld(keep)
        if not self.candidates or self.store is None:
            return
        store = self.store

        def delete(_: Any) -> None:
            for candidate in self.candidates:
                if candidate.stored and candidate.slot not in keep:
                    store.delete(objectKey(self.transferId, candidate.slot)).addErrback(
                        lambda f: self.log.failure("deleting a stored object failed", f))

        DeferredList(self.settled + self.storing, consumeErrors=True).addCallback(delete)

    # -- storage -------------------------------------------------------------

    def _open(self, candidate: Candidate) -> None:
        decoder = IdentityDecoder() if candidate.kind == MESSAGE else decoderFor(candidate.headers.transferEncoding)
        try:
            candidate.sink = AttachmentSink(
                self.store, objectKey(self.transferId, candidate.slot),
                crypto.fileKey(self.token, self.transferId, candidate.slot), decoder or IdentityDecoder(),
            )
        except Exception:
            self._failed(Failure())
            return
        if candidate.kind == LEAF:
            self.sinks[candidate.path] = candidate

    def _wrote(self, d: Optional[Deferred]) -> None:
        """Pause the client while the store has too many writes outstanding."""
        if d is None or d.called:
            if d is not None:
                d.addErrback(self._failed)
            return
        self.pendingWrites += 1
        if self.pendingWrites >= MAX_PENDING_WRITES and not self.paused:
            self.paused = True
            self.producer.pauseProducing()

        def acknowledged(result: Any) -> Any:
            self.pendingWrites -= 1
            if self.paused and self.pendingWrites < MAX_PENDING_WRITES:
                self.paused = False
                self.producer.resumeProducing()
            return result

        d.addBoth(acknowledged).addErrback(self._failed)

    def _failed(self, failure: Failure) -> None:
        if failure.check(_Stopped):
            return  # stopped on purpose: the transaction knows why
        if self.failure is None:
            self.failure = failure
            self.log.failure("{queueId}: storing an attachment failed", failure, queueId=self.queueId)
        self.stop()
