"""
The extractor: follows the parser's events and sends each attachment
into storage while the message streams in, so a protected message's
files are stored by the time its last byte arrives.

Theory of operation
-------------------

``Extractor`` sees the parser's events.  At a part's start it decides,
from the part's own headers, whether the part is a candidate (SPEC 5);
a candidate's body is then transfer-decoded, hashed, encrypted and
written to the object store chunk by chunk (``AttachmentSink``), so no
attachment is ever whole in memory.  An attached message is one
candidate, stored byte-exact from the spool when it ends; nothing
inside it, or inside a signed or encrypted subtree, is a candidate of
its own.  Every candidate of the message is appended to the transfer's
one object (``TransferObject``), each sealed under its own key.  HTML
bodies are scanned for ``cid:`` references on the way: an inline part
that turns out to be shown by one is no attachment after all, and the
database does not list its bytes.

A TNEF part (``winmail.dat``) is opened instead of stored: its decoded
bytes go through a ``TnefReader``, and each file inside becomes a
candidate of its own (same path, its own slot and name), stored as its
bytes arrive.  When the reader could not decode everything, the part is
also stored as it is, copied from the spool, which always keeps a TNEF
body (its bytes are never ``leaving``).

The store may lag: while more than ``MAX_PENDING_WRITES`` writes wait
for acknowledgement, or while an attached message is copied from the
spool, the SMTP client is paused.
"""

from __future__ import annotations

import mimetypes
from typing import Any, Optional

import attrs
from twisted.internet.defer import Deferred, DeferredList, ensureDeferred
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure

from secudoc_gateway import crypto
from secudoc_gateway.errors import StorageError
from secudoc_gateway.ingress.sink import AttachmentSink
from secudoc_gateway.interfaces import IObjectStore
from secudoc_gateway.mime.decode import AnyDecoder, IdentityDecoder, decoderFor
from secudoc_gateway.mime.parser import BodyData, PartEnd, PartStart
from secudoc_gateway.mime.structure import (
    LEAF, MESSAGE, MESSAGE_TYPES, SEALED_TYPES, CidScanner, Part, Structure, attachments, isAttachment,
)
from secudoc_gateway.mime.tnef import FileData, FileEnd, FileStart, TnefReader, isTnef
from secudoc_gateway.policy import isRightsProtection
from secudoc_gateway.spool import Spool
from secudoc_gateway.storage.objects import TransferObject, objectKey

NO_CIDS: frozenset[str] = frozenset()
MAX_PENDING_WRITES = 4
"""Store writes not yet acknowledged before the client is paused."""

Path = tuple[int, ...]


class _Stopped(StorageError):
    """Extraction was stopped while an attached message was being copied."""


@attrs.define
class Candidate:
    """
    A part that is an attachment unless an HTML body shows it by cid:,
    or a file inside a TNEF part (``name`` set, sharing the part's path).
    ``opened``: a TNEF part whose files took its place.
    """

    path: Path
    slot: int
    kind: str
    headers: Any
    sink: Optional[AttachmentSink] = None
    stored: bool = False
    name: Optional[str] = None
    opened: bool = False

    @property
    def contentType(self) -> str:
        if self.name is not None:
            return mimetypes.guess_type(self.name)[0] or "application/octet-stream"
        return str(self.headers.contentType)

    @property
    def size(self) -> int:
        """Decoded bytes (final once ``stored``)."""
        return self.sink.size if self.sink is not None else 0

    @property
    def sha256(self) -> str:
        return self.sink.sha256 if self.sink is not None else ""


@attrs.define
class _Tnef:
    """A TNEF part being opened: its reader and the file being stored."""

    part: Candidate
    decoder: AnyDecoder
    reader: TnefReader = attrs.Factory(TnefReader)
    file: Optional[Candidate] = None


