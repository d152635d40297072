"""
Message data off the session's buffer, as h11's ``_readers`` take a
body: ``DotReader`` finds DATA's end marker and removes dot-stuffing
(RFC 5321 4.1.1.4, 4.5.2), ``ChunkReader`` counts off one BDAT chunk
(RFC 3030 2).  Each ``read(buffer)`` takes from the buffer what it can
and returns the message bytes in it, or None when nothing can be done
until more bytes come; the session counts those bytes against its limit.
"""

from __future__ import annotations

from typing import Optional

CRLF = b"\r\n"
_MARKER = b"\r\n.\r\n"


def _unstuff(work: bytes, start: int, stop: int, first: int, last: int) -> bytes:
    """
    ``work[start:stop]`` with the dot after every LF removed (RFC 5321
    4.5.2), knowing that dots occur only at ``first``..``last`` and not
    in ``work[:start]``.
    """
    if first < 0 or first >= stop:
        return work[start:stop]
    lo = max(first - 1, 0)  # the LF before the first dot
    hi = min(last + 1, stop)
    middle = work[lo:hi].replace(b"\n.", b"\n")
    if lo < start:  # that LF is in the prefix, which replace left alone
        return middle[start - lo :] + work[hi:stop]
    return work[start:lo] + middle + work[hi:stop]


class DotReader:
    """
    A DATA stream, read with bytes methods over whole chunks, holding
    back at most four bytes that may begin the end marker.  ``done``
    once the marker is read; the buffer then holds what followed it.
    """

    def __init__(self) -> None:
        # The line context before the buffer: RFC 5321 4.1.1.4, the body
        # starts after a CRLF.
        self._prefix = CRLF
        self.done = False

    def read(self, buffer: bytearray) -> Optional[bytes]:
        """
        Scan ``prefix + buffer`` for CRLF "." CRLF.  ``prefix`` is the line
        context of the buffer's first byte: CRLF at the body start (so
        ".\\r\\n" first ends an empty message), LF after any line end (so
        its leading dot is stuffing), else nothing.  Without a marker all
        but the last four bytes are taken: a marker cannot straddle that
        cut without lying wholly in the scanned bytes.  Unstuffing is one
        replace of LF "." by LF, which covers lines after CRLF and bare LF.

        Both the marker and stuffing need a dot, and most message bytes
        (base64) have none: the search and the replace run only between
        the first and the last dot, found with memchr.
        """
        if not buffer:
            return None
        prefix = self._prefix
        work = prefix + buffer
        buffer.clear()
        first = work.find(b".")
        last = work.rfind(b".") if first >= 0 else -1
        end = work.find(_MARKER, max(first - 2, 0), last + 3) if first >= 0 else -1
        if end >= 0:
            buffer += work[end + 5 :]
            self.done = True
            return _unstuff(work, len(prefix), end + 2, first, last)
        cut = len(work) - 4
        if cut <= len(prefix):
            buffer += work[len(prefix) :]
            return None
        self._prefix = b"\n" if work[cut - 1] == 0x0A else b""
        buffer += work[cut:]
        return _unstuff(work, len(prefix), cut, first, last)


class ChunkReader:
    """One BDAT chunk: exactly ``size`` octets, taken as they are."""

    def __init__(self, size: int, last: bool) -> None:
        self.size = size
        self.last = last
        self.left = size

    def read(self, buffer: bytearray) -> Optional[bytes]:
        if not buffer:
            return None
        take = min(self.left, len(buffer))
        chunk = bytes(buffer[:take])
        del buffer[:take]
        self.left -= take
        return chunk

    def discard(self, buffer: bytearray) -> bool:
        """Drop the chunk's octets from ``buffer`` unread (a refused chunk); False when none were there."""
        if not buffer:
            return False
        take = min(self.left, len(buffer))
        del buffer[:take]
        self.left -= take
        return True
