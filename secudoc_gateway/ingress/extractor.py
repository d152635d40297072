"""
The extractor: drives the attachment planner and sends each attachment
into storage while the message streams in, so a protected message's
files are stored by the time its last byte arrives.

Theory of operation
-------------------

``Planner`` (``ingress/attachments.py``) decides, from the parser's events
alone, which parts are candidates (SPEC 5), which TNEF parts are opened,
which HTML bodies show a part by ``cid:`` and which bytes are surely
leaving; it answers each event with actions.  ``Extractor`` carries them
out: each file a candidate's ``AttachmentSink`` (hashed, encrypted and
written to the object store chunk by chunk, so no attachment is ever
whole in memory), all appended to the transfer's one object
(``TransferObject``), each sealed under its own key.  An attached
message is stored byte-exact as received, from the bytes the parser is
done with; only a TNEF part the reader could not decode to its end is
copied from the spool, when it ends.

With scanning on, each file's plain bytes also go to clamd as they are
stored (``MessageScans``); ``verdicts`` waits for what it says.

The store (or clamd) may lag: while more than ``MAX_PENDING_WRITES`` writes wait
for acknowledgement, or while a part is copied from the spool, the SMTP
client is paused.
"""

from __future__ import annotations

from typing import Any, Optional, assert_never

import attrs

from twisted.internet.defer import Deferred, DeferredList, ensureDeferred
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure

from secudoc_gateway import crypto
from secudoc_gateway.errors import StorageError
from secudoc_gateway.ingress.attachments import (
    Action, Candidate, Close, Copy, Drop, Feed, Open, Planner, RightsProtected,
)
from secudoc_gateway.ingress.sink import AttachmentSink, Worker
from secudoc_gateway.interfaces import IObjectStore
from secudoc_gateway.mime.decode import IdentityDecoder, decoderFor
from secudoc_gateway.mime.parser import BodyData, PartEnd, PartStart
from secudoc_gateway.mime.structure import Structure
from secudoc_gateway.scan import MessageScans, Scanner, Verdict
from secudoc_gateway.spool import MemoryBudget, Spool
from secudoc_gateway.storage.objects import TransferObject, objectKey

MAX_PENDING_WRITES = 4
"""Store writes not yet acknowledged before the client is paused."""

__all__ = ["Extractor", "MAX_PENDING_WRITES", "StoredAttachment"]


class _Stopped(StorageError):
    """Extraction was stopped while an attached message was being copied."""


@attrs.frozen
class StoredAttachment:
    """
    One attachment of the message, stored: the planner's ``Candidate``
    and what its file became (decoded size, SHA-256, where its sealed
    stream lies in the transfer's object).
    """

    candidate: Candidate
    size: int
    sha256: str
    offset: int
    length: int

    @property
    def path(self) -> tuple[int, ...]:
        return self.candidate.path

    @property
    def slot(self) -> int:
        return self.candidate.slot

    @property
    def kind(self) -> str:
        return self.candidate.kind

    @property
    def headers(self) -> Any:
        return self.candidate.headers

    @property
    def name(self) -> Optional[str]:
        return self.candidate.name

    @property
    def contentType(self) -> str:
        return self.candidate.contentType

    @property
    def span(self) -> tuple[int, int]:
        """Where the stored file lies in the transfer's object: offset and length."""
        return self.offset, self.length