class Extractor:
    """Candidates of one message, from parser events to stored objects."""

    log = Logger()

    def __init__(self, store: Optional[IObjectStore], producer: IPushProducer, spool: Spool,
                 structure: Structure, queueId: str) -> None:
        self.store = store
        self.producer = producer
        self.spool = spool
        self.structure = structure
        self.queueId = queueId
        self.active = store is not None
        self.token = crypto.newToken()
        self.transferId = crypto.newTransferId()
        self.candidates: list[Candidate] = []
        self.sinks: dict[Path, Candidate] = {}
        # Sealed subtrees and attached messages (the latter with their
        # candidate): nothing inside them is a candidate of its own.
        self.enclosing: dict[Path, Optional[Candidate]] = {}
        self.scanners: dict[Path, tuple[Any, CidScanner]] = {}
        self.referencedCids: set[str] = set()
        self.storing: list[Deferred] = []
        self.failure: Optional[Failure] = None
        self.object: Optional[TransferObject] = None
        self.pendingWrites = 0
        self.rightsProtected = False  # a Purview / IRM part outside any attached message
        self.tnefs: dict[Path, _Tnef] = {}
        self.holds = 0

    # -- events --------------------------------------------------------------

    def partStart(self, event: PartStart) -> None:
        if any(event.path[:n] in self.enclosing for n in range(len(event.path))):
            return
        headers = event.headers
        contentType = headers.contentType
        if isRightsProtection(contentType, headers.filename):
            self.rightsProtected = True
        if contentType in SEALED_TYPES:
            self.enclosing[event.path] = None
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
            if kind == MESSAGE:
                self.enclosing[event.path] = candidate
            if self.active and kind == LEAF and isTnef(contentType, headers.filename):
                self.tnefs[event.path] = _Tnef(candidate, decoderFor(headers.transferEncoding) or IdentityDecoder())
            elif self.active:
                self._open(candidate)
        elif contentType == "text/html":
            self.scanners[event.path] = (decoderFor(headers.transferEncoding) or IdentityDecoder(), CidScanner())

    def bodyData(self, event: BodyData, minimum: Optional[int] = None) -> bool:
        """
        Feed a part's bytes on.  True when they are an attachment's that
        cannot stay, as far as was known before them: past ``minimum``
        (the size that makes a message protected; never without one),
        and no HTML body can show it by cid:.
        """
        candidate = self.sinks.get(event.path)
        if candidate is not None:
            headers = candidate.headers
            leaving = minimum is not None and candidate.sink.size >= minimum and (
                headers.disposition == "attachment" or headers.contentId is None)
            self._wrote(candidate.sink.feed(event.data))
            return leaving
        if event.path in self.tnefs:
            tnef = self.tnefs[event.path]
            self._unpacked(tnef, tnef.reader.feed(tnef.decoder.feed(event.data)))
        elif event.path in self.scanners:
            decoder, scanner = self.scanners[event.path]
            scanner.feed(decoder.feed(event.data))
        return False

    def partEnd(self, event: PartEnd) -> None:
        scanner = self.scanners.pop(event.path, None)
        if scanner is not None:
            decoder, cids = scanner
            cids.feed(decoder.close())
            self.referencedCids |= cids.close()
            return
        candidate = self.sinks.pop(event.path, None)
        tnef = self.tnefs.pop(event.path, None)
        if candidate is not None:
            self.storing.append(self._finish(candidate, candidate.sink.finish()))
        elif tnef is not None:
            self._tnefEnd(tnef, event)
        elif event.path in self.enclosing:
            # Found by its path, not by a scan: thousands of attached messages cost linear time.
            candidate = self.enclosing[event.path]
            if candidate is not None and candidate.sink is not None and self.object is not None:
                self._copyInTurn(candidate, self.structure[event.path].bodyStart, event.bodyEnd)

    # -- TNEF ----------------------------------------------------------------

    def _unpacked(self, tnef: _Tnef, events: list) -> None:
        """A TNEF part's files, each a candidate of its own, stored as their bytes come."""
        for event in events:
            if isinstance(event, FileStart):
                tnef.file = Candidate(tnef.part.path, len(self.candidates), LEAF, tnef.part.headers)
                self.candidates.append(tnef.file)
                self._open(tnef.file, IdentityDecoder(), register=False)
                continue
            file = tnef.file
            if file is None or file.sink is None:
                continue  # its sink could not be opened: extraction has stopped
            if isinstance(event, FileData):
                self._wrote(file.sink.feed(event.data))
                continue
            tnef.file = None
            if isinstance(event, FileEnd):
                file.name = event.name
                self.storing.append(self._finish(file, file.sink.finish()))
            else:
                # Not decoded to its end: its bytes stay unlisted in the object.
                self.candidates.remove(file)

    def _tnefEnd(self, tnef: _Tnef, event: PartEnd) -> None:
        """
        The TNEF part ends: its files take its place (none, when it held
        only the message's own properties), unless something in it could
        not be decoded; then the part is stored too, as it is, from the
        spool (SPEC 5), so nothing is lost.
        """
        self._unpacked(tnef, tnef.reader.feed(tnef.decoder.close()) + tnef.reader.close())
        part = tnef.part
        if not tnef.reader.incomplete:
            part.opened = True
            return
        self._open(part, register=False, fromSpool=True)
        if part.sink is not None:
            self._copyInTurn(part, self.structure[event.path].bodyStart, event.bodyEnd)

    def _copyInTurn(self, candidate: Candidate, start: int, end: int) -> None:
        """
        Store ``candidate`` from the spool in the object's turn (files
        that arrive meanwhile wait behind it), the client paused until
        it is in.
        """
        assert self.object is not None and candidate.sink is not None
        sink = candidate.sink
        self._hold()
        copied = self.object.exclusive(lambda: ensureDeferred(self._copy(sink, start, end)))
        copied.addBoth(self._release)
        self.storing.append(self._finish(candidate, copied))

    async def _copy(self, sink: AttachmentSink, start: int, end: int) -> None:
        """
        An attached message is stored byte-exact from the spool, a chunk
        at a time, waiting for the store: never in memory as a whole.
        """
        for chunk in self.spool.read(start, end):
            if not self.active:
                raise _Stopped()
            written = sink.feed(chunk)
            if written is not None:
                await written
        await sink.finish()

    def _finish(self, candidate: Candidate, finished: Deferred) -> Deferred:
        def stored(_: Any) -> None:
            candidate.stored = True

        return finished.addCallbacks(stored, self._failed)

    # -- state ---------------------------------------------------------------

    def stop(self) -> None:
        """No protection after all: abort open sinks."""
        if not self.active:
            return
        self.active = False
        self.sinks.clear()
        self.tnefs.clear()

    async def attachments(self) -> list[Candidate]:
        """
        The message's attachments in order, each stored (the object is
        not complete yet: ``commit``); StorageError when one could not be.
        """
        if self.storing:
            await DeferredList(self.storing, consumeErrors=True)
        if self.failure is not None:
            raise StorageError(self.failure.getErrorMessage())
        found = {part.path for part in attachments(self.structure, self.referencedCids)}
        files = [c for c in self.candidates if c.path in found and not c.opened]
        if any(not c.stored for c in files):
            raise StorageError("attachments were not stored")
        return files

    async def commit(self) -> None:
        """
        The message is protected: complete the object under its key.
        Until then a small object waits in the writer's buffer, so tiny
        parts of a message that passes cost no file system work.
        """
        if self.object is not None:
            await self.object.finish()

    def discard(self) -> None:
        """Remove the transfer's object, whatever was written of it, once its writes settle."""
        target = self.object
        if target is None:
            return

        def remove(_: Any) -> None:
            target.discard().addErrback(lambda f: self.log.failure("removing a stored object failed", f))

        DeferredList(self.storing, consumeErrors=True).addCallback(remove)

    # -- storage -------------------------------------------------------------

    def _open(self, candidate: Candidate, decoder: Optional[AnyDecoder] = None, register: bool = True,
              fromSpool: bool = False) -> None:
        """
        The candidate's sink, appending to the transfer's one object.
        ``register``: its part's body data feeds it (not so for a TNEF
        part's files, nor a part copied from the spool); ``fromSpool``:
        it is fed inside the object's exclusive turn, as an attached
        message always is.
        """
        if decoder is None:
            decoder = IdentityDecoder() if candidate.kind == MESSAGE else decoderFor(candidate.headers.transferEncoding)
        try:
            if self.object is None:
                assert self.store is not None
                self.object = TransferObject(self.store, objectKey(self.transferId))
            candidate.sink = AttachmentSink(
                self.object, crypto.fileKey(self.token, self.transferId, candidate.slot),
                decoder or IdentityDecoder(), exclusive=fromSpool or candidate.kind == MESSAGE,
            )
        except Exception:
            self._failed(Failure())
            return
        if register and candidate.kind == LEAF:
            self.sinks[candidate.path] = candidate

    def _hold(self) -> None:
        """Pause the client (holds nest: the last release resumes it)."""
        self.holds += 1
        if self.holds == 1:
            self.producer.pauseProducing()

    def _release(self, result: Any = None) -> Any:
        self.holds -= 1
        if self.holds == 0:
            self.producer.resumeProducing()
        return result

    def _wrote(self, d: Optional[Deferred]) -> None:
        """Pause the client while the store has too many writes outstanding."""
        if d is None or d.called:
            if d is not None:
                d.addErrback(self._failed)
            return
        self.pendingWrites += 1
        if self.pendingWrites == MAX_PENDING_WRITES:
            self._hold()

        def acknowledged(result: Any) -> Any:
            self.pendingWrites -= 1
            if self.pendingWrites == MAX_PENDING_WRITES - 1:
                self._release()
            return result

        d.addBoth(acknowledged).addErrback(self._failed)

    def _failed(self, failure: Failure) -> None:
        if failure.check(_Stopped):
            return  # stopped on purpose: the transaction knows why
        if self.failure is None:
            self.failure = failure
            self.log.failure("{queueId}: storing an attachment failed", failure, queueId=self.queueId)
        self.stop()
