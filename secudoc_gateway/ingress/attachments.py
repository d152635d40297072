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

The actions are plain data: each file action names its candidate's
``slot``; the driver keeps the files by slot, and skips the actions of
a file it could not open.
"""

from __future__ import annotations

import mimetypes
from typing import Any, Optional, Union

import attrs

from secudoc_gateway.mime.decode import AnyDecoder, IdentityDecoder, decoderFor
from secudoc_gateway.mime.parser import BodyData, PartEnd, PartStart
from secudoc_gateway.mime.structure import (
    LEAF, MESSAGE, MULTIPART, SEALED_TYPES, CidScanner, Part, Structure, attachments, isAttachment,
)
from secudoc_gateway.mime.tnef import FileData, FileEnd, FileStart, TnefReader, isTnef
from secudoc_gateway.policy import isRightsProtection

NO_CIDS: frozenset[str] = frozenset()

Path = tuple[int, ...]


@attrs.frozen
class Candidate:
    """
    A part that is an attachment unless an HTML body shows it by cid:,
    or a file inside a TNEF part (``name`` set once its end is read,
    sharing the part's path).  ``slot`` numbers its file: never given
    twice in a message, so no two files share a key.  ``opened``: a TNEF
    part whose files took its place.
    """

    path: Path
    slot: int
    kind: str
    headers: Any
    name: Optional[str] = None
    opened: bool = False

    @property
    def contentType(self) -> str:
        if self.name is not None:
            return mimetypes.guess_type(self.name)[0] or "application/octet-stream"
        return str(self.headers.contentType)


@attrs.frozen
class Open:
    """
    Open file ``slot`` in the transfer's object; it transfer-decodes what
    it is fed by ``encoding`` (``None``: it is fed plain bytes).
    ``exclusive``: it is fed from the spool inside the object's exclusive
    turn (``Copy`` follows).
    """

    slot: int
    encoding: Optional[str] = None
    exclusive: bool = False


@attrs.frozen
class Feed:
    """Plain bytes for file ``slot``."""

    slot: int
    data: bytes


@attrs.frozen
class Close:
    """File ``slot`` is complete, after the plain bytes its decoder held back (``tail``)."""

    slot: int
    tail: bytes = b""


@attrs.frozen
class Drop:
    """A TNEF file not decoded to its end: file ``slot`` is abandoned, left unlisted (its candidate is gone)."""

    slot: int


@attrs.frozen
class Copy:
    """Feed file ``slot`` the spool's bytes ``start``..``end``, then close it."""

    slot: int
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
        self.rightsProtected = False
        self.referencedCids: set[str] = set()
        self._candidates: dict[int, Candidate] = {}  # by slot, in message order
        self._slots = 0  # the next slot: one never given before
        self._plain: dict[int, int] = {}  # plain bytes handed to each file so far, by slot
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

    @property
    def candidates(self) -> list[Candidate]:
        return list(self._candidates.values())

    def _candidate(self, path: Path, kind: str, headers: Any) -> Candidate:
        candidate = Candidate(path, self._slots, kind, headers)
        self._slots += 1
        self._candidates[candidate.slot] = candidate
        return candidate

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
        kind = event.kind
        if kind == MULTIPART:
            return actions
        # Judged on its own headers: its ancestors are not complete yet.
        provisional = Part(event.path, headers, event.headerStart, event.bodyStart,
                           event.bodyStart, event.bodyStart, kind, event.path[:-1] or None)
        if isAttachment(provisional, self.structure, NO_CIDS):
            candidate = self._candidate(event.path, kind, headers)
            decoder = decoderFor(headers.transferEncoding) or IdentityDecoder()
            if kind == MESSAGE:
                self._enclosing.add(event.path)
                if self.active:
                    self._capture = (candidate, event.bodyStart)
                    actions.append(Open(candidate.slot))
            elif self.active and isTnef(contentType, headers.filename):
                self._tnefs[event.path] = _Tnef(candidate, decoder)
            elif self.active:
                self._fed[event.path] = (candidate, decoder)
                actions.append(Open(candidate.slot))
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
            leaving = minimum is not None and self._plain.get(candidate.slot, 0) >= minimum and (
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
            return [Close(candidate.slot, tail)]
        tnef = self._tnefs.pop(event.path, None)
        if tnef is not None:
            return self._tnefEnd(tnef, event)
        if self._capture is not None and self._capture[0].path == event.path:
            message = self._capture[0]
            actions = self._captureTo(event.bodyEnd)
            self._capture = None
            return actions + [Close(message.slot)]
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
        return [c for c in self._candidates.values() if c.path in found and not c.opened]

    def _feed(self, candidate: Candidate, plain: bytes) -> list[Action]:
        if not plain:
            return []
        self._plain[candidate.slot] = self._plain.get(candidate.slot, 0) + len(plain)
        return [Feed(candidate.slot, plain)]

    def _unpacked(self, tnef: _Tnef, events: list) -> list[Action]:
        """A TNEF part's files, each a candidate of its own, stored as their bytes come."""
        actions: list[Action] = []
        for event in events:
            if isinstance(event, FileStart):
                tnef.file = self._candidate(tnef.part.path, LEAF, tnef.part.headers)
                actions.append(Open(tnef.file.slot))
                continue
            file = tnef.file
            if file is None:
                continue
            if isinstance(event, FileData):
                actions += self._feed(file, event.data)
                continue
            tnef.file = None
            if isinstance(event, FileEnd):
                self._candidates[file.slot] = attrs.evolve(file, name=event.name)
                actions.append(Close(file.slot))
            else:
                del self._candidates[file.slot]
                actions.append(Drop(file.slot))
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
            self._candidates[part.slot] = attrs.evolve(part, opened=True)
            return actions
        return actions + [Open(part.slot, part.headers.transferEncoding, exclusive=True),
                          Copy(part.slot, self.structure[event.path].bodyStart, event.bodyEnd)]
