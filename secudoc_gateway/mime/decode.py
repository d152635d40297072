"""
Incremental Content-Transfer-Encoding decoders and the encoders the
rewriter needs (RFC 2045 6.7 quoted-printable, 6.8 base64).

Each decoder is fed chunks exactly as they arrive and decodes whole
chunks in one call (base64 with pybase64's SIMD decoder, several times
faster than ``binascii`` and the largest cost of an attachment), carrying only the few bytes an
encoding unit may straddle (an incomplete base64 quantum, an
incomplete ``=XX`` escape or soft line break).  A per-line Python call
would cost more than half the throughput (see anchors.md).
"""

from __future__ import annotations

import binascii
import os
from typing import Callable, Optional, Union

import pybase64

_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
# Everything a mail reader skips: line breaks, blanks, and junk.
_B64_JUNK = bytes(sorted(set(range(256)) - set(_B64_ALPHABET) - {ord("=")}))
_B64_LINE = 57  # raw bytes per 76-character line
_QP_MAX_CARRY = 4096


class IdentityDecoder:
    """7bit, 8bit and binary: the body is the content."""

    def feed(self, data: bytes) -> bytes:
        return bytes(data)

    def close(self) -> bytes:
        return b""


class Base64Decoder:
    """
    Lenient base64 the way mail readers decode it: characters outside
    the alphabet are ignored (RFC 2045 6.8), a missing final padding is
    supplied, and the data ends where the padding ends (like
    ``binascii.a2b_base64``); anything after it is ignored and counted
    in ``ignored``.  A final quantum of a single character cannot carry
    an octet and is dropped.  The carry between chunks is at most a
    line, or (in the slow path) three characters and a pending "=".
    """

    def __init__(self) -> None:
        self._carry = b""
        self._done = False
        self.ignored = 0

    def feed(self, data: bytes) -> bytes:
        if self._done:
            self.ignored += len(data)
            return b""
        text = self._carry + data if self._carry else bytes(data)
        self._carry = b""
        # Fast path, almost every chunk of a real attachment: whole lines
        # up to the last LF, no padding in them.  Like a2b_base64, the
        # non-validating decoder skips the line breaks itself and fails
        # unless they hold whole quanta.
        cut = text.rfind(b"\n") + 1
        if cut and text.find(b"=", 0, cut) < 0:
            try:
                decoded = pybase64.b64decode(text[:cut])
            except binascii.Error:
                pass
            else:
                self._carry = text[cut:]
                return decoded
        return self._padded(text)

    def _padded(self, text: bytes) -> bytes:
        """The slow path: junk out, then padding where it can end a quantum."""
        text = text.translate(None, _B64_JUNK)
        pieces: list[bytes] = []
        count = 0
        start = 0
        final: Optional[bytes] = None
        pending = False
        while True:
            pad = text.find(b"=", start)
            if pad < 0:
                pieces.append(text[start:])
                break
            pieces.append(text[start:pad])
            count += pad - start
            quad = count % 4
            if quad < 2:
                # Padding where no octet can end: a reader skips it.
                start = pad + 1
                continue
            if quad == 2:
                if pad + 1 == len(text):
                    pending = True
                    break
                if text[pad + 1] != 0x3D:
                    start = pad + 1
                    continue
                final, end = b"==", pad + 2
            else:
                final, end = b"=", pad + 1
            self.ignored += len(text) - end
            break
        clean = b"".join(pieces)
        if final is not None:
            self._done = True
            return binascii.a2b_base64(clean + final)
        cut = len(clean) - len(clean) % 4
        self._carry = clean[cut:] + (b"=" if pending else b"")
        return binascii.a2b_base64(clean[:cut]) if cut else b""

    def close(self) -> bytes:
        carry, self._carry = self._carry, b""
        out = b""
        if carry and not self._done:
            # The fast path's carry is raw: a last line without LF may hold
            # a CR or junk, and padding there is judged as anywhere else.
            out = self._padded(carry)
            carry, self._carry = self._carry, b""
        self._done = True
        carry = carry.rstrip(b"=")
        if len(carry) % 4 in (2, 3):
            return out + binascii.a2b_base64(carry + b"=" * (-len(carry) % 4))
        if len(carry) % 4 == 1:
            self.ignored += 1
            carry = carry[:-1]
        return out + (binascii.a2b_base64(carry) if carry else b"")


