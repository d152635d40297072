"""
The ESMTP client's byte work, sans I/O: ``ReplyReader`` turns received
bytes into ``Reply`` values (RFC 5321 4.2), ``DataEncoder`` turns
message chunks into DATA content (CRLF line ends, dot-stuffing, RFC
5321 4.5.2), and EHLO replies become an extension map.  Nothing here
imports ``twisted.internet``: ``connection.py`` moves the bytes.
"""

from __future__ import annotations

import re
from typing import Optional

import attrs

from secudoc_gateway.errors import RelayError
from secudoc_gateway.replies import Reply

MAX_REPLY_LINE = 4096
MAX_REPLY_LINES = 256


@attrs.frozen
class Timeouts:
    """
    Seconds to wait, per RFC 5321 4.5.3.2 (five minutes for the greeting
    and each command, two for the DATA 354, three per data block, ten for
    the reply to the end of the data).  ``connect`` and ``tls`` are ours.
    """

    connect: float = 60.0
    greeting: float = 300.0
    command: float = 300.0
    tls: float = 60.0
    dataInitiation: float = 120.0
    dataBlock: float = 180.0
    dataTermination: float = 600.0


class ProtocolViolation(Exception):
    """The remote sent something that is not an SMTP reply."""


_ENHANCED = re.compile(r"([245]\.\d{1,3}\.\d{1,3})(?: |$)")


class ReplyReader:
    """
    Bytes in, ``Reply`` values out (RFC 5321 4.2: ``ddd-text`` lines
    continue a reply, ``ddd text`` ends it).  A leading RFC 3463 enhanced
    code is taken from the first line and stripped from every line.
    """

    def __init__(self, maxLineLength: int = MAX_REPLY_LINE, maxLines: int = MAX_REPLY_LINES) -> None:
        self._maxLineLength = maxLineLength
        self._maxLines = maxLines
        self._buffer = b""
        self._code: Optional[int] = None
        self._lines: list[str] = []

    @property
    def buffered(self) -> bool:
        """Whether bytes of an incomplete reply are waiting."""
        return bool(self._buffer or self._lines)

    def feed(self, data: bytes) -> list[Reply]:
        self._buffer += data
        replies: list[Reply] = []
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                if len(self._buffer) > self._maxLineLength:
                    raise ProtocolViolation("reply line too long")
                return replies
            if end > self._maxLineLength:
                raise ProtocolViolation("reply line too long")
            line = self._buffer[:end]
            self._buffer = self._buffer[end + 1 :]
            if line.endswith(b"\r"):
                line = line[:-1]
            reply = self._line(line)
            if reply is not None:
                replies.append(reply)

    def _line(self, line: bytes) -> Optional[Reply]:
        code = line[:3]
        separator = line[3:4]
        if len(code) != 3 or not code.isdigit() or not (b"2" <= code[:1] <= b"5") or separator not in (
            b"",
            b" ",
            b"-",
        ):
            raise ProtocolViolation(f"not an SMTP reply: {line[:80]!r}")
        number = int(code)
        if self._code is not None and number != self._code:
            raise ProtocolViolation(f"reply code changed within a reply: {line[:80]!r}")
        self._code = number
        self._lines.append(line[4:].decode("utf-8", "replace"))
        if len(self._lines) > self._maxLines:
            raise ProtocolViolation("reply has too many lines")
        if separator == b"-":
            return None
        lines, self._lines, self._code = self._lines, [], None
        enhanced = ""
        match = _ENHANCED.match(lines[0])
        if match and match.group(1)[0] == str(number)[0]:
            enhanced = match.group(1)
            lines = [_stripPrefix(line, enhanced) for line in lines]
        return Reply(number, enhanced, "\n".join(lines))


def _stripPrefix(line: str, enhanced: str) -> str:
    if line == enhanced:
        return ""
    if line.startswith(enhanced + " "):
        return line[len(enhanced) + 1 :]
    return line


def describeReply(reply: Reply) -> str:
    """One line for logs and for ``send``'s result: ``250 2.0.0 Ok: queued as X``."""
    parts = [str(reply.code), reply.enhanced, " ".join(reply.text.split("\n"))]
    return " ".join(p for p in parts if p)


def parseExtensions(reply: Reply) -> dict[str, str]:
    """EHLO keywords (upper case) and their parameters (RFC 5321 4.1.1.1)."""
    extensions: dict[str, str] = {}
    for line in reply.text.split("\n")[1:]:
        keyword, _, parameters = line.strip().partition(" ")
        if keyword:
            extensions[keyword.upper()] = parameters.strip()
    return extensions


class DataEncoder:
    """
    Message chunks in, DATA content out: every line end made CRLF and a
    leading dot doubled (RFC 5321 4.5.2), with the state carried across
    chunk boundaries, so a chunk may end anywhere.

    Bare LF and bare CR are both made CRLF: RFC 5321 2.3.8 allows neither
    in SMTP data, and a target that reads a bare CR or LF as a line end
    would otherwise see a different end-of-data than we mean (SMTP
    smuggling).  Only bytes methods over whole chunks, no per-line calls.
    """

    def __init__(self) -> None:
        self._pendingCR = False
        self._atLineStart = True

    def feed(self, data: bytes) -> bytes:
        if self._pendingCR:
            data = b"\r" + data
            self._pendingCR = False
        if data.endswith(b"\r"):
            self._pendingCR = True
            data = data[:-1]
        if not data:
            return b""
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        data = data.replace(b"\n", b"\r\n").replace(b"\r\n.", b"\r\n..")
        if self._atLineStart and data.startswith(b"."):
            data = b"." + data
        self._atLineStart = data.endswith(b"\r\n")
        return data

    def finish(self) -> bytes:
        """The rest: a final CRLF when the message lacks one, then ``.`` CRLF."""
        out = b""
        if self._pendingCR:
            self._pendingCR = False
            out = b"\r\n"
            self._atLineStart = True
        if not self._atLineStart:
            out += b"\r\n"
        self._atLineStart = True
        return out + b".\r\n"


def _temporary(kind: str, reply: Reply, what: str) -> RelayError:
    return RelayError(kind, f"{what}: {describeReply(reply)}", permanent=False, reply=reply)


def _judged(kind: str, reply: Reply, what: str) -> RelayError:
    """A failed reply to RCPT or to the data: permanent only when 5xx."""
    return RelayError(kind, f"{what}: {describeReply(reply)}", permanent=reply.permanent, reply=reply)


__all__ = [
    "DataEncoder",
    "ProtocolViolation",
    "ReplyReader",
    "Timeouts",
    "describeReply",
    "parseExtensions",
]
