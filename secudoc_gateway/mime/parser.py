"""
A streaming MIME parser: bytes in, events with spool offsets out.

Theory of operation.  The parser is a two-state machine over the
stream.  In ``_HEADERS`` it collects one part's header block line by
line (header blocks are small and bounded by ``maxHeaderBytes``).  In
``_BODY`` it scans the current region -- a leaf's body, or a
multipart's preamble or epilogue -- for delimiter lines of every open
multipart with ``bytes.find(b"\\n--")`` over the whole chunk, so a body
costs a few C calls per chunk, never a Python call per line (RFC 2046
5.1.1: a delimiter is ``--boundary`` at the start of a line, and the
line break before it belongs to the delimiter, so ``bodyEnd`` excludes
it).  Only the tail that could still become a delimiter (a held line
break, a ``--`` line not yet complete) is carried to the next chunk,
bounded by ``maxLineLength``; everything before it is passed on as
``BodyData`` at once.

Open parts form a stack.  A delimiter of any open multipart closes
every part nested deeper (a missing close-delimiter is a defect, not an
error); a close-delimiter turns its multipart's remaining region into
the epilogue.  ``message/rfc822`` and ``message/global`` parts (not
base64/quoted-printable encoded) contain a message: its header block
starts at their body and becomes the child ``path + (0,)``.  Offsets
are absolute positions in the stream as fed, so later stages copy
parts from the spool by range instead of parsing again.

Limits (depth, part count, header block size) end parsing with a fatal
``Defect``; the SMTP session then answers 554 5.6.0 (SPEC 4).
"""

from __future__ import annotations

import re
from typing import Optional, Union

import attrs

from secudoc_gateway.mime.headers import DEFAULT_TYPE, DIGEST_DEFAULT_TYPE, Headers

_HEADERS = "headers"
_BODY = "body"
_DONE = "done"

LEAF = "leaf"
MULTIPART = "multipart"
MESSAGE = "message"

# RFC 5322 4.5.3: obsolete syntax allows blanks between a name and its colon.
_HEADER_LINE = re.compile(rb"[\x21-\x39\x3b-\x7e]*[ \t]*:|[ \t]|From ")
_NOT_BOUNDARY_TAIL = b" \t\r\n"
_ENCODED_CTES = frozenset(["base64", "quoted-printable"])
MESSAGE_TYPES = frozenset(["message/rfc822", "message/global"])

DEFAULT_MAX_LINE_LENGTH = 8192


@attrs.frozen
class PartStart:
    """
    A part's header block is complete; its body begins at ``bodyStart``.
    ``kind``, decided here once for every later stage: ``multipart`` for
    every multipart/* type (one without a usable boundary has its body
    read as one region, with a defect), ``message`` for a message/rfc822
    or message/global whose content is parsed as the child ``path +
    (0,)``, else ``leaf``.
    """

    path: tuple[int, ...]
    headers: Headers
    headerStart: int
    bodyStart: int
    kind: str


@attrs.frozen
class BodyData:
    """Raw, still transfer-encoded bytes of a leaf's body at ``offset``."""

    path: tuple[int, ...]
    data: bytes
    offset: int


@attrs.frozen
class PartEnd:
    """
    A part is complete.  Its body is ``[bodyStart, bodyEnd)``; ``end`` is
    where the next delimiter line starts (after the line break that RFC
    2046 5.1.1 gives to that delimiter), or the end of the stream.
    """

    path: tuple[int, ...]
    bodyEnd: int
    end: int


@attrs.frozen
class Defect:
    """
    Something malformed at ``offset``.  After a fatal defect (a limit)
    the parser emits nothing more.
    """

    reason: str
    offset: int
    fatal: bool


Event = Union[PartStart, BodyData, PartEnd, Defect]


class _Part:
    """One open part: the only mutable record, private to the parser."""

    __slots__ = ("path", "kind", "boundary", "active", "children", "digest", "headerStart", "defaultType")

    def __init__(self, path: tuple[int, ...], headerStart: int, defaultType: str) -> None:
        self.path = path
        self.headerStart = headerStart
        self.defaultType = defaultType
        self.kind = LEAF  # how its body is read: a multipart without a usable boundary is read as a leaf
        self.boundary = b""
        self.active = False
        self.children = 0
        self.digest = False


