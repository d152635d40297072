"""The streamed ZIP writer, read back by Python's zipfile (and so by the APPNOTE's rules)."""

from __future__ import annotations

import bisect
import datetime
import io
import os
import zipfile

from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

import unicodedata

from secudoc_gateway.web.archive import (
    FALLBACK_NAME, MAX_NAME_BYTES, Entry, ZipWriter, archiveNames, safeEntryName,
)

WHEN = datetime.datetime(2025, 3, 14, 15, 31, 20)


def build(files: list[tuple[str, bytes]], **limits: int) -> bytes:
    writer = ZipWriter([Entry(name, len(data)) for name, data in files], WHEN, **limits)
    out = bytearray()
    for index, (_, data) in enumerate(files):
        out += writer.begin(index)
        for at in range(0, len(data), 1000):
            writer.feed(data[at:at + 1000])
        out += data
        out += writer.end()
    out += writer.finish()
    assert len(out) == writer.size
    return bytes(out)


class Sparse:
    """A read-only file of byte pieces and runs of zeros that are never held."""

    def __init__(self, pieces: list[bytes | int]) -> None:
        self.starts: list[int] = []
        self.pieces = pieces
        at = 0
        for piece in pieces:
            self.starts.append(at)
            at += piece if isinstance(piece, int) else len(piece)
        self.size = at
        self.position = 0

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        self.position = [offset, self.position + offset, self.size + offset][whence]
        return self.position

    def tell(self) -> int:
        return self.position

    def read(self, n: int = -1) -> bytes:
        end = self.size if n < 0 else min(self.size, self.position + n)
        out = bytearray()
        while self.position < end:
            index = bisect.bisect_right(self.starts, self.position) - 1
            piece, start = self.pieces[index], self.starts[index]
            length = piece if isinstance(piece, int) else len(piece)
            take = min(end, start + length) - self.position
            out += bytes(take) if isinstance(piece, int) else piece[self.position - start:self.position - start + take]
            self.position += take
        return bytes(out)


class ZipWriterTests(SynchronousTestCase):
    def test_readBack(self) -> None:
        files = [("a.txt", b"hello"), ("map/é 日本.bin", os.urandom(3000)), ("empty", b"")]
        archive = zipfile.ZipFile(io.BytesIO(build(files)))
        self.assertIsNone(archive.testzip())
        for name, data in files:
            self.assertEqual(archive.read(name), data)
        info = archive.getinfo("a.txt")
        self.assertEqual(info.date_time, (2025, 3, 14, 15, 31, 20))
        self.assertEqual(info.compress_type, zipfile.ZIP_STORED)
        self.assertTrue(info.flag_bits & 0x800)

    @given(st.lists(st.binary(max_size=300), max_size=6), st.integers(1, 400), st.integers(1, 7))
    @settings(max_examples=60, deadline=None)
    def test_zip64Wherever(self, contents: list[bytes], limit: int, countLimit: int) -> None:
        """With the 32- and 16-bit limits made small, every ZIP64 record is exercised."""
        files = [(f"f{i}.bin", data) for i, data in enumerate(contents)]
        archive = zipfile.ZipFile(io.BytesIO(build(files, zip64Limit=limit, countLimit=countLimit)))
        self.assertIsNone(archive.testzip())
        self.assertEqual([archive.read(name) for name, _ in files], contents)

    def test_past4GiB(self) -> None:
        """A real 4 GiB + 1 entry, then a file at an offset past 4 GiB; zeros never held."""
        big = (1 << 32) + 1
        tail = os.urandom(5000)
        writer = ZipWriter([Entry("big.bin", big), Entry("tail.bin", len(tail))], WHEN)
        pieces: list[bytes | int] = [writer.begin(0)]
        chunk = bytes(1 << 24)
        for _ in range(big >> 24):
            writer.feed(chunk)
        writer.feed(b"\0")
        pieces += [big, writer.end(), writer.begin(1)]
        writer.feed(tail)
        pieces += [tail, writer.end(), writer.finish()]
        sparse = Sparse(pieces)
        self.assertEqual(sparse.size, writer.size)
        archive = zipfile.ZipFile(sparse)  # type: ignore[arg-type]
        self.assertEqual(archive.getinfo("big.bin").file_size, big)
        self.assertGreater(archive.getinfo("tail.bin").header_offset, 1 << 32)
        self.assertEqual(archive.read("tail.bin"), tail)

    def test_wrongSizeRefused(self) -> None:
        writer = ZipWriter([Entry("a", 3)], WHEN)
        writer.begin(0)
        writer.feed(b"ab")
        self.assertRaises(ValueError, writer.end)

    def test_names(self) -> None:
        self.assertEqual(archiveNames(["a.pdf", "A.pdf", "a.pdf", "b", "b", "a (2).pdf"]),
                         ["a.pdf", "A (2).pdf", "a (3).pdf", "b", "b (2)", "a (2) (2).pdf"])


