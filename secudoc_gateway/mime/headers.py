"""
One part's header block, parsed once, kept raw, read on demand.

The block is split into fields once, by the parser: ``raw`` is every
line group exactly as received (what the gateway's stamp passes on),
the ``(name, value)`` pairs are what the rewriter copies out byte for
byte, and the accessors are what policy and attachment detection read.
Values are decoded as UTF-8 (RFC 6532 allows it) and fall back to
Latin-1, which never fails, for legacy 8-bit headers.
"""

from __future__ import annotations

import re
from functools import cached_property
from typing import Optional

import attrs

from secudoc_gateway.mime.names import decodeBytes, decodeParams, filenameOf, parseParams

_FOLD = re.compile(rb"\r?\n(?=[ \t])|\r(?=[ \t])")
_LINEBREAK = re.compile(rb"\r\n|\r|\n")
# A line break not followed by folding whitespace ends a field; a CR
# directly before LF is never a break of its own.
_FIELD_START = re.compile(rb"\r\n(?![ \t])|\n(?![ \t])|\r(?![\n \t])")
_FTEXT = r"[!-9;-~]+"  # RFC 5322 2.2: what a field name is made of
_NAME = re.compile(rb"(" + _FTEXT.encode() + rb")[ \t]*:")  # blanks before the colon: RFC 5322 4.5.3
_FIELD_NAME = re.compile(_FTEXT)

DEFAULT_TYPE = "text/plain"
DIGEST_DEFAULT_TYPE = "message/rfc822"
KNOWN_ENCODINGS = frozenset(["7bit", "8bit", "binary", "base64", "quoted-printable"])


def splitFields(block: bytes) -> tuple[bytes, ...]:
    """
    A header block split into fields, each exactly as received (name,
    folded value, line ending); joining them gives the block back.
    """
    fields = []
    start = 0
    for match in _FIELD_START.finditer(block):
        fields.append(block[start : match.end()])
        start = match.end()
    if start < len(block):
        fields.append(block[start:])
    return tuple(fields)


def fieldName(field: bytes) -> Optional[str]:
    """The lowercased name of a raw field; None for a line that is no field."""
    match = _NAME.match(field)
    return match.group(1).decode("ascii").lower() if match else None


def isFieldName(name: str) -> bool:
    """Whether a parsed name is one (an mbox "From " line parses to a name that is not)."""
    return _FIELD_NAME.fullmatch(name) is not None


def lineEnding(block: bytes) -> bytes:
    """The line ending a block uses, so fields added to it match."""
    at = block.find(b"\n")
    return b"\r\n" if at > 0 and block[at - 1 : at] == b"\r" else b"\n" if at >= 0 else b"\r\n"


def _text(raw: bytes) -> str:
    """
    UTF-8, else Latin-1; but UTF-8 damaged in a few places (a name cut
    mid-character by a mailer) stays UTF-8 with replacement characters.
    """
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    text = raw.decode("utf-8", "replace")
    bad = text.count("\ufffd")
    good = sum(1 for ch in text if ord(ch) > 0x7F) - bad
    if good > 2 * bad:
        return text
    return raw.decode("latin-1")


_TSPECIALS = frozenset('()<>@,;:\\"/[]?=')


def _isToken(text: str) -> bool:
    """RFC 2045 section 5.1 ``token``."""
    return bool(text) and all(33 <= ord(ch) <= 126 and ch not in _TSPECIALS for ch in text)


def _mediaType(value: str) -> Optional[str]:
    """
    ``type/subtype`` of a Content-Type value's first piece, lowercased,
    comments (RFC 5322 section 3.2.2) and blanks skipped; None when it
    is not a valid type.
    """
    out: list[str] = []
    depth = 0
    escaped = False
    for ch in value:
        if depth:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
        elif ch == "(":
            depth = 1
        elif not ch.isspace():
            out.append(ch)
    kind, slash, subtype = "".join(out).lower().partition("/")
    if not slash or not _isToken(kind) or not _isToken(subtype):
        return None
    return f"{kind}/{subtype}"


