"""
Outlook's TNEF (``winmail.dat``, ``application/ms-tnef``) opened as it
streams: the files inside are what the recipient downloads (SPEC 5).

Theory of operation.  A TNEF stream ([MS-OXTNEF] 2.1.3) is a signature,
a legacy key, then attributes: level (message or attachment), id,
length, data, a 16-bit checksum (the sum of the data's octets).  An
attachment starts with ``attAttachRendData``; its file is the data of
``attAttachData``, its name ``attAttachTitle`` (8.3, in the stream's
code page) unless the attachment's MAPI properties (``attAttachment``,
[MS-OXTNEF] 2.1.3.4) give ``PR_ATTACH_LONG_FILENAME``.  Those
properties come after the data, and so does ``PR_ATTACH_METHOD``, which
says whether the data is the file at all (1, by value) or something
only Outlook can rebuild (an embedded message, an OLE object).  So a
file's bytes are passed on as they arrive (``FileStart``, ``FileData``)
and judged when its attachment ends: ``FileEnd`` with its name, or
``FileDrop`` when it is no file after all.

``TnefReader`` is sans-I/O, fed decoded bytes in chunks of any size.
It holds at most ``maxValue`` bytes of one small value (a name, a code
page, a property header) plus one chunk: the file data streams through,
larger values are skipped unread, whatever the stream's size.  The
checksums of small values are checked; that of file data is not (it
would halve the rate, and base64 already carried the bytes intact).  Whatever
it cannot turn into files (a broken stream, an embedded message) leaves ``incomplete`` set: the caller then keeps
``winmail.dat`` as it is as well, so nothing is lost.  The message's
own properties (its rich-text body, which the message carries as text
too) are no file and are skipped.  tnefparse, the Python library for TNEF, needs the whole stream
in memory, copies it per attribute, and had no release since 2021.

The reader is a generator that asks for what it needs next: ``_READ``
n bytes as one value, ``_SKIP`` n bytes, or ``_DATA`` n bytes passed on
as file data; ``feed`` answers its requests from the bytes at hand.
"""

from __future__ import annotations

import codecs
from typing import Generator, Optional, Union

import attrs

SIGNATURE = b"\x78\x9f\x3e\x22"  # 0x223E9F78, little-endian
TNEF_TYPES = frozenset(["application/ms-tnef", "application/vnd.ms-tnef"])
TNEF_NAME = "winmail.dat"

LEVEL_MESSAGE = 1
LEVEL_ATTACHMENT = 2
# Attribute ids, low 16 bits ([MS-OXTNEF] 2.1.3.5: the high bits are the type).
ATT_RENDDATA = 0x9002
ATT_DATA = 0x800F
ATT_TITLE = 0x8010
ATT_ATTACHMENT = 0x9005
ATT_OEM_CODEPAGE = 0x9007
# MAPI properties of an attachment ([MS-OXPROPS]).
PR_DISPLAY_NAME = 0x3001
PR_ATTACH_FILENAME = 0x3704
PR_ATTACH_METHOD = 0x3705
PR_ATTACH_LONG_FILENAME = 0x3707
ATTACH_BY_VALUE = 1
_NAMES = (PR_ATTACH_LONG_FILENAME, PR_DISPLAY_NAME, PR_ATTACH_FILENAME)

# Property types: fixed sizes, and the counted ones ([MS-OXCDATA] 2.11.1).
_FIXED = {0x0001: 4, 0x0002: 2, 0x0003: 4, 0x0004: 4, 0x0005: 8, 0x0006: 8, 0x0007: 8, 0x000A: 4,
          0x000B: 2, 0x0014: 8, 0x0040: 8, 0x0048: 16}
_PT_STRING8 = 0x001E
_PT_UNICODE = 0x001F
_COUNTED = frozenset([0x0000, 0x000D, _PT_STRING8, _PT_UNICODE, 0x0102])
_MULTIPLE = 0x1000
_NAMED = 0x8000

MAX_VALUE = 64 * 1024
"""A name or property value read into memory; larger ones are skipped."""
MAX_FILES = 1000

_READ, _SKIP, _DATA = "read", "skip", "data"


class TnefError(ValueError):
    """The stream is not TNEF, or breaks its own framing."""


@attrs.frozen
class FileStart:
    """A file's bytes follow."""


@attrs.frozen
class FileData:
    data: bytes


@attrs.frozen
class FileEnd:
    """The file is complete: it was an attachment by value, named ``name``."""

    name: str


