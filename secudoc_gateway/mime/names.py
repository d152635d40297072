"""
Header parameters, file names and encoded words.

Mail in the wild names its attachments every way the RFCs allow and
several they do not: RFC 2045 5.1 parameters with or without quotes,
RFC 2231 ``name*=charset'lang'pct-encoded`` with continuations
(``name*0*``, ``name*1``, ...) in any order, RFC 2047 encoded-words
inside quoted parameters (which RFC 2047 5 forbids, and every Outlook
produces), and raw 8-bit UTF-8 or Latin-1.  Everything here is lenient
on input and strict on output: ``safeFilename`` (``display.shown``
and no path) is what any storage of a name goes through.
"""

from __future__ import annotations

import binascii
import codecs
import re
from typing import Optional, Protocol
from urllib.parse import unquote_to_bytes

from secudoc_gateway.display import shown

FALLBACK_FILENAME = "attachment"
MAX_FILENAME_LENGTH = 200

# RFC 2047 2: =?charset?encoding?encoded-text?=  (charset may carry an
# RFC 2231 5 "*language" suffix).  Leniently, spaces are not allowed in
# the word but "?" in Q text is tolerated only when followed by a
# non-"=" character.
_ENCODED_WORD = re.compile(
    r"=\?([^?\s]+)\?([qQbB])\?((?:[^?\s]|\?(?!=))*)\?=",
)
_NOT_BASE64 = bytes(
    sorted(
        set(range(256))
        - set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
    )
)
_CONTINUATION = re.compile(r"^(.*?)\*(\d+)(\*?)$")

class _HasGet(Protocol):
    def get(self, name: str) -> Optional[str]: ...


def lookupCharset(charset: Optional[str]) -> Optional[str]:
    """
    The codec of a declared charset, or ``None`` for an unknown one.
    Only text encodings count: ``charset=base64`` or ``zlib`` names a
    codec of bytes, and a NUL in the name makes the lookup itself fail.
    """
    charset = (charset or "").strip().strip('"').lower()
    if not charset:
        return None
    try:
        name = codecs.lookup(charset).name
        try:
            b"\0\0\0\0".decode(name)  # LookupError for a codec that is no text encoding
        except UnicodeError:
            pass  # a text encoding all the same
    except (LookupError, ValueError):
        return None
    return name


def decodeBytes(data: bytes, charset: Optional[str] = None) -> str:
    """
    Text from bytes in a declared charset, falling back to UTF-8 and
    then Latin-1 (which never fails) when the charset is unknown or lies.
    """
    name = lookupCharset(charset)
    for candidate in (name, "utf-8"):
        if candidate is None:
            continue
        try:
            return data.decode(candidate)
        except (UnicodeDecodeError, LookupError):
            pass
    return data.decode("latin-1")


def _decodeWord(charset: str, encoding: str, text: str) -> tuple[str, bytes]:
    charset = charset.split("*", 1)[0]
    raw = text.encode("ascii", "surrogateescape") if text.isascii() else text.encode("utf-8")
    if encoding in "bB":
        # Lenient like a reader: junk skipped, padding supplied, a lone
        # trailing character (no whole octet) dropped.
        raw = raw.translate(None, _NOT_BASE64)
        raw = raw[: len(raw) - 1] if len(raw) % 4 == 1 else raw
        data = binascii.a2b_base64(raw + b"=" * (-len(raw) % 4))
    else:
        # RFC 2047 4.2: "_" is a space; "=XX" an octet.
        data = binascii.a2b_qp(raw, header=True)
    return charset.lower(), data


def decodeHeader(value: str) -> str:
    """
    A header value for display: RFC 2047 encoded-words decoded, the
    whitespace between adjacent encoded-words dropped (RFC 2047 6.2),
    consecutive words in one charset joined before decoding so a
    multi-byte character split across words survives.
    """
    if "=?" not in value:
        return value
    out: list[str] = []
    pending: list[bytes] = []
    pendingCharset: Optional[str] = None
    position = 0

    def flush() -> None:
        nonlocal pending, pendingCharset
        if pending:
            out.append(decodeBytes(b"".join(pending), pendingCharset))
        pending = []
        pendingCharset = None

    for match in _ENCODED_WORD.finditer(value):
        between = value[position : match.start()]
        if between and not (pending and between.isspace()):
            flush()
            out.append(between)
        charset, data = _decodeWord(match.group(1), match.group(2), match.group(3))
        if pending and charset != pendingCharset:
            flush()
        pendingCharset = charset
        pending.append(data)
        position = match.end()
    flush()
    out.append(value[position:])
    return "".join(out)


