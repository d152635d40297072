"""
Tests for L{secudoc_gateway.mime.tnef}: TNEF streams fed whole, byte by
byte and at every split point, Outlook's own winmail.dat from the
corpus, and every way a stream can be broken.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import os
import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from secudoc_gateway.mime.tnef import FileData, FileEnd, FileStart, TnefReader, isTnef
from tests.support import corpusPaths
from tests.tnefdata import TnefFile, attribute, tnef


def read(stream: bytes, chunk: int = 65536, reader: TnefReader | None = None) -> tuple[list[tuple[str, bytes]], bool]:
    """The files a reader yields, and whether it left something undecoded."""
    reader = reader or TnefReader()
    events = []
    for at in range(0, len(stream), chunk):
        events += reader.feed(stream[at:at + chunk])
    events += reader.close()
    files: list[tuple[str, bytes]] = []
    current: bytes | None = None
    for event in events:
        if isinstance(event, FileStart):
            assert current is None
            current = b""
        elif isinstance(event, FileData):
            assert current is not None
            current += event.data
        else:
            assert current is not None
            if isinstance(event, FileEnd):
                files.append((event.name, current))
            current = None
    assert current is None, "a file left open"
    return files, reader.incomplete


FILES = [
    TnefFile(os.urandom(5000), "RAPPORT.PDF", "Rapport Q3 – Zoë.pdf"),
    TnefFile(b"", "LEEG.TXT"),
    TnefFile(b"\x00" * 300, "FOTO.JPG"),
]


class ReaderTests(SynchronousTestCase):
    def test_files(self) -> None:
        """Long names from the MAPI properties, else the title; the bytes exact."""
        files, incomplete = read(tnef(FILES))
        self.assertEqual(files, [("Rapport Q3 – Zoë.pdf", FILES[0].data), ("LEEG.TXT", b""),
                                 ("FOTO.JPG", FILES[2].data)])
        self.assertFalse(incomplete)

    def test_everySplit(self) -> None:
        stream = tnef([TnefFile(b"abc" * 20, "A.TXT", "aa.txt"), TnefFile(b"z", "B.TXT")])
        whole = read(stream)
        for chunk in range(1, 40):
            self.assertEqual(read(stream, chunk), whole)
        for at in range(len(stream)):
            reader = TnefReader()
            events = reader.feed(stream[:at]) + reader.feed(stream[at:]) + reader.close()
            self.assertEqual(sum(len(e.data) for e in events if isinstance(e, FileData)), 61)

    def test_titleInItsCodePage(self) -> None:
        files, _ = read(tnef([TnefFile(b"x", "MÜLLER.TXT")], codepage=850))
        self.assertEqual(files, [("MÜLLER.TXT", b"x")])

    def test_noAttachments(self) -> None:
        """Only the message's own properties: no file, nothing undecoded."""
        self.assertEqual(read(tnef([])), ([], False))

    def test_embeddedMessageDropped(self) -> None:
        """An embedded message (method 5) is no file: dropped, and the stream incomplete."""
        stream = tnef([FILES[0], TnefFile(b"x" * 89, "UNTITLED", None, 5, b"\x78\x9f\x3e\x22 inner")])
        files, incomplete = read(stream)
        self.assertEqual([name for name, _ in files], ["Rapport Q3 – Zoë.pdf"])
        self.assertTrue(incomplete)

    def test_notTnef(self) -> None:
        for data in (b"", b"PK\x03\x04 a zip", b"\x78\x9f\x3e"):
            self.assertEqual(read(data), ([], True))

    def test_truncatedAnywhere(self) -> None:
        """Cut anywhere: the files before the cut, never a partial one, and incomplete."""
        stream = tnef(FILES[:1] + FILES[2:])
        for at in range(0, len(stream) - 1, 97):
            files, incomplete = read(stream[:at], 1000)
            self.assertTrue(incomplete, at)
            self.assertIn([name for name, _ in files], ([], ["Rapport Q3 – Zoë.pdf"]))
            for name, data in files:
                self.assertEqual(data, FILES[0].data)

    def test_badChecksum(self) -> None:
        """A small value's checksum is checked: a bad one ends the reading; file data is not summed."""
        stream = tnef([TnefFile(b"abc", "A.TXT"), TnefFile(b"def", "B.TXT")])
        title = attribute(2, 0x00018010, b"B.TXT\0")
        damaged = stream.replace(title, attribute(2, 0x00018010, b"B.TXT\0", 7))
        self.assertNotEqual(damaged, stream)
        self.assertEqual(read(damaged), ([("A.TXT", b"abc")], True))
        data = attribute(2, 0x0006800F, b"abc")
        self.assertEqual(read(stream.replace(data, attribute(2, 0x0006800F, b"abc", 7))),
                         ([("A.TXT", b"abc"), ("B.TXT", b"def")], False))

    def test_badLevel(self) -> None:
        """A broken attribute ends the reading; the open attachment is not judged, so dropped."""
        stream = tnef([TnefFile(b"abc", "A.TXT"), TnefFile(b"def", "B.TXT")]) + attribute(3, 0x00018010, b"x")
        self.assertEqual(read(stream), ([("A.TXT", b"abc")], True))

    def test_propertiesThatDoNotAddUp(self) -> None:
        """A property list that overruns its attribute: the title names the file."""
        stream = tnef([TnefFile(b"abc", "A.TXT")])
        stream += attribute(2, 0x00069002, bytes(14)) + attribute(2, 0x0006800F, b"def")
        stream += attribute(2, 0x00069005, b"\x05\x00\x00\x00\x1f\x00\x07\x37\x01\x00\x00\x00\xff\xff\xff\x00")
        self.assertEqual(read(stream), ([("A.TXT", b"abc"), ("attachment-2", b"def")], False))

    def test_largeValuesSkipped(self) -> None:
        """Values past ``maxValue`` (here 8,000 bytes of 64-bit numbers) are skipped, never held."""
        props = struct.pack("<IHHI", 1, 0x1014, 0x3000, 1000) + bytes(8000)
        stream = tnef([TnefFile(b"abc", "A.TXT")])
        stream += attribute(2, 0x00069002, bytes(14)) + attribute(2, 0x0006800F, b"def")
        stream += attribute(2, 0x00069005, props)
        reader = TnefReader(maxValue=1024)
        held = 0
        for at in range(0, len(stream), 500):
            reader.feed(stream[at:at + 500])
            held = max(held, len(reader._buffer))
        self.assertLess(held, 1024)
        self.assertEqual(read(stream, 500, TnefReader(maxValue=1024)),
                         ([("A.TXT", b"abc"), ("attachment-2", b"def")], False))
        # A billion values claimed: the list ends, the stream goes on.
        props = struct.pack("<IHHI", 1, 0x1014, 0x3000, 10**9) + bytes(64)
        stream = tnef([TnefFile(b"abc", "A.TXT")]) + attribute(2, 0x00069005, props)
        self.assertEqual(read(stream), ([("A.TXT", b"abc")], False))

    def test_memoryBounded(self) -> None:
        """A long file streams through; nothing but the chunk is held."""
        big = TnefFile(os.urandom(3 << 20), "BIG.BIN")
        stream = tnef([big])
        reader = TnefReader()
        digest = hashlib.sha256()
        for at in range(0, len(stream), 65536):
            for event in reader.feed(stream[at:at + 65536]):
                if isinstance(event, FileData):
                    digest.update(event.data)
            self.assertLessEqual(len(reader._buffer), 65536)
        events = reader.close()
        self.assertEqual(events, [FileEnd("BIG.BIN")])
        self.assertEqual(digest.digest(), hashlib.sha256(big.data).digest())

    def test_manyFilesBounded(self) -> None:
        files, incomplete = read(tnef([TnefFile(b"x", f"F{n}.TXT") for n in range(5)]),
                                 reader=TnefReader(maxFiles=3))
        self.assertEqual([name for name, _ in files], ["F0.TXT", "F1.TXT", "F2.TXT"])
        self.assertTrue(incomplete)

    def test_isTnef(self) -> None:
        self.assertTrue(isTnef("application/ms-tnef", None))
        self.assertTrue(isTnef("application/vnd.ms-tnef", None))
        self.assertTrue(isTnef("application/octet-stream", "WINMAIL.DAT"))
        self.assertFalse(isTnef("application/octet-stream", "winmail.dat.pdf"))

    @settings(max_examples=100, deadline=None)
    @given(
        st.lists(st.tuples(st.binary(max_size=3000), st.text(min_size=1, max_size=30).filter(lambda n: "\0" not in n)),
                 max_size=4),
        st.integers(1, 5000),
    )
    def test_anyFiles(self, files: list[tuple[bytes, str]], chunk: int) -> None:
        stream = tnef([TnefFile(data, "X.BIN", name) for data, name in files])
        self.assertEqual(read(stream, chunk), ([(name, data) for data, name in files], False))


class OutlookTests(SynchronousTestCase):
    """Outlook's own winmail.dat, from MimeKit's test data in the shared corpus."""

    def winmail(self, name: str) -> bytes:
        [path] = [p for p in corpusPaths() if os.path.basename(p) == name] or [None]
        if path is None:
            self.skipTest(f"the shared corpus with {name} is not here")
        message = email.message_from_bytes(open(path, "rb").read(), policy=email.policy.default)
        [part] = [p for p in message.walk() if p.get_content_type() == "application/ms-tnef"]
        return part.get_payload(decode=True)

    def test_richText(self) -> None:
        """A picture by value comes out; two embedded messages stay in winmail.dat."""
        files, incomplete = read(self.winmail("mimekit__rich-text.eml"), 4096)
        [(name, data)] = files
        self.assertEqual(name, "kitten-playing-with-a-christmas-tree.jpg")
        self.assertEqual(len(data), 375081)
        self.assertTrue(data.startswith(b"\xff\xd8\xff\xe0\x00\x10JFIF"))
        self.assertTrue(incomplete)

    def test_bodyOnly(self) -> None:
        self.assertEqual(read(self.winmail("mimekit__ukr.eml"), 100), ([], False))
