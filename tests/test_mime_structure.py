"""
Tests for L{secudoc_gateway.mime.structure}: the part records built
from parser events, SPEC 5's attachment rule and the cid: scanner.
"""

from __future__ import annotations

from email.message import EmailMessage
from twisted.trial.unittest import SynchronousTestCase

from secudoc_gateway.mime.parser import MIMEParser
from secudoc_gateway.mime.structure import (
    LEAF,
    MAX_CID_LENGTH,
    MESSAGE,
    MULTIPART,
    CidScanner,
    Structure,
    attachments,
    isAttachment,
    normalizeCid,
)


def structureOf(raw: bytes, chunk: int = 4096) -> Structure:
    parser = MIMEParser()
    structure = Structure()
    for at in range(0, len(raw), chunk):
        structure.addAll(parser.feed(raw[at : at + chunk]))
    structure.addAll(parser.close())
    return structure


def part(headers: str, body: str = "x\r\n") -> str:
    return headers.replace("\n", "\r\n") + "\r\n\r\n" + body


def mixed(*parts: str, boundary: str = "b0", root: str = "multipart/mixed") -> bytes:
    text = f"From: a@example.test\r\nMIME-Version: 1.0\r\nContent-Type: {root}; boundary=\"{boundary}\"\r\n\r\n"
    for p in parts:
        text += f"--{boundary}\r\n{p}\r\n"
    text += f"--{boundary}--\r\n"
    return text.encode("utf-8")


def single(headers: str, body: str = "x\r\n") -> bytes:
    return ("From: a@example.test\r\n" + part(headers, body)).encode("utf-8")


class StructureTests(SynchronousTestCase):
    def test_kindIsTheParsers(self) -> None:
        """The structure keeps the kind the parser decided on each part's start; it decides none itself."""
        from secudoc_gateway.mime.parser import PartStart

        raw = mixed(part("Content-Type: multipart/related"), "Content-Type: message/rfc822\r\n\r\nSubject: i\r\n\r\nx",
                    part("Content-Type: message/rfc822\nContent-Transfer-Encoding: base64", "U3ViamVjdA==\r\n"))
        parser = MIMEParser()
        structure = Structure()
        events = parser.feed(raw) + parser.close()
        structure.addAll(events)
        decided = {e.path: e.kind for e in events if isinstance(e, PartStart)}
        self.assertEqual({p.path: p.kind for p in structure.parts}, decided)
        self.assertEqual([decided[path] for path in [(0,), (1,), (2,)]], [MULTIPART, MESSAGE, LEAF])

    def test_partsInOrderWithKindsAndParents(self) -> None:
        """
        Every part is recorded in message order with its kind and
        parent; message/rfc822 content is the child C{path + (0,)}.
        """
        inner = "Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\ninner body\r\n"
        alternative = (
            'Content-Type: multipart/alternative; boundary="b1"\r\n\r\n'
            "--b1\r\nContent-Type: text/plain\r\n\r\nplain\r\n"
            "--b1\r\nContent-Type: text/html\r\n\r\n<p>html</p>\r\n--b1--"
        )
        raw = mixed(alternative, inner)
        structure = structureOf(raw)
        self.assertTrue(structure.complete)
        self.assertEqual(
            [(p.path, p.kind, p.parent) for p in structure.parts],
            [
                ((), MULTIPART, None),
                ((0,), MULTIPART, ()),
                ((0, 0), LEAF, (0,)),
                ((0, 1), LEAF, (0,)),
                ((1,), MESSAGE, ()),
                ((1, 0), LEAF, (1,)),
            ],
        )
        self.assertEqual([p.path for p in structure.children((0,))], [(0, 0), (0, 1)])
        self.assertEqual([p.path for p in structure.ancestors((0, 1))], [(0,), ()])
        plain = structure[(0, 0)]
        self.assertEqual(raw[plain.bodyStart : plain.bodyEnd], b"plain")
        self.assertEqual(raw[plain.headerStart : plain.bodyStart], b"Content-Type: text/plain\r\n\r\n")
        self.assertEqual(raw[plain.end : plain.end + 4], b"--b1")
        message = structure[(1,)]
        self.assertEqual(message.bodyStart, structure[(1, 0)].headerStart)
        self.assertIn((1, 0), structure)
        self.assertNotIn((7,), structure)
        self.assertEqual(structure.root.bodyEnd, len(raw))

    def test_incompleteUntilClosed(self) -> None:
        """Parts appear when they end; the root ends at C{close}."""
        parser = MIMEParser()
        structure = Structure()
        structure.addAll(parser.feed(b"Subject: x\r\n\r\nbody"))
        self.assertFalse(structure.complete)
        self.assertEqual(structure.parts, [])
        structure.addAll(parser.close())
        self.assertTrue(structure.complete)
        self.assertEqual(list(structure), [structure.root])

    def test_defectsRecorded(self) -> None:
        """Defects are kept, a fatal one separately."""
        parser = MIMEParser(maxParts=2)
        structure = Structure()
        structure.addAll(parser.feed(mixed(part("Content-Type: text/plain"), part("Content-Type: text/plain"))))
        structure.addAll(parser.close())
        self.assertIsNotNone(structure.fatal)
        self.assertIn(structure.fatal, structure.defects)

    def test_rejectsNonEvents(self) -> None:
        self.assertRaises(TypeError, Structure().add, "nonsense")  # type: ignore[arg-type]

    def test_sameForEverySplit(self) -> None:
        """The record does not depend on how the bytes arrived."""
        raw = mixed(part("Content-Type: text/plain"), part("Content-Type: application/pdf", "QUJD\r\n"))
        whole = structureOf(raw, len(raw))
        for size in (1, 2, 3, 7, 64):
            self.assertEqual(structureOf(raw, size).parts, whole.parts)


