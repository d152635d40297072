"""
One part's header block, kept raw, read on demand.

The raw ``(name, value)`` pairs are what the rewriter copies out byte
for byte; the accessors are what policy and attachment detection read.
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

DEFAULT_TYPE = "text/plain"
DIGEST_DEFAULT_TYPE = "message/rfc822"
KNOWN_ENCODINGS = frozenset(["7bit", "8bit", "binary", "base64", "quoted-printable"])


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


@attrs.frozen(slots=False)
class Headers:
    """
    ``fields`` are ``(name, raw value)`` in order; a raw value keeps its
    folding (RFC 5322 2.2.3) but not the line break ending the field.
    ``defaultType`` is ``message/rfc822`` inside ``multipart/digest``
    (RFC 2046 5.1.5), else ``text/plain`` (RFC 2045 5.2).
    """

    fields: tuple[tuple[str, bytes], ...]
    defaultType: str = DEFAULT_TYPE

    @classmethod
    def fromBlock(cls, block: bytes, defaultType: str = DEFAULT_TYPE) -> "Headers":
        """Parse a header block (without its terminating blank line)."""
        fields: list[tuple[str, bytes]] = []
        for line in block.splitlines(keepends=True):
            if line[:1] in (b" ", b"\t"):
                if fields:
                    name, value = fields[-1]
                    fields[-1] = (name, value + line)
                continue
            rawName, colon, value = line.partition(b":")
            if not colon:
                # An mbox "From " line or junk: not a field.
                continue
            fields.append((rawName.strip().decode("latin-1"), value))
        return cls(
            tuple((name, value.rstrip(b"\r\n")) for name, value in fields),
            defaultType,
        )

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
        main = main.lower().replace(" ", "").replace("\t", "")
        maintype, slash, subtype = main.partition("/")
        if not slash or not maintype or not subtype:
            # RFC 2045 5.2: an invalid Content-Type means the default.
            return self.defaultType, decodeParams(params) if main else {}
        return main, decodeParams(params)

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
    def dispositionParams(self) -> dict[str, str]:
        return self._disposition[1]

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