@attrs.frozen
class FileDrop:
    """The bytes since ``FileStart`` are no file after all (or were damaged)."""


Event = Union[FileStart, FileData, FileEnd, FileDrop]
_Request = tuple[str, int]


def isTnef(contentType: str, filename: Optional[str]) -> bool:
    return contentType in TNEF_TYPES or (filename or "").strip().lower() == TNEF_NAME


def _u16(data: bytes, at: int = 0) -> int:
    return int.from_bytes(data[at:at + 2], "little")


def _u32(data: bytes, at: int = 0) -> int:
    return int.from_bytes(data[at:at + 4], "little")


def _padded(n: int) -> int:
    return n + (-n % 4)


def _codec(codepage: int) -> str:
    name = "utf-8" if codepage == 65001 else f"cp{codepage}"
    try:
        codecs.lookup(name)
    except LookupError:
        return "cp1252"
    return name


@attrs.define
class _Attachment:
    title: str = ""
    names: dict[int, str] = attrs.Factory(dict)
    method: Optional[int] = None
    hasData: bool = False

    def name(self, number: int) -> str:
        for key in _NAMES:
            if self.names.get(key):
                return self.names[key]
        return self.title or f"attachment-{number}"


class _PropertiesEnd(Exception):
    """The property list does not fit its attribute, or has a type we cannot size."""


