"""
A streaming ``multipart/form-data`` parser (RFC 7578 on RFC 2046 5.1):
bytes in, events out, nothing held but the tail that could still be a
delimiter.  Pure: the upload's Twisted glue (``upload``) feeds it each
chunk of the request body as it arrives.

Theory of operation
-------------------

The body is read as if a line break preceded it, so every delimiter is
the same bytes, ``CRLF "--" boundary``, found with one ``bytes.find``
over the chunk (the carry of at most ``len(delimiter) - 1`` bytes makes
it whole across a split).  After a delimiter come ``"--"`` (the end:
the epilogue is ignored) or optional blanks and ``CRLF`` (a part's
header block follows, up to an empty line, bounded by
``maxHeaderBytes``).  A part with a ``filename`` is a file: its bytes
go out as ``FileData`` as they come; any other part is a field whose
value is gathered, bounded by ``maxFieldBytes``.

Strict where a browser never errs, so a hostile body is refused early
and plainly (``FormError`` carries the status): no or a malformed
boundary, a delimiter followed by anything but ``--`` or a line break
(the boundary inside the data), a header block past its limit or
without ``Content-Disposition: form-data; name=...``, more than
``maxParts`` parts, a file name with a path or a control character, a
body that ends before its close-delimiter.
"""

from __future__ import annotations

import re
from typing import Optional, Union

import attrs

# RFC 2046 5.1.1: bchars, 1 to 70 of them, not ending in a space.
_BOUNDARY = re.compile(rb"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_PARAM = re.compile(r'\s*;\s*([!#$%&\'*+\-.^_`|~0-9A-Za-z]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;\s]*)\s*')
_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f/\\]")

_PREAMBLE = "preamble"
_AFTER_DELIMITER = "after-delimiter"
_HEADERS = "headers"
_BODY = "body"
_END = "end"

BAD_REQUEST = 400
TOO_LARGE = 413


class FormError(Exception):
    """A body refused: ``status`` is the answer (400, 413), ``reason`` says why, in plain words."""

    def __init__(self, reason: str, status: int = BAD_REQUEST) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


@attrs.frozen
class Field:
    """A form field, whole (small by ``maxFieldBytes``)."""

    name: str
    value: str


@attrs.frozen
class FileStart:
    """A file part begins: its field name, the file's name (path-free) and declared type."""

    name: str
    filename: str
    contentType: str


@attrs.frozen
class FileData:
    data: bytes


@attrs.frozen
class FileEnd:
    """The file part's last byte came: its data is whole."""


@attrs.frozen
class End:
    """The close-delimiter: the form is complete."""


Event = Union[Field, FileStart, FileData, FileEnd, End]


def boundaryOf(contentType: Optional[bytes]) -> bytes:
    """The boundary of a ``multipart/form-data`` Content-Type; ``FormError`` for anything else."""
    if not contentType:
        raise FormError("the request has no Content-Type")
    text = contentType.decode("latin-1")
    kind, _, rest = text.partition(";")
    if kind.strip().lower() != "multipart/form-data":
        raise FormError("the request is not multipart/form-data")
    params = _params(";" + rest)
    boundary = params.get("boundary")
    if boundary is None:
        raise FormError("the multipart body has no boundary")
    raw = boundary.encode("latin-1")
    if not _BOUNDARY.fullmatch(raw):
        raise FormError("the multipart boundary is malformed")
    return raw


def _params(text: str) -> dict[str, str]:
    """``; name=value`` pairs (quoted strings unescaped), names lower-cased; ``FormError`` when malformed."""
    found: dict[str, str] = {}
    at = 0
    while at < len(text) and text[at:].strip():
        match = _PARAM.match(text, at)
        if match is None:
            raise FormError("a part's header parameters are malformed")
        name, value = match.group(1).lower(), match.group(2)
        if value.startswith('"'):
            if len(value) < 2 or not value.endswith('"'):
                raise FormError("a part's header parameters are malformed")
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        if name in found:
            raise FormError(f"the parameter {name!r} is given twice")
        found[name] = value
        at = match.end()
    return found


def safeFileName(name: str) -> str:
    """A file name as a browser sends it (RFC 7578 4.2: no path); ``FormError`` for anything else."""
    if not name.strip() or name.strip() in (".", "..") or _UNSAFE_NAME.search(name) or len(name) > 255:
        raise FormError("a file name is not allowed (a path, a control character, or too long)")
    return name


