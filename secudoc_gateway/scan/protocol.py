"""
clamd's wire format, with no I/O: the ``INSTREAM`` framing of the bytes
sent and the reading of the one reply that comes back.

clamd (``man clamd``, COMMANDS) takes ``zINSTREAM\\0``, then the stream as
chunks each prefixed by its length (4 bytes, network order), ended by a
zero length; with the ``z`` prefix its reply ends with a NUL.  The reply
is ``stream: OK``, ``stream: <signature> FOUND``, or ``<text> ERROR``;
``INSTREAM size limit exceeded`` is its ``StreamMaxLength`` (the file is
then stored unscanned, not judged).  ``zPING\\0`` answers ``PONG``.
"""

from __future__ import annotations

import struct
from typing import Optional

from secudoc_gateway.scan.verdicts import ScanResult, Verdict

INSTREAM = b"zINSTREAM\0"
PING = b"zPING\0"
PONG = b"PONG"
END = struct.pack(">I", 0)
MAX_FRAME = 1 << 20
"""Bytes per chunk sent: clamd reads each chunk whole before it writes it out."""
MAX_REPLY = 4096
"""A reply longer than this is no clamd reply."""
SIZE_LIMIT = "INSTREAM size limit exceeded"
_PREFIX = "stream: "
_FOUND = " FOUND"
_ERROR = " ERROR"


def frames(data: bytes) -> list[bytes]:
    """
    ``data`` as INSTREAM chunks (none for no bytes: a zero length would
    end the stream): each length prefix and its bytes apart, for the
    transport's ``writeSequence``, so a chunk's bytes are not copied to
    be framed (the whole of a file passes here).
    """
    pieces = []
    for at in range(0, len(data), MAX_FRAME):
        chunk = data if len(data) <= MAX_FRAME else data[at:at + MAX_FRAME]
        pieces += [struct.pack(">I", len(chunk)), chunk]
    return pieces


def signatureShown(name: str) -> str:
    """A signature name safe in an SMTP reply and a page: printable ASCII, one line, bounded."""
    return "".join(c for c in name if " " <= c <= "~")[:200].strip() or "unknown"


def verdictOf(reply: bytes) -> Verdict:
    """What one whole reply (without its NUL) says of the stream."""
    text = reply.decode("utf-8", "replace").strip()
    if text.startswith(_PREFIX):
        text = text[len(_PREFIX):]
    if text == "OK":
        return Verdict(ScanResult.CLEAN)
    if text.endswith(_FOUND):
        return Verdict(ScanResult.INFECTED, signature=signatureShown(text[:-len(_FOUND)]))
    if text.startswith(SIZE_LIMIT):
        return Verdict(ScanResult.SKIPPED, reason="over clamd's StreamMaxLength")
    if text.endswith(_ERROR):
        text = text[:-len(_ERROR)]
    return Verdict(ScanResult.ERROR, reason="clamd: " + signatureShown(text))


class ReplyReader:
    """
    Gathers clamd's reply from the bytes as they arrive, split anywhere:
    ``feed`` returns the whole reply once its NUL is in, ``close`` what
    came without one (clamd closes after its reply).
    """

    def __init__(self, limit: int = MAX_REPLY) -> None:
        self._limit = limit
        self._buffer = b""
        self.done = False

    def feed(self, data: bytes) -> Optional[bytes]:
        if self.done:
            return None
        self._buffer += data
        reply, nul, _ = self._buffer.partition(b"\0")
        if nul or len(self._buffer) > self._limit:
            self.done = True
            return reply[:self._limit]
        return None

    def close(self) -> Optional[bytes]:
        """The connection ended: the reply if one came without its NUL, else None."""
        if self.done or not self._buffer:
            return None
        self.done = True
        return self._buffer[:self._limit]
