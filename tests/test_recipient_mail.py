"""
What the recipient's mail looks like, end to end (SPEC 5, 6): real
messages in over SMTP, the relayed messages read back from the maildir,
the files downloaded over HTTP.  The banner's sender, organisation,
explanation, button, expiry time, disclaimer and help contact in both
languages and all three content modes; X-MS-Has-Attach; Purview
messages passing whole; TNEF opened.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import os
import sqlite3
from email.message import EmailMessage

from secudoc_gateway.notices.texts import formatMoment
from tests.support import asyncTest, corpusPaths, inThread, maildirMessages, sendBDAT, splitEnvelope
from tests.test_protection import ProtectionTestCase, attach, newMessage
from tests.tnefdata import TnefFile, tnef, winmailMessage

ORGANISATION = "Van Dijk & Zonen B.V."
HELP = "servicedesk@vandijk.example"
TENANT = dict(organisation=ORGANISATION, help_contact=HELP, disclaimer="Vertrouwelijk: alleen voor de geadresseerde.")


def fromZoe(text: str = "Zie bijlage.\n", html: str = "") -> EmailMessage:
    message = newMessage(text=text, html=html)
    del message["From"]
    message["From"] = "=?utf-8?q?Zo=C3=AB_de_Vries?= <alice@example.test>"
    return message


class RecipientMailTestCase(ProtectionTestCase):
    def expires(self) -> float:
        database = sqlite3.connect(os.path.join(self.folder, "gateway.sqlite3"))
        try:
            [(expires,)] = database.execute("SELECT expires FROM transfers").fetchall()
        finally:
            database.close()
        return float(expires)

    async def relayAll(self, message: EmailMessage) -> list[email.message.EmailMessage]:
        """Every message relayed for this one, in the order relayed."""
        before = set(maildirMessages(self.outbox))
        code, text = await inThread(sendBDAT, self.gateway.smtpPort, "alice@example.test",
                                    ["bob@external.test"], message.as_bytes())
        self.assertEqual(code, 250, text)
        return [email.message_from_bytes(splitEnvelope(m)[2], policy=email.policy.default)
                for m in maildirMessages(self.outbox) if m not in before]

    def bodies(self, message: email.message.EmailMessage) -> tuple[str, str]:
        plain = message.get_body(("plain",))
        markup = message.get_body(("html",))
        return (plain.get_content().replace("\r\n", "\n") if plain is not None else "",
                markup.get_content().replace("\r\n", "\n") if markup is not None else "")


class Banner(RecipientMailTestCase):
    @asyncTest
    async def test_dutch(self) -> None:
        """Display name decoded, organisation, why, button, date and time, disclaimer, help."""
        await self.start(**TENANT)
        message = fromZoe(html="<html><body><p>Zie bijlage.</p></body></html>\n")
        attach(message, os.urandom(3000), "offerte.pdf")
        out = await self.relay(message)
        plain, markup = self.bodies(out)
        moment = formatMoment(self.expires(), "nl")
        self.assertRegex(moment, r" om \d\d:\d\d CES?T\Z")
        lines = plain.splitlines()
        self.assertEqual(lines[0], f"Zoë de Vries <alice@example.test> van {ORGANISATION} heeft u een bestand gestuurd.")
        self.assertTrue(lines[1].startswith("Om de bijlagen te beschermen"))
        self.assertIn("- offerte.pdf (3 KB)", lines)
        self.assertIn(f"Beschikbaar tot {moment}.", lines)
        self.assertIn("Vertrouwelijk: alleen voor de geadresseerde.", lines)
        self.assertIn(f"Vragen? Neem contact op met {HELP}.", lines)
        self.assertTrue(plain.rstrip().endswith("Zie bijlage."))
        self.assertTrue(markup.isascii())
        for value in ("<strong>Zo&#235; de Vries</strong> (alice@example.test)", "Van Dijk &amp; Zonen B.V.",
                      ">Bestanden downloaden</a>", f"Beschikbaar tot {moment}.", f'href="mailto:{HELP}"',
                      "Vertrouwelijk: alleen voor de geadresseerde."):
            self.assertIn(value, markup)
        self.assertNotIn("<!--", markup)
        self.assertIn("<p>Zie bijlage.</p>", markup)

    @asyncTest
    async def test_english(self) -> None:
        await self.start(language="en", **TENANT)
        message = fromZoe()
        attach(message, os.urandom(3000), "a.pdf")
        attach(message, os.urandom(5000), "b.pdf")
        plain, _ = self.bodies(await self.relay(message))
        moment = formatMoment(self.expires(), "en")
        self.assertTrue(plain.startswith(f"Zoë de Vries <alice@example.test> of {ORGANISATION} sent you 2 files.\n"
                                         "To protect the attachments"))
        for line in ("Download files: http://127.0.0.1:8080/t/", f"Available until {moment}.",
                     f"Questions? Contact {HELP}."):
            self.assertIn(line, plain)

    @asyncTest
    async def test_envelopeSenderWithoutFrom(self) -> None:
        """A From without an address: the banner names the envelope sender."""
        await self.start()
        message = newMessage(text="x\n")
        del message["From"]
        message["From"] = "undisclosed-recipients:;"
        attach(message, os.urandom(2000), "a.pdf")
        plain, markup = self.bodies(await self.relay(message))
        self.assertTrue(plain.startswith("alice@example.test heeft u een bestand gestuurd.\n"), plain[:100])
        self.assertNotIn("Vragen?", plain)

    @asyncTest
    async def test_transferMode(self) -> None:
        await self.start(content_mode="transfer", **TENANT)
        message = fromZoe(text="Beste Bob,\n\nhierbij.\n")
        attach(message, os.urandom(3000), "a.pdf")
        out = await self.relay(message)
        plain, markup = self.bodies(out)
        self.assertTrue(plain.startswith(f"Zoë de Vries <alice@example.test> van {ORGANISATION}"))
        self.assertIn("Beste Bob,", plain)
        self.assertIn(f"Beschikbaar tot {formatMoment(self.expires(), 'nl')}.", markup)
        self.assertIn(">Bestanden downloaden</a>", markup)

    @asyncTest
    async def test_separateModeAndConfirmation(self) -> None:
        """The file message carries the banner; the sender's confirmation the date and time."""
        await self.start(content_mode="separate", confirmation_mail=True, **TENANT)
        message = fromZoe()
        attach(message, os.urandom(3000), "a.pdf")
        main, notice, confirmation = await self.relayAll(message)
        self.assertEqual(main["X-SecuDoc-Status"], "protected")
        self.assertNotIn("Bestanden downloaden", self.bodies(main)[0])
        plain, markup = self.bodies(notice)
        moment = formatMoment(self.expires(), "nl")
        self.assertTrue(plain.startswith(f"Zoë de Vries <alice@example.test> van {ORGANISATION}"))
        self.assertIn(f"Vragen? Neem contact op met {HELP}.", plain)
        self.assertIn(">Bestanden downloaden</a>", markup)
        self.assertEqual(confirmation["X-SecuDoc-Status"], "generated; kind=confirmation")
        self.assertIn(f"De ontvangers kunnen de bestanden downloaden tot {moment}.", self.bodies(confirmation)[0])