class QuotedPrintableDecoder:
    """
    Quoted-printable, decoded by ``binascii.a2b_qp`` a stretch of whole
    lines at a time: an escape never spans a line break, so cutting after
    the last LF of a chunk never splits one.  A line longer than
    ``maxCarry`` is cut before any ``=`` near its end.  Invalid escapes
    stay literal, soft breaks ``=CRLF`` and ``=LF`` vanish.
    """

    def __init__(self, maxCarry: int = _QP_MAX_CARRY) -> None:
        self._carry = b""
        self._skipToLineEnd = False
        self._maxCarry = maxCarry

    def feed(self, data: bytes) -> bytes:
        text = self._carry + data if self._carry else bytes(data)
        self._carry = b""
        if self._skipToLineEnd:
            # Inside "=\r<junk>": a2b_qp skips up to the LF.
            newline = text.find(b"\n")
            if newline < 0:
                return b""
            text = text[newline + 1 :]
            self._skipToLineEnd = False
        newline = text.rfind(b"\n")
        if newline >= 0:
            cut = newline + 1
        elif len(text) <= self._maxCarry:
            self._carry = text
            return b""
        else:
            softBreak = text.find(b"=\r")
            if softBreak >= 0:
                self._skipToLineEnd = True
                return binascii.a2b_qp(text[:softBreak])
            cut = len(text) - 2
            while cut > 0 and (text[cut - 1] == 0x3D or (cut >= 2 and text[cut - 2] == 0x3D)):
                cut -= 1
        self._carry = text[cut:]
        return binascii.a2b_qp(text[:cut])

    def close(self) -> bytes:
        carry, self._carry = self._carry, b""
        if self._skipToLineEnd:
            return b""
        return binascii.a2b_qp(carry)


AnyDecoder = Union[IdentityDecoder, Base64Decoder, QuotedPrintableDecoder]


def decoderFor(cte: str) -> Optional[AnyDecoder]:
    """
    A fresh decoder for a Content-Transfer-Encoding, or None for one we
    do not understand (x-uuencode, anything else): SPEC 5 leaves those
    parts in place.
    """
    cte = (cte or "7bit").strip().strip('"').lower()
    if cte in ("7bit", "8bit", "binary"):
        return IdentityDecoder()
    if cte == "base64":
        return Base64Decoder()
    if cte == "quoted-printable":
        return QuotedPrintableDecoder()
    return None


class Base64Encoder:
    """Base64 in 76-character CRLF lines (RFC 2045 6.8), fed in chunks."""

    def __init__(self) -> None:
        self._carry = b""

    def feed(self, data: bytes) -> bytes:
        data = self._carry + data if self._carry else bytes(data)
        cut = len(data) - len(data) % _B64_LINE
        self._carry = data[cut:]
        return _encodeLines(data[:cut])

    def close(self) -> bytes:
        carry, self._carry = self._carry, b""
        return _encodeLines(carry)


def _encodeLines(data: bytes) -> bytes:
    if not data:
        return b""
    encoded = binascii.b2a_base64(data, newline=False)
    return b"".join([encoded[i : i + 76] + b"\r\n" for i in range(0, len(encoded), 76)])


def encodeBase64Lines(data: bytes) -> bytes:
    """All of ``data`` as base64 lines, each ending CRLF."""
    return _encodeLines(data)


def encodeQuotedPrintable(data: bytes) -> bytes:
    """
    Quoted-printable of UTF-8 text with CRLF line ends: line breaks stay
    line breaks (a bare CR too, as readers show it), lines at most 76
    characters (soft breaks), trailing blanks encoded, so the result is
    7bit-safe and survives any MTA's line-end normalisation.
    """
    normalized = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    encoded = binascii.b2a_qp(normalized, quotetabs=False, istext=True, header=False)
    return encoded.replace(b"\n", b"\r\n")


def newBoundary(randomBytes: Callable[[int], bytes] = os.urandom) -> str:
    """
    A multipart boundary for the parts the gateway writes: ``=_`` is in
    no quoted-printable or base64 output (RFC 2045 6.7), and 128 random
    bits (from ``randomBytes``) are in no copied part either.
    """
    return "=_secudoc_" + randomBytes(16).hex()
