"""
The shape of one message, recorded from parser events, and SPEC section
5's answer to "is this part an attachment?".

``Structure`` keeps one frozen ``Part`` per MIME part with its spool
offsets, so the rewriter can lay out the outgoing message as ranges of
the spool without parsing again.  ``CidScanner`` finds the ``cid:``
references (RFC 2392) of HTML bodies as their decoded bytes stream by,
so inline images that an HTML body shows stay in the message.
"""

from __future__ import annotations

import html
import re
from typing import AbstractSet, Iterable, Iterator, Optional
from urllib.parse import unquote

import attrs

from secudoc_gateway.mime.headers import KNOWN_ENCODINGS, Headers
from secudoc_gateway.mime.parser import (  # the part kinds are the parser's, re-exported
    LEAF, MESSAGE, MESSAGE_TYPES, MULTIPART, BodyData, Defect, Event, PartEnd, PartStart,
)

__all__ = [
    "LEAF", "MESSAGE", "MESSAGE_TYPES", "MULTIPART", "BODY_TYPES", "CALENDAR", "SEALED_TYPES", "Part", "Structure",
    "CidScanner", "attachments", "isAttachment", "normalizeCid",
]

BODY_TYPES = frozenset(["text/plain", "text/html"])
CALENDAR = "text/calendar"
SEALED_TYPES = frozenset(["multipart/signed", "multipart/encrypted"])

Path = tuple[int, ...]


@attrs.frozen
class Part:
    """
    One part.  Its header block is ``[headerStart, bodyStart)`` (blank
    line included), its body ``[bodyStart, bodyEnd)``; ``end`` is where
    the next delimiter line starts (parser.PartEnd).  ``kind`` is the
    parser's (``parser.PartStart``).
    """

    path: Path
    headers: Headers
    headerStart: int
    bodyStart: int
    bodyEnd: int
    end: int
    kind: str
    parent: Optional[Path]


class Structure:
    """
    Feed every parser event to ``add``; parts are complete (and listed)
    once their ``PartEnd`` arrived.  ``BodyData`` is ignored: bodies
    stay in the spool.
    """

    def __init__(self) -> None:
        self._starts: dict[Path, PartStart] = {}
        self._order: list[Path] = []
        self._parts: dict[Path, Part] = {}
        self._children: dict[Path, list[Path]] = {}
        self.defects: list[Defect] = []
        self.fatal: Optional[Defect] = None

    def add(self, event: Event) -> None:
        if isinstance(event, PartStart):
            self._starts[event.path] = event
            self._order.append(event.path)
            self._children[event.path] = []
            if event.path:
                self._children.setdefault(event.path[:-1], []).append(event.path)
        elif isinstance(event, PartEnd):
            start = self._starts.pop(event.path)
            self._parts[event.path] = Part(
                path=event.path,
                headers=start.headers,
                headerStart=start.headerStart,
                bodyStart=start.bodyStart,
                bodyEnd=event.bodyEnd,
                end=event.end,
                kind=start.kind,
                parent=event.path[:-1] if event.path else None,
            )
        elif isinstance(event, Defect):
            self.defects.append(event)
            if event.fatal:
                self.fatal = event
        elif not isinstance(event, BodyData):
            raise TypeError(f"not a parser event: {event!r}")

    def addAll(self, events: Iterable[Event]) -> None:
        for event in events:
            self.add(event)

    @property
    def complete(self) -> bool:
        """The root part ended (the parser was closed, or a fatal defect)."""
        return () in self._parts

    @property
    def root(self) -> Part:
        return self._parts[()]

    @property
    def parts(self) -> list[Part]:
        """Every complete part, in message order (the order they started)."""
        return [self._parts[path] for path in self._order if path in self._parts]

    def __iter__(self) -> Iterator[Part]:
        return iter(self.parts)

    def __contains__(self, path: object) -> bool:
        return path in self._parts

    def __getitem__(self, path: Path) -> Part:
        return self._parts[path]

    def children(self, path: Path) -> list[Part]:
        return [self._parts[child] for child in self._children.get(path, []) if child in self._parts]

    def ancestors(self, path: Path) -> list[Part]:
        """Parent first, root last."""
        return [self._parts[path[:n]] for n in range(len(path) - 1, -1, -1) if path[:n] in self._parts]