class MIMEParser:
    """
    Feed the message as it arrives with ``feed``, then call ``close``.
    Each returns the events that input completed.
    """

    def __init__(
        self,
        maxDepth: int = 100,
        maxParts: int = 5000,
        maxHeaderBytes: int = 1048576,
        maxLineLength: int = DEFAULT_MAX_LINE_LENGTH,
    ) -> None:
        self._maxDepth = maxDepth
        self._maxParts = maxParts
        self._maxHeaderBytes = maxHeaderBytes
        self._maxLineLength = maxLineLength
        self._offset = 0
        self._carry = b""
        self._stack: list[_Part] = []
        self._parts = 0
        self._state = _HEADERS
        self._atLineStart = True
        self._headerLines: list[bytes] = []
        self._headerSize = 0
        self._closed = False
        self._window: tuple[int, bytes] = (0, b"")
        self.fatal: Optional[Defect] = None
        self._startPart((), 0, DEFAULT_TYPE, [])

    # -- public --------------------------------------------------------

    def feed(self, chunk: bytes) -> list[Event]:
        """Parse ``chunk``; any split of the stream gives the same events."""
        if self._closed:
            raise ValueError("feed() after close()")
        chunk = bytes(chunk)
        events: list[Event] = []
        if self._state == _DONE or not chunk:
            self._window = (self._offset, chunk)
            self._offset += len(chunk)
            return events
        base = self._offset - len(self._carry)
        data = self._carry + chunk if self._carry else chunk
        self._window = (base, data)
        self._offset += len(chunk)
        self._carry = b""
        self._run(data, base, events, eof=False)
        return events

    def close(self) -> list[Event]:
        """The end of the stream: close whatever is still open."""
        if self._closed:
            return []
        self._closed = True
        events: list[Event] = []
        if self._state == _DONE:
            self._window = (self._offset, b"")
            return events
        data, self._carry = self._carry, b""
        self._window = (self._offset - len(data), data)
        self._run(data, self._offset - len(data), events, eof=True)
        return events

    @property
    def window(self) -> tuple[int, bytes]:
        """
        Where the bytes the last ``feed`` or ``close`` parsed start, and
        those bytes: what was carried over, then the chunk.  They start
        at ``consumed`` as it was before, so every byte consumed since,
        and every body and part end the events report, lies in them.
        """
        return self._window

    @property
    def consumed(self) -> int:
        """
        How far the stream is parsed for good: the bytes after it (the
        carry) may still turn out to be a delimiter's line break.
        """
        return self._offset - len(self._carry)

    # -- the machine ---------------------------------------------------

    def _run(self, data: bytes, base: int, events: list[Event], eof: bool) -> None:
        index = 0
        while True:
            if self._state == _HEADERS:
                index, wait = self._headerStep(data, index, base, events, eof)
            elif self._state == _BODY:
                index, wait = self._bodyStep(data, index, base, events, eof)
            else:
                return
            if wait:
                break
        if self._state != _DONE:
            self._carry = data[index:]

    def _fail(self, reason: str, offset: int, events: list[Event]) -> None:
        defect = Defect(reason, offset, True)
        events.append(defect)
        self.fatal = defect
        self._state = _DONE
        self._carry = b""
        self._stack = []

    def _startPart(
        self, path: tuple[int, ...], headerStart: int, defaultType: str, events: list[Event]
    ) -> None:
        self._parts += 1
        if self._parts > self._maxParts:
            self._fail("too many parts", headerStart, events)
            return
        if len(path) > self._maxDepth:
            self._fail("nesting too deep", headerStart, events)
            return
        self._stack.append(_Part(path, headerStart, defaultType))
        self._state = _HEADERS
        self._headerLines = []
        self._headerSize = 0

    def _headerStep(
        self, data: bytes, index: int, base: int, events: list[Event], eof: bool
    ) -> tuple[int, bool]:
        """RFC 5322 2.1: fields up to the first empty line."""
        while True:
            newline = data.find(b"\n", index)
            lineEnd = newline + 1 if newline >= 0 else len(data)
            if lineEnd - index + self._headerSize > self._maxHeaderBytes:
                self._fail("header block too large", base + index, events)
                return index, True
            if newline < 0 and not eof:
                return index, True
            line = data[index:lineEnd]
            if not line:
                self._finishHeaders(base + index, base, events, terminated=False)
                return index, False
            if line == b"\r\n" or line == b"\n":
                self._finishHeaders(base + lineEnd, base, events, terminated=True)
                return lineEnd, False
            if line.startswith(b"--") and self._matchBoundary(line) is not None:
                events.append(Defect("delimiter inside a header block", base + index, False))
                self._finishHeaders(base + index, base, events, terminated=True)
                return index, False
            if not _HEADER_LINE.match(line):
                # Python's email does the same: the body starts here.
                events.append(Defect("missing blank line after headers", base + index, False))
                self._finishHeaders(base + index, base, events, terminated=True)
                return index, False
            self._headerLines.append(line)
            self._headerSize += len(line)
            index = lineEnd

    def _finishHeaders(self, bodyStart: int, base: int, events: list[Event], terminated: bool) -> None:
        part = self._stack[-1]
        if not terminated and self._headerLines:
            events.append(Defect("header block ends at end of data", bodyStart, False))
        headers = Headers.fromBlock(b"".join(self._headerLines), part.defaultType)
        self._headerLines = []
        contentType = headers.contentType
        if contentType.startswith("multipart/"):
            kind = MULTIPART
        elif contentType in MESSAGE_TYPES and headers.transferEncoding not in _ENCODED_CTES:
            kind = MESSAGE
        else:
            kind = LEAF
        events.append(PartStart(part.path, headers, part.headerStart, bodyStart, kind))
        if kind == MULTIPART:
            boundary = headers.boundary
            if boundary is None:
                events.append(Defect("multipart without boundary", part.headerStart, False))
            elif len(boundary) + 4 > self._maxLineLength:
                events.append(Defect("boundary too long", part.headerStart, False))
            else:
                part.kind = MULTIPART
                part.boundary = boundary.encode("utf-8", "surrogateescape")
                part.active = True
                part.digest = contentType == "multipart/digest"
        elif kind == MESSAGE:
            part.kind = MESSAGE
        if part.kind == MESSAGE:
            part.children = 1
            self._startPart(part.path + (0,), bodyStart, DEFAULT_TYPE, events)
        else:
            self._state = _BODY
            self._atLineStart = True

    def _matchBoundary(self, line: bytes) -> Optional[tuple[int, bool]]:
        """
        ``(stack index, is close-delimiter)`` when ``line`` delimits an
        open multipart, innermost first.  RFC 2046 5.1.1: the boundary
        must match exactly (so "--abc" is no delimiter of "ab"), then
        optional "--", then optional linear white space.
        """
        rest = line[2:].rstrip(_NOT_BOUNDARY_TAIL)
        close = rest[:-2] if rest.endswith(b"--") else None
        for position in range(len(self._stack) - 1, -1, -1):
            part = self._stack[position]
            if part.active and part.boundary == rest:
                return position, False
        if close is not None:
            for position in range(len(self._stack) - 1, -1, -1):
                part = self._stack[position]
                if part.active and part.boundary == close:
                    return position, True
        return None

    def _bodyStep(
        self, data: bytes, index: int, base: int, events: list[Event], eof: bool
    ) -> tuple[int, bool]:
        """
        Scan for a delimiter line; pass the bytes before it on.  Returns
        where the unconsumed input starts and whether more is needed.
        """
        size = len(data)
        part = self._stack[-1]
        emit = part.kind == LEAF
        search = index
        atStart = self._atLineStart
        while True:
            if atStart and data.startswith(b"--", index):
                lineStart = lineBreak = index
            elif atStart and size - index < 2 and not eof:
                return index, True
            else:
                # memchr finds a dash (none in base64) far faster than the three bytes.
                dash = data.find(b"-", search + 1)
                found = -1 if dash < 0 else data.find(b"\n--", max(search, dash - 1))
                if found < 0:
                    if eof:
                        self._emit(part, data, index, size, base, events, emit)
                        self._endOfStream(base + size, events)
                        return size, True
                    hold = size
                    if hold - 2 >= index and data[hold - 1] == 0x2D and data[hold - 2] == 0x0A:
                        hold -= 1
                    if hold > index and data[hold - 1] == 0x0A:
                        hold -= 1
                    if hold > index and data[hold - 1] == 0x0D:
                        hold -= 1
                    self._emit(part, data, index, hold, base, events, emit)
                    if hold > index:
                        self._atLineStart = False
                    return hold, True
                lineStart = found + 1
                lineBreak = found - 1 if found > index and data[found - 1] == 0x0D else found
            atStart = False
            newline = data.find(b"\n", lineStart)
            if newline < 0:
                if size - lineStart <= self._maxLineLength and not eof:
                    # A delimiter may still be arriving: keep its line break.
                    self._emit(part, data, index, lineBreak, base, events, emit)
                    if lineBreak > index:
                        self._atLineStart = False
                    return lineBreak, True
                lineEnd = size
            else:
                lineEnd = newline + 1
            match = None
            if lineEnd - lineStart <= self._maxLineLength:
                match = self._matchBoundary(data[lineStart:lineEnd])
            if match is None:
                search = lineEnd - 1 if newline >= 0 else size
                continue
            self._emit(part, data, index, lineBreak, base, events, emit)
            self._delimiter(match[0], match[1], base + lineBreak, base + lineStart, base + lineEnd, events)
            return lineEnd, False

    def _emit(
        self, part: _Part, data: bytes, start: int, stop: int, base: int, events: list[Event], emit: bool
    ) -> None:
        if emit and stop > start:
            events.append(BodyData(part.path, data[start:stop], base + start))

    def _delimiter(
        self, position: int, close: bool, bodyEnd: int, end: int, lineEnd: int, events: list[Event]
    ) -> None:
        """RFC 2046 5.1.1: a delimiter ends every part nested inside its multipart."""
        while len(self._stack) - 1 > position:
            inner = self._stack.pop()
            if inner.kind == MULTIPART and inner.active:
                events.append(Defect("missing close-delimiter", end, False))
            events.append(PartEnd(inner.path, bodyEnd, end))
        multipart = self._stack[-1]
        if close:
            multipart.active = False
            self._state = _BODY
            self._atLineStart = True
            return
        path = multipart.path + (multipart.children,)
        multipart.children += 1
        defaultType = DIGEST_DEFAULT_TYPE if multipart.digest else DEFAULT_TYPE
        self._startPart(path, lineEnd, defaultType, events)

    def _endOfStream(self, offset: int, events: list[Event]) -> None:
        while self._stack:
            part = self._stack.pop()
            if part.kind == MULTIPART and part.active:
                events.append(Defect("missing close-delimiter", offset, False))
            events.append(PartEnd(part.path, offset, offset))
        self._state = _DONE
