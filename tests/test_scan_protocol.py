"""clamd's wire format (scan.protocol): the INSTREAM framing and the reply, split anywhere."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from secudoc_gateway.scan import ScanResult, Verdict, worst
from secudoc_gateway.scan.protocol import MAX_FRAME, MAX_REPLY, ReplyReader, frames, signatureShown, verdictOf
from secudoc_gateway.scan.verdicts import FileVerdict


def unframe(data: bytes) -> list[bytes]:
    """The chunks clamd reads back from INSTREAM frames."""
    chunks, at = [], 0
    while at < len(data):
        (size,) = struct.unpack(">I", data[at:at + 4])
        chunks.append(data[at + 4:at + 4 + size])
        at += 4 + size
    return chunks


class Frames(SynchronousTestCase):
    @given(st.binary(max_size=5000))
    def test_roundTrip(self, data: bytes) -> None:
        chunks = unframe(b"".join(frames(data)))
        self.assertEqual(b"".join(chunks), data)
        self.assertNotIn(b"", chunks)  # a zero length would end the stream early

    def test_bigChunkSplit(self) -> None:
        data = b"x" * (2 * MAX_FRAME + 3)
        self.assertEqual([len(c) for c in unframe(b"".join(frames(data)))], [MAX_FRAME, MAX_FRAME, 3])


class Replies(SynchronousTestCase):
    def test_clean(self) -> None:
        self.assertEqual(verdictOf(b"stream: OK"), Verdict(ScanResult.CLEAN))

    def test_found(self) -> None:
        self.assertEqual(verdictOf(b"stream: Win.Test.EICAR_HDB-1 FOUND"),
                         Verdict(ScanResult.INFECTED, signature="Win.Test.EICAR_HDB-1"))

    def test_sizeLimitIsSkipped(self) -> None:
        self.assertIs(verdictOf(b"INSTREAM size limit exceeded. ERROR").result, ScanResult.SKIPPED)

    def test_otherErrors(self) -> None:
        verdict = verdictOf(b"stream: Can't allocate memory ERROR")
        self.assertIs(verdict.result, ScanResult.ERROR)
        self.assertIn("Can't allocate memory", verdict.reason)
        self.assertIs(verdictOf(b"UNKNOWN COMMAND").result, ScanResult.ERROR)

    def test_signatureShownSafely(self) -> None:
        self.assertEqual(signatureShown("Bad\r\nName\x00\u202e"), "BadName")
        self.assertEqual(signatureShown("\n"), "unknown")
        self.assertEqual(len(signatureShown("A" * 1000)), 200)

    @given(st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=80))
    def test_anySignature(self, name: str) -> None:
        verdict = verdictOf(f"stream: {name} FOUND".encode())
        self.assertIs(verdict.result, ScanResult.INFECTED)
        self.assertEqual(verdict.signature, name)

    @given(st.data())
    def test_readerAnySplit(self, data: st.DataObject) -> None:
        reply = b"stream: Eicar-Test FOUND\0"
        cuts = sorted(data.draw(st.lists(st.integers(0, len(reply)), max_size=6)))
        reader = ReplyReader()
        got = [reader.feed(reply[a:b]) for a, b in zip([0, *cuts], [*cuts, len(reply)])]
        self.assertEqual([g for g in got if g is not None], [b"stream: Eicar-Test FOUND"])

    def test_readerWithoutNul(self) -> None:
        reader = ReplyReader()
        self.assertIsNone(reader.feed(b"PONG"))
        self.assertEqual(reader.close(), b"PONG")
        self.assertIsNone(ReplyReader().close())

    def test_readerLimit(self) -> None:
        reader = ReplyReader()
        self.assertEqual(reader.feed(b"x" * (MAX_REPLY + 10)), b"x" * MAX_REPLY)
        self.assertIsNone(reader.feed(b"more\0"))


class Worst(SynchronousTestCase):
    def test_order(self) -> None:
        def files(*results: ScanResult) -> list[FileVerdict]:
            return [FileVerdict(str(r), Verdict(r)) for r in results]

        self.assertEqual(worst([]), "")
        self.assertEqual(worst(files(ScanResult.CLEAN, ScanResult.SKIPPED)), "skipped")
        self.assertEqual(worst(files(ScanResult.ERROR, ScanResult.SKIPPED)), "error")
        self.assertEqual(worst(files(ScanResult.CLEAN, ScanResult.INFECTED, ScanResult.ERROR)), "infected")
