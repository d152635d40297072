"""
Tests for L{secudoc_gateway.mime.transforms}: the streamed text
transforms and the quoted-printable encoder, whole and at every or
random chunk splits.
"""

from __future__ import annotations

import base64
import binascii
import html as htmlModule
import quopri
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from secudoc_gateway.mime.transforms import (
    EscapedTextTransform,
    HtmlBannerTransform,
    PlainBannerTransform,
    QuotedPrintableEncoder,
    escapeText,
    htmlEncoding,
    textDecoder,
)


class TransformTests(SynchronousTestCase):
    def through(self, transform: Any, data: bytes, size: int) -> bytes:
        out = b"".join(transform.feed(data[at : at + size]) for at in range(0, len(data), size))
        return out + transform.close()

    def test_qpEncoderSplits(self) -> None:
        """Any split gives the encoding of the whole; CR, LF and CRLF become lines."""
        data = "a \r\nb\rc\n\td =\r\n".encode() + "é".encode() * 100 + b"\r"
        whole = self.through(QuotedPrintableEncoder(), data, len(data))
        self.assertEqual(binascii.a2b_qp(whole), "a \r\nb\r\nc\r\n\td =\r\n".encode() + "é".encode() * 100 + b"\r\n")
        for size in (1, 2, 5):
            self.assertEqual(self.through(QuotedPrintableEncoder(), data, size), whole)

    def test_plainTransformEmptyBody(self) -> None:
        self.assertEqual(self.through(PlainBannerTransform("7bit", None, "B\n", b"\r\n"), b"", 1), b"B\r\n")

    def test_plainTransformUnknownEncoding(self) -> None:
        self.assertRaises(ValueError, PlainBannerTransform, "x-uuencode", None, "B", b"\r\n")

    def test_plainTransformUtf16(self) -> None:
        data = base64.encodebytes("Hallo wereld\n".encode("utf-16"))
        out = self.through(PlainBannerTransform("base64", "utf-16", "B\n", b"\r\n"), data, 3)
        self.assertEqual(binascii.a2b_qp(out).decode("utf-8"), "B\r\nHallo wereld\r\n")

    def test_htmlBodyTagAcrossChunks(self) -> None:
        """An 8bit body comes out quoted-printable, the banner after its body tag."""
        data = "<html><head></head><body\n style='a'>tëxt</body></html>".encode("latin-1")
        for size in range(1, len(data) + 1):
            out = self.through(HtmlBannerTransform("8bit", b"[B]", b"\r\n"), data, size)
            self.assertEqual(binascii.a2b_qp(out), data.replace(b"'a'>", b"'a'>[B]").replace(b"\n", b"\r\n"))
            self.assertTrue(out.isascii())

    def test_htmlLookaheadBounded(self) -> None:
        """No body tag in the look-ahead: the banner goes first."""
        data = b"<html><head><style>" + b"x" * 1000 + b"</style></head><body>text</body></html>"
        out = self.through(HtmlBannerTransform("7bit", b"[B]", b"\r\n", lookahead=100), data, 10)
        self.assertEqual(binascii.a2b_qp(out), b"[B]" + data)
        self.assertLessEqual(max(len(line) for line in out.split(b"\r\n")), 76)

    def test_htmlEncoding(self) -> None:
        """Only base64 stays; whatever else carried HTML becomes quoted-printable."""
        self.assertEqual(htmlEncoding("base64"), "base64")
        for cte in ("7bit", "8bit", "binary", "quoted-printable"):
            self.assertEqual(htmlEncoding(cte), "quoted-printable")

    def test_textDecoderFallback(self) -> None:
        """Unknown and ASCII labels decode UTF-8, then Windows-1252, never fail."""
        for charset in (None, "us-ascii", "x-unknown", "iso-8859-1"):
            decoder = textDecoder(charset)
            self.assertEqual(decoder.decode(b"\xc3\xa9 \xe9 \x80 \x81", final=True), "é é € \x81")
        self.assertEqual(textDecoder("koi8-r").decode("Привет".encode("koi8-r"), final=True), "Привет")
        for charset in ("utf-8\x00", "zlib", "base64"):
            self.assertEqual(textDecoder(charset).decode(b"\xc3\xa9", final=True), "é", charset)


