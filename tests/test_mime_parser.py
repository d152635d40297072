"""
Tests for secudoc_gateway.mime.parser: golden events for small
messages, fed whole, byte by byte and at every split point; hypothesis
trees of parts at random chunkings; the public corpus of real mail.
"""

from __future__ import annotations

import ast
import email
import email.errors
import email.message
import glob
import os
import random
from collections import defaultdict
from typing import Iterable, Optional

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

import secudoc_gateway.mime
from secudoc_gateway.mime.decode import decoderFor
from secudoc_gateway.mime.parser import LEAF, MESSAGE, MULTIPART, BodyData, Defect, Event, MIMEParser, PartEnd, PartStart

from tests.support import corpusPaths, pythonEmail


def parseChunks(message: bytes, chunks: Iterable[bytes], **limits: int) -> list[Event]:
    parser = MIMEParser(**limits)
    events: list[Event] = []
    for chunk in chunks:
        events.extend(parser.feed(chunk))
    events.extend(parser.close())
    return events


def split(message: bytes, size: int) -> list[bytes]:
    return [message[i : i + size] for i in range(0, len(message), size)]


def merged(events: list[Event]) -> list[Event]:
    """Consecutive BodyData of one part as one event (joined once: byte-by-byte runs stay linear)."""
    out: list[Event] = []
    run: list[BodyData] = []

    def flush() -> None:
        if run:
            out.append(BodyData(run[0].path, b"".join(e.data for e in run), run[0].offset))
            run.clear()

    for event in events:
        if isinstance(event, BodyData):
            if run and run[-1].path == event.path:
                assert run[-1].offset + len(run[-1].data) == event.offset
            else:
                flush()
            run.append(event)
            continue
        flush()
        out.append(event)
    flush()
    return out


def leafBodies(events: list[Event]) -> dict[tuple[int, ...], bytes]:
    bodies: dict[tuple[int, ...], list[bytes]] = defaultdict(list)
    for event in events:
        if isinstance(event, BodyData):
            bodies[event.path].append(event.data)
    return {path: b"".join(data) for path, data in bodies.items()}


def outline(events: list[Event]) -> list[tuple[object, ...]]:
    """Events in a form short enough to write down in a test."""
    rows: list[tuple[object, ...]] = []
    for event in merged(events):
        if isinstance(event, PartStart):
            rows.append(("start", event.path, event.headers.contentType, event.headerStart, event.bodyStart))
        elif isinstance(event, BodyData):
            rows.append(("data", event.path, event.data, event.offset))
        elif isinstance(event, PartEnd):
            rows.append(("end", event.path, event.bodyEnd, event.end))
        else:
            rows.append(("defect", event.reason, event.offset, event.fatal))
    return rows


class Checks(SynchronousTestCase):
    def checkInvariants(self, message: bytes, events: list[Event]) -> None:
        """Every leaf's BodyData is exactly the stream between its offsets."""
        starts: dict[tuple[int, ...], PartStart] = {}
        bodies = leafBodies(events)
        for event in events:
            if isinstance(event, PartStart):
                starts[event.path] = event
            elif isinstance(event, PartEnd):
                start = starts[event.path]
                self.assertLessEqual(start.headerStart, start.bodyStart)
                self.assertLessEqual(start.bodyStart, event.bodyEnd)
                self.assertLessEqual(event.bodyEnd, event.end)
                if event.path in bodies or start.headers.maintype not in ("multipart", "message"):
                    self.assertEqual(
                        bodies.get(event.path, b""), message[start.bodyStart : event.bodyEnd]
                    )
            elif isinstance(event, BodyData):
                self.assertEqual(message[event.offset : event.offset + len(event.data)], event.data)

    def parseEverySplit(self, message: bytes, **limits: int) -> list[Event]:
        """Whole, byte by byte, and at every split point: the same events."""
        whole = parseChunks(message, [message], **limits)
        expected = merged(whole)
        self.checkInvariants(message, whole)
        byByte = parseChunks(message, split(message, 1), **limits)
        self.assertEqual(merged(byByte), expected)
        self.checkInvariants(message, byByte)
        for point in range(len(message) + 1):
            events = parseChunks(message, [message[:point], message[point:]], **limits)
            self.assertEqual(merged(events), expected, f"split at {point}")
        return whole


