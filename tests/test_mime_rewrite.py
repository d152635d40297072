"""
Tests for L{secudoc_gateway.mime.rewrite}: the link-mode plan, streamed
through L{secudoc_gateway.outgoing.OutgoingMessage} from a real spool,
and checked with Python's C{email} package.
"""

from __future__ import annotations

import base64
import html as htmlModule
import os
import quopri
import tracemalloc
from collections import Counter
from email.message import EmailMessage, Message
from typing import Any, Optional

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from secudoc_gateway.notices.banner import Banner, bannerFor
from secudoc_gateway.notices.mails import transferTemplate
from secudoc_gateway.mime.decode import decoderFor
from secudoc_gateway.mime.parser import BodyData, MIMEParser, PartStart
from secudoc_gateway.mime.rewrite import bannerTargets, effectiveRemoval, linkModePlan, transferModePlan
from secudoc_gateway.mime.structure import LEAF, CidScanner, Structure, attachments
from secudoc_gateway.outgoing import OutgoingMessage, SpoolRange, Transformed
from secudoc_gateway.spool import MemoryBudget, Spool

from tests.support import corpusPaths, pythonEmail
STAMP = b"Received: from x by gw; Fri, 14 Mar 2025 10:00:00 +0000\r\nX-SecuDoc: 1.0\r\nX-SecuDoc-Status: protected\r\n"
BANNER = bannerFor(
    "nl",
    "alice@example.test",
    [("rapport.pdf", 1234567), ("foto\u202egpj.exe", 2048)],
    "https://gw.example/t/TOKEN",
    1741957500.0,
    "Vertrouwelijk.",
    senderName="Alice Ærø",
    organisation="Van Dijk & Zonen",
    helpContact="helpdesk@example.test",
)
HTML_MARK = b"https://gw.example/t/TOKEN"


class Protected:
    """One run of the rewriter over a message, and what it produced."""

    def __init__(self, raw: bytes, chunk: int = 65536, stamp: bytes = STAMP, banner: Banner = BANNER,
                 memoryLimit: int = 1 << 20) -> None:
        self.raw = raw
        self.spool = Spool(MemoryBudget(1 << 30), memoryLimit=memoryLimit)
        for at in range(0, len(raw), chunk):
            self.spool.write(raw[at : at + chunk])
        self.structure = parseStructure(raw, chunk, self.cidScan)
        self.remove = {p.path for p in attachments(self.structure, self.cids)}
        self.plan = self.makePlan(banner, stamp)
        self.message = OutgoingMessage(self.spool, self.plan)
        self.chunks = list(self.message.chunks())
        self.out = b"".join(self.chunks)

    cids: set[str]

    def makePlan(self, banner: Banner, stamp: bytes) -> list[Any]:
        return linkModePlan(self.structure, self.remove, banner, stamp, len(self.raw))

    def cidScan(self, events: list[Any]) -> None:
        scanners: dict[tuple[int, ...], tuple[Any, CidScanner]] = {}
        for event in events:
            if isinstance(event, PartStart) and event.headers.contentType == "text/html":
                decoder = decoderFor(event.headers.transferEncoding)
                if decoder is not None:
                    scanners[event.path] = (decoder, CidScanner())
            elif isinstance(event, BodyData) and event.path in scanners:
                decoder, scanner = scanners[event.path]
                scanner.feed(decoder.feed(event.data))
        self.cids = set()
        for decoder, scanner in scanners.values():
            scanner.feed(decoder.close())
            self.cids |= scanner.close()

    @property
    def parsed(self) -> Message:
        return pythonEmail(self.out)


def parseStructure(raw: bytes, chunk: int = 65536, onEvents: Any = None) -> Structure:
    parser = MIMEParser()
    events = []
    for at in range(0, len(raw), chunk):
        events += parser.feed(raw[at : at + chunk])
    events += parser.close()
    structure = Structure()
    structure.addAll(events)
    if onEvents is not None:
        onEvents(events)
    return structure


def defects(message: Message) -> Counter[str]:
    return Counter(type(d).__name__ for p in message.walk() for d in p.defects)


def leafBodies(raw: bytes, structure: Structure, skip: set[tuple[int, ...]]) -> Counter[bytes]:
    """Raw bodies of the leaves not in or under ``skip``."""
    bodies: Counter[bytes] = Counter()
    for part in structure.parts:
        if part.kind == LEAF and not any(part.path[:n] in skip for n in range(len(part.path) + 1)):
            bodies[raw[part.bodyStart : part.bodyEnd]] += 1
    return bodies


def text(part: Message) -> str:
    return part.get_content().replace("\r\n", "\n")


class RewriteChecks:
    """Invariants every protected message must keep."""

    def assertProtected(self, run: Protected, bannerPart: bool = False, original: Optional[Message] = None) -> Message:
        """``original``: ``run.raw`` as Python's email read it, when the caller has it already."""
        test: SynchronousTestCase = self  # type: ignore[assignment]
        if original is None:
            original = pythonEmail(run.raw)
        result = run.parsed
        new = defects(result) - defects(original)
        test.assertEqual(new, Counter(), run.out[:3000])
        test.assertEqual(result.get_all("X-SecuDoc"), ["1.0"])
        test.assertTrue(run.out.startswith(STAMP if b"\r\n" in run.out[:200] else STAMP.replace(b"\r\n", b"\n")))
        # Every kept leaf but the banner targets is byte for byte in the output.
        removed = effectiveRemoval(run.structure, run.remove)
        plain, html = bannerTargets(run.structure, removed)
        targets = {t for t in (plain, html) if t is not None}
        kept = leafBodies(run.raw, run.structure, removed | targets)
        after = parseStructure(run.out)
        test.assertEqual(kept - leafBodies(run.out, after, set()), Counter())
        leaves = sum(1 for p in after.parts if p.kind == LEAF)
        test.assertEqual(leaves, sum(kept.values()) + len(targets) + (1 if not targets else 0))
        # The banner shows in the text and html bodies that took it, or in a part of its own.
        bodies = [p for p in result.walk() if p.get_content_type() in ("text/plain", "text/html")
                  and not p.is_attachment() and not p.is_multipart()]
        if not bodies:
            # Python cannot see into this multipart (before, too); we checked our own reading above.
            test.assertTrue(defects(original))
            return result
        if plain is not None or not targets:
            plains = [text(p) for p in bodies if p.get_content_type() == "text/plain"]
            test.assertEqual(sum(1 for t in plains if t.startswith(BANNER.text.rstrip("\n"))), 1, plains)
        if html is not None:
            htmls = [p.get_payload(decode=True) for p in bodies if p.get_content_type() == "text/html"]
            test.assertEqual(sum(1 for h in htmls if HTML_MARK in h), 1)
        return result


