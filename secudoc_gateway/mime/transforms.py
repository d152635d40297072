"""
The streamed text transforms of the rewriter: a body's bytes go in as
they come from the spool, the new body's bytes come out, and no
transform holds more than a few buffers.  The banner goes in front of a
text/plain body (decoded: transfer encoding, then charset, re-encoded as
UTF-8 quoted-printable) or after an HTML body's ``<body>`` tag (its
charset kept); transfer mode's HTML side carries the text HTML-escaped.
What they share is here too: the charset reading of text bodies and
the quoted-printable encoder.
"""

from __future__ import annotations

import binascii
import codecs
import html
import re
from abc import ABC, abstractmethod
from typing import Callable, Optional

from secudoc_gateway.mime.decode import Base64Encoder, decoderFor
from secudoc_gateway.mime.names import lookupCharset

CRLF = b"\r\n"
HTML_LOOKAHEAD = 256 * 1024
"""Decoded HTML searched for ``<body>`` before the banner goes at the start."""

QP_MAX_LINE = 76  # RFC 2045 6.7 (5)
_QP_LONG_LINE = 16384

_BODY_TAG = re.compile(rb"<body(?=[\s/>])(?:[^>\"']|\"[^\"]*\"|'[^']*')*>", re.IGNORECASE)
_FALLBACK_ERRORS = "secudoc-cp1252-fallback"


def _fallback(error: UnicodeError) -> tuple[str, int]:
    """
    Undecodable bytes read as Windows-1252, else Latin-1: what 8-bit
    text without (or with a wrong) charset almost always is.
    """
    if not isinstance(error, UnicodeDecodeError):
        raise error
    bad = error.object[error.start : error.end]
    return "".join(_cp1252(bytes([b])) for b in bad), error.end


def _cp1252(octet: bytes) -> str:
    try:
        return octet.decode("cp1252")
    except UnicodeDecodeError:
        return octet.decode("latin-1")


codecs.register_error(_FALLBACK_ERRORS, _fallback)


def textDecoder(charset: Optional[str]) -> codecs.IncrementalDecoder:
    """
    An incremental decoder for a body's declared charset.  No charset,
    US-ASCII, Latin-1 and unknown names decode as UTF-8 with anything
    invalid read as Windows-1252 (the WHATWG reading of those labels);
    a known charset decodes with replacement characters for bad bytes.
    """
    name = lookupCharset(charset)
    if name in (None, "ascii", "latin-1", "iso8859-1", "cp1252", "utf-8"):
        return codecs.getincrementaldecoder("utf-8-sig")(_FALLBACK_ERRORS)
    return codecs.getincrementaldecoder(name)("replace")


def asciiCompatible(charset: Optional[str]) -> bool:
    """Whether ASCII bytes inserted into text in ``charset`` read as themselves."""
    name = lookupCharset(charset)
    if name is None:
        return True
    probe = "<body>&#;\"=:/ aZ09\n"
    try:
        return probe.encode(name) == probe.encode("ascii") and not name.startswith(("utf_7", "utf-7"))
    except (UnicodeError, LookupError):
        return False


class QuotedPrintableEncoder:
    """
    RFC 2045 6.7 quoted-printable, fed in chunks, lines ending ``eol``.
    Any line break in the input (CRLF, LF, bare CR) becomes a hard line
    break; whole lines go to ``binascii.b2a_qp`` at once.  A line longer
    than ``_QP_LONG_LINE`` is cut with a soft line break, so the carry
    stays bounded.
    """

    def __init__(self, eol: bytes = CRLF) -> None:
        self._eol = eol
        self._carry = b""
        self._pendingCR = False

    def _normalize(self, data: bytes, final: bool) -> bytes:
        if self._pendingCR:
            data = b"\r" + data
            self._pendingCR = False
        if not final and data.endswith(b"\r"):
            data = data[:-1]
            self._pendingCR = True
        return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")

    def feed(self, data: bytes) -> bytes:
        data = self._carry + self._normalize(bytes(data), False)
        self._carry = b""
        cut = data.rfind(b"\n") + 1
        out = [self._encode(data[:cut])] if cut else []
        rest = data[cut:]
        while len(rest) > _QP_LONG_LINE:
            out.append(self._softCut(rest[:_QP_LONG_LINE]))
            rest = rest[_QP_LONG_LINE:]
        self._carry = rest
        return b"".join(out)

    def close(self) -> bytes:
        data = self._carry + self._normalize(b"", True)
        self._carry = b""
        return self._encode(data)

    def _encode(self, data: bytes) -> bytes:
        if not data:
            return b""
        encoded = binascii.b2a_qp(data, quotetabs=False, istext=True, header=False)
        return encoded.replace(b"\n", self._eol) if self._eol != b"\n" else encoded

    def _softCut(self, piece: bytes) -> bytes:
        """A piece of a long line: encoded, ended by a soft line break."""
        encoded = binascii.b2a_qp(piece, quotetabs=False, istext=True, header=False)
        head, newline, last = encoded.rpartition(b"\n")
        if len(last) + 1 > QP_MAX_LINE:
            split = QP_MAX_LINE - 3
            while b"=" in last[split - 2 : split]:
                split -= 1
            last = last[:split] + b"=\n" + last[split:]
        return (head + newline + last + b"=\n").replace(b"\n", self._eol)


def quotedPrintable(text: str, eol: bytes) -> bytes:
    """A whole generated text as UTF-8 quoted-printable, lines ending ``eol``."""
    encoder = QuotedPrintableEncoder(eol)
    return encoder.feed(text.encode("utf-8")) + encoder.close()