class TnefReader:
    """Feed decoded TNEF bytes, get file events; ``close`` at the end of the part."""

    def __init__(self, maxValue: int = MAX_VALUE, maxFiles: int = MAX_FILES) -> None:
        self.maxValue = maxValue
        self.maxFiles = maxFiles
        self.incomplete = False
        self.files = 0
        self._events: list[Event] = []
        self._buffer = bytearray()
        self._progress = 0
        self._codepage = "cp1252"
        self._open = False  # a FileStart without its FileEnd or FileDrop
        self._steps: Optional[Generator[_Request, object, None]] = self._run()
        self._want: _Request = next(self._steps)
        self._boundary = False

    # -- driving -------------------------------------------------------------

    def feed(self, data: bytes) -> list[Event]:
        if self._steps is not None:
            # Most of a stream is file data: taken straight from the chunk,
            # only a short remainder waits in the buffer for the next one.
            source = self._buffer + data if self._buffer else data
            at = self._drive(source)
            self._buffer = bytearray(source[at:]) if self._steps is not None else bytearray()
        return self._take()

    def close(self) -> list[Event]:
        """The end of the stream: a clean one only between two attributes."""
        if self._steps is not None:
            if self._boundary and not self._buffer:
                self._send(b"")
            else:
                self._broken()
        return self._take()

    def _take(self) -> list[Event]:
        events, self._events = self._events, []
        return events

    def _drive(self, source: Union[bytes, bytearray]) -> int:
        """Answer the reader's requests from ``source``; how far it got."""
        at = 0
        while self._steps is not None:
            kind, size = self._want
            if kind == _READ:
                if len(source) - at < size:
                    break
                value, at = bytes(source[at:at + size]), at + size
                self._send(value)
                continue
            take = min(size - self._progress, len(source) - at)
            if take:
                if kind == _DATA:
                    self._events.append(FileData(bytes(source[at:at + take])))
                at += take
                self._progress += take
            if self._progress < size:
                break
            self._progress = 0
            self._send(None)
        return at

    def _send(self, value: object) -> None:
        assert self._steps is not None
        self._boundary = False
        try:
            self._want = self._steps.send(value)
        except StopIteration:
            self._steps = None
        except TnefError:
            self._broken()

    def _broken(self) -> None:
        """Stop reading: what was not yet a file is kept only in the original."""
        self.incomplete = True
        if self._open:
            self._open = False
            self._events.append(FileDrop())
        if self._steps is not None:
            self._steps.close()
        self._steps = None

    # -- the stream ------------------------------------------------------------

    def _run(self) -> Generator[_Request, object, None]:
        head = yield (_READ, 6)
        if head[:4] != SIGNATURE:  # type: ignore[index]
            raise TnefError("no TNEF signature")
        current: Optional[_Attachment] = None
        while True:
            self._boundary = True
            header = yield (_READ, 9)
            if not header:
                break
            assert isinstance(header, bytes)
            level, name, length = header[0], _u16(header, 1), _u32(header, 5)
            if level not in (LEVEL_MESSAGE, LEVEL_ATTACHMENT):
                raise TnefError(f"attribute level {level}")
            checksum: Optional[int] = None
            if level == LEVEL_ATTACHMENT and name == ATT_RENDDATA:
                if current is not None:
                    self._attachmentEnd(current)
                current = _Attachment()
            if current is not None and level == LEVEL_ATTACHMENT and name == ATT_DATA and not current.hasData:
                current.hasData = True
                if self.files < self.maxFiles:
                    self._open = True
                    self._events.append(FileStart())
                    yield (_DATA, length)
                else:
                    self.incomplete = True
                    yield (_SKIP, length)
            elif name in (ATT_TITLE, ATT_OEM_CODEPAGE) and length <= self.maxValue:
                value = yield (_READ, length)
                assert isinstance(value, bytes)
                checksum = sum(value) & 0xFFFF
                if name == ATT_OEM_CODEPAGE and level == LEVEL_MESSAGE and length >= 4:
                    self._codepage = _codec(_u32(value))
                elif name == ATT_TITLE and current is not None and level == LEVEL_ATTACHMENT:
                    current.title = value.split(b"\0", 1)[0].decode(self._codepage, "replace")
            elif name == ATT_ATTACHMENT and current is not None and level == LEVEL_ATTACHMENT:
                yield from self._properties(length, current)
            else:
                # The message's own properties (its body, which the
                # message carries as text too), a rendering icon: nothing
                # a recipient downloads.
                yield (_SKIP, length)
            footer = yield (_READ, 2)
            if checksum is not None and _u16(footer) != checksum:  # type: ignore[arg-type]
                raise TnefError("checksum")
        if current is not None:
            self._attachmentEnd(current)

    def _attachmentEnd(self, attachment: _Attachment) -> None:
        byValue = attachment.method in (None, ATTACH_BY_VALUE)
        if not (attachment.hasData and byValue):
            self.incomplete = True
        if not self._open:
            return
        self._open = False
        if byValue:
            self.files += 1
            self._events.append(FileEnd(attachment.name(self.files)))
        else:
            self._events.append(FileDrop())

    def _properties(self, length: int, attachment: _Attachment) -> Generator[_Request, object, None]:
        """
        An attachment's MAPI property list ([MS-OXTNEF] 2.1.3.4), read
        within its ``length``: its method and names kept, every other
        value skipped.  A list that does not add up ends the reading of
        this attribute, not of the stream.
        """
        left = length

        def need(n: int) -> int:
            nonlocal left
            if n > left:
                raise _PropertiesEnd()
            left -= n
            return n

        def number() -> Generator[_Request, object, int]:
            value = yield (_READ, need(4))
            return _u32(value)  # type: ignore[arg-type]

        try:
            count = yield from number()
            for _ in range(count):
                head = yield (_READ, need(4))
                kind, tag = _u16(head), _u16(head, 2)  # type: ignore[arg-type]
                if tag >= _NAMED:
                    named = yield (_READ, need(20))  # the property set GUID, then the kind of name
                    if _u32(named, 16) == 0:  # type: ignore[arg-type]
                        yield (_SKIP, need(4))
                    else:
                        size = yield from number()
                        yield (_SKIP, need(_padded(size)))
                base, multiple = kind & ~_MULTIPLE, bool(kind & _MULTIPLE)
                values = (yield from number()) if multiple else 1
                if base in _FIXED:
                    size = need(_padded(_FIXED[base] * values))
                    if tag == PR_ATTACH_METHOD and base == 0x0003 and not multiple:
                        attachment.method = _u32((yield (_READ, size)))  # type: ignore[arg-type]
                    else:
                        yield (_SKIP, size)
                elif base in _COUNTED:
                    if not multiple:
                        values = yield from number()
                    for _ in range(values):
                        size = yield from number()
                        if tag in _NAMES and base in (_PT_STRING8, _PT_UNICODE) and size <= self.maxValue:
                            raw = yield (_READ, need(_padded(size)))
                            text = raw[:size].decode(  # type: ignore[index]
                                "utf-16-le" if base == _PT_UNICODE else self._codepage, "replace")
                            attachment.names[tag] = text.split("\0", 1)[0]
                        else:
                            yield (_SKIP, need(_padded(size)))
                else:
                    raise _PropertiesEnd()
        except _PropertiesEnd:
            pass  # the property list ended early: what is left is skipped below
        if left:
            yield (_SKIP, left)