class HasAttach(RecipientMailTestCase):
    @asyncTest
    async def test_removedWhenNothingIsLeft(self) -> None:
        await self.start()
        message = newMessage(text="x\n")
        message["X-MS-Has-Attach"] = "yes"
        attach(message, os.urandom(2000), "a.pdf")
        out = await self.relay(message)
        self.assertEqual(out["X-SecuDoc-Status"], "protected")
        self.assertIsNone(out["X-MS-Has-Attach"])

    @asyncTest
    async def test_keptOnAPassedMessage(self) -> None:
        await self.start()
        message = newMessage(text="x\n")
        message["X-MS-Has-Attach"] = "yes"
        attach(message, os.urandom(100), "small.pdf")
        out = await self.relay(message)
        self.assertEqual(out["X-SecuDoc-Status"], "passed; reason=no-attachment")
        self.assertEqual(out["X-MS-Has-Attach"], "yes")


def rightsProtected(contentType: str = "application/x-microsoft-rpmsg-message",
                    before: bytes = b"") -> bytes:
    """A Purview / IRM message as Exchange sends it: a notice and message.rpmsg."""
    rpmsg = os.urandom(6000)
    import base64

    encoded = base64.encodebytes(rpmsg).replace(b"\n", b"\r\n")
    return (
        b"From: Alice <alice@example.test>\r\nTo: bob@external.test\r\nSubject: Beschermd\r\n"
        b"Message-ID: <irm-1@example.test>\r\nMIME-Version: 1.0\r\nContent-Class: rpmsg.message\r\n"
        b"X-MS-Has-Attach: yes\r\nContent-Type: multipart/mixed; boundary=\"irm\"\r\n\r\n"
        b"--irm\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
        b"This message is protected with Microsoft Purview Message Encryption.\r\n"
        + before
        + b"--irm\r\nContent-Type: " + contentType.encode() + b"; name=\"message.rpmsg\"\r\n"
        b"Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"message.rpmsg\"\r\n\r\n"
        + encoded + b"--irm--\r\n"
    )


