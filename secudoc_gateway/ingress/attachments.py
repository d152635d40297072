"""
The attachment planner: which parts of a message leave it, decided from
the parser's events alone, with no storage, Deferred or reactor.

Apart from the extractor (its driver) so every decision about a part can
be tested by feeding events and reading the actions that come back:

- at a part's start, from the part's own headers, whether it is a
  candidate (SPEC 5); nothing inside an attached message or a signed or
  encrypted subtree is a candidate of its own;
- a rights-protected part (Purview / IRM) outside any attached message;
- a candidate's body transfer-decoded here, so the driver's file gets
  plain bytes, and whether those bytes are surely leaving;
- a TNEF part (``winmail.dat``) opened instead of stored: each file in
  it becomes a candidate of its own; when the reader could not decode
  everything, the part is also copied from the spool as it is (only
  then is a part read back from the spool);
- an attached message stored byte-exact as received, from the bytes
  the parser is done with (``window``, ``passed``), as they pass;
- HTML bodies scanned for ``cid:`` references: an inline part shown by
  one is no attachment after all.

The file actions name a ``Candidate``; the driver hangs its file
(``sink``) on it, and skips the actions of a candidate whose file it
could not open.
"""

from __future__ import annotations

import mimetypes
from typing import Any, Optional, Protocol, Union

import attrs

from secudoc_gateway.mime.decode import AnyDecoder, IdentityDecoder, decoderFor
from secudoc_gateway.mime.parser import BodyData, PartEnd, PartStart
from secudoc_gateway.mime.structure import (
    LEAF, MESSAGE, MESSAGE_TYPES, SEALED_TYPES, CidScanner, Part, Structure, attachments, isAttachment,
)
from secudoc_gateway.mime.tnef import FileData, FileEnd, FileStart, TnefReader, isTnef
from secudoc_gateway.policy import isRightsProtection

NO_CIDS: frozenset[str] = frozenset()

Path = tuple[int, ...]


class StoredFile(Protocol):
    """What the planner's callers read of a candidate's file once it is stored."""

    size: int
    offset: Optional[int]
    length: int

    @property
    def sha256(self) -> str: ...


@attrs.define(eq=False)
class Candidate:
    """
    A part that is an attachment unless an HTML body shows it by cid:,
    or a file inside a TNEF part (``name`` set, sharing the part's path).
    ``opened``: a TNEF part whose files took its place.  ``fed``: the
    plain bytes the planner has handed to its file so far.
    """

    path: Path
    slot: int
    kind: str
    headers: Any
    sink: Optional[StoredFile] = None
    stored: bool = False
    name: Optional[str] = None
    opened: bool = False
    fed: int = 0

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

    @property
    def span(self) -> tuple[int, int]:
        """Where the stored file lies in the transfer's object: offset and length."""
        if self.sink is None or self.sink.offset is None:
            raise ValueError("the file was not stored")
        return self.sink.offset, self.sink.length


@attrs.frozen
class Open:
    """
    Open the candidate's file in the transfer's object; it decodes what
    it is fed with ``decoder``.  ``exclusive``: it is fed from the spool
    inside the object's exclusive turn (``Copy`` follows).
    """

    candidate: Candidate
    decoder: AnyDecoder
    exclusive: bool = False


@attrs.frozen
class Feed:
    """Plain bytes for the candidate's file."""

    candidate: Candidate
    data: bytes


@attrs.frozen
class Close:
    """The candidate's file is complete, after the plain bytes its decoder held back (``tail``)."""

    candidate: Candidate
    tail: bytes = b""


@attrs.frozen
class Drop:
    """A TNEF file not decoded to its end: its file is left unlisted (the candidate is gone)."""

    candidate: Candidate


@attrs.frozen
class Copy:
    """Feed the candidate's file the spool's bytes ``start``..``end``, then close it."""

    candidate: Candidate
    start: int
    end: int


@attrs.frozen
class RightsProtected:
    """A rights-protected part outside any attached message: the message passes as it is (rule 6)."""


