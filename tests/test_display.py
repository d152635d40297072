"""
``display.shown``: the one cleaner of text shown to people, whatever a
message or a tenant file put in it.
"""

from __future__ import annotations

import unicodedata

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from secudoc_gateway.display import shown


class ShownTests(SynchronousTestCase):
    def test_bidi(self) -> None:
        """The "exe.pdf" trick and every other bidi control are gone."""
        self.assertEqual(shown("invoice\u202efdp.exe"), "invoicefdp.exe")
        self.assertEqual(shown("a\u2066b\u2069c\u200e\u200f\u061cd\u202a\u202be"), "abcde")

    def test_oneLine(self) -> None:
        """Line breaks and tabs are a space, controls vanish, runs of spaces are one."""
        self.assertEqual(shown(" line\r\n\tbreak\x00\x1b\x7f.txt  "), "line break.txt")
        self.assertEqual(shown("a\u2028b\u2029c\x85d"), "a b c d")

    def test_invisible(self) -> None:
        """Zero-width space, soft hyphen, BOM and noncharacters go; joiners stay (emoji, scripts)."""
        self.assertEqual(shown("in\u200bvoice\u00ad\ufeff\ufffe\ufdd0.pdf"), "invoice.pdf")
        self.assertEqual(shown("\U0001f469\u200d\U0001f4bb"), "\U0001f469\u200d\U0001f4bb")

    def test_kept(self) -> None:
        self.assertEqual(shown("één 文件.pdf"), "één 文件.pdf")
        self.assertEqual(shown("e\u0301"), "\u00e9")  # composed (NFC)

    @given(st.text())
    def test_property(self, value: str) -> None:
        """Whatever comes in: one line, no control or format character, stable."""
        out = shown(value)
        self.assertEqual(shown(out), out)
        self.assertEqual(out, out.strip())
        self.assertNotIn("  ", out)
        for ch in out:
            self.assertFalse(ch.isspace() and ch != " ", repr(ch))
            self.assertNotIn(unicodedata.category(ch), ("Cc", "Cs", "Zl", "Zp"))
            self.assertTrue(unicodedata.category(ch) != "Cf" or ch in "\u200c\u200d", repr(ch))