RESERVED = ["CON", "PRN", "AUX", "NUL"] + [f"{k}{n}" for k in ("COM", "LPT") for n in "123456789\u00b9\u00b2\u00b3"]


def assertSafe(case: SynchronousTestCase, name: str) -> None:
    """What every system can extract (SPEC 8)."""
    case.assertTrue(name)
    case.assertLessEqual(len(name.encode("utf-8")), MAX_NAME_BYTES + 16)
    case.assertFalse(set(name) & set(':*?"<>|/\\'), name)
    for c in name:
        category = unicodedata.category(c)
        case.assertNotIn(category, ("Cc", "Cs", "Zl", "Zp"), name)
        case.assertFalse(category == "Cf" and c not in "\u200c\u200d", repr(name))
    case.assertFalse(name.endswith((".", " ")), name)
    case.assertFalse(name.startswith((".", " ")), name)
    case.assertNotIn(name.split(".", 1)[0].rstrip(" ").upper(), RESERVED, name)
    case.assertEqual(unicodedata.normalize("NFC", name), name)


class EntryNameTests(SynchronousTestCase):
    def test_examples(self) -> None:
        for given_, expected in (
            ("C:\\Windows\\evil.exe", "C__Windows_evil.exe"), ("../../etc/passwd", "_.._etc_passwd"),
            ("con", "_con"), ("CON.txt", "_CON.txt"), ("Com1.tar.gz", "_Com1.tar.gz"), ("lpt9 .pdf", "_lpt9 .pdf"),
            ("console.txt", "console.txt"), ("report. . ", "report"), ("  x", "x"), ("a?b*c<d>e|f\"g:h", "a_b_c_d_e_f_g_h"),
            ("invoice\u202efdp.exe", "invoicefdp.exe"), ("tab\there\n", "tab here"), ("..", FALLBACK_NAME),
            ("", FALLBACK_NAME), ("e\u0301", "\u00e9"), ("zero\u200bwidth", "zerowidth"), ("\u00a0nb\u00a0sp", "nb sp"),
        ):
            self.assertEqual(safeEntryName(given_), expected, repr(given_))

    def test_longNameKeepsItsExtension(self) -> None:
        name = safeEntryName("\u00e9" * 300 + ".pdf")
        self.assertTrue(name.endswith("\u00e9.pdf"))
        self.assertLessEqual(len(name.encode("utf-8")), MAX_NAME_BYTES)

    def test_uniqueAfterCleaning(self) -> None:
        """Names that differ only in what cleaning removes, or in case or composition, still get numbers."""
        self.assertEqual(archiveNames(["a:b.txt", "a_b.txt", "A_B.TXT", "caf\u00e9", "cafe\u0301", "CON", "_con"]),
                         ["a_b.txt", "a_b (2).txt", "A_B (3).TXT", "caf\u00e9", "caf\u00e9 (2)", "_CON", "_con (2)"])

    @settings(max_examples=300)
    @given(st.lists(st.text(max_size=300), max_size=8))
    def test_anyNamesSafeAndUnique(self, names: list[str]) -> None:
        out = archiveNames(names)
        self.assertEqual(len(out), len(names))
        for name in out:
            assertSafe(self, name)
        self.assertEqual(len({unicodedata.normalize("NFC", n.casefold()) for n in out}), len(out))

    @given(st.lists(st.sampled_from(["con", "Con.txt", "a.b", "A.B", "x ", "x", "x.", ":", "?", "\u202e"]),
                    max_size=12))
    def test_reservedAndCollidingNames(self, names: list[str]) -> None:
        out = archiveNames(names)
        for name in out:
            assertSafe(self, name)
        self.assertEqual(len({n.casefold() for n in out}), len(out))

    @given(st.text(alphabet=st.characters(whitelist_categories=("Lu", "Ll", "Nd")), min_size=1, max_size=40))
    def test_safeNamesKept(self, stem: str) -> None:
        """A name that is already safe is left as it is."""
        name = unicodedata.normalize("NFC", stem) + ".pdf"
        if name.split(".", 1)[0].upper() not in RESERVED:
            self.assertEqual(safeEntryName(name), name)