class _TextTransform(ABC):
    """
    A text body decoded (transfer encoding, then charset) to text, made
    into new bytes by ``_out``, and written as quoted-printable; ``_tail``
    ends it.
    """

    _tail = b""

    def __init__(self, cte: str, charset: Optional[str], eol: bytes) -> None:
        decoder = decoderFor(cte)
        if decoder is None:
            raise ValueError(f"cannot decode {cte!r}")
        self._decoder = decoder
        self._text = textDecoder(charset)
        self._encoder = QuotedPrintableEncoder(eol)

    @abstractmethod
    def _out(self, text: str) -> bytes:
        """The new bytes for a piece of the body's text."""

    def feed(self, data: bytes) -> bytes:
        out = self._out(self._text.decode(self._decoder.feed(data)))
        return self._encoder.feed(out) if out else b""

    def close(self) -> bytes:
        out = self._out(self._text.decode(self._decoder.close(), final=True)) + self._tail
        return (self._encoder.feed(out) if out else b"") + self._encoder.close()


class PlainBannerTransform(_TextTransform):
    """
    A text/plain body -> the banner plus the body, as UTF-8
    quoted-printable.  ``flowed``: the banner lines are made hard lines
    (no trailing space) and space-stuffed where RFC 3676 4.4 asks.
    """

    def __init__(self, cte: str, charset: Optional[str], banner: str, eol: bytes, flowed: bool = False) -> None:
        super().__init__(cte, charset, eol)
        self._banner: Optional[str] = flowedSafe(banner) if flowed else banner

    def _out(self, text: str) -> bytes:
        if self._banner is not None:
            text, self._banner = self._banner + text, None
        return text.encode("utf-8", "surrogatepass")


def flowedSafe(text: str) -> str:
    """RFC 3676: lines that stay hard lines and are not read as quotes."""
    lines = []
    for line in text.split("\n"):
        line = line.rstrip(" ")
        if line.startswith((" ", ">", "From ")):
            line = " " + line
        lines.append(line)
    return "\n".join(lines)


def htmlEncoding(cte: str) -> str:
    """
    The transfer encoding of an HTML body with the banner: base64 stays,
    anything else becomes quoted-printable, so no banner line can pass
    the 998-octet limit of a 7bit or 8bit body (RFC 5322 2.1.1) and the
    banner never needs a break inside a word.  The charset stays.
    """
    return "base64" if cte == "base64" else "quoted-printable"


class HtmlBannerTransform:
    """
    An HTML body -> the same body, the ASCII banner right after its
    ``<body ...>`` tag (or at the start when none shows in the first
    ``lookahead`` decoded bytes), in ``htmlEncoding(cte)``.
    """

    def __init__(self, cte: str, banner: bytes, eol: bytes, lookahead: int = HTML_LOOKAHEAD) -> None:
        self._decoder = decoderFor(cte) if cte in ("base64", "quoted-printable") else None
        self._encoder: Callable[[bytes], bytes]
        self._encoderClose: Callable[[], bytes]
        if htmlEncoding(cte) == "base64":
            base64 = Base64Encoder()
            fix = (lambda b: b) if eol == CRLF else (lambda b: b.replace(CRLF, eol))
            self._encoder = lambda b: fix(base64.feed(b))
            self._encoderClose = lambda: fix(base64.close())
        else:
            qp = QuotedPrintableEncoder(eol)
            self._encoder, self._encoderClose = qp.feed, qp.close
        self._banner = banner
        self._lookahead = lookahead
        self._buffer = b""
        self._inserted = False

    def _insert(self, data: bytes, final: bool) -> bytes:
        if self._inserted:
            return data
        self._buffer += data
        match = _BODY_TAG.search(self._buffer)
        if match is not None:
            at = match.end()
        elif final or len(self._buffer) >= self._lookahead:
            at = 0
        else:
            return b""
        buffer, self._buffer = self._buffer, b""
        self._inserted = True
        return buffer[:at] + self._banner + buffer[at:]

    def feed(self, data: bytes) -> bytes:
        content = self._decoder.feed(data) if self._decoder else data
        out = self._insert(content, False)
        return self._encoder(out) if out else out

    def close(self) -> bytes:
        content = self._decoder.close() if self._decoder else b""
        return self._encoder(self._insert(content, True)) + self._encoderClose()


_HTML_DROP = dict.fromkeys([*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), *range(0x7F, 0xA0)])
"""Controls other than tab and line breaks: HTML parse errors (HTML 13.2.5), never text."""


def escapeText(text: str) -> bytes:
    """
    Text as HTML character data: ``&``, ``<``, ``>`` escaped, controls
    dropped, pure ASCII (numeric character references).  Character by
    character, so any split of the text escapes to the same bytes.
    """
    return html.escape(text.translate(_HTML_DROP), quote=False).encode("ascii", "xmlcharrefreplace")


class EscapedTextTransform(_TextTransform):
    """
    A text/plain body -> ``head``, the body's text HTML-escaped, ``tail``
    (ASCII HTML around it), as quoted-printable: the HTML side of the
    transfer template with the original text inside.
    """

    def __init__(self, cte: str, charset: Optional[str], head: bytes, tail: bytes, eol: bytes) -> None:
        super().__init__(cte, charset, eol)
        self._head: Optional[bytes] = head
        self._tail = tail

    def _out(self, text: str) -> bytes:
        data = escapeText(text) if text else b""
        if self._head is not None:
            data, self._head = self._head + data, None
        return data