class FormDataParser:
    """Feed the body with ``feed`` as it arrives, then ``close``; each returns the events completed."""

    def __init__(self, boundary: bytes, maxParts: int = 64, maxHeaderBytes: int = 8192,
                 maxFieldBytes: int = 65536, maxPreamble: int = 8192) -> None:
        self._delimiter = b"\r\n--" + boundary
        self._maxParts = maxParts
        self._maxHeaderBytes = maxHeaderBytes
        self._maxFieldBytes = maxFieldBytes
        self._maxPreamble = maxPreamble
        self._state = _PREAMBLE
        self._buffer = b"\r\n"  # the line break every delimiter starts with, the first one's too
        self._seen = 0  # preamble bytes dropped
        self._parts = 0
        self._field: Optional[str] = None  # the field being gathered (None: a file)
        self._value = bytearray()

    @property
    def complete(self) -> bool:
        return self._state == _END

    def feed(self, data: bytes) -> list[Event]:
        if self._state == _END:
            return []  # the epilogue
        self._buffer = self._buffer + data if self._buffer else data
        events: list[Event] = []
        while self._step(events):
            continue  # each step consumed input or emitted an event; the next may too
        return events

    def close(self) -> list[Event]:
        if self._state != _END:
            raise FormError("the form ended before its last boundary")
        return []

    def _step(self, events: list[Event]) -> bool:
        """One transition on the buffer; False when it needs more bytes."""
        buffer = self._buffer
        delimiter = self._delimiter
        if self._state == _PREAMBLE:
            at = buffer.find(delimiter)
            if at < 0:
                keep = len(delimiter) - 1
                self._seen += max(0, len(buffer) - keep)
                if self._seen > self._maxPreamble:
                    raise FormError("no boundary found where the form should begin")
                self._buffer = buffer[-keep:]
                return False
            self._buffer = buffer[at + len(delimiter):]
            self._state = _AFTER_DELIMITER
            return True
        if self._state == _AFTER_DELIMITER:
            if len(buffer) < 2:
                return False
            if buffer.startswith(b"--"):
                self._state = _END
                self._buffer = b""
                events.append(End())
                return False
            stripped = buffer.lstrip(b" \t")
            if len(stripped) < 2:
                if len(buffer) > 64:
                    raise FormError("the boundary occurs inside the data")
                return False
            if not stripped.startswith(b"\r\n"):
                raise FormError("the boundary occurs inside the data")
            self._parts += 1
            if self._parts > self._maxParts:
                raise FormError(f"the form has more than {self._maxParts} parts")
            self._buffer = stripped[2:]
            self._state = _HEADERS
            return True
        if self._state == _HEADERS:
            end = buffer.find(b"\r\n\r\n")
            if buffer.startswith(b"\r\n"):
                end = -2  # no header at all: refused below
            if end == -1:
                if len(buffer) > self._maxHeaderBytes:
                    raise FormError("a part's header block is too large")
                return False
            if end + 4 > self._maxHeaderBytes:
                raise FormError("a part's header block is too large")
            self._startPart(buffer[:max(end, 0)], events)
            self._buffer = buffer[end + 4:]
            self._state = _BODY
            return True
        if self._state == _BODY:
            at = buffer.find(delimiter)
            if at < 0:
                keep = len(delimiter) - 1
                if len(buffer) > keep:
                    self._data(buffer[:-keep], events)
                    self._buffer = buffer[-keep:]
                return False
            if at:
                self._data(buffer[:at], events)
            self._endPart(events)
            self._buffer = buffer[at + len(delimiter):]
            self._state = _AFTER_DELIMITER
            return True
        return False

    def _startPart(self, block: bytes, events: list[Event]) -> None:
        headers: dict[str, str] = {}
        try:
            text = block.decode("utf-8")
        except UnicodeDecodeError:
            raise FormError("a part's header block is not UTF-8") from None
        for line in text.split("\r\n") if text else []:
            name, colon, value = line.partition(":")
            if not colon or not _TOKEN.fullmatch(name) or "\r" in value or "\n" in value:
                raise FormError("a part's header line is malformed")
            headers[name.lower()] = value.strip()
        disposition = headers.get("content-disposition", "")
        kind, _, rest = disposition.partition(";")
        if kind.strip().lower() != "form-data":
            raise FormError("a part has no Content-Disposition: form-data")
        params = _params(";" + rest)
        fieldName = params.get("name")
        if not fieldName:
            raise FormError("a part has no field name")
        if "filename" in params:
            self._field = None
            events.append(FileStart(fieldName, params["filename"], headers.get("content-type", "")))
        else:
            self._field = fieldName
            self._value = bytearray()

    def _data(self, data: bytes, events: list[Event]) -> None:
        if self._field is None:
            events.append(FileData(data))
            return
        self._value += data
        if len(self._value) > self._maxFieldBytes:
            raise FormError(f"the field {self._field!r} is too long")

    def _endPart(self, events: list[Event]) -> None:
        if self._field is None:
            events.append(FileEnd())
            return
        try:
            value = self._value.decode("utf-8")
        except UnicodeDecodeError:
            raise FormError(f"the field {self._field!r} is not UTF-8") from None
        events.append(Field(self._field, value))
        self._field = None
        self._value = bytearray()