@attrs.frozen(slots=False)
class Headers:
    """
    ``fields`` are ``(name, raw value)`` in order; a raw value keeps its
    folding (RFC 5322 2.2.3) but not the line break ending the field.
    ``raw`` is the block as received, split as ``splitFields`` splits
    it: the fields and the lines that are none (an mbox "From " line, a
    stray continuation line at the top), each with its line ending.
    ``defaultType`` is ``message/rfc822`` inside ``multipart/digest``
    (RFC 2046 5.1.5), else ``text/plain`` (RFC 2045 5.2).
    """

    fields: tuple[tuple[str, bytes], ...]
    defaultType: str = DEFAULT_TYPE
    raw: tuple[bytes, ...] = ()

    @classmethod
    def fromBlock(cls, block: bytes, defaultType: str = DEFAULT_TYPE) -> "Headers":
        """Parse a header block (without its terminating blank line)."""
        raw = splitFields(block)
        fields = []
        for item in raw:
            rawName, colon, value = item.partition(b":")
            if not colon or item[:1] in (b" ", b"\t"):
                # An mbox "From " line, junk or a continuation of nothing: no field.
                continue
            fields.append((rawName.strip().decode("latin-1"), value.rstrip(b"\r\n")))
        return cls(tuple(fields), defaultType, raw)

    @property
    def size(self) -> int:
        """The block's length as received."""
        return sum(len(item) for item in self.raw)

    def getRaw(self, name: str) -> Optional[bytes]:
        """The first field's raw value, folding included."""
        name = name.lower()
        for fieldName, value in self.fields:
            if fieldName.lower() == name:
                return value
        return None

    def unfolded(self) -> list[tuple[str, str]]:
        """Every field as (name, unfolded text), in order: what policy reads."""
        return [(name, _text(_LINEBREAK.sub(b"", value)).strip()) for name, value in self.fields]

    def get(self, name: str) -> Optional[str]:
        """The first field of that name, unfolded and stripped."""
        raw = self.getRaw(name)
        if raw is None:
            return None
        return _text(_LINEBREAK.sub(b"", _FOLD.sub(b"", raw))).strip()

    @cached_property
    def _contentType(self) -> tuple[str, dict[str, str]]:
        main, params = parseParams(self.get("content-type"))
        mediaType = _mediaType(main)
        if mediaType is None:
            # RFC 2045 5.2: an invalid Content-Type means the default.
            return self.defaultType, decodeParams(params) if main else {}
        return mediaType, decodeParams(params)

    @property
    def contentType(self) -> str:
        """``maintype/subtype``, lowercased."""
        return self._contentType[0]

    @property
    def maintype(self) -> str:
        return self.contentType.split("/", 1)[0]

    @property
    def subtype(self) -> str:
        return self.contentType.split("/", 1)[1]

    @property
    def params(self) -> dict[str, str]:
        """Content-Type parameters, names lowercased, RFC 2231 decoded."""
        return self._contentType[1]

    @property
    def boundary(self) -> Optional[str]:
        """The multipart boundary; trailing blanks are not part of it."""
        value = self.params.get("boundary")
        if value is None:
            return None
        return value.rstrip() or None

    @property
    def charset(self) -> Optional[str]:
        value = self.params.get("charset")
        return value.strip().lower() if value else None

    @cached_property
    def _disposition(self) -> tuple[Optional[str], dict[str, str]]:
        value = self.get("content-disposition")
        if value is None:
            return None, {}
        main, params = parseParams(value)
        return (main.strip().lower() or None), decodeParams(params)

    @property
    def disposition(self) -> Optional[str]:
        """``attachment``, ``inline``, ... lowercased; None if absent."""
        return self._disposition[0]

    @property
    def transferEncoding(self) -> str:
        """Content-Transfer-Encoding lowercased; RFC 2045 6.1 default 7bit."""
        value = self.get("content-transfer-encoding")
        if not value:
            return "7bit"
        return value.strip().strip('"').lower()

    @property
    def contentId(self) -> Optional[str]:
        """Content-ID without its angle brackets (RFC 2392 ``cid:`` form)."""
        value = self.get("content-id")
        if not value:
            return None
        value = value.strip()
        if value.startswith("<") and value.endswith(">"):
            value = value[1:-1].strip()
        return value or None

    @cached_property
    def filename(self) -> Optional[str]:
        """The decoded file name; see ``names.filenameOf``."""
        return filenameOf(self)


__all__ = ["Headers", "KNOWN_ENCODINGS", "DEFAULT_TYPE", "decodeBytes"]