def normalizeCid(value: str) -> str:
    """
    A Content-ID and a ``cid:`` URL compared as RFC 2392 2 says (the URL
    is the %-encoded addr-spec without brackets), case-insensitively:
    mailers disagree on case, and keeping an image too many is harmless.
    """
    value = value.strip()
    if value.startswith("<") and value.endswith(">"):
        value = value[1:-1]
    return unquote(value).strip().lower()


def _isAttachmentItself(part: Part, referencedCids: AbstractSet[str]) -> bool:
    if part.kind == MULTIPART:
        return False
    headers = part.headers
    contentType = headers.contentType
    if contentType == CALENDAR:
        return False
    if headers.transferEncoding not in KNOWN_ENCODINGS:
        return False
    disposition = headers.disposition
    if disposition != "attachment" and headers.contentId is not None:
        if normalizeCid(headers.contentId) in referencedCids:
            return False
    return (
        disposition == "attachment"
        or headers.filename is not None
        or (contentType not in BODY_TYPES and disposition != "inline")
    )


def isAttachment(part: Part, structure: Structure, referencedCids: AbstractSet[str]) -> bool:
    """
    SPEC 5: a leaf, or a message/rfc822 / message/global as a whole,
    with ``Content-Disposition: attachment``, or a file name, or neither
    text/plain nor text/html and not inline; except an inline part an
    HTML body references by ``cid:``, text/calendar, parts in a
    transfer encoding we cannot decode, and anything inside a
    multipart/signed or multipart/encrypted (its signature covers it).  Nothing inside an attached
    message is an attachment of its own.  ``referencedCids`` holds
    ``normalizeCid`` values (``CidScanner.found``).
    """
    for ancestor in structure.ancestors(part.path):
        if ancestor.kind == MESSAGE and _isAttachmentItself(ancestor, referencedCids):
            return False
        if ancestor.headers.contentType in SEALED_TYPES:
            # Taking a part out of a signed or encrypted subtree breaks it.
            return False
    return _isAttachmentItself(part, referencedCids)


def attachments(structure: Structure, referencedCids: AbstractSet[str]) -> list[Part]:
    """Every attachment, in message order."""
    return [part for part in structure.parts if isAttachment(part, structure, referencedCids)]


# "cid:" and the URL after it, up to what ends an attribute value, a CSS
# url() or a word.
_CID_URL = re.compile(rb"cid:([^\s\"'<>()\\]*)", re.IGNORECASE)
MAX_CID_LENGTH = 998  # RFC 5322 2.1.1: a Content-ID fits on a line


class CidScanner:
    """
    ``cid:`` URLs in an HTML body, fed its decoded bytes in chunks of
    any size.  Only a possible reference cut by a chunk boundary is
    carried over, at most ``MAX_CID_LENGTH`` bytes; longer ones are
    dropped (no Content-ID can match them).
    """

    def __init__(self) -> None:
        self._carry = b""
        self.found: set[str] = set()

    def feed(self, data: bytes) -> None:
        buffer = self._carry + data if self._carry else bytes(data)
        # A "cid:" cut after up to three bytes waits for the rest.
        keepFrom = max(0, len(buffer) - 3)
        for match in _CID_URL.finditer(buffer):
            if match.end() == len(buffer):
                keepFrom = match.start()
                break
            self._found(match.group(1))
        self._carry = buffer[keepFrom:]
        if len(self._carry) > MAX_CID_LENGTH + 4:
            self._carry = b""

    def close(self) -> set[str]:
        carry, self._carry = self._carry, b""
        for match in _CID_URL.finditer(carry):
            self._found(match.group(1))
        return self.found

    def _found(self, raw: bytes) -> None:
        if raw:
            value = normalizeCid(html.unescape(raw.decode("utf-8", "replace")))
            if value:
                self.found.add(value)