def _splitParams(value: str) -> list[str]:
    """Split at ";" outside quoted strings (RFC 2045 5.1)."""
    pieces: list[str] = []
    current: list[str] = []
    inQuote = False
    escaped = False
    for ch in value:
        if escaped:
            current.append(ch)
            escaped = False
        elif inQuote and ch == "\\":
            current.append(ch)
            escaped = True
        elif ch == '"':
            current.append(ch)
            inQuote = not inQuote
        elif ch == ";" and not inQuote:
            pieces.append("".join(current))
            current = []
        else:
            current.append(ch)
    pieces.append("".join(current))
    return pieces


def _unquote(value: str) -> tuple[str, bool]:
    """RFC 5322 3.2.4 quoted-string, tolerating a missing closing quote."""
    value = value.strip()
    if not value.startswith('"'):
        return value, False
    out: list[str] = []
    index = 1
    while index < len(value):
        ch = value[index]
        if ch == "\\" and index + 1 < len(value):
            out.append(value[index + 1])
            index += 2
            continue
        if ch == '"':
            break
        out.append(ch)
        index += 1
    return "".join(out), True


def parseParams(value: Optional[str]) -> tuple[str, list[tuple[str, str, bool]]]:
    """
    ``("type/subtype", [(name, value, quoted), ...])`` in header order,
    names lowercased, values unquoted but not yet RFC 2231 combined.
    """
    if not value:
        return "", []
    pieces = _splitParams(value)
    main = pieces[0].strip()
    params: list[tuple[str, str, bool]] = []
    for piece in pieces[1:]:
        name, sep, raw = piece.partition("=")
        name = name.strip().lower()
        if not sep or not name:
            continue
        text, quoted = _unquote(raw)
        params.append((name, text, quoted))
    return main, params


def _combine2231(segments: dict[int, tuple[str, bool]]) -> str:
    """
    RFC 2231 3 and 4: continuations in numeric order (whatever order
    they came in), the charset taken from the first segment, encoded
    and plain segments freely mixed.
    """
    charset: Optional[str] = None
    data = bytearray()
    for number in sorted(segments):
        text, encoded = segments[number]
        if number == min(segments) and encoded:
            parts = text.split("'", 2)
            if len(parts) == 3:
                charset = parts[0] or None
                text = parts[2]
        if encoded:
            data += unquote_to_bytes(text.encode("utf-8", "surrogateescape"))
        else:
            data += text.encode("utf-8", "surrogateescape")
    return decodeBytes(bytes(data), charset)


def decodeParams(params: list[tuple[str, str, bool]]) -> dict[str, str]:
    """
    Parameters as a dict: RFC 2231 forms decoded and preferred over a
    plain parameter of the same name; of duplicates, the first counts
    (the choice of Python's ``email`` and most readers).
    """
    plain: dict[str, str] = {}
    extended: dict[str, dict[int, tuple[str, bool]]] = {}
    for name, text, quoted in params:
        match = _CONTINUATION.match(name)
        if match:
            base, number, star = match.group(1), int(match.group(2)), match.group(3)
            extended.setdefault(base, {}).setdefault(number, (text, bool(star)))
        elif name.endswith("*"):
            extended.setdefault(name[:-1], {}).setdefault(0, (text, True))
        else:
            plain.setdefault(name, text)
    result = dict(plain)
    for base, segments in extended.items():
        result[base] = _combine2231(segments)
    return result


def filenameOf(headers: _HasGet) -> Optional[str]:
    """
    The part's file name: Content-Disposition ``filename`` (RFC 2183),
    else Content-Type ``name`` (RFC 1341, still everywhere), RFC 2231
    and RFC 2047 decoded.  Empty names count as none.
    """
    for header, param in (("content-disposition", "filename"), ("content-type", "name")):
        _, params = parseParams(headers.get(header))
        value = decodeParams(params).get(param)
        if value is not None and "=?" in value:
            value = decodeHeader(value)
        if value and value.strip():
            return value
    return None


def safeFilename(name: Optional[str], maxLength: int = MAX_FILENAME_LENGTH) -> str:
    """
    A name fit for a file system and a Content-Disposition: cleaned, no
    path separators, no leading dots (hidden files, ``..``), never empty,
    at most ``maxLength`` characters with the extension kept.
    """
    cleaned = shown(name or "").replace("/", "_").replace("\\", "_")
    cleaned = cleaned.strip().lstrip(".").strip()
    if not cleaned:
        return FALLBACK_FILENAME
    if len(cleaned) > maxLength:
        stem, dot, extension = cleaned.rpartition(".")
        if dot and stem and 0 < len(extension) <= 16:
            cleaned = stem[: maxLength - len(extension) - 1] + "." + extension
        else:
            cleaned = cleaned[:maxLength]
    return cleaned