class AttachmentTests(SynchronousTestCase):
    """SPEC 5, one case each."""

    def classify(self, headers: str, cids: frozenset[str] = frozenset(), body: str = "QUJD\r\n") -> bool:
        raw = mixed(part("Content-Type: text/plain", "hello\r\n"), part(headers, body))
        structure = structureOf(raw)
        self.assertFalse(isAttachment(structure[(0,)], structure, cids))
        self.assertFalse(isAttachment(structure.root, structure, cids))
        return isAttachment(structure[(1,)], structure, cids)

    def test_dispositionAttachment(self) -> None:
        self.assertTrue(self.classify("Content-Type: text/plain\nContent-Disposition: attachment"))

    def test_filenameOnTextPlain(self) -> None:
        self.assertTrue(self.classify('Content-Type: text/plain; name="notes.txt"'))
        self.assertTrue(self.classify('Content-Type: text/html\nContent-Disposition: inline; filename="a.html"'))

    def test_rfc2231AndRfc2047Names(self) -> None:
        self.assertTrue(self.classify("Content-Type: text/plain\nContent-Disposition: inline; filename*=utf-8''r%C3%A9.txt"))
        self.assertTrue(self.classify('Content-Type: text/plain; name="=?utf-8?q?r=C3=A9.txt?="'))

    def test_plainAndHtmlBodies(self) -> None:
        self.assertFalse(self.classify("Content-Type: text/plain"))
        self.assertFalse(self.classify("Content-Type: text/html; charset=utf-8"))
        self.assertFalse(self.classify("Content-Type: text/html\nContent-Disposition: inline"))

    def test_otherTypeNotInline(self) -> None:
        """Neither text/plain nor text/html, and not inline."""
        self.assertTrue(self.classify("Content-Type: application/pdf\nContent-Transfer-Encoding: base64"))
        self.assertTrue(self.classify("Content-Type: image/png\nContent-Transfer-Encoding: base64"))
        self.assertTrue(self.classify("Content-Type: text/csv"))

    def test_inlineWithoutFilename(self) -> None:
        """An inline image without a file name is no attachment."""
        self.assertFalse(self.classify("Content-Type: image/png\nContent-Disposition: inline\nContent-Transfer-Encoding: base64"))
        self.assertFalse(self.classify("Content-Type: application/pdf\nContent-Disposition: inline"))

    def test_inlineWithFilename(self) -> None:
        """An inline image with a file name is one, unless cid-referenced."""
        headers = (
            'Content-Type: image/png; name="logo.png"\nContent-Disposition: inline; filename="logo.png"\n'
            "Content-ID: <logo@x>\nContent-Transfer-Encoding: base64"
        )
        self.assertTrue(self.classify(headers))
        self.assertFalse(self.classify(headers, frozenset(["logo@x"])))
        self.assertTrue(self.classify(headers, frozenset(["other@x"])))

    def test_cidReferencedWithoutDisposition(self) -> None:
        """No disposition counts as inline for the cid exception."""
        headers = 'Content-Type: image/png; name="a.png"\nContent-ID: <A@Example>\nContent-Transfer-Encoding: base64'
        self.assertTrue(self.classify(headers))
        self.assertFalse(self.classify(headers, frozenset([normalizeCid("a@example")])))

    def test_cidReferencedButAttachment(self) -> None:
        """Disposition attachment wins over a cid: reference."""
        headers = "Content-Type: image/png\nContent-Disposition: attachment\nContent-ID: <logo@x>"
        self.assertTrue(self.classify(headers, frozenset(["logo@x"])))

    def test_calendarKept(self) -> None:
        """text/calendar in any form."""
        self.assertFalse(self.classify("Content-Type: text/calendar; method=REQUEST"))
        self.assertFalse(self.classify('Content-Type: text/calendar; name="invite.ics"\nContent-Disposition: attachment'))
        self.assertFalse(self.classify("Content-Type: TEXT/Calendar\nContent-Transfer-Encoding: base64"))

    def test_unknownEncodingKept(self) -> None:
        self.assertFalse(self.classify('Content-Type: application/octet-stream; name="a.bin"\nContent-Transfer-Encoding: x-uuencode'))
        self.assertFalse(self.classify("Content-Type: application/pdf\nContent-Disposition: attachment\nContent-Transfer-Encoding: x-made-up"))
        for cte in ("7bit", "8bit", "binary", "base64", "quoted-printable", "BASE64"):
            self.assertTrue(self.classify(f"Content-Type: application/pdf\nContent-Transfer-Encoding: {cte}"))

    def test_messageAsOneAttachment(self) -> None:
        """A message/rfc822 part is one attachment; nothing inside it is one."""
        inner = (
            'Content-Type: multipart/mixed; boundary="in"\r\n\r\n'
            "--in\r\nContent-Type: text/plain\r\n\r\nhi\r\n"
            '--in\r\nContent-Type: application/pdf; name="x.pdf"\r\n\r\nQUJD\r\n--in--\r\n'
        )
        raw = mixed(part("Content-Type: text/plain"), "Content-Type: message/rfc822\r\n\r\n" + inner)
        structure = structureOf(raw)
        self.assertEqual(structure[(1,)].kind, MESSAGE)
        self.assertEqual([p.path for p in attachments(structure, set())], [(1,)])

    def test_inlineMessageContentsCount(self) -> None:
        """An inline forwarded message is no attachment; its attachments are."""
        inner = (
            'Content-Type: multipart/mixed; boundary="in"\r\n\r\n'
            "--in\r\nContent-Type: text/plain\r\n\r\nhi\r\n"
            '--in\r\nContent-Type: application/pdf; name="x.pdf"\r\n\r\nQUJD\r\n--in--\r\n'
        )
        raw = mixed(part("Content-Type: text/plain"), "Content-Type: message/rfc822\r\nContent-Disposition: inline\r\n\r\n" + inner)
        structure = structureOf(raw)
        self.assertEqual([p.path for p in attachments(structure, set())], [(1, 0, 1)])

    def test_multipartNeverAttachment(self) -> None:
        raw = mixed(
            'Content-Type: multipart/mixed; boundary="in"\r\nContent-Disposition: attachment; filename="a.zip"\r\n\r\n'
            "--in\r\nContent-Type: text/plain\r\n\r\nhi\r\n--in--"
        )
        structure = structureOf(raw)
        self.assertFalse(isAttachment(structure[(0,)], structure, set()))
        self.assertFalse(isAttachment(structure.root, structure, set()))

    def test_rootAttachment(self) -> None:
        """A message that is only a PDF is itself the attachment."""
        structure = structureOf(single("Content-Type: application/pdf\nContent-Transfer-Encoding: base64", "QUJD\r\n"))
        self.assertEqual([p.path for p in attachments(structure, set())], [()])
        structure = structureOf(single("Content-Type: text/plain"))
        self.assertEqual(attachments(structure, set()), [])

    def test_pythonBuiltMessage(self) -> None:
        """What Outlook-like clients send: body, related image, attachment."""
        message = EmailMessage()
        message["From"] = "a@example.test"
        message.set_content("plain")
        message.add_alternative('<html><body><img src="cid:img1@x"></body></html>', subtype="html")
        message.get_payload()[1].add_related(b"\x89PNG" * 100, "image", "png", cid="<img1@x>", filename="img.png", disposition="inline")
        message.add_attachment(b"%PDF" * 100, maintype="application", subtype="pdf", filename="r.pdf")
        raw = bytes(message)
        structure = structureOf(raw)
        found = scanHtml(structure, raw)
        self.assertEqual(found, {"img1@x"})
        paths = [p.path for p in attachments(structure, found)]
        self.assertEqual(paths, [(1,)])
        self.assertEqual(structure[(1,)].headers.filename, "r.pdf")


