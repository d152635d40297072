"""
Text shown to people, cleaned one way wherever it is shown: a file
name, a display name, a subject, an organisation's name, in a banner, a
page, a mail, a header, an archive or a log (SPEC 6).  A value from a
message may carry line breaks (a header split into two), bidi controls
("invoice\u202efdp.exe" shown as "invoiceexe.pdf", CVE-2021-42574) or
invisible characters that make two names look alike; shown, it is one
line of what a reader actually sees.
"""

from __future__ import annotations

import unicodedata

# Invisible format characters (Unicode category Cf: the bidi marks,
# embeddings, overrides and isolates, zero-width space, soft hyphen,
# BOM) go, but for the joiners that scripts and emoji need.
_JOINERS = frozenset("\u200c\u200d")


def _noncharacter(point: int) -> bool:
    """Unicode noncharacters, which HTML drops from a character reference (13.2.5.80)."""
    return 0xFDD0 <= point <= 0xFDEF or point & 0xFFFE == 0xFFFE


def shown(value: str) -> str:
    """
    ``value`` as one line in canonical composition (NFC): line breaks,
    tabs and other separators a single space, runs of spaces one, no
    control, surrogate, noncharacter or invisible format character, no
    space at either end.
    """
    out = []
    for ch in unicodedata.normalize("NFC", value):
        category = unicodedata.category(ch)
        if ch.isspace() or category in ("Zl", "Zp"):
            out.append(" ")
        elif category in ("Cc", "Cs") or (category == "Cf" and ch not in _JOINERS) or _noncharacter(ord(ch)):
            continue
        else:
            out.append(ch)
    return " ".join("".join(out).split())