def build(message: EmailMessage) -> bytes:
    raw = bytes(message)
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def simple(**headers: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Alice <alice@example.test>"
    message["To"] = "bob@external.test"
    message["Subject"] = "Stukken"
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    return message


PDF = b"%PDF-1.4\n" + bytes(range(256)) * 8


class ScenarioTests(RewriteChecks, SynchronousTestCase):
    def test_textOnly(self) -> None:
        """A text/plain message: the body re-encoded in UTF-8 QP, banner first."""
        message = simple()
        message.set_content("Beste Bob,\n\nzie bijlage.\n")
        run = Protected(build(message))
        result = self.assertProtected(run)
        self.assertEqual(text(result), BANNER.text + "Beste Bob,\n\nzie bijlage.\n")
        self.assertEqual(result["Content-Transfer-Encoding"], "quoted-printable")
        self.assertEqual(result.get_content_charset(), "utf-8")
        self.assertEqual(result["Subject"], "Stukken")

    def test_htmlOnly(self) -> None:
        """The banner goes right after <body ...>, the part's headers stay."""
        message = simple()
        message.set_content('<html><head><title>t</title></head><BODY class="a>b" id=x><p>Hoi</p></BODY></html>\n', subtype="html")
        run = Protected(build(message))
        result = self.assertProtected(run)
        body = result.get_payload(decode=True)
        prefix = b'<html><head><title>t</title></head><BODY class="a>b" id=x>'
        self.assertTrue(body.startswith(prefix + BANNER.html.encode("ascii").replace(b"\n", b"\r\n")), body[:200])
        self.assertTrue(body.endswith(b"<p>Hoi</p></BODY></html>\r\n"))

    def test_htmlWithoutBodyTag(self) -> None:
        message = simple()
        message.set_content("<p>Hoi</p>\n", subtype="html")
        result = self.assertProtected(Protected(build(message)))
        self.assertTrue(result.get_payload(decode=True).startswith(b"<table "))

    def test_alternative(self) -> None:
        message = simple()
        message.set_content("Hoi Bob\n")
        message.add_alternative("<html><body><p>Hoi Bob</p></body></html>\n", subtype="html")
        message.add_attachment(PDF, maintype="application", subtype="pdf", filename="r.pdf")
        run = Protected(build(message))
        result = self.assertProtected(run)
        self.assertEqual(run.remove, {(1,)})
        self.assertEqual(result.get_content_type(), "multipart/mixed")
        self.assertEqual([p.get_content_type() for p in result.iter_parts()], ["multipart/alternative"])
        self.assertEqual(list(result.iter_attachments()), [])

    def test_relatedInlineImage(self) -> None:
        """A cid-referenced image stays, byte for byte, next to its HTML."""
        message = simple()
        message.set_content("Hoi\n")
        message.add_alternative('<html><body><img src="cid:logo@x"></body></html>\n', subtype="html")
        message.get_payload()[1].add_related(b"\x89PNG" * 300, "image", "png", cid="<logo@x>",
                                             filename="logo.png", disposition="inline")
        message.add_attachment(PDF, maintype="application", subtype="pdf", filename="r.pdf")
        run = Protected(build(message))
        result = self.assertProtected(run)
        self.assertEqual(run.remove, {(1,)})
        images = [p for p in result.walk() if p.get_content_type() == "image/png"]
        self.assertEqual(images[0].get_payload(decode=True), b"\x89PNG" * 300)

    def test_mixedOneAttachment(self) -> None:
        message = simple()
        message.set_content("Hoi\n")
        message.add_attachment(PDF, maintype="application", subtype="pdf", filename="r.pdf")
        result = self.assertProtected(Protected(build(message)))
        self.assertEqual(result.get_content_type(), "multipart/mixed")
        self.assertEqual([p.get_content_type() for p in result.iter_parts()], ["text/plain"])

    def test_mixedFiftyAttachments(self) -> None:
        message = simple()
        message.set_content("Hoi\n")
        for n in range(50):
            message.add_attachment(PDF + bytes([n]), maintype="application", subtype="pdf", filename=f"r{n}.pdf")
        run = Protected(build(message))
        self.assertEqual(len(run.remove), 50)
        result = self.assertProtected(run)
        self.assertEqual(len(list(result.iter_parts())), 1)
        self.assertLess(len(run.out), 2000)

    def test_attachmentsBetweenBodies(self) -> None:
        """First, middle and last children go; the kept ones stay in order."""
        message = simple()
        message.make_mixed()
        for n, kind in enumerate(["pdf", "text", "pdf", "calendar", "pdf"]):
            if kind == "pdf":
                message.add_attachment(PDF, maintype="application", subtype="pdf", filename=f"{n}.pdf")
            elif kind == "text":
                part = EmailMessage()
                part.set_content("inline text\n")
                message.attach(part)
            else:
                part = EmailMessage()
                part.set_content("BEGIN:VCALENDAR\nEND:VCALENDAR\n", subtype="calendar")
                message.attach(part)
        run = Protected(build(message))
        self.assertEqual(run.remove, {(0,), (2,), (4,)})
        result = self.assertProtected(run)
        self.assertEqual([p.get_content_type() for p in result.iter_parts()], ["text/plain", "text/calendar"])

    def test_rootIsAttachment(self) -> None:
        """A message that is only a PDF becomes a text/plain banner message."""
        message = simple()
        message.set_content(PDF, maintype="application", subtype="pdf", filename="r.pdf")
        run = Protected(build(message))
        self.assertEqual(run.remove, {()})
        result = self.assertProtected(run)
        self.assertEqual(result.get_content_type(), "text/plain")
        self.assertEqual(text(result), BANNER.text.rstrip("\n") + "\n")
        self.assertIsNone(result["Content-Disposition"])
        self.assertEqual(result.get_all("Content-Type"), ['text/plain; charset="utf-8"'])

    def test_allChildrenRemoved(self) -> None:
        """A multipart left with no child gets the banner part, not emptiness."""
        message = simple()
        message.make_mixed()
        message.add_attachment(PDF, maintype="application", subtype="pdf", filename="a.pdf")
        message.add_attachment(PDF, maintype="application", subtype="pdf", filename="b.pdf")
        result = self.assertProtected(Protected(build(message)))
        self.assertEqual(result.get_content_type(), "multipart/mixed")
        self.assertEqual([text(p) for p in result.iter_parts()], [BANNER.text.rstrip("\n") + "\n"])

    def test_noTextBody(self) -> None:
        """Mixed of an inline image and an attachment: banner part first."""
        message = simple()
        message.make_mixed()
        image = EmailMessage()
        image.set_content(b"\x89PNG" * 50, "image", "png", disposition="inline")
        message.attach(image)
        message.add_attachment(PDF, maintype="application", subtype="pdf", filename="b.pdf")
        run = Protected(build(message))
        result = self.assertProtected(run)
        self.assertEqual([p.get_content_type() for p in result.iter_parts()], ["text/plain", "image/png"])

    def test_noTextBodyWrapped(self) -> None:
        """A root that is a kept non-text leaf becomes multipart/mixed: banner, then it."""
        message = simple()
        message.set_content(b"\x89PNG" * 50, "image", "png", disposition="inline")
        run = Protected(build(message))
        self.assertEqual(run.remove, set())
        result = self.assertProtected(run)
        self.assertEqual(result.get_content_type(), "multipart/mixed")
        parts = list(result.iter_parts())
        self.assertEqual([p.get_content_type() for p in parts], ["text/plain", "image/png"])
        self.assertEqual(parts[1].get_payload(decode=True), b"\x89PNG" * 50)
        self.assertEqual(result.get_all("MIME-Version"), ["1.0"])

    def test_relatedWithoutTextWrapped(self) -> None:
        """multipart/related cannot take a first part (it is the root): wrapped."""
        raw = (
            b"From: a@example.test\r\nMIME-Version: 1.0\r\nContent-Type: multipart/related; boundary=r\r\n\r\n"
            b"--r\r\nContent-Type: image/png\r\nContent-Disposition: inline\r\n\r\nPNG\r\n--r--\r\n"
        )
        result = self.assertProtected(Protected(raw))
        self.assertEqual(result.get_content_type(), "multipart/mixed")
        self.assertEqual([p.get_content_type() for p in result.iter_parts()], ["text/plain", "multipart/related"])

    def test_attachedMessageRemovedWhole(self) -> None:
        inner = simple()
        inner.set_content("inner text\n")
        inner.add_attachment(PDF, maintype="application", subtype="pdf", filename="in.pdf")
        message = simple()
        message.set_content("outer\n")
        message.add_attachment(inner)
        run = Protected(build(message))
        self.assertEqual(run.remove, {(1,)})
        result = self.assertProtected(run)
        self.assertEqual([p.get_content_type() for p in result.walk()], ["multipart/mixed", "text/plain"])

    def test_attachedMessageSharesLineBreak(self) -> None:
        """
        An attached message whose last line is its own close delimiter,
        right before the outer one (no line break of its own), taken out
        last: the part before it keeps its body byte for byte.
        """
        raw = (
            b"From: a@example.test\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=o\r\n\r\n"
            b"--o\r\nContent-Type: text/plain\r\n\r\nHoi\r\n"
            b"--o\r\nContent-Type: image/png\r\nContent-Disposition: inline\r\n\r\nPNG\r\n"
            b"--o\r\nContent-Type: message/rfc822\r\nContent-Disposition: attachment\r\n\r\n"
            b"Subject: in\r\nContent-Type: multipart/mixed; boundary=i\r\n\r\n--i\r\n\r\nx\r\n--i--\r\n"
            b"--o--\r\n"
        )
        for run in (Protected(raw), Separated(raw)):
            self.assertEqual(run.remove, {(2,)})
            after = parseStructure(run.out)
            self.assertEqual(run.out[after[(1,)].bodyStart : after[(1,)].bodyEnd], b"PNG")
            self.assertEqual(defects(run.parsed), Counter())
        self.assertTrue(run.out.endswith(b"\r\nPNG\r\n--o--\r\n"))

    def test_lfOnly(self) -> None:
        """A message in bare LFs gets generated lines in bare LFs."""
        message = simple()
        message.set_content("Hoi\n")
        message.add_alternative("<html><body>Hoi</body></html>\n", subtype="html")
        message.add_attachment(PDF, maintype="application", subtype="pdf", filename="r.pdf")
        raw = bytes(message).replace(b"\r\n", b"\n")
        stamp = STAMP.replace(b"\r\n", b"\n")
        run = Protected(raw, stamp=stamp)
        self.assertNotIn(b"\r", run.out)
        original = pythonEmail(raw)
        result = run.parsed
        self.assertEqual(defects(result) - defects(original), Counter())
        self.assertTrue(text(result.get_body(("plain",))).startswith(BANNER.text))
        self.assertIn(HTML_MARK, result.get_body(("html",)).get_payload(decode=True))

    def test_quotedPrintableAndBase64Bodies(self) -> None:
        """Both bodies decoded, the HTML re-encoded in its own encoding."""
        html = "<html><body>" + "é lang " * 300 + "</body></html>\n"
        for plainCte, htmlCte in (("quoted-printable", "base64"), ("base64", "quoted-printable")):
            message = simple()
            message.set_content("Héllo " * 200 + "\n", cte=plainCte)
            message.add_alternative(html, subtype="html", cte=htmlCte)
            run = Protected(build(message))
            result = self.assertProtected(run)
            self.assertEqual(text(result.get_body(("plain",))), BANNER.text + "Héllo " * 200 + "\n")
            htmlPart = result.get_body(("html",))
            self.assertEqual(htmlPart["Content-Transfer-Encoding"], htmlCte)
            self.assertEqual(text(htmlPart), html.replace("<body>", "<body>" + BANNER.html))
            for line in run.out.split(b"\r\n"):
                self.assertLessEqual(len(line), 998)

    def test_legacyCharsets(self) -> None:
        """iso-8859-1 and windows-1252 bodies come out as the same text in UTF-8."""
        for charset, body in (("iso-8859-1", "Café crème\n"), ("windows-1252", "Prijs: € 10 – “netto”\n")):
            raw = (
                f"From: a@example.test\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset={charset}\r\n"
                "Content-Transfer-Encoding: 8bit\r\n\r\n"
            ).encode("ascii") + body.replace("\n", "\r\n").encode(charset)
            result = self.assertProtected(Protected(raw))
            self.assertEqual(text(result), BANNER.text + body)
            self.assertEqual(result.get_content_charset(), "utf-8")

    def test_undeclaredEightBit(self) -> None:
        """No charset: UTF-8 where it is, Windows-1252 where not."""
        raw = b"From: a@example.test\r\n\r\nna\xc3\xafef en caf\xe9\r\n"
        run = Protected(raw)
        self.assertEqual(text(run.parsed), BANNER.text + "naïef en café\n")
        self.assertEqual(run.parsed["MIME-Version"], "1.0")

    def test_formatFlowed(self) -> None:
        """format=flowed and delsp stay, and the banner does not flow into the text."""
        body = "Dit is een lange regel die  \r\ndoorloopt.\r\n> quote\r\n"
        raw = (
            b"From: a@example.test\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: text/plain; charset=us-ascii; format=flowed; delsp=yes\r\n\r\n"
        ) + body.encode("ascii")
        banner = Banner(text="From me >you \nsecond line\n\n", html="<p>x</p>")
        run = Protected(raw, banner=banner)
        result = run.parsed
        self.assertEqual(result.get_param("format"), "flowed")
        self.assertEqual(result.get_param("delsp"), "yes")
        self.assertEqual(text(result), " From me >you\nsecond line\n\n" + body.replace("\r\n", "\n"))

    def test_gatewayFieldsReplaced(self) -> None:
        """Incoming X-SecuDoc fields go; the stamp is on top; mbox From lines go."""
        raw = (
            b"From alice@example.test Fri Mar 14 10:00:00 2025\r\nX-SecuDoc: 0.9\r\nX-SecuDoc-Status: forged\r\n"
            b"Subject: x\r\nX-Secudoc-Transfer: abc\r\n\r\nbody\r\n"
        )
        run = Protected(raw)
        head = run.out.split(b"\r\n\r\n", 1)[0] + b"\r\n"
        self.assertTrue(head.startswith(STAMP))
        rest = head[len(STAMP) :]
        self.assertNotIn(b"SecuDoc", rest)
        self.assertNotIn(b"From alice", rest)
        self.assertIn(b"Subject: x\r\n", rest)

    def test_headersKeptByteForByte(self) -> None:
        """Other fields keep their folding and order."""
        raw = (
            b"Subject: =?utf-8?q?Caf=C3=A9?=\r\nTo: a@x,\r\n\tb@y\r\nDKIM-Signature: v=1; a=rsa-sha256;\r\n"
            b" b=abc\r\nContent-Type: text/html\r\n\r\n<body>x</body>\r\n"
        )
        run = Protected(raw)
        self.assertTrue(run.out.startswith(STAMP + raw.split(b"\r\n\r\n")[0] + b"\r\n\r\n<body>"))

    def test_unknownTransferEncodingLeft(self) -> None:
        """A text body in x-uuencode cannot take a banner: a banner part is added."""
        raw = (
            b"From: a@example.test\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n"
            b"Content-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 a\r\nend\r\n"
        )
        run = Protected(raw)
        result = self.assertProtected(run)
        parts = list(result.iter_parts())
        self.assertEqual(parts[1]["Content-Transfer-Encoding"], "x-uuencode")

    def test_everyChunkSize(self) -> None:
        """The output does not depend on how the spool hands out bytes."""
        message = simple()
        message.set_content("Héllo\n" * 50, cte="quoted-printable")
        message.add_alternative("<html><body>" + "x" * 500 + "</body></html>", subtype="html", cte="base64")
        raw = build(message)
        whole = Protected(raw).out
        for chunk in (1, 3, 17, 100):
            self.assertEqual(Protected(raw, chunk=chunk).out, whole)

    def test_largeTextStreamed(self) -> None:
        """
        A text body much larger than any buffer streams through: chunks
        stay bounded, and the estimate is close to the real size.
        """
        line = "Regel met tekst en één accent.\r\n"
        count = (3 << 20) // len(line)
        raw = (
            b"From: a@example.test\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Content-Transfer-Encoding: 8bit\r\n\r\n"
        ) + line.encode("utf-8") * count
        run = Protected(raw, memoryLimit=1 << 16)
        self.assertTrue(run.spool.onDisk)
        self.assertTrue(any(isinstance(s, Transformed) for s in run.plan))
        self.assertLessEqual(max(len(c) for c in run.chunks), 65536)
        self.assertFalse(run.message.exactSize)
        self.assertLess(abs(run.message.size - len(run.out)), len(run.out) // 4)
        result = run.parsed
        self.assertEqual(text(result), BANNER.text + line.replace("\r\n", "\n") * count)
        # Streaming again holds a few buffers, not the body.
        tracemalloc.start()
        try:
            total = sum(len(c) for c in run.message.chunks())
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        self.assertEqual(total, len(run.out))
        self.assertLess(peak, 1 << 20)

    def test_longLineWithoutBreaks(self) -> None:
        """One 200 KB line: soft breaks keep every line within 76 characters."""
        body = ("abcdéfgh=" * 25000).encode("utf-8")
        raw = b"From: a@example.test\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + body
        run = Protected(raw, chunk=4096)
        self.assertLessEqual(max(len(l) for l in run.out.split(b"\r\n\r\n", 1)[1].split(b"\r\n")), 76)
        self.assertEqual(text(run.parsed), BANNER.text + body.decode("utf-8"))


class OutgoingTests(SynchronousTestCase):
    def test_transformedSegment(self) -> None:
        """A transformed range streams through a fresh transform per reading."""
        spool = Spool(MemoryBudget(1 << 20))
        spool.write(b"0123456789")

        class Upper:
            def feed(self, data: bytes) -> bytes:
                return data.replace(b"3", b"three")

            def close(self) -> bytes:
                return b"!"

        segment = Transformed(SpoolRange(2, 8), Upper, 7)
        message = OutgoingMessage(spool, [b"<", segment, SpoolRange(8, 10), b"", SpoolRange(5, 5)])
        self.assertEqual(b"".join(message.chunks()), b"<2three4567!89")
        self.assertEqual(b"".join(message.chunks()), b"<2three4567!89")
        self.assertEqual(message.size, 1 + 7 + 2)
        self.assertFalse(message.exactSize)
        self.assertEqual(len(message.segments), 3)
        self.assertTrue(OutgoingMessage(spool, [SpoolRange(0, 3)]).exactSize)


# -- hypothesis: random trees of parts --------------------------------------

_WORDS = st.text(alphabet=st.sampled_from("abc éü€ \n<>&=.-"), min_size=0, max_size=200)


@st.composite
def leaves(draw: Any) -> dict[str, Any]:
    kind = draw(st.sampled_from(["plain", "html", "pdf", "image", "calendar", "inline-image"]))
    return {"kind": kind, "text": draw(_WORDS),
            "cte": draw(st.sampled_from(["quoted-printable", "base64", "8bit"])),
            "charset": draw(st.sampled_from(["utf-8", "iso-8859-15", "windows-1252"]))}


def trees() -> Any:
    return st.recursive(
        leaves(),
        lambda children: st.one_of(
            st.fixed_dictionaries({
                "kind": st.just("multi"),
                "subtype": st.sampled_from(["mixed", "alternative", "related"]),
                "children": st.lists(children, min_size=1, max_size=4),
            }),
            st.fixed_dictionaries({"kind": st.just("message"), "child": children,
                                   "inline": st.booleans()}),
        ),
        max_leaves=8,
    )


def render(node: dict[str, Any]) -> EmailMessage:
    part = EmailMessage()
    kind = node["kind"]
    if kind == "multi":
        part["Content-Type"] = f"multipart/{node['subtype']}"
        for child in node["children"]:
            part.attach(render(child))
        return part
    if kind == "message":
        inner = render(node["child"])
        inner["Subject"] = "inner"
        part.set_content(inner, disposition="inline" if node["inline"] else "attachment")
        return part
    content = node["text"].replace("\n", "\r\n") + "\r\n"
    charset = node["charset"]
    cte = node["cte"]
    if kind in ("plain", "html", "calendar"):
        subtype = {"plain": "plain", "html": "html", "calendar": "calendar"}[kind]
        if kind == "html":
            content = "<html><body>" + content + '<img src="cid:fixed@x"></body></html>'
        part.set_content(content.encode(charset), "text", subtype, cte=cte)
        part.set_param("charset", charset)
    elif kind == "pdf":
        part.set_content(content.encode("utf-8") + PDF, "application", "pdf", filename="r.pdf")
    elif kind == "image":
        part.set_content(content.encode("utf-8"), "image", "png", filename="i.png", disposition="inline")
    else:
        part.set_content(content.encode("utf-8"), "image", "png", cid="<fixed@x>", disposition="inline")
    return part


class GeneratedTests(RewriteChecks, SynchronousTestCase):
    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(trees(), st.sampled_from([b"\r\n", b"\n"]), st.integers(1, 500))
    def test_randomTrees(self, tree: dict[str, Any], eol: bytes, chunk: int) -> None:
        """Any tree: the output parses, keeps every kept leaf, shows the banner."""
        root = render(tree)
        root["From"] = "a@example.test"
        root["Subject"] = "random"
        if "MIME-Version" not in root:
            root["MIME-Version"] = "1.0"
        raw = bytes(root).replace(b"\r\n", b"\n")
        if eol == b"\r\n":
            raw = raw.replace(b"\n", b"\r\n")
        stamp = STAMP if eol == b"\r\n" else STAMP.replace(b"\r\n", b"\n")
        run = Protected(raw, chunk=chunk, stamp=stamp)
        original = pythonEmail(raw)
        result = run.parsed
        self.assertEqual(defects(result) - defects(original), Counter(), run.out)
        removed = effectiveRemoval(run.structure, run.remove)
        plain, html = bannerTargets(run.structure, removed)
        targets = {t for t in (plain, html) if t is not None}
        kept = leafBodies(raw, run.structure, removed | targets)
        self.assertEqual(kept - leafBodies(run.out, parseStructure(run.out), set()), Counter())
        if plain is not None:
            before = run.structure[plain]
            decoded = _decodedText(raw, before)
            plains = [p for p in result.walk() if p.get_content_type() == "text/plain" and not p.is_attachment()]
            self.assertIn(BANNER.text + decoded, [text(p) for p in plains])
        payloads = [p.get_payload(decode=True) or b"" for p in result.walk() if not p.is_multipart()]
        self.assertTrue(any(HTML_MARK in payload for payload in payloads))


def _decodedText(raw: bytes, part: Any) -> str:
    decoder = decoderFor(part.headers.transferEncoding)
    assert decoder is not None
    data = decoder.feed(raw[part.bodyStart : part.bodyEnd]) + decoder.close()
    charset: Optional[str] = part.headers.charset
    return data.decode(charset or "utf-8").replace("\r\n", "\n").replace("\r", "\n")


# -- separate mode: no banner --------------------------------------------------


class Separated(Protected):
    """The main message of separate mode: ``linkModePlan`` without a banner."""

    def makePlan(self, banner: Banner, stamp: bytes) -> list[Any]:
        return linkModePlan(self.structure, self.remove, None, stamp, len(self.raw))


class SeparateChecks:
    def assertSeparated(self, run: Protected, original: Optional[Message] = None) -> Message:
        """No new defects, one stamp, every kept leaf byte for byte, no banner anywhere."""
        test: SynchronousTestCase = self  # type: ignore[assignment]
        if original is None:
            original = pythonEmail(run.raw)
        result = run.parsed
        test.assertEqual(defects(result) - defects(original), Counter(), run.out[:3000])
        test.assertEqual(result.get_all("X-SecuDoc"), ["1.0"])
        test.assertTrue(run.out.startswith(STAMP if b"\r\n" in run.out[:200] else STAMP.replace(b"\r\n", b"\n")))
        removed = effectiveRemoval(run.structure, run.remove)
        kept = leafBodies(run.raw, run.structure, removed)
        after = parseStructure(run.out)
        test.assertEqual(kept - leafBodies(run.out, after, set()), Counter())
        added = sum(1 for p in after.parts if p.kind == LEAF) - sum(kept.values())
        test.assertIn(added, (0, 1))
        if added:
            # The empty body that keeps the message or its root multipart valid.
            test.assertIn(b"", leafBodies(run.out, after, set()))
        test.assertNotIn(HTML_MARK, run.out)
        test.assertNotIn(b"downloadlink", run.out)
        return result


class SeparateModeTests(SeparateChecks, SynchronousTestCase):
    def test_attachmentsGoNothingComes(self) -> None:
        """The text bodies stay byte for byte: no banner, no re-encoding."""
        message = simple()
        message.set_content("Hoi Bob\n")
        message.add_alternative("<html><body><p>Hoi Bob</p></body></html>\n", subtype="html")
        message.add_attachment(PDF, maintype="application", subtype="pdf", filename="r.pdf")
        raw = build(message)
        run = Separated(raw)
        result = self.assertSeparated(run)
        self.assertEqual([p.get_content_type() for p in result.walk()],
                         ["multipart/mixed", "multipart/alternative", "text/plain", "text/html"])
        self.assertEqual(text(result.get_body(("plain",))), "Hoi Bob\n")
        # Only the attachment, with the delimiter line before it, is gone.
        before, attachment = run.structure.children(())
        self.assertEqual(run.out, STAMP + raw[: before.bodyEnd] + raw[attachment.bodyEnd :])

    def test_textOnlyUnchanged(self) -> None:
        """Nothing to take out: the message as received, under the stamp."""
        message = simple()
        message.set_content("Hoi\n")
        raw = build(message)
        self.assertEqual(Separated(raw).out, STAMP + raw)

    def test_rootIsAttachment(self) -> None:
        """The whole message was the file: an empty text/plain body is left."""
        message = simple()
        message.set_content(PDF, maintype="application", subtype="pdf", filename="r.pdf")
        run = Separated(build(message))
        self.assertEqual(run.remove, {()})
        result = self.assertSeparated(run)
        self.assertEqual(result.get_content_type(), "text/plain")
        self.assertEqual(result.get_content(), "")
        self.assertEqual(result.get_all("Content-Type"), ['text/plain; charset="utf-8"'])
        self.assertIsNone(result["Content-Disposition"])
        self.assertTrue(run.out.endswith(b"\r\n\r\n"))

    def test_allChildrenRemoved(self) -> None:
        """A root multipart left with no child gets one empty text/plain part (RFC 2046 5.1.1)."""
        message = simple()
        message.make_mixed()
        message.add_attachment(PDF, maintype="application", subtype="pdf", filename="a.pdf")
        message.add_attachment(PDF, maintype="application", subtype="pdf", filename="b.pdf")
        result = self.assertSeparated(Separated(build(message)))
        self.assertEqual(result.get_content_type(), "multipart/mixed")
        parts = list(result.iter_parts())
        self.assertEqual([(p.get_content_type(), p.get_content()) for p in parts], [("text/plain", "")])

    def test_nonTextRootKept(self) -> None:
        """No text body is no reason to add one: an inline image stays as it was."""
        message = simple()
        message.set_content(b"\x89PNG" * 50, "image", "png", disposition="inline")
        raw = build(message)
        run = Separated(raw)
        self.assertEqual(run.out, STAMP + raw)
        self.assertSeparated(run)

    def test_lfOnly(self) -> None:
        message = simple()
        message.make_mixed()
        message.add_attachment(PDF, maintype="application", subtype="pdf", filename="a.pdf")
        raw = bytes(message).replace(b"\r\n", b"\n")
        run = Separated(raw, stamp=STAMP.replace(b"\r\n", b"\n"))
        self.assertNotIn(b"\r", run.out)
        self.assertSeparated(run)

    @settings(max_examples=75, deadline=None, suppress_health_check=list(HealthCheck))
    @given(trees(), st.sampled_from([b"\r\n", b"\n"]), st.integers(1, 500))
    def test_randomTrees(self, tree: dict[str, Any], eol: bytes, chunk: int) -> None:
        raw, stamp = renderRaw(tree, eol)
        self.assertSeparated(Separated(raw, chunk=chunk, stamp=stamp))


# -- transfer mode ---------------------------------------------------------------

TEMPLATE = {language: transferTemplate(BANNER, language) for language in ("nl", "en")}


def fixedBytes(n: int) -> bytes:
    """A random source that is not: each run draws the same boundary."""
    return bytes(range(n))


FIXED_BOUNDARY = "=_secudoc_" + bytes(range(16)).hex()


class Transferred(Protected):
    language = "nl"

    def makePlan(self, banner: Banner, stamp: bytes) -> list[Any]:
        return transferModePlan(
            self.structure, self.remove, banner, stamp, len(self.raw), transferTemplate(banner, self.language),
            randomBytes=fixedBytes,
        )


def preText(htmlText: str) -> str:
    """What the HTML side shows as the message: the <pre>'s content, unescaped."""
    start = htmlText.index("<pre ")
    start = htmlText.index(">\n", start) + 2
    return htmlModule.unescape(htmlText[start : htmlText.rindex("</pre>")])


class TransferChecks:
    def assertTransferred(self, run: Protected, message: Optional[str], language: str = "nl") -> Message:
        """
        The top header block with the stamp, a multipart/alternative of
        the template with ``message`` (None: no text body at all) in
        plain text and in HTML, the link once in each, nothing else.
        """
        test: SynchronousTestCase = self  # type: ignore[assignment]
        template = TEMPLATE[language]
        original = pythonEmail(run.raw)
        result = run.parsed
        originalHeaderDefects = Counter(type(d).__name__ for d in original.defects)
        test.assertEqual(defects(result) - originalHeaderDefects, Counter(), run.out[:3000])
        eol = b"\r\n" if b"\r\n" in run.out[:200] else b"\n"
        test.assertTrue(run.out.startswith(STAMP.replace(b"\r\n", eol)))
        if eol == b"\n":
            test.assertNotIn(b"\r", run.out)
        test.assertEqual(result.get_all("X-SecuDoc"), ["1.0"])
        test.assertEqual(result.get_all("MIME-Version"), ["1.0"])
        test.assertEqual(len(result.get_all("Content-Type")), 1)
        test.assertEqual(result.get_content_type(), "multipart/alternative")
        test.assertEqual([k for k in result.keys() if k.lower().startswith("content-") and k.lower() != "content-type"],
                         [])
        test.assertEqual(result["Subject"], original["Subject"])
        parts = list(result.iter_parts())
        test.assertEqual([p.get_content_type() for p in parts], ["text/plain", "text/html"])
        test.assertEqual(len(list(result.walk())), 3)
        plain, htmlPart = parts
        test.assertEqual(plain["Content-Transfer-Encoding"], "quoted-printable")
        plainText = text(plain)
        htmlText = text(htmlPart)
        test.assertEqual(plainText.count("https://gw.example/t/TOKEN"), 1)
        test.assertEqual(htmlText.count('href="https://gw.example/t/TOKEN"'), 2)  # the button and the fallback
        if message is None:
            test.assertEqual(plainText, template.textAlone)
            test.assertEqual(htmlText, template.htmlAlone)
        else:
            test.assertEqual(plainText, template.text + message)
            test.assertTrue(htmlText.startswith(template.htmlHead))
            test.assertTrue(htmlText.endswith(template.htmlTail))
            test.assertEqual(preText(htmlText), message)
        return result


def rawMessage(body: bytes, contentType: str, cte: str, attach: bool = True) -> bytes:
    """A multipart/mixed of a text body as given and a PDF."""
    head = b"From: a@example.test\r\nTo: b@external.test\r\nSubject: Stukken\r\nMIME-Version: 1.0\r\n"
    if not attach:
        return head + f"Content-Type: {contentType}\r\nContent-Transfer-Encoding: {cte}\r\n\r\n".encode() + body
    return (
        head + b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
        + f"Content-Type: {contentType}\r\nContent-Transfer-Encoding: {cte}\r\n\r\n".encode() + body
        + b'\r\n--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename="r.pdf"\r\n'
        + b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(PDF).replace(b"\n", b"\r\n")
        + b"--b--\r\n"
    )


class TransferModeTests(TransferChecks, SynchronousTestCase):
    def test_alternativeWithAttachments(self) -> None:
        """The plain text is the message in both sides; the original HTML, image and PDF go."""
        message = simple()
        message.set_content("Beste Bob,\n\n<zie> bijlage & groet.\n")
        message.add_alternative('<html><body><p>ORIGINAL HTML</p><img src="cid:logo@x"></body></html>\n',
                                subtype="html")
        message.get_payload()[1].add_related(b"\x89PNG" * 300, "image", "png", cid="<logo@x>", disposition="inline")
        message.add_attachment(PDF, maintype="application", subtype="pdf", filename="r.pdf")
        run = Transferred(build(message))
        result = self.assertTransferred(run, "Beste Bob,\n\n<zie> bijlage & groet.\n")
        self.assertNotIn(b"ORIGINAL HTML", run.out)
        self.assertNotIn(b"PNG", run.out)
        self.assertIn(b"&lt;zie&gt; bijlage &amp; groet.", run.out)
        self.assertEqual(result["From"], "Alice <alice@example.test>")

    def test_encodingsAndCharsets(self) -> None:
        """The text is decoded from its transfer encoding and charset, whatever they are."""
        body = "Café crème <b>&amp;</b>\nregel twee\n"
        for cte, charset in (
            ("8bit", "utf-8"), ("8bit", "iso-8859-1"), ("quoted-printable", "utf-8"),
            ("quoted-printable", "iso-8859-1"), ("base64", "utf-8"), ("base64", "iso-8859-1"),
        ):
            data = body.encode(charset)
            if cte == "base64":
                data = base64.encodebytes(data.replace(b"\n", b"\r\n")).replace(b"\n", b"\r\n")
            elif cte == "quoted-printable":
                data = quopri.encodestring(data).replace(b"\n", b"\r\n")
            else:
                data = data.replace(b"\n", b"\r\n")
            for attach in (True, False):
                raw = rawMessage(data, f"text/plain; charset={charset}", cte, attach)
                try:
                    self.assertTransferred(Transferred(raw), body)
                except Exception as e:
                    raise AssertionError(f"{cte} {charset} {attach}: {e}") from e

    def test_windows1252(self) -> None:
        body = "Prijs: € 10 – “netto”\n"
        raw = rawMessage(body.replace("\n", "\r\n").encode("windows-1252"), "text/plain; charset=windows-1252", "8bit")
        run = Transferred(raw)
        self.assertTransferred(run, body)
        self.assertTrue(run.parsed.get_body(("html",)).get_content().isascii())

    def test_english(self) -> None:
        run = Transferred.__new__(Transferred)
        run.language = "en"
        Transferred.__init__(run, rawMessage(b"Hello\r\n", "text/plain", "7bit"))
        result = self.assertTransferred(run, "Hello\n", "en")
        self.assertIn("Message:", text(result.get_body(("plain",))))

    def test_htmlOnly(self) -> None:
        """Only an HTML body: it stays HTML, in its own encoding, the template after <body>."""
        original = '<html><head><style>p{}</style></head><body class="x"><p>Hoi</p></body></html>\r\n'
        data = base64.encodebytes(original.encode("iso-8859-15")).replace(b"\n", b"\r\n")
        run = Transferred(rawMessage(data, "text/html; charset=iso-8859-15", "base64"))
        result = run.parsed
        self.assertEqual(defects(result), Counter())
        plain, htmlPart = result.iter_parts()
        self.assertEqual(text(plain), TEMPLATE["nl"].textHtmlOnly)
        self.assertEqual(htmlPart["Content-Transfer-Encoding"], "base64")
        self.assertEqual(htmlPart.get_content_charset(), "iso-8859-15")
        expected = original.replace('<body class="x">', '<body class="x">' + TEMPLATE["nl"].htmlInsert)
        self.assertEqual(htmlPart.get_payload(decode=True).decode("ascii"), expected.replace("\n", "\r\n").replace(
            "\r\r\n", "\r\n"))
        self.assertNotIn(b"%PDF", run.out)

    def test_noTextBody(self) -> None:
        """The whole message was the file: the template alone."""
        message = simple()
        message.set_content(PDF, maintype="application", subtype="pdf", filename="r.pdf")
        run = Transferred(build(message))
        self.assertEqual(run.remove, {()})
        self.assertTransferred(run, None)
        self.assertNotIn(b"Content-Disposition", run.out)

    def test_nested(self) -> None:
        """The first text/plain of mixed > related > alternative is the message."""
        raw = (
            b"From: a@example.test\r\nSubject: s\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=m\r\n"
            b"\r\n--m\r\nContent-Type: multipart/related; boundary=r\r\n"
            b"\r\n--r\r\nContent-Type: multipart/alternative; boundary=a\r\n"
            b"\r\n--a\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n"
            b"\r\ndiep genest\r\n\r\n"
            b"--a\r\nContent-Type: text/html\r\n\r\n<html><body><img src=3D\"cid:i@x\"></body></html>\r\n--a--\r\n"
            b"\r\n--r\r\nContent-Type: image/png\r\nContent-ID: <i@x>\r\nContent-Disposition: inline\r\n\r\nPNG\r\n"
            b"--r--\r\n"
            b"\r\n--m\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=r.pdf\r\n\r\n%PDF\r\n"
            b"--m\r\nContent-Type: text/plain\r\n\r\nsecond text body\r\n--m--\r\n"
        )
        run = Transferred(raw)
        self.assertEqual(run.remove, {(1,)})
        self.assertTransferred(run, "diep genest\n")
        self.assertNotIn(b"second text body", run.out)

    def test_attachedTextIsNotTheMessage(self) -> None:
        """A text/plain attachment is a file, not the message."""
        message = simple()
        message.make_mixed()
        message.add_attachment("notes\n", filename="notes.txt")
        run = Transferred(build(message))
        self.assertTransferred(run, None)
        self.assertNotIn(b"notes", run.out.split(b"\r\n\r\n", 1)[1])

    def test_headerBlock(self) -> None:
        """Original fields stay in order; Content-* and incoming gateway fields go."""
        raw = (
            b"X-SecuDoc: 0.9\r\nSubject: x\r\nContent-Type: text/plain; charset=utf-8\r\nTo: a@x,\r\n\tb@y\r\n"
            b"Content-Disposition: inline\r\nContent-Transfer-Encoding: 8bit\r\nMIME-Version: 1.0\r\n\r\nbody\r\n"
        )
        run = Transferred(raw)
        head = run.out.split(b"\r\n\r\n", 1)[0] + b"\r\n"
        self.assertEqual(head, STAMP + b'Subject: x\r\nContent-Type: multipart/alternative; '
                         b'boundary="' + FIXED_BOUNDARY.encode() + b'"\r\nTo: a@x,\r\n\tb@y\r\nMIME-Version: 1.0\r\n')
        self.assertTransferred(run, "body\n")

    def test_lfOnly(self) -> None:
        message = simple()
        message.set_content("Hoi\n")
        message.add_attachment(PDF, maintype="application", subtype="pdf", filename="r.pdf")
        raw = bytes(message).replace(b"\r\n", b"\n")
        run = Transferred(raw, stamp=STAMP.replace(b"\r\n", b"\n"))
        self.assertTransferred(run, "Hoi\n")

    def test_formatFlowed(self) -> None:
        """format=flowed stays declared, and the template does not flow into the text."""
        body = "Dit is een lange regel die  \r\ndoorloopt.\r\n"
        raw = rawMessage(body.encode("ascii"), "text/plain; charset=us-ascii; format=flowed", "7bit")
        run = Transferred(raw)
        plain = run.parsed.get_body(("plain",))
        self.assertEqual(plain.get_param("format"), "flowed")
        for line in text(plain).split("\n")[: TEMPLATE["nl"].text.count("\n")]:
            self.assertEqual(line, line.rstrip(" "))
        self.assertTrue(text(plain).endswith(body.replace("\r\n", "\n")))

    def test_everyChunkSize(self) -> None:
        message = simple()
        message.set_content("Héllo <&>\n" * 50, cte="quoted-printable")
        message.add_attachment(PDF, maintype="application", subtype="pdf", filename="r.pdf")
        raw = build(message)
        whole = Transferred(raw).out
        for chunk in (1, 3, 17, 100):
            self.assertEqual(Transferred(raw, chunk=chunk).out, whole)

    def test_largeTextStreamed(self) -> None:
        """
        A text body of a few MB goes through both sides streamed: chunks
        stay bounded, memory too, and the estimate is close.
        """
        line = "Regel met <tekst> & één accent.\r\n"
        count = (3 << 20) // len(line)
        raw = rawMessage(line.encode("utf-8") * count, "text/plain; charset=utf-8", "8bit")
        run = Transferred(raw, memoryLimit=1 << 16)
        self.assertTrue(run.spool.onDisk)
        self.assertEqual(sum(1 for s in run.plan if isinstance(s, Transformed)), 2)
        self.assertLessEqual(max(len(c) for c in run.chunks), 65536)
        self.assertFalse(run.message.exactSize)
        self.assertLess(abs(run.message.size - len(run.out)), len(run.out) // 4)
        self.assertTransferred(run, line.replace("\r\n", "\n") * count)
        tracemalloc.start()
        try:
            total = sum(len(c) for c in run.message.chunks())
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        self.assertEqual(total, len(run.out))
        self.assertLess(peak, 1 << 20)

    @settings(max_examples=75, deadline=None, suppress_health_check=list(HealthCheck))
    @given(trees(), st.sampled_from([b"\r\n", b"\n"]), st.integers(1, 500))
    def test_randomTrees(self, tree: dict[str, Any], eol: bytes, chunk: int) -> None:
        """Any tree: the first text/plain body, decoded, is the message."""
        raw, stamp = renderRaw(tree, eol)
        run = Transferred(raw, chunk=chunk, stamp=stamp)
        plain, htmlPath = bannerTargets(run.structure, effectiveRemoval(run.structure, run.remove))
        if plain is not None:
            self.assertTransferred(run, _decodedText(raw, run.structure[plain]))
        elif htmlPath is None:
            self.assertTransferred(run, None)
        else:
            result = run.parsed
            self.assertEqual(defects(result), Counter())
            self.assertEqual(text(result.get_body(("plain",))), TEMPLATE["nl"].textHtmlOnly)
            self.assertIn(HTML_MARK, result.get_body(("html",)).get_payload(decode=True))


class CorpusTests(RewriteChecks, SeparateChecks, TransferChecks, SynchronousTestCase):
    """
    Every message of the shared corpus, all its attachments taken out,
    in link, separate and transfer mode: each result parses without new
    defects and keeps everything else.  One pass over the corpus:
    Python's reading of each original serves the three modes.
    """

    # Garbage in: header-only messages in mixed line endings, read by
    # Python differently from us before and after.
    KNOWN = {"sisimai__lhost-bigfoot-01.eml", "sisimai__mac-lhost-amazonworkmail-01.eml"}

    def assertTransferredCorpus(self, run: Protected, original: Message) -> None:
        """The template as a multipart/alternative, the link in both; no defect but the original's header's."""
        result = run.parsed
        headerDefects = Counter(type(d).__name__ for d in original.defects)
        self.assertEqual(defects(result) - headerDefects, Counter())
        self.assertEqual(result.get_all("X-SecuDoc"), ["1.0"])
        self.assertEqual(result.get_content_type(), "multipart/alternative")
        self.assertEqual(len(list(result.walk())), 3)
        payloads = [p.get_payload(decode=True) or b"" for p in result.iter_parts()]
        self.assertEqual([HTML_MARK in p for p in payloads], [True, True])

    def test_corpus(self) -> None:
        paths = corpusPaths()
        self.assertGreater(len(paths), 300)
        modes = ((Protected, self.assertProtected), (Separated, self.assertSeparated),
                 (Transferred, self.assertTransferredCorpus))
        checked: Counter[str] = Counter()
        for path in paths:
            name = os.path.basename(path)
            if name in self.KNOWN:
                continue
            with open(path, "rb") as f:
                raw = f.read()
            stamp = STAMP if b"\r\n" in raw[:4096] else STAMP.replace(b"\r\n", b"\n")
            original: Optional[Message] = None
            for kind, check in modes:
                run = kind(raw, chunk=7919, stamp=stamp)
                if run.structure.fatal is not None:
                    break
                if original is None:
                    original = pythonEmail(raw)
                try:
                    check(run, original=original)
                except Exception as e:
                    raise AssertionError(f"{kind.__name__} {name}: {e}") from e
                checked[kind.__name__] += 1
        self.assertEqual(set(checked), {"Protected", "Separated", "Transferred"})
        self.assertGreater(min(checked.values()), 300, checked)


def renderRaw(tree: dict[str, Any], eol: bytes) -> tuple[bytes, bytes]:
    root = render(tree)
    root["From"] = "a@example.test"
    root["Subject"] = "random"
    if "MIME-Version" not in root:
        root["MIME-Version"] = "1.0"
    raw = bytes(root).replace(b"\r\n", b"\n")
    if eol == b"\r\n":
        raw = raw.replace(b"\n", b"\r\n")
    return raw, STAMP if eol == b"\r\n" else STAMP.replace(b"\r\n", b"\n")


class HasAttachTests(RewriteChecks, SynchronousTestCase):
    """X-MS-Has-Attach goes when no part shown as an attachment is left (SPEC 6)."""

    def rewritten(self, message: EmailMessage, plan: type = Protected, **kwargs: Any) -> Message:
        return plan(build(message), **kwargs).parsed

    def test_removedWhenAllGo(self) -> None:
        message = simple(X_MS_Has_Attach="yes", X_MS_TNEF_Correlator="")
        message.set_content("Hoi\n")
        message.add_attachment(PDF, maintype="application", subtype="pdf", filename="r.pdf")
        for plan in (Protected, Transferred):
            result = self.rewritten(message, plan)
            self.assertIsNone(result["X-MS-Has-Attach"])
            self.assertEqual(result["X-MS-TNEF-Correlator"], "")
        separate = Protected(build(message), banner=None)  # type: ignore[arg-type]
        self.assertIsNone(separate.parsed["X-MS-Has-Attach"])
        self.assertNotIn(HTML_MARK, separate.out)

    def test_removedWhenTheMessageWasTheAttachment(self) -> None:
        message = simple(X_MS_Has_Attach="yes")
        message.set_content(PDF, maintype="application", subtype="pdf", disposition="attachment", filename="r.pdf")
        self.assertIsNone(self.rewritten(message)["X-MS-Has-Attach"])

    def test_keptWhileAnAttachmentStays(self) -> None:
        """An attachment the gateway cannot decode stays, and so does the flag."""
        message = simple(X_MS_Has_Attach="yes")
        message.set_content("Hoi\n")
        message.add_attachment(PDF, maintype="application", subtype="pdf", filename="r.pdf")
        message.add_attachment(b"begin 644 x\n`\nend\n", maintype="application", subtype="octet-stream",
                               filename="x.uu", cte="7bit")
        raw = build(message).replace(b"Content-Transfer-Encoding: 7bit\r\nContent-Disposition: attachment;"
                                     b' filename="x.uu"', b"Content-Transfer-Encoding: x-uuencode\r\n"
                                     b'Content-Disposition: attachment; filename="x.uu"')
        self.assertIn(b"x-uuencode", raw)
        self.assertEqual(Protected(raw).parsed["X-MS-Has-Attach"], "yes")

    def test_inlineImageIsNoAttachment(self) -> None:
        """A logo an HTML body shows stays, yet the message has no attachment any more."""
        message = simple(X_MS_Has_Attach="yes")
        message.set_content("Hoi\n")
        message.add_alternative('<html><body><img src="cid:logo@x"></body></html>\n', subtype="html")
        message.get_payload()[1].add_related(b"\x89PNG" + bytes(2000), maintype="image", subtype="png",
                                             cid="<logo@x>", disposition="inline")
        message.add_attachment(PDF, maintype="application", subtype="pdf", filename="r.pdf")
        result = self.rewritten(message)
        self.assertIsNone(result["X-MS-Has-Attach"])
        self.assertIn(b"cid:logo@x", Protected(build(message)).out)