class RightsProtected(RecipientMailTestCase):
    async def assertPassedWhole(self, raw: bytes) -> None:
        out = await self.relay(raw)
        self.assertEqual(out["X-SecuDoc-Status"], "passed; reason=signed")
        self.assertTrue(self.raw.endswith(raw.split(b"\r\n\r\n", 1)[1]))
        self.assertEqual(out["X-MS-Has-Attach"], "yes")
        stored = [name for _, _, names in os.walk(os.path.join(self.folder, "objects")) for name in names]
        self.assertEqual(stored, [])

    @asyncTest
    async def test_rpmsgPart(self) -> None:
        await self.start()
        await self.assertPassedWhole(rightsProtected())

    @asyncTest
    async def test_rpmsgFileName(self) -> None:
        """Only the name says it: message.rpmsg as application/octet-stream."""
        await self.start()
        await self.assertPassedWhole(rightsProtected("application/octet-stream"))

    @asyncTest
    async def test_beforeUnknownSender(self) -> None:
        """Rule 6 comes before rule 7: an unknown sender's Purview message passes."""
        await self.start(users=[], unknown_sender="reject")
        await self.assertPassedWhole(rightsProtected())

    @asyncTest
    async def test_afterAnAttachmentLeftOutOfTheSpool(self) -> None:
        """
        A big attachment before message.rpmsg was already left out of the
        spool: the message cannot pass whole and is protected, both files
        downloadable.
        """
        await self.start()
        import base64

        big = os.urandom(3 << 20)
        part = (b"--irm\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n"
                b"Content-Disposition: attachment; filename=\"big.pdf\"\r\n\r\n"
                + base64.encodebytes(big).replace(b"\n", b"\r\n"))
        out = await self.relay(rightsProtected(before=part))
        self.assertEqual(out["X-SecuDoc-Status"], "protected")
        code, content, _ = await self.get(self.link(out) + "/0")
        self.assertEqual((code, content == big), (200, True))
        code, _, response = await self.get(self.link(out) + "/1")
        self.assertIn("message.rpmsg", response.headers.getRawHeaders("content-disposition")[0])


KITTEN_SHA256 = "f79d79bf20d19d17f4bbc92bc59485be362df93deaa92b71cc0d490d3b7ac935"
"""The picture in MimeKit's rich-text.eml, as tnefparse extracts it."""