def scanHtml(structure: Structure, raw: bytes) -> set[str]:
    scanner = CidScanner()
    for p in structure.parts:
        if p.headers.contentType == "text/html":
            scanner.feed(raw[p.bodyStart : p.bodyEnd])
    return scanner.close()


class CidScannerTests(SynchronousTestCase):
    HTML = (
        b'<html><body><img src="cid:image001.png@01D9A1B2.C3D4E5F6">'
        b"<img src=CID:Logo%40Example.COM alt=x>"
        b"<div style=\"background:url(cid:bg@x)\"></div>"
        b"<img src='cid:quote&amp;d@x'>"
        b'<img src="cid:">cid: in text<img src="http://x/cid:no"></body></html>'
    )
    EXPECTED = {"image001.png@01d9a1b2.c3d4e5f6", "logo@example.com", "bg@x", "quote&d@x", "no"}

    def scan(self, pieces: list[bytes]) -> set[str]:
        scanner = CidScanner()
        for piece in pieces:
            scanner.feed(piece)
        return scanner.close()

    def test_whole(self) -> None:
        self.assertEqual(self.scan([self.HTML]), self.EXPECTED)

    def test_everySplitPoint(self) -> None:
        """A reference cut anywhere by a chunk boundary is still found."""
        for at in range(len(self.HTML) + 1):
            self.assertEqual(self.scan([self.HTML[:at], self.HTML[at:]]), self.EXPECTED, at)

    def test_byteByByte(self) -> None:
        self.assertEqual(self.scan([bytes([b]) for b in self.HTML]), self.EXPECTED)

    def test_referenceAtEnd(self) -> None:
        """A reference that ends the body ends at close."""
        self.assertEqual(self.scan([b"x cid:tail@x"]), {"tail@x"})

    def test_boundedCarry(self) -> None:
        """An endless "reference" is dropped, not buffered."""
        scanner = CidScanner()
        scanner.feed(b"cid:")
        for _ in range(100):
            scanner.feed(b"a" * 1000)
            self.assertLessEqual(len(scanner._carry), MAX_CID_LENGTH + 4)
        scanner.feed(b'" <img src="cid:ok@x">')
        self.assertEqual(scanner.close(), {"ok@x"})

    def test_normalizeCid(self) -> None:
        """RFC 2392: brackets off, %-decoded, compared case-insensitively."""
        self.assertEqual(normalizeCid(" <Part1.ABC@Host> "), "part1.abc@host")
        self.assertEqual(normalizeCid("a%40b%20c"), "a@b c")

