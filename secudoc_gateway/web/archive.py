"""
A ZIP archive written as its files stream by (PKWARE APPNOTE 6.3.10),
for "download all": nothing is held but a CRC and a count per file.

Why not a library: zipstream-ng (and stream-zip) pull file data from
synchronous iterables inside their own generator, while our plaintext
is pushed, frame by frame, by a Twisted producer as the store delivers
it; bridging the two needs a thread per download or relies on how many
times the generator happens to pull per chunk.  What we need is small:
files are stored (method 0: attachments are mostly compressed already,
and a stored archive's size is known before the first byte, so the
response has a Content-Length), with a data descriptor carrying each
CRC-32 after the data (general purpose bit 3), names in UTF-8 (bit
11), and ZIP64 records exactly where a size, an offset or the count
passes its 32-bit (16-bit) field.

Use: ``ZipWriter(entries)``; ``size`` is the whole archive's length;
for each entry in order ``begin(i)``, ``feed(data)`` for its bytes (the
caller sends the data itself), ``end()``; then ``finish()``.  Each
returns the bytes to send.  Pure: no I/O.
"""

from __future__ import annotations

import datetime
import struct
import unicodedata
import zlib
from typing import Sequence

import attrs

from secudoc_gateway.display import shown

ZIP64_LIMIT = 0xFFFFFFFF
COUNT_LIMIT = 0xFFFF

_LOCAL = struct.Struct("<IHHHHHIIIHH")
_DESCRIPTOR = struct.Struct("<IIII")
_DESCRIPTOR64 = struct.Struct("<IIQQ")
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")
_END = struct.Struct("<IHHHHIIH")
_END64 = struct.Struct("<IQHHIIQQQQ")
_LOCATOR64 = struct.Struct("<IIQI")

_FLAGS = 0x0008 | 0x0800  # data descriptor, UTF-8 names
_MADE_BY = (3 << 8) | 45  # Unix, spec 4.5
_UNIX_FILE = (0o100644 << 16)


@attrs.frozen
class Entry:
    """One file of the archive: its name in the archive and its exact size."""

    name: str
    size: int


