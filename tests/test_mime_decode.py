"""
Tests for secudoc_gateway.mime.decode: incremental decoders agree with
binascii and quopri on valid input at any chunking, and stay lenient on
the broken input mail carries.
"""

from __future__ import annotations

import base64
import binascii
import quopri

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from secudoc_gateway.mime.decode import (
    Base64Decoder,
    Base64Encoder,
    IdentityDecoder,
    QuotedPrintableDecoder,
    decoderFor,
    encodeBase64Lines,
    encodeQuotedPrintable,
)


def feedChunks(decoder: object, data: bytes, sizes: list[int]) -> bytes:
    out: list[bytes] = []
    position = 0
    index = 0
    while position < len(data):
        size = sizes[index % len(sizes)]
        out.append(decoder.feed(data[position : position + size]))  # type: ignore[attr-defined]
        position += size
        index += 1
    out.append(decoder.close())  # type: ignore[attr-defined]
    return b"".join(out)


def everySplit(factory: type, data: bytes) -> set[bytes]:
    results = set()
    for point in range(len(data) + 1):
        decoder = factory()
        results.add(decoder.feed(data[:point]) + decoder.feed(data[point:]) + decoder.close())
    decoder = factory()
    results.add(b"".join(decoder.feed(data[i : i + 1]) for i in range(len(data))) + decoder.close())
    return results


_SIZES = st.lists(st.integers(1, 200), min_size=1, max_size=10)


class Base64Tests(SynchronousTestCase):
    @settings(max_examples=200, deadline=None)
    @given(st.binary(max_size=2000), _SIZES)
    def test_valid(self, payload: bytes, sizes: list[int]) -> None:
        encoded = base64.encodebytes(payload).replace(b"\n", b"\r\n")
        self.assertEqual(feedChunks(Base64Decoder(), encoded, sizes), binascii.a2b_base64(encoded))

    def test_everySplit(self) -> None:
        encoded = b"aGVs\r\nbG8g\r\nd29y\r\nbGQ=\r\n"
        self.assertEqual(everySplit(Base64Decoder, encoded), {b"hello world"})
        self.assertEqual(everySplit(Base64Decoder, b"YQ==\r\n"), {b"a"})

    def test_junkIgnored(self) -> None:
        """Non-alphabet characters are skipped, as binascii and readers do."""
        encoded = b"aG!V*s\tbG 8\x00=\r\n"
        self.assertEqual(everySplit(Base64Decoder, encoded), {b"hello"})

    def test_missingPadding(self) -> None:
        self.assertEqual(everySplit(Base64Decoder, b"aGVsbG8"), {b"hello"})
        self.assertEqual(everySplit(Base64Decoder, b"aGVsbA"), {b"hell"})

    def test_singleCharacterDropped(self) -> None:
        decoder = Base64Decoder()
        self.assertEqual(decoder.feed(b"aGVsb") + decoder.close(), b"hel")
        self.assertEqual(decoder.ignored, 1)

    def test_lastLineWithoutLF(self) -> None:
        """
        Found by fuzzing: a last line ending in a bare CR (or junk) and no
        LF raised binascii.Error at close, which tempfailed the message
        for ever.  Skipped like any junk, at every split.
        """
        for encoded, plain in [(b"QUJD\nQUI\r", b"ABCAB"), (b"QUJD\nQU I\r", b"ABCAB"),
                               (b"QUJD\nQUI=\r", b"ABCAB"), (b"QUJD\nQ\r", b"ABC")]:
            self.assertEqual(everySplit(Base64Decoder, encoded), {plain}, encoded)

    def test_strayPaddingInTheLastLine(self) -> None:
        """Found by fuzzing: in a last line without LF a stray '=' was not skipped as elsewhere."""
        self.assertEqual(everySplit(Base64Decoder, b"\nPeda=VW"), {binascii.a2b_base64(b"PedaVW==")})

    def test_stopsAtPadding(self) -> None:
        """Data after the padding is ignored, like binascii.a2b_base64."""
        encoded = b"YQ==\r\nYg==\r\n"
        self.assertEqual(everySplit(Base64Decoder, encoded), {binascii.a2b_base64(encoded)})
        decoder = Base64Decoder()
        decoder.feed(encoded)
        self.assertEqual(decoder.ignored, 4)

    def test_strayPadding(self) -> None:
        """'=' where no quantum can end is skipped, like binascii."""
        for encoded in (b"=aGVs", b"a=GVs", b"aG=Vs", b"aG=V=bA=="):
            self.assertEqual(everySplit(Base64Decoder, encoded), {binascii.a2b_base64(encoded)}, encoded)

    def test_manyStrayPaddings(self) -> None:
        """A chunk full of stray '=' costs linear time."""
        encoded = b"=AAAA" * 200000
        decoder = Base64Decoder()
        self.assertEqual(decoder.feed(encoded) + decoder.close(), binascii.a2b_base64(encoded))