# -- the streaming transforms at random splits -----------------------------------------

_TEXT = st.text(alphabet=st.sampled_from(list("ab <>&\"'=é€日\r\n\t\x00\x0b\x85") + ["\ud800"]), max_size=300)


def _splits(data: bytes, cuts: list[int]) -> list[bytes]:
    pieces, at = [], 0
    for cut in cuts:
        pieces.append(data[at : at + cut])
        at += cut
    return pieces + [data[at:]]


def _through(transform: Any, pieces: list[bytes]) -> bytes:
    return b"".join(transform.feed(piece) for piece in pieces) + transform.close()


class StreamingTransformTests(SynchronousTestCase):
    def test_escapeText(self) -> None:
        self.assertEqual(escapeText("<a href=\"x\">&é\x00\x1b\x85\t\r\n"), b'&lt;a href="x"&gt;&amp;&#233;\t\r\n')

    def test_escapedTransformEmpty(self) -> None:
        out = _through(EscapedTextTransform("7bit", None, b"<pre>\n", b"</pre>\n", b"\r\n"), [b""])
        self.assertEqual(out, b"<pre>\r\n</pre>\r\n")

    def test_escapedTransformUnknownEncoding(self) -> None:
        self.assertRaises(ValueError, EscapedTextTransform, "x-uuencode", None, b"", b"", b"\r\n")

    @settings(max_examples=200, deadline=None)
    @given(_TEXT, st.sampled_from(["8bit", "quoted-printable", "base64"]),
           st.sampled_from(["utf-8", "iso-8859-15", "utf-16"]), st.lists(st.integers(0, 40), max_size=30))
    def test_escapedTransformSplits(self, value: str, cte: str, charset: str, cuts: list[int]) -> None:
        """Any chunking gives the bytes of the whole; they read back as the text, escaped, in ASCII QP."""
        value = value.encode(charset, "replace").decode(charset)  # what the charset can carry
        if charset != "utf-16":
            value = value.replace("\ud800", "")
        data = value.encode(charset, "surrogatepass")
        if cte == "base64":
            data = base64.encodebytes(data)
        elif cte == "quoted-printable":
            data = quopri.encodestring(data)
        whole = _through(EscapedTextTransform(cte, charset, b"<pre>\n", b"</pre>\n", b"\r\n"), [data])
        split = _through(EscapedTextTransform(cte, charset, b"<pre>\n", b"</pre>\n", b"\r\n"), _splits(data, cuts))
        self.assertEqual(split, whole)
        self.assertTrue(whole.isascii())
        self.assertTrue(all(len(line) <= 76 for line in whole.split(b"\r\n")))
        shown = htmlModule.unescape(binascii.a2b_qp(whole).decode("ascii"))
        expected = value.translate({c: None for c in (0, 0x0B, 0x85)}).replace("\r\n", "\n").replace("\r", "\n")
        if charset == "utf-16":
            expected = expected.replace("\ud800", "\ufffd")
        self.assertEqual(shown, "<pre>\r\n" + expected.replace("\n", "\r\n") + "</pre>\r\n")

    @settings(max_examples=200, deadline=None)
    @given(st.binary(max_size=400) | _TEXT.map(lambda t: t.encode("utf-8", "surrogatepass")),
           st.lists(st.integers(0, 60), max_size=30))
    def test_qpEncoderSplits(self, data: bytes, cuts: list[int]) -> None:
        """Quoted-printable at any chunking: the same bytes, short lines, the data back with CRLF lines."""
        whole = _through(QuotedPrintableEncoder(), [data])
        self.assertEqual(_through(QuotedPrintableEncoder(), _splits(data, cuts)), whole)
        self.assertTrue(all(len(line) <= 76 for line in whole.split(b"\r\n")))
        normalized = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
        self.assertEqual(binascii.a2b_qp(whole), normalized)