class Extractor:
    """Candidates of one message, from parser events to stored objects."""

    log = Logger()

    def __init__(self, store: Optional[IObjectStore], producer: IPushProducer, spool: Spool,
                 structure: Structure, queueId: str, scanner: Optional[Scanner] = None,
                 worker: Optional[Worker] = None, budget: Optional[MemoryBudget] = None) -> None:
        """``worker`` and ``budget``: a big part's work goes to a thread (``AttachmentSink``)."""
        self.store = store
        self.worker = worker
        self.budget = budget
        self.scans: Optional[MessageScans] = scanner.message() if scanner is not None else None
        self.producer = producer
        self.spool = spool
        self.structure = structure
        self.queueId = queueId
        self.planner = Planner(structure, active=store is not None)
        self.token = crypto.newToken()
        self.transferId = crypto.newTransferId()
        self.storing: list[Deferred] = []
        self.sinks: dict[int, AttachmentSink] = {}  # each open file, by its candidate's slot
        self.stored: set[int] = set()  # the slots of the files complete in the store
        self.failure: Optional[Failure] = None
        self.object: Optional[TransferObject] = None
        self.pendingWrites = 0
        self.holds = 0

    @property
    def active(self) -> bool:
        """Files are being stored (not stopped, nothing failed)."""
        return self.planner.active

    @property
    def rightsProtected(self) -> bool:
        """A Purview / IRM part outside any attached message was seen."""
        return self.planner.rightsProtected

    # -- events --------------------------------------------------------------

    def window(self, start: int, data: bytes) -> None:
        """The bytes the parser's next events are about (``MIMEParser.window``)."""
        self.planner.window(start, data)

    def passed(self, upTo: int) -> None:
        """The parser is done with the bytes before ``upTo`` (``MIMEParser.consumed``)."""
        self._act(self.planner.passed(upTo))

    def partStart(self, event: PartStart) -> None:
        self._act(self.planner.partStart(event))

    def bodyData(self, event: BodyData, minimum: Optional[int] = None) -> bool:
        """
        Feed a part's bytes on.  True when they are an attachment's that
        cannot stay (``Planner.bodyData``).
        """
        leaving, actions = self.planner.bodyData(event, minimum)
        self._act(actions)
        return leaving

    def partEnd(self, event: PartEnd) -> None:
        self._act(self.planner.partEnd(event))

    def _act(self, actions: list[Action]) -> None:
        """
        Carry the planner's actions out, in order, every kind (checked
        by mypy: ``assert_never``); those of a file that could not be
        opened are skipped (extraction stopped).
        """
        for action in actions:
            match action:
                case RightsProtected():
                    pass  # the transaction reads ``rightsProtected``: rule 6 is its decision
                case Open():
                    self._open(action)
                case Feed(slot=slot, data=data):
                    if slot in self.sinks:
                        self._wrote(self.sinks[slot].feed(data))
                case Close(slot=slot, tail=tail):
                    if slot in self.sinks:
                        sink = self.sinks[slot]
                        sink.feed(tail)
                        self.storing.append(self._finish(slot, sink.finish()))
                case Copy(slot=slot, start=start, end=end):
                    if slot in self.sinks:
                        self._copyInTurn(slot, start, end)
                case Drop(slot=slot):
                    # Its sealed bytes so far stay in the object, unlisted
                    # and under a key no other file has; nothing more goes in.
                    dropped = self.sinks.pop(slot, None)
                    if dropped is not None:
                        dropped.drop()
                    if self.scans is not None:
                        self.scans.drop(slot)
                case _:
                    assert_never(action)

    def _copyInTurn(self, slot: int, start: int, end: int) -> None:
        """
        Store file ``slot`` from the spool in the object's turn (files
        that arrive meanwhile wait behind it), the client paused until
        it is in.
        """
        sink = self.sinks[slot]
        assert self.object is not None
        self._hold()
        copied = self.object.exclusive(lambda: ensureDeferred(self._copy(sink, start, end)))
        copied.addBoth(self._release)
        self.storing.append(self._finish(slot, copied))

    async def _copy(self, sink: AttachmentSink, start: int, end: int) -> None:
        """
        A part is stored byte-exact from the spool, a chunk at a time,
        waiting for the store: never in memory as a whole.
        """
        for chunk in self.spool.read(start, end):
            if not self.active:
                raise _Stopped()
            written = sink.feed(chunk)
            if written is not None:
                await written
        await sink.finish()

    def _finish(self, slot: int, finished: Deferred) -> Deferred:
        def stored(_: Any) -> None:
            self.stored.add(slot)

        return finished.addCallbacks(stored, self._failed)

    # -- state ---------------------------------------------------------------

    def stop(self) -> None:
        """No protection after all: abort open sinks (and their scans); the budget they hold goes back."""
        self.planner.stop()
        for sink in self.sinks.values():
            sink.drop()
        if self.scans is not None:
            self.scans.abort()

    async def verdicts(self, files: list[StoredAttachment]) -> Optional[list[Verdict]]:
        """What clamd said of each of ``files`` (``None``: scanning is off)."""
        if self.scans is None:
            return None
        scans = self.scans
        return [await scans.verdict(f.slot) for f in files]

    async def attachments(self) -> list[StoredAttachment]:
        """
        The message's attachments in order, each stored (the object is
        not complete yet: ``commit``); StorageError when one could not be.
        """
        if self.storing:
            await DeferredList(self.storing, consumeErrors=True)
        if self.failure is not None:
            raise StorageError(self.failure.getErrorMessage())
        files = self.planner.files()
        if any(c.slot not in self.stored for c in files):
            raise StorageError("attachments were not stored")
        return [self._storedAs(c) for c in files]

    def _storedAs(self, candidate: Candidate) -> StoredAttachment:
        sink = self.sinks[candidate.slot]
        if sink.offset is None:
            raise StorageError("an attachment was not stored")
        return StoredAttachment(candidate, sink.size, sink.sha256, sink.offset, sink.length)

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

    def _open(self, action: Open) -> None:
        """A candidate's file (``action``), appending to the transfer's one object."""
        try:
            if self.object is None:
                assert self.store is not None
                self.object = TransferObject(self.store, objectKey(self.transferId))
            decoder = (decoderFor(action.encoding) if action.encoding is not None else None) or IdentityDecoder()
            self.sinks[action.slot] = AttachmentSink(
                self.object, crypto.fileKey(self.token, self.transferId, action.slot),
                decoder, exclusive=action.exclusive,
                scan=self.scans.open(action.slot) if self.scans is not None else None,
                worker=self.worker, budget=self.budget,
            )
        except Exception:
            self._failed(Failure())

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