class QuotedPrintableTests(SynchronousTestCase):
    @settings(max_examples=200, deadline=None)
    @given(st.binary(max_size=2000), _SIZES, st.booleans())
    def test_valid(self, payload: bytes, sizes: list[int], crlf: bool) -> None:
        encoded = quopri.encodestring(payload)
        if crlf:
            encoded = encoded.replace(b"\n", b"\r\n")
        self.assertEqual(
            feedChunks(QuotedPrintableDecoder(), encoded, sizes), quopri.decodestring(encoded)
        )

    def test_everySplit(self) -> None:
        encoded = b"caf=C3=A9 =\r\nsoft=\nbreak==41 =ZZ=4\r\nend="
        expected = quopri.decodestring(encoded)
        self.assertEqual(everySplit(QuotedPrintableDecoder, encoded), {expected})
        self.assertIn(b"=ZZ", expected)
        self.assertIn("café soft".encode(), expected)

    def test_longLines(self) -> None:
        """A line past the carry bound is cut without splitting an escape."""
        encoded = (b"x=41" * 5000) + b"==3D" + (b"y" * 3000) + b"=\r\n" + b"z" * 10
        for sizes in ([1], [4095], [4097, 13], [100000]):
            decoder = QuotedPrintableDecoder(maxCarry=64)
            self.assertEqual(feedChunks(decoder, encoded, sizes), binascii.a2b_qp(encoded), sizes)

    def test_softBreakWithJunk(self) -> None:
        """'=\\r' then junk up to the LF: skipped, as binascii.a2b_qp does."""
        encoded = b"a=\r" + b"j" * 300 + b"\nb"
        for sizes in ([1], [7], [1000]):
            decoder = QuotedPrintableDecoder(maxCarry=16)
            self.assertEqual(feedChunks(decoder, encoded, sizes), binascii.a2b_qp(encoded))


class DecoderForTests(SynchronousTestCase):
    def test_known(self) -> None:
        self.assertIsInstance(decoderFor("base64"), Base64Decoder)
        self.assertIsInstance(decoderFor(" Quoted-Printable "), QuotedPrintableDecoder)
        for name in ("7bit", "8BIT", "binary", ""):
            self.assertIsInstance(decoderFor(name), IdentityDecoder)

    def test_unknown(self) -> None:
        """SPEC 5: parts in encodings we do not understand stay in place."""
        for name in ("x-uuencode", "uuencode", "x-gzip64", "bogus"):
            self.assertIsNone(decoderFor(name))

    def test_identity(self) -> None:
        decoder = IdentityDecoder()
        self.assertEqual(decoder.feed(b"\x00\xffa"), b"\x00\xffa")
        self.assertEqual(decoder.close(), b"")


class EncoderTests(SynchronousTestCase):
    @settings(max_examples=100, deadline=None)
    @given(st.binary(max_size=3000), _SIZES)
    def test_base64(self, payload: bytes, sizes: list[int]) -> None:
        encoded = feedChunks(Base64Encoder(), payload, sizes)
        self.assertEqual(encoded, encodeBase64Lines(payload))
        self.assertEqual(encoded, base64.encodebytes(payload).replace(b"\n", b"\r\n"))
        lines = encoded.split(b"\r\n")
        self.assertEqual(lines[-1], b"")
        self.assertTrue(all(len(line) <= 76 for line in lines))

    @settings(max_examples=100, deadline=None)
    @given(st.text(max_size=500))
    def test_quotedPrintable(self, text: str) -> None:
        """Round-trips, CRLF only, 7bit, lines of at most 76."""
        data = text.encode("utf-8")
        encoded = encodeQuotedPrintable(data)
        lines = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        self.assertEqual(binascii.a2b_qp(encoded), lines.replace(b"\n", b"\r\n"))
        self.assertNotIn(b"\n", encoded.replace(b"\r\n", b""))
        self.assertNotIn(b"\r", encoded.replace(b"\r\n", b""))
        self.assertTrue(encoded.isascii())
        self.assertTrue(all(len(line) <= 76 for line in encoded.split(b"\r\n")))

    def test_quotedPrintableExample(self) -> None:
        self.assertEqual(
            encodeQuotedPrintable("Bestand: é.pdf \nnext".encode()),
            b"Bestand: =C3=A9.pdf=20\r\nnext",
        )