def _dosTime(when: datetime.datetime) -> tuple[int, int]:
    when = max(when, datetime.datetime(1980, 1, 1, tzinfo=when.tzinfo))
    return ((when.year - 1980) << 9 | when.month << 5 | when.day,
            when.hour << 11 | when.minute << 5 | when.second // 2)


@attrs.frozen
class _Layout:
    name: bytes
    size: int
    offset: int
    zip64: bool  # sizes in ZIP64 form (local extra, 64-bit descriptor)


class ZipWriter:
    def __init__(self, entries: Sequence[Entry], modified: datetime.datetime,
                 zip64Limit: int = ZIP64_LIMIT, countLimit: int = COUNT_LIMIT) -> None:
        self._limit = zip64Limit
        self._countLimit = countLimit
        self._date, self._time = _dosTime(modified)
        layouts = []
        offset = 0
        for entry in entries:
            name = entry.name.encode("utf-8")
            zip64 = entry.size >= zip64Limit
            layouts.append(_Layout(name, entry.size, offset, zip64))
            offset += (_LOCAL.size + len(name) + (20 if zip64 else 0) + entry.size
                       + (_DESCRIPTOR64.size if zip64 else _DESCRIPTOR.size))
        self._layouts = layouts
        self._directoryOffset = offset
        self._directorySize = sum(_CENTRAL.size + len(l.name) + len(self._centralExtra(l)) for l in layouts)
        end = offset + self._directorySize
        self._end64 = (len(layouts) >= countLimit or offset >= zip64Limit or self._directorySize >= zip64Limit)
        self.size = end + (_END64.size + _LOCATOR64.size if self._end64 else 0) + _END.size
        self._crcs: list[int] = []
        self._current = -1
        self._crc = 0
        self._count = 0

    def _centralExtra(self, layout: _Layout) -> bytes:
        values = [v for v in (layout.size, layout.size) if v >= self._limit]
        if layout.offset >= self._limit:
            values.append(layout.offset)
        if not values:
            return b""
        return struct.pack("<HH", 1, 8 * len(values)) + b"".join(struct.pack("<Q", v) for v in values)

    def begin(self, index: int) -> bytes:
        """The local header of entry ``index`` (entries go in order)."""
        if index != self._current + 1 or index >= len(self._layouts):
            raise ValueError(f"entry {index} out of order")
        self._current = index
        self._crc = 0
        self._count = 0
        layout = self._layouts[index]
        extra = struct.pack("<HHQQ", 1, 16, 0, 0) if layout.zip64 else b""
        sizes = ZIP64_LIMIT if layout.zip64 else 0
        return _LOCAL.pack(0x04034B50, 45 if layout.zip64 else 20, _FLAGS, 0, self._time, self._date,
                           0, sizes, sizes, len(layout.name), len(extra)) + layout.name + extra

    def feed(self, data: bytes) -> None:
        """Bytes of the current entry, as they are sent."""
        self._crc = zlib.crc32(data, self._crc)
        self._count += len(data)

    def end(self) -> bytes:
        """The current entry's data descriptor; raises if its size came out wrong."""
        layout = self._layouts[self._current]
        if self._count != layout.size:
            raise ValueError(f"entry {self._current}: {self._count} bytes, expected {layout.size}")
        self._crcs.append(self._crc)
        if layout.zip64:
            return _DESCRIPTOR64.pack(0x08074B50, self._crc, layout.size, layout.size)
        return _DESCRIPTOR.pack(0x08074B50, self._crc, layout.size, layout.size)

    def finish(self) -> bytes:
        """The central directory and end records."""
        if len(self._crcs) != len(self._layouts):
            raise ValueError("not every entry was written")
        out = []
        limit = self._limit
        for layout, crc in zip(self._layouts, self._crcs):
            extra = self._centralExtra(layout)
            size = ZIP64_LIMIT if layout.size >= limit else layout.size
            offset = ZIP64_LIMIT if layout.offset >= limit else layout.offset
            out.append(_CENTRAL.pack(0x02014B50, _MADE_BY, 45 if extra else 20, _FLAGS, 0, self._time,
                                     self._date, crc, size, size, len(layout.name), len(extra), 0, 0, 0,
                                     _UNIX_FILE, offset) + layout.name + extra)
        count = len(self._layouts)
        directoryEnd = self._directoryOffset + self._directorySize
        if self._end64:
            out.append(_END64.pack(0x06064B50, _END64.size - 12, _MADE_BY, 45, 0, 0, count, count,
                                   self._directorySize, self._directoryOffset))
            out.append(_LOCATOR64.pack(0x07064B50, 0, directoryEnd, 1))
        shownCount = count if count < self._countLimit else COUNT_LIMIT
        out.append(_END.pack(0x06054B50, 0, 0, shownCount, shownCount,
                             self._directorySize if self._directorySize < limit else ZIP64_LIMIT,
                             self._directoryOffset if self._directoryOffset < limit else ZIP64_LIMIT, 0))
        return b"".join(out)


FALLBACK_NAME = "file"
MAX_NAME_BYTES = 240
"""UTF-8 bytes of an entry name: under the 255 most file systems allow, room for " (n)"."""

# Not allowed in a Windows file name (a colon also makes a drive letter
# or an NTFS stream), and the path separators of every system.
_FORBIDDEN = frozenset(':*?"<>|/\\')
# Device names Windows reserves with any extension, in any case.
_RESERVED = frozenset(
    ["CON", "PRN", "AUX", "NUL"]
    + [f"{kind}{n}" for kind in ("COM", "LPT") for n in ("1", "2", "3", "4", "5", "6", "7", "8", "9",
                                                         "\u00b9", "\u00b2", "\u00b3")]
)


def _fits(name: str, limit: int) -> str:
    """``name`` cut to ``limit`` UTF-8 bytes, its extension kept, never mid-character."""
    if len(name.encode("utf-8")) <= limit:
        return name
    stem, dot, extension = name.rpartition(".")
    if not (dot and stem and 0 < len(extension.encode("utf-8")) <= 16):
        stem, dot, extension = name, "", ""
    room = limit - len((dot + extension).encode("utf-8"))
    return stem.encode("utf-8")[:room].decode("utf-8", "ignore").rstrip(". ") + dot + extension


def safeEntryName(name: str) -> str:
    """
    One archive entry's name, safe to extract on Windows, macOS and
    Linux (SPEC 8): shown as everywhere (``display.shown``: NFC, one
    line, no control, bidi or invisible characters), no path parts
    (separators become ``_``), no ``: * ? " < > |`` (nor so a drive
    letter), no leading or trailing dots and spaces, no
    name Windows reserves (``CON``, ``com1.txt``, ...: prefixed ``_``),
    at most ``MAX_NAME_BYTES``, never empty.
    """
    cleaned = "".join("_" if c in _FORBIDDEN else c for c in shown(name)).strip(". ")
    cleaned = _fits(cleaned, MAX_NAME_BYTES).strip(". ") or FALLBACK_NAME
    if cleaned.split(".", 1)[0].rstrip(" ").upper() in _RESERVED:
        cleaned = "_" + cleaned
    return cleaned


def _key(name: str) -> str:
    """How Windows and macOS compare names: case-insensitively, canonically composed."""
    return unicodedata.normalize("NFC", name.casefold())


def archiveNames(names: Sequence[str]) -> list[str]:
    """
    Names fit for one archive: each made safe (``safeEntryName``) and no
    two alike case-insensitively, the later ones numbered "name (2).ext".
    """
    seen: set[str] = set()
    out = []
    for name in names:
        name = safeEntryName(name)
        stem, dot, extension = name.rpartition(".")
        if not dot or not stem:
            stem, dot, extension = name, "", ""
        candidate = name
        number = 1
        while _key(candidate) in seen:
            number += 1
            candidate = f"{stem} ({number}){dot}{extension}"
        seen.add(_key(candidate))
        out.append(candidate)
    return out