class Tnef(RecipientMailTestCase):
    async def files(self, out: email.message.EmailMessage, count: int) -> list[tuple[str, bytes]]:
        path = self.link(out)
        files = []
        for n in range(count):
            code, content, response = await self.get(f"{path}/{n}")
            self.assertEqual(code, 200)
            disposition = response.headers.getRawHeaders("content-disposition")[0]
            files.append((disposition, content))
        code, _, _ = await self.get(f"{path}/{count}")
        self.assertEqual(code, 404)
        return files

    @asyncTest
    async def test_filesInsteadOfWinmail(self) -> None:
        """The recipient downloads the files by their own names, byte-exact; no winmail.dat."""
        await self.start()
        pdf, picture = os.urandom(200_000), os.urandom(3000)
        stream = tnef([TnefFile(pdf, "RAPPOR~1.PDF", "Rapport Q3 – Zoë.pdf"), TnefFile(picture, "FOTO.JPG")])
        out = await self.relay(winmailMessage(stream))
        self.assertEqual(out["X-SecuDoc-Status"], "protected")
        self.assertIsNone(out["X-MS-Has-Attach"])
        self.assertEqual([p.get_content_type() for p in out.walk()], ["multipart/mixed", "text/plain"])
        plain, _ = self.bodies(out)
        self.assertIn("heeft u 2 bestanden gestuurd.", plain)
        self.assertIn("- Rapport Q3 – Zoë.pdf (196 KB)\n", plain)
        self.assertIn("- FOTO.JPG (3 KB)\n", plain)
        self.assertNotIn("winmail", plain)
        [(first, content0), (second, content1)] = await self.files(out, 2)
        self.assertEqual((content0, content1), (pdf, picture))
        self.assertIn("filename*=UTF-8''Rapport%20Q3%20%E2%80%93%20Zo%C3%AB.pdf", first)
        self.assertIn("FOTO.JPG", second)
        database = sqlite3.connect(os.path.join(self.folder, "gateway.sqlite3"))
        self.addCleanup(database.close)
        self.assertEqual([row[0] for row in database.execute("SELECT content_type FROM files ORDER BY n")],
                         ["application/pdf", "image/jpeg"])

    @asyncTest
    async def test_undecodedPartStoredAsItIs(self) -> None:
        """An embedded message is no file: winmail.dat is kept too, byte-exact, next to the file."""
        await self.start()
        pdf = os.urandom(5000)
        stream = tnef([TnefFile(pdf, "A.PDF"), TnefFile(b"x" * 89, "UNTITLED", None, 5, b"inner message")])
        out = await self.relay(winmailMessage(stream))
        plain, _ = self.bodies(out)
        self.assertIn("- winmail.dat (", plain)
        self.assertIn("- A.PDF (5 KB)", plain)
        [(first, winmail), (second, content)] = await self.files(out, 2)
        self.assertIn("winmail.dat", first)
        self.assertEqual((winmail, content), (stream, pdf))

    @asyncTest
    async def test_notTnefStoredAsItIs(self) -> None:
        await self.start()
        junk = os.urandom(4000)
        out = await self.relay(winmailMessage(junk))
        [(disposition, content)] = await self.files(out, 1)
        self.assertIn("winmail.dat", disposition)
        self.assertEqual(content, junk)

    @asyncTest
    async def test_bodyOnlyPasses(self) -> None:
        """A winmail.dat with no file in it is the message's rich body, no attachment."""
        await self.start()
        raw = winmailMessage(tnef([], body=os.urandom(3000)))
        out = await self.relay(raw)
        self.assertEqual(out["X-SecuDoc-Status"], "passed; reason=no-attachment")
        self.assertTrue(self.raw.endswith(raw.split(b"\r\n\r\n", 1)[1]))

    @asyncTest
    async def test_bigFileInTnef(self) -> None:
        """Past the spool's memory bound: streamed through, downloaded byte-exact."""
        await self.start()
        big = os.urandom(3 << 20)
        out = await self.relay(winmailMessage(tnef([TnefFile(big, "BIG.BIN")])))
        [(_, content)] = await self.files(out, 1)
        self.assertEqual(hashlib.sha256(content).digest(), hashlib.sha256(big).digest())

    @asyncTest
    async def test_outlookRichText(self) -> None:
        """Outlook's own winmail.dat (MimeKit's test data): the picture, and winmail.dat for the rest."""
        [path] = [p for p in corpusPaths() if os.path.basename(p) == "mimekit__rich-text.eml"]
        await self.start()
        with open(path, "rb") as f:
            out = await self.relay(f.read())
        self.assertEqual(out["X-SecuDoc-Status"], "protected")
        [(first, winmail), (second, kitten)] = await self.files(out, 2)
        self.assertIn("winmail.dat", first)
        self.assertTrue(winmail.startswith(b"\x78\x9f\x3e\x22"))
        self.assertIn("kitten-playing-with-a-christmas-tree.jpg", second)
        self.assertEqual(hashlib.sha256(kitten).hexdigest(), KITTEN_SHA256)