Action = Union[Open, Feed, Close, Drop, Copy, RightsProtected]


@attrs.define
class _Tnef:
    """A TNEF part being opened: its decoder, reader and the file being stored."""

    part: Candidate
    decoder: AnyDecoder
    reader: TnefReader = attrs.Factory(TnefReader)
    file: Optional[Candidate] = None


class Planner:
    """
    One message's candidates, from parser events to actions.  ``active``
    (files are opened) until ``stop``; candidates are found either way.
    ``structure`` is the message's, fed each event before the planner.
    """

    def __init__(self, structure: Structure, active: bool = True) -> None:
        self.structure = structure
        self.active = active
        self.candidates: list[Candidate] = []
        self.rightsProtected = False
        self.referencedCids: set[str] = set()
        # Candidates fed by their part's body, with the decoder for it.
        self._fed: dict[Path, tuple[Candidate, AnyDecoder]] = {}
        # Sealed subtrees and attached messages: nothing inside them is a
        # candidate of its own.
        self._enclosing: set[Path] = set()
        # The attached message being stored as received, and its next offset.
        self._capture: Optional[tuple[Candidate, int]] = None
        self._window: tuple[int, bytes] = (0, b"")
        self._scanners: dict[Path, tuple[AnyDecoder, CidScanner]] = {}
        self._tnefs: dict[Path, _Tnef] = {}

    def partStart(self, event: PartStart) -> list[Action]:
        if any(event.path[:n] in self._enclosing for n in range(len(event.path))):
            return []
        actions: list[Action] = []
        headers = event.headers
        contentType = headers.contentType
        if isRightsProtection(contentType, headers.filename):
            self.rightsProtected = True
            actions.append(RightsProtected())
        if contentType in SEALED_TYPES:
            self._enclosing.add(event.path)
        if contentType.startswith("multipart/"):
            return actions
        kind = MESSAGE if contentType in MESSAGE_TYPES and headers.transferEncoding not in (
            "base64", "quoted-printable") else LEAF
        # Judged on its own headers: its ancestors are not complete yet.
        provisional = Part(event.path, headers, event.headerStart, event.bodyStart,
                           event.bodyStart, event.bodyStart, kind, event.path[:-1] or None)
        if isAttachment(provisional, self.structure, NO_CIDS):
            candidate = Candidate(event.path, len(self.candidates), kind, headers)
            self.candidates.append(candidate)
            decoder = decoderFor(headers.transferEncoding) or IdentityDecoder()
            if kind == MESSAGE:
                self._enclosing.add(event.path)
                if self.active:
                    self._capture = (candidate, event.bodyStart)
                    actions.append(Open(candidate, IdentityDecoder()))
            elif self.active and isTnef(contentType, headers.filename):
                self._tnefs[event.path] = _Tnef(candidate, decoder)
            elif self.active:
                self._fed[event.path] = (candidate, decoder)
                actions.append(Open(candidate, IdentityDecoder()))
        elif contentType == "text/html":
            self._scanners[event.path] = (decoderFor(headers.transferEncoding) or IdentityDecoder(), CidScanner())
        return actions

    def bodyData(self, event: BodyData, minimum: Optional[int] = None) -> tuple[bool, list[Action]]:
        """
        The actions for a part's bytes, and whether they are an
        attachment's that cannot stay, as far as was known before them:
        past ``minimum`` (the size that makes a message protected; never
        without one), and no HTML body can show it by cid:.
        """
        fed = self._fed.get(event.path)
        if fed is not None:
            candidate, decoder = fed
            headers = candidate.headers
            leaving = minimum is not None and candidate.fed >= minimum and (
                headers.disposition == "attachment" or headers.contentId is None)
            return leaving, self._feed(candidate, decoder.feed(event.data))
        tnef = self._tnefs.get(event.path)
        if tnef is not None:
            return False, self._unpacked(tnef, tnef.reader.feed(tnef.decoder.feed(event.data)))
        scanner = self._scanners.get(event.path)
        if scanner is not None:
            scanner[1].feed(scanner[0].feed(event.data))
        return False, []

    def partEnd(self, event: PartEnd) -> list[Action]:
        scanner = self._scanners.pop(event.path, None)
        if scanner is not None:
            decoder, cids = scanner
            cids.feed(decoder.close())
            self.referencedCids |= cids.close()
            return []
        fed = self._fed.pop(event.path, None)
        if fed is not None:
            candidate, decoder = fed
            tail = decoder.close()
            candidate.fed += len(tail)
            return [Close(candidate, tail)]
        tnef = self._tnefs.pop(event.path, None)
        if tnef is not None:
            return self._tnefEnd(tnef, event)
        if self._capture is not None and self._capture[0].path == event.path:
            message = self._capture[0]
            actions = self._captureTo(event.bodyEnd)
            self._capture = None
            return actions + [Close(message)]
        return []

    def window(self, start: int, data: bytes) -> None:
        """The bytes the parser's next events are about (``MIMEParser.window``)."""
        self._window = (start, data)

    def passed(self, upTo: int) -> list[Action]:
        """
        The parser is done with the bytes before ``upTo``
        (``MIMEParser.consumed``): those of an attached message go to its
        file as they were received.  Bytes it still holds may be the line
        break of the delimiter that ends the message, so they wait.
        """
        return self._captureTo(upTo) if self._capture is not None else []

    def _captureTo(self, end: int) -> list[Action]:
        assert self._capture is not None
        candidate, at = self._capture
        start, data = self._window
        if end <= at:
            return []
        if at < start or end > start + len(data):
            raise ValueError(f"bytes {at}..{end} of an attached message are not in the parser's window")
        self._capture = (candidate, end)
        return self._feed(candidate, data[at - start : end - start])

    def stop(self) -> None:
        """No files after all (no protection, or one could not be stored)."""
        self.active = False
        self._fed.clear()
        self._tnefs.clear()
        self._capture = None

    def files(self) -> list[Candidate]:
        """The message's attachments in order, once it has ended (a TNEF part opened is not one)."""
        found = {part.path for part in attachments(self.structure, self.referencedCids)}
        return [c for c in self.candidates if c.path in found and not c.opened]

    @staticmethod
    def _feed(candidate: Candidate, plain: bytes) -> list[Action]:
        if not plain:
            return []
        candidate.fed += len(plain)
        return [Feed(candidate, plain)]

    def _unpacked(self, tnef: _Tnef, events: list) -> list[Action]:
        """A TNEF part's files, each a candidate of its own, stored as their bytes come."""
        actions: list[Action] = []
        for event in events:
            if isinstance(event, FileStart):
                tnef.file = Candidate(tnef.part.path, len(self.candidates), LEAF, tnef.part.headers)
                self.candidates.append(tnef.file)
                actions.append(Open(tnef.file, IdentityDecoder()))
                continue
            file = tnef.file
            if file is None:
                continue
            if isinstance(event, FileData):
                actions += self._feed(file, event.data)
                continue
            tnef.file = None
            if isinstance(event, FileEnd):
                file.name = event.name
                actions.append(Close(file))
            else:
                self.candidates.remove(file)
                actions.append(Drop(file))
        return actions

    def _tnefEnd(self, tnef: _Tnef, event: PartEnd) -> list[Action]:
        """
        The TNEF part ends: its files take its place (none, when it held
        only the message's own properties), unless something in it could
        not be decoded; then the part is copied too, as it is, from the
        spool (SPEC 5), so nothing is lost.
        """
        actions = self._unpacked(tnef, tnef.reader.feed(tnef.decoder.close()) + tnef.reader.close())
        part = tnef.part
        if not tnef.reader.incomplete:
            part.opened = True
            return actions
        decoder = decoderFor(part.headers.transferEncoding) or IdentityDecoder()
        return actions + [Open(part, decoder, exclusive=True),
                          Copy(part, self.structure[event.path].bodyStart, event.bodyEnd)]