NESTED = (
    b"From: a@example.test\r\n"
    b'Content-Type: multipart/mixed; boundary="outer"\r\n'
    b"\r\n"
    b"preamble\r\n"
    b"--outer\r\n"
    b"Content-Type: multipart/alternative; boundary=inner\r\n"
    b"\r\n"
    b"--inner\r\n"
    b"\r\n"
    b"plain\r\n"
    b"--inner\r\n"
    b"Content-Type: text/html\r\n"
    b"\r\n"
    b"<p>html</p>\r\n"
    b"--inner--\r\n"
    b"--outer\r\n"
    b"Content-Type: application/pdf; name=a.pdf\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"JVBERi0=\r\n"
    b"--outer--\r\n"
    b"epilogue\r\n"
)


class GoldenTests(Checks):
    def test_nested(self) -> None:
        """Nested multiparts: offsets, paths, preamble and epilogue dropped."""
        events = self.parseEverySplit(NESTED)
        self.assertEqual(
            outline(events),
            [
                ("start", (), "multipart/mixed", 0, 73),
                ("start", (0,), "multipart/alternative", 92, 147),
                ("start", (0, 0), "text/plain", 156, 158),
                ("data", (0, 0), b"plain", 158),
                ("end", (0, 0), 163, 165),
                ("start", (0, 1), "text/html", 174, 201),
                ("data", (0, 1), b"<p>html</p>", 201),
                ("end", (0, 1), 212, 214),
                # The inner close-delimiter's own line break ends it; the
                # outer delimiter follows with no line break of its own.
                ("end", (0,), 225, 225),
                ("start", (1,), "application/pdf", 234, 314),
                ("data", (1,), b"JVBERi0=", 314),
                ("end", (1,), 322, 324),
                ("end", (), 345, 345),
            ],
        )
        self.assertEqual(NESTED[92:101], b"Content-T")
        self.assertEqual(NESTED[214:225], b"--inner--\r\n")
        self.assertEqual(NESTED[322:331], b"\r\n--outer")

    def test_lfOnly(self) -> None:
        """LF line ends: the same structure, the LF belongs to the delimiter."""
        message = NESTED.replace(b"\r\n", b"\n")
        events = self.parseEverySplit(message)
        bodies = leafBodies(events)
        self.assertEqual(bodies, {(0, 0): b"plain", (0, 1): b"<p>html</p>", (1,): b"JVBERi0="})
        self.assertEqual([e for e in events if isinstance(e, Defect)], [])

    def test_contentTypeComments(self) -> None:
        """
        RFC 2045 5.1 allows comments in Content-Type: a multipart with one
        is a multipart, as policy reads it; an invalid type is the default.
        """
        message = (
            b"Content-Type: multipart/mixed (the (nested) kind); boundary=b\r\n\r\n"
            b"--b\r\nContent-Type: (lead) Text/HTML\r\n\r\n<p>x</p>\r\n"
            b"--b\r\nContent-Type: a/b/c\r\n\r\ny\r\n--b--\r\n"
        )
        events = self.parseEverySplit(message)
        types = [e.headers.contentType for e in events if isinstance(e, PartStart)]
        self.assertEqual(types, ["multipart/mixed", "text/html", "text/plain"])

    def test_headerBlockAsReceived(self) -> None:
        """The block is split once: its raw lines join to the bytes received, junk included."""
        block = b"From a@b Mon Jan  1 00:00:00 2024\r\n  stray\r\nSubject: s\r\n  folded\r\n"
        start = next(e for e in parseChunks(block + b"\r\nbody", [block + b"\r\nbody"]) if isinstance(e, PartStart))
        self.assertEqual(b"".join(start.headers.raw), block)
        self.assertEqual(start.headers.size, start.bodyStart - 2)
        self.assertEqual(start.headers.get("subject"), "s  folded")  # RFC 5322 2.2.3: only the line break goes

    def test_mixedLineEnds(self) -> None:
        message = (
            b"Content-Type: multipart/mixed; boundary=b\n\r\n--b\r\n\nx\r\ny\n--b\n"
            b"Content-Type: text/html\r\n\nz\r\n--b--\n"
        )
        events = self.parseEverySplit(message)
        self.assertEqual(leafBodies(events), {(0,): b"x\r\ny", (1,): b"z"})

    def test_message(self) -> None:
        """message/rfc822 descends: its header block starts at its body."""
        message = (
            b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
            b"--b\r\nContent-Type: message/rfc822\r\n\r\n"
            b"Subject: inner\r\nContent-Type: multipart/mixed; boundary=c\r\n\r\n"
            b"--c\r\n\r\ninner text\r\n--c--\r\n"
            b"--b--\r\n"
        )
        events = self.parseEverySplit(message)
        rows = outline(events)
        self.assertEqual(
            [row[:3] if row[0] == "start" else row[:2] for row in rows if row[0] in ("start", "end")],
            [
                ("start", (), "multipart/mixed"),
                ("start", (0,), "message/rfc822"),
                ("start", (0, 0), "multipart/mixed"),
                ("start", (0, 0, 0), "text/plain"),
                ("end", (0, 0, 0)),
                ("end", (0, 0)),
                ("end", (0,)),
                ("end", ()),
            ],
        )
        starts = {e.path: e for e in events if isinstance(e, PartStart)}
        self.assertEqual(starts[(0, 0)].headerStart, starts[(0,)].bodyStart)
        self.assertEqual(starts[(0, 0)].headers.get("subject"), "inner")
        ends = {e.path: e for e in events if isinstance(e, PartEnd)}
        self.assertEqual(ends[(0,)], PartEnd((0,), ends[(0, 0)].bodyEnd, ends[(0, 0)].end))
        self.assertEqual(
            message[starts[(0,)].bodyStart : ends[(0,)].bodyEnd],
            b"Subject: inner\r\nContent-Type: multipart/mixed; boundary=c\r\n\r\n"
            b"--c\r\n\r\ninner text\r\n--c--\r\n",
        )

    def test_encodedMessageIsLeaf(self) -> None:
        message = (
            b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
            b"--b\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            b"U3ViamVjdDogeA0KDQpib2R5\r\n--b--\r\n"
        )
        events = self.parseEverySplit(message)
        self.assertEqual(leafBodies(events), {(0,): b"U3ViamVjdDogeA0KDQpib2R5"})

    def test_missingFinalBoundary(self) -> None:
        message = (
            b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
            b"--b\r\n\r\none\r\n--b\r\nContent-Type: multipart/related; boundary=c\r\n\r\n"
            b"--c\r\n\r\ntwo\r\n"
        )
        events = self.parseEverySplit(message)
        self.assertEqual(leafBodies(events), {(0,): b"one", (1, 0): b"two\r\n"})
        defects = [e for e in events if isinstance(e, Defect)]
        self.assertEqual(
            defects,
            [
                Defect("missing close-delimiter", len(message), False),
                Defect("missing close-delimiter", len(message), False),
            ],
        )
        self.assertEqual(events[-1], PartEnd((), len(message), len(message)))

    def test_outerBoundaryClosesInner(self) -> None:
        """A delimiter of an outer multipart ends the inner one (no close)."""
        message = (
            b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
            b"--b\r\nContent-Type: multipart/alternative; boundary=c\r\n\r\n"
            b"--c\r\n\r\ninner\r\n"
            b"--b\r\n\r\nsecond\r\n--b--\r\n"
        )
        events = self.parseEverySplit(message)
        self.assertEqual(leafBodies(events), {(0, 0): b"inner", (1,): b"second"})
        self.assertEqual(
            [e.reason for e in events if isinstance(e, Defect)], ["missing close-delimiter"]
        )

    def test_prefixBoundaries(self) -> None:
        """Boundary "b" and boundary "b2": "--b2" is no delimiter of "b"."""
        message = (
            b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
            b"--b\r\nContent-Type: multipart/mixed; boundary=b2\r\n\r\n"
            b"--b2\r\n\r\nx\r\n--bb\r\n--b2-\r\n--b2--x\r\n--b2--\r\n"
            b"--b\r\n\r\ny\r\n--b--\r\n"
        )
        events = self.parseEverySplit(message)
        self.assertEqual(
            leafBodies(events),
            {(0, 0): b"x\r\n--bb\r\n--b2-\r\n--b2--x", (1,): b"y"},
        )
        self.assertEqual([e for e in events if isinstance(e, Defect)], [])

    def test_trailingWhitespace(self) -> None:
        message = (
            b"Content-Type: multipart/mixed; boundary=\"b \"\r\n\r\n"
            b"--b \t\r\n\r\nx\r\n--b--  \r\nafter\r\n"
        )
        events = self.parseEverySplit(message)
        self.assertEqual(leafBodies(events), {(0,): b"x"})

    def test_noBoundary(self) -> None:
        """A multipart without a boundary is one leaf, with a defect."""
        message = b"Content-Type: multipart/mixed\r\n\r\n--x\r\nbody\r\n"
        events = self.parseEverySplit(message)
        self.assertEqual(leafBodies(events), {(): b"--x\r\nbody\r\n"})
        self.assertEqual(
            [e for e in events if isinstance(e, Defect)],
            [Defect("multipart without boundary", 0, False)],
        )

    def test_kinds(self) -> None:
        """
        Each part's kind is decided once, here, on its start: a multipart
        (one without a boundary too, its body read as one region), a
        message parsed as its child (not one base64-encoded), else a leaf.
        """
        message = (
            b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
            b"--b\r\nContent-Type: multipart/related\r\n\r\nno boundary\r\n"
            b"--b\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\ntext\r\n"
            b"--b\r\nContent-Type: message/global\r\nContent-Transfer-Encoding: base64\r\n\r\nU3ViamVjdA==\r\n"
            b"--b\r\nContent-Type: application/pdf\r\n\r\n%PDF\r\n--b--\r\n"
        )
        events = self.parseEverySplit(message)
        kinds = {e.path: e.kind for e in events if isinstance(e, PartStart)}
        self.assertEqual(kinds, {(): MULTIPART, (0,): MULTIPART, (1,): MESSAGE, (1, 0): LEAF, (2,): LEAF,
                                 (3,): LEAF})
        self.assertEqual(leafBodies(events)[(0,)], b"no boundary")

    def test_digest(self) -> None:
        """RFC 2046 5.1.5: in multipart/digest a part is message/rfc822 by default."""
        message = (
            b"Content-Type: multipart/digest; boundary=d\r\n\r\n"
            b"--d\r\n\r\nSubject: one\r\n\r\nfirst\r\n--d--\r\n"
        )
        events = self.parseEverySplit(message)
        starts = [e for e in events if isinstance(e, PartStart)]
        self.assertEqual(
            [(s.path, s.headers.contentType) for s in starts],
            [((), "multipart/digest"), ((0,), "message/rfc822"), ((0, 0), "text/plain")],
        )
        self.assertEqual(leafBodies(events), {(0, 0): b"first"})

    def test_headersOnly(self) -> None:
        """A header block with no blank line before the end of data."""
        message = b"Subject: x\r\nFrom: y"
        events = self.parseEverySplit(message)
        self.assertEqual(
            outline(events),
            [
                ("defect", "header block ends at end of data", len(message), False),
                ("start", (), "text/plain", 0, len(message)),
                ("end", (), len(message), len(message)),
            ],
        )
        start = events[1]
        assert isinstance(start, PartStart)
        self.assertEqual(start.headers.get("from"), "y")

    def test_empty(self) -> None:
        self.assertEqual(
            outline(parseChunks(b"", [])),
            [("start", (), "text/plain", 0, 0), ("end", (), 0, 0)],
        )

    def test_missingBlankLine(self) -> None:
        """A line that is no header field starts the body (as Python's email does)."""
        message = b"Subject: x\r\nthis is body\r\nmore\r\n"
        events = self.parseEverySplit(message)
        self.assertEqual(leafBodies(events), {(): b"this is body\r\nmore\r\n"})

    def test_delimiterInHeaders(self) -> None:
        """A delimiter before a part's blank line ends that (empty) part."""
        message = (
            b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
            b"--b\r\nContent-Type: text/plain\r\n--b\r\n\r\nx\r\n--b--\r\n"
        )
        events = self.parseEverySplit(message)
        self.assertEqual(leafBodies(events), {(1,): b"x"})
        ends = {e.path: e for e in events if isinstance(e, PartEnd)}
        starts = {e.path: e for e in events if isinstance(e, PartStart)}
        self.assertEqual(starts[(0,)].bodyStart, ends[(0,)].bodyEnd)

    def test_binaryAndLongLines(self) -> None:
        """NUL bytes, 8-bit data and lines far longer than any limit pass through."""
        payload = bytes(range(256)) * 4 + b"x" * 100000 + b"\r\n--" + b"-" * 20000 + b"\r\n\x00"
        message = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\n" + payload + b"\r\n--b--\r\n"
        events = parseChunks(message, [message])
        self.checkInvariants(message, events)
        self.assertEqual(leafBodies(events), {(0,): payload})
        for size in (1, 7, 4096):
            self.assertEqual(merged(parseChunks(message, split(message, size))), merged(events))

    def test_bareCR(self) -> None:
        """Old Mac line ends: one part, no crash."""
        message = b"Subject: x\rContent-Type: text/plain\r\rbody\r"
        events = self.parseEverySplit(message)
        self.assertEqual([type(e) for e in events if not isinstance(e, Defect)], [PartStart, PartEnd])

    def test_streamingBody(self) -> None:
        """Body bytes come out as they arrive, holding back only a line break."""
        parser = MIMEParser()
        events = parser.feed(b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\n")
        events = parser.feed(b"A" * 1000 + b"\r\n")
        self.assertEqual(events, [BodyData((0,), b"A" * 1000, 52)])
        events = parser.feed(b"B" * 10)
        self.assertEqual(events, [BodyData((0,), b"\r\n" + b"B" * 10, 1052)])
        self.assertEqual(parser.feed(b"\r\n--"), [])
        self.assertEqual(parser.feed(b"b-"), [])
        self.assertEqual(
            parser.feed(b"-\r\n"), [PartEnd((0,), 1064, 1066)]
        )

    def test_feedAfterClose(self) -> None:
        parser = MIMEParser()
        parser.close()
        self.assertRaises(ValueError, parser.feed, b"x")


def nestedMessages(depth: int) -> bytes:
    return b"Content-Type: message/rfc822\r\n\r\n" * depth + b"Subject: end\r\n\r\nbody\r\n"


class LimitTests(Checks):
    def test_depth(self) -> None:
        """Depth counts multiparts and messages; past the limit: fatal, then silence."""
        events = self.parseEverySplit(nestedMessages(5), maxDepth=5)
        self.assertEqual([e for e in events if isinstance(e, Defect)], [])
        message = nestedMessages(6)
        events = self.parseEverySplit(message, maxDepth=5)
        self.assertEqual(events[-1], Defect("nesting too deep", 6 * 32, True))
        self.assertEqual(len([e for e in events if isinstance(e, PartStart)]), 6)

    def test_defaultDepth(self) -> None:
        events = parseChunks(nestedMessages(101), [nestedMessages(101)])
        self.assertEqual(events[-1], Defect("nesting too deep", 101 * 32, True))
        parser = MIMEParser()
        parser.feed(nestedMessages(101))
        self.assertEqual(parser.feed(b"more"), [])
        self.assertEqual(parser.close(), [])
        self.assertIsNotNone(parser.fatal)

    def test_parts(self) -> None:
        body = b"--b\r\n\r\nx\r\n" * 4 + b"--b--\r\n"
        message = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + body
        events = self.parseEverySplit(message, maxParts=5)
        self.assertFalse([e for e in events if isinstance(e, Defect)])
        events = self.parseEverySplit(message, maxParts=4)
        defect = events[-1]
        # The fourth child's header block starts after 45 + 3 * 10 + 5 bytes.
        self.assertEqual(message[75:80], b"--b\r\n")
        self.assertEqual(defect, Defect("too many parts", 80, True))

    def test_headerBytes(self) -> None:
        message = b"Subject: " + b"x" * 200 + b"\r\n\r\nbody"
        events = self.parseEverySplit(message, maxHeaderBytes=100)
        self.assertEqual(events, [Defect("header block too large", 0, True)])
        fits = b"Subject: x\r\n\r\nbody"
        # The limit counts the block with its terminating empty line.
        events = self.parseEverySplit(fits, maxHeaderBytes=14)
        self.assertEqual(leafBodies(events), {(): b"body"})
        events = self.parseEverySplit(fits, maxHeaderBytes=13)
        self.assertTrue(events[-1].fatal)  # type: ignore[union-attr]


# -- hypothesis: random trees of parts -----------------------------------

_BODY_LINES = st.sampled_from(
    [b"text", b"", b"--", b"-- ", b"--x", b"\x00\xff", b"=3D", b"-", b"From here", b"a: b"]
)


@st.composite
def trees(draw: st.DrawFn, depth: int = 0) -> bytes:
    """A message (header block and body) whose boundaries are unique."""
    kind = draw(st.sampled_from(["leaf", "multipart", "message"] if depth < 3 else ["leaf"]))
    eol = draw(st.sampled_from([b"\r\n", b"\n"]))
    if kind == "leaf":
        lines = draw(st.lists(_BODY_LINES, max_size=4))
        return b"Content-Type: text/plain" + eol + eol + eol.join(lines)
    if kind == "message":
        return b"Content-Type: message/rfc822" + eol + eol + draw(trees(depth + 1))
    boundary = b"b%d-%d" % (depth, draw(st.integers(0, 9999)))
    children = draw(st.lists(trees(depth + 1), max_size=3))
    closed = draw(st.booleans())
    body = b"pre" + eol
    for child in children:
        body += b"--" + boundary + eol + child + eol
    if closed:
        body += b"--" + boundary + b"--" + eol + b"epi"
    return b"Content-Type: multipart/mixed; boundary=" + boundary + eol + eol + body


class PropertyTests(Checks):
    @settings(max_examples=300, deadline=None)
    @given(trees(), st.lists(st.integers(1, 64), min_size=1, max_size=20))
    def test_anyChunking(self, message: bytes, sizes: list[int]) -> None:
        """Any chunking yields the whole message's events, once merged."""
        whole = parseChunks(message, [message])
        self.checkInvariants(message, whole)
        chunks: list[bytes] = []
        position = 0
        index = 0
        while position < len(message):
            size = sizes[index % len(sizes)]
            chunks.append(message[position : position + size])
            position += size
            index += 1
        events = parseChunks(message, chunks)
        self.assertEqual(merged(events), merged(whole))
        self.checkInvariants(message, events)
        self.assertFalse([e for e in whole if isinstance(e, Defect) and e.fatal])


# -- the corpus of real mail ---------------------------------------------


def _pythonAttachment(part: email.message.Message) -> bool:
    return not part.is_multipart() and (
        part.get_content_disposition() == "attachment" or part.get_filename() is not None
    )


class CorpusTests(Checks):
    def test_corpus(self) -> None:
        """
        Every corpus message, parsed once in chunks of random sizes, keeps
        the invariants without a fatal defect; where Python's email finds
        attachments and sees the same part tree, our decoded leaves equal
        its decoded payloads.  (That chunking never changes the events is
        the golden, property and every-split tests' job, and
        ``test_sampleEverySplit``'s on real mail.)
        """
        files = corpusPaths()
        self.assertGreater(len(files), 300)
        counts: dict[str, int] = defaultdict(int)
        disagreements: list[str] = []
        rng = random.Random(2046)
        for name in files:
            with open(name, "rb") as handle:
                message = handle.read()
            chunks, at = [], 0
            while at < len(message):
                size = rng.randint(1, 4096)
                chunks.append(message[at:at + size])
                at += size
            events = parseChunks(message, chunks)
            self.checkInvariants(message, events)
            self.assertFalse([e for e in events if isinstance(e, Defect) and e.fatal], name)
            counts["messages"] += 1
            self.compareWithEmail(name, message, events, counts, disagreements)
        # Reported in the test log; the known disagreements are judged in
        # the module docstring of the report, not hidden.
        print(f"\ncorpus: {dict(counts)}")
        for line in disagreements:
            print("  " + line)
        self.assertGreater(counts["agree"], 500)
        self.assertLessEqual(counts["disagree"], 0)

    def test_sampleEverySplit(self) -> None:
        """
        A sample of the corpus (every sixth multipart message of at most
        700 bytes): whole, byte by byte and at every split point, the
        same events.
        """
        small = []
        for name in corpusPaths():
            with open(name, "rb") as handle:
                message = handle.read()
            if len(message) <= 700 and len([e for e in parseChunks(message, [message])
                                             if isinstance(e, PartStart)]) >= 3:
                small.append(message)
        sample = small[::6]
        self.assertGreaterEqual(len(sample), 6)
        for message in sample:
            self.parseEverySplit(message)

    def compareWithEmail(
        self,
        name: str,
        message: bytes,
        events: list[Event],
        counts: dict[str, int],
        disagreements: list[str],
    ) -> None:
        parsed = pythonEmail(message)
        theirs = list(parsed.walk())
        if not any(_pythonAttachment(part) for part in theirs):
            counts["no attachment"] += 1
            return
        starts = [e for e in events if isinstance(e, PartStart)]
        if len(starts) != len(theirs):
            counts["different tree"] += 1
            disagreements.append(f"tree: {os.path.basename(name)} {len(theirs)} vs {len(starts)}")
            return
        bodies = leafBodies(events)
        for part, start in zip(theirs, starts):
            if not _pythonAttachment(part) or start.headers.maintype == "multipart":
                continue
            decoder = decoderFor(start.headers.transferEncoding)
            if decoder is None:
                counts["unknown encoding"] += 1
                continue
            raw = bodies.get(start.path, b"")
            ours = decoder.feed(raw) + decoder.close()
            payload = part.get_payload(decode=True)
            if ours == payload:
                counts["agree"] += 1
            elif payload == raw or any(
                isinstance(d, email.errors.InvalidBase64LengthDefect) for d in part.defects
            ):
                # email gave up and returned the encoded text; we decoded.
                counts["email did not decode"] += 1
                disagreements.append(f"undecoded by email: {os.path.basename(name)} {start.path}")
            else:
                counts["disagree"] += 1
                disagreements.append(f"payload: {os.path.basename(name)} {start.path}")


class ImportTests(SynchronousTestCase):
    def test_sansIO(self) -> None:
        """Nothing in mime/ imports twisted.internet (sans-I/O core)."""
        folder = os.path.dirname(secudoc_gateway.mime.__file__)
        for path in glob.glob(os.path.join(folder, "*.py")):
            with open(path) as handle:
                tree = ast.parse(handle.read())
            for node in ast.walk(tree):
                names: list[Optional[str]] = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom):
                    names = [node.module]
                for module in names:
                    self.assertFalse((module or "").startswith("twisted"), f"{path}: {module}")
