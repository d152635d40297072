"""
Tests for L{secudoc_gateway.notices.mails}: the transfer template and the
messages the gateway makes, in both languages, with hostile input for
every value taken from a message.  The banner: L{tests.test_notices_banner}.
"""

from __future__ import annotations

import email
import email.policy
import re
from email.message import EmailMessage

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from secudoc_gateway.notices.banner import bannerFor
from secudoc_gateway.notices.mails import (
    addrSpec,
    confirmationMail,
    headerText,
    mailbox,
    separateMessage,
    transferTemplate,
    welcomeMail,
)
from secudoc_gateway.display import shown

EXPIRES = 1741957500.0  # 14 March 2025, 13:05 UTC, 14:05 in Amsterdam
LINK = "https://gw.example/t/AbC-123_x"


# -- transfer template and system messages --------------------------------

HOSTILE = st.lists(
    st.sampled_from(list("aZ é日\r\n\t\x00\x1b\x7f\u202e\u2066\u2028\u0085\"'\\<>,;:@=?_-") + [
        "=?utf-8?b?", "?=", "\r\nBcc: evil@x", "--=_secudoc_", "\r\n\r\n", "=?utf-8?q?Bcc:_x?=", "woord ",
    ]),
    max_size=40,
).map("".join)
BANNER = bannerFor("nl", "alice@example.test", [("rapport.pdf", 1258291)], LINK, EXPIRES, "", senderName="Alice")
GENERATED = {
    "from", "to", "subject", "date", "message-id", "mime-version", "x-secudoc", "x-secudoc-status", "content-type",
}


class TransferTemplateTests(SynchronousTestCase):
    def test_pieces(self) -> None:
        """The plain text ends with the heading; the HTML is a document around an open <pre>."""
        for language, heading in (("nl", "Bericht:"), ("en", "Message:")):
            template = transferTemplate(BANNER, language)
            self.assertEqual(template.text, BANNER.text + heading + "\n\n")
            self.assertTrue(template.htmlHead.startswith("<!DOCTYPE html>"))
            self.assertIn(BANNER.html, template.htmlHead)
            self.assertIn(f">{heading}</p>", template.htmlHead)
            self.assertTrue(template.htmlHead.endswith(">\n") and "<pre " in template.htmlHead)
            self.assertTrue(template.htmlTail.startswith("</pre>") and template.htmlTail.endswith("</html>\n"))
            self.assertEqual(template.htmlInsert.count(f'href="{LINK}"'), 2)
            self.assertTrue(template.textHtmlOnly.startswith(template.text))
            self.assertEqual(template.textAlone, BANNER.text.rstrip("\n") + "\n")
            self.assertNotIn("<pre", template.htmlAlone)
            for value in (template.htmlHead, template.htmlTail, template.htmlInsert, template.htmlAlone):
                self.assertTrue(value.isascii())


class HeaderValueTests(SynchronousTestCase):
    def test_plainAscii(self) -> None:
        self.assertEqual(headerText("Stukken  voor\tmorgen", 9), "Stukken voor morgen")
        self.assertEqual(headerText("", 9), "")

    def test_foldedNotCut(self) -> None:
        value = headerText("woord " * 40, 9)
        lines = value.split("\r\n")
        self.assertGreater(len(lines), 1)
        self.assertLessEqual(len(lines[0]) + 9, 78)
        self.assertTrue(all(line.startswith(" ") and len(line) <= 78 for line in lines[1:]))
        self.assertEqual(value.replace("\r\n", ""), ("woord " * 40).strip())

    def test_encodedWords(self) -> None:
        """Non-ASCII, "=?" and over-long words become RFC 2047 words that decode back."""
        for value in ("Café 日本語 " * 10, "=?utf-8?q?x?=", "x" * 200):
            encoded = headerText(value, 9)
            self.assertTrue(encoded.isascii())
            self.assertTrue(encoded.startswith("=?utf-8?b?"))
            for line in encoded.split("\r\n"):
                self.assertLessEqual(len(line), 78 - 9)
            self.assertEqual(parse(f"Subject: {encoded}\r\n\r\n".encode("ascii"))["Subject"], shown(value))

    def test_addrSpec(self) -> None:
        self.assertEqual(addrSpec("alice@example.test"), "alice@example.test")
        self.assertEqual(addrSpec("<alice@example.test>"), "alice@example.test")
        self.assertEqual(addrSpec('"a b"@example.test'), '"a b"@example.test')
        self.assertEqual(addrSpec("a b@example.test"), '"a b"@example.test')
        self.assertEqual(addrSpec('e"vil\\@x'), '"e\\"vil\\\\"@x')
        self.assertEqual(addrSpec("=?utf-8?b?QQ==?=@x"), '"=\\?utf-8\\?b\\?QQ==\\?="@x')
        self.assertEqual(addrSpec('"quoted\\"one"@x'), '"quoted\\"one"@x')
        self.assertEqual(addrSpec("bob@Bücher.example"), "bob@xn--bcher-kva.example")
        self.assertEqual(addrSpec("bob@[192.0.2.1]"), "bob@[192.0.2.1]")
        self.assertEqual(addrSpec("eve@x.test>\r\nBcc: y@z"), '"eve@x.test> Bcc: y"@z')
        self.assertEqual(addrSpec("nobody"), "nobody@invalid")
        self.assertLessEqual(len(addrSpec("a" * 5000 + "@" + "b" * 5000)), 320)

    def test_mailbox(self) -> None:
        self.assertEqual(mailbox("alice@example.test"), "alice@example.test")
        self.assertEqual(mailbox("SecuDoc <noreply@example.test>"), "SecuDoc <noreply@example.test>")
        self.assertEqual(mailbox('"Doe, J." <j@x>'), '"Doe, J." <j@x>')
        self.assertTrue(mailbox("Zoë <z@x>").startswith("=?utf-8?b?"))


def parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


class SystemMessageChecks:
    def assertWellFormed(self, raw: bytes, kind: str, auto: bool, extra: frozenset = frozenset()) -> EmailMessage:
        """
        A complete message whatever went in: CRLF only, every field one
        of ours and once, no defects, two quoted-printable bodies under
        a boundary that shows nowhere else.
        """
        test: SynchronousTestCase = self  # type: ignore[assignment]
        head, separator, body = raw.partition(b"\r\n\r\n")
        test.assertEqual(separator, b"\r\n\r\n")
        test.assertNotIn(b"\n", raw.replace(b"\r\n", b""))
        test.assertNotIn(b"\r", raw.replace(b"\r\n", b""))
        test.assertTrue(body.isascii())
        for line in head.split(b"\r\n"):
            test.assertLessEqual(len(line), 998)
            test.assertIsNone(re.search(rb"[\x00-\x1f\x7f]", line), line)
        message = parse(raw)
        test.assertEqual([p.defects for p in message.walk()], [[], [], []])
        names = [name.lower() for name in message.keys()]
        expected = GENERATED | ({"auto-submitted"} if auto else set()) | set(extra)
        test.assertEqual(sorted(names), sorted(expected))
        test.assertEqual(message["X-SecuDoc"], "1.0")
        test.assertEqual(message["X-SecuDoc-Status"], f"generated; kind={kind}")
        if auto:
            test.assertEqual(message["Auto-Submitted"], "auto-generated")
        test.assertEqual(message.get_content_type(), "multipart/alternative")
        boundary = message.get_boundary()
        test.assertTrue(boundary.startswith("=_secudoc_"))
        test.assertEqual(raw.count(boundary.encode("ascii")), 4)  # the parameter, two delimiters, the close
        parts = list(message.iter_parts())
        test.assertEqual([p.get_content_type() for p in parts], ["text/plain", "text/html"])
        for part in parts:
            test.assertEqual(part["Content-Transfer-Encoding"], "quoted-printable")
            test.assertEqual(part.get_content_charset(), "utf-8")
        test.assertTrue(parts[1].get_content().isascii())
        for value in message.values():
            test.assertNotIn("\r", str(value))
            test.assertNotIn("\n", str(value))
        return message


def bodies(message: EmailMessage) -> tuple[str, str]:
    plain, html = message.iter_parts()
    return plain.get_content().replace("\r\n", "\n"), html.get_content().replace("\r\n", "\n")


class SeparateMessageTests(SystemMessageChecks, SynchronousTestCase):
    def test_message(self) -> None:
        raw = separateMessage(
            "gw.example", "Alice Ærø <alice@example.test>", ["bob@external.test", "eve@other.test"],
            "Stukken voor morgen", BANNER, "nl", date=1741946400.0, transferId="T123",
            references="<abc@mail.example>",
        )
        message = self.assertWellFormed(
            raw, "separate", False, frozenset({"x-secudoc-transfer", "in-reply-to", "references"}))
        self.assertEqual(message["Subject"], "Bestanden bij: Stukken voor morgen")
        self.assertEqual(message["From"].addresses[0].display_name, "Alice Ærø")
        self.assertEqual(message["From"].addresses[0].addr_spec, "alice@example.test")
        self.assertEqual([a.addr_spec for a in message["To"].addresses], ["bob@external.test", "eve@other.test"])
        self.assertEqual(message["Date"], "Fri, 14 Mar 2025 10:00:00 +0000")
        self.assertTrue(re.fullmatch(r"<[0-9a-f]{32}@gw\.example>", message["Message-ID"]))
        self.assertEqual(message["X-SecuDoc-Transfer"], "T123")
        self.assertEqual(message["References"], "<abc@mail.example>")
        plain, html = bodies(message)
        self.assertTrue(plain.startswith(BANNER.text))
        self.assertIn('"Stukken voor morgen"', plain)
        self.assertEqual(plain.count(LINK), 1)
        self.assertEqual(html.count(f'href="{LINK}"'), 2)  # the button and the fallback
        self.assertIn(BANNER.html, html)

    def test_english(self) -> None:
        raw = separateMessage("gw", "a@x", ["b@y"], "", BANNER, "en")
        message = self.assertWellFormed(raw, "separate", False)
        self.assertEqual(message["Subject"], "Files")
        raw = separateMessage("gw", "a@x", ["b@y"], "Report", BANNER, "en", references="not an id\r\nBcc: x")
        message = self.assertWellFormed(raw, "separate", False)
        self.assertEqual(message["Subject"], "Files for: Report")

    def test_nonAsciiSubject(self) -> None:
        raw = separateMessage("gw", "a@x", ["b@y"], "Offerte – Zoë\u202e 日本", BANNER, "nl")
        message = self.assertWellFormed(raw, "separate", False)
        self.assertEqual(message["Subject"], "Bestanden bij: Offerte – Zoë 日本")
        self.assertTrue(raw.split(b"\r\n\r\n")[0].isascii())

    @settings(max_examples=150, deadline=None)
    @given(HOSTILE, HOSTILE, st.lists(HOSTILE, max_size=4), HOSTILE)
    def test_hostile(self, name: str, subject: str, recipients: list[str], local: str) -> None:
        """Whatever the names, addresses and subject hold, no field or boundary breaks."""
        raw = separateMessage(
            "gw.example\r\nBcc: x", f"{name} <{local}@example.test>", recipients, subject, BANNER, "nl",
            transferId="T\r\nBcc: x",
        )
        message = self.assertWellFormed(raw, "separate", False, frozenset({"x-secudoc-transfer"}))
        line = shown(subject)
        self.assertEqual(message["Subject"], f"Bestanden bij: {line}" if line else "Bestanden")
        self.assertEqual(len(message["From"].addresses), 1)
        if not set('"\\<>') & set(name + local):
            # Python's phrase parser puts a space between adjacent
            # encoded-words (RFC 2047 6.2 says to drop it): compare without.
            shownName = message["From"].addresses[0].display_name
            self.assertEqual(shownName.replace(" ", ""), shown(name).replace(" ", ""))
        self.assertEqual(message["X-SecuDoc-Transfer"], "TBccx")


class ConfirmationTests(SystemMessageChecks, SynchronousTestCase):
    def test_message(self) -> None:
        raw = confirmationMail(
            "gw.example", "SecuDoc <noreply@example.test>", "alice@example.test",
            ["bob@external.test", "eve@other.test"], [("rapport.pdf", 1258291), ("foto\u202egpj.exe", 2048)],
            EXPIRES, "Stukken", "nl", date=1741946400.0, transferId="T1",
        )
        message = self.assertWellFormed(raw, "confirmation", True, frozenset({"x-secudoc-transfer"}))
        self.assertEqual(message["From"].addresses[0].display_name, "SecuDoc")
        self.assertEqual(message["From"].addresses[0].addr_spec, "noreply@example.test")
        self.assertEqual(message["To"].addresses[0].addr_spec, "alice@example.test")
        self.assertEqual(message["Subject"], "Bevestiging: bijlagen beveiligd verstuurd: Stukken")
        plain, html = bodies(message)
        for value in ("Ontvangers:\n- bob@external.test\n- eve@other.test\n",
                      "Bestanden:\n- rapport.pdf (1,2 MB)\n- fotogpj.exe (2 KB)\n",
                      "tot 14 maart 2025 om 14:05 CET.", '"Stukken"'):
            self.assertIn(value, plain)
        for value in (">Ontvangers:</p>", "bob@external.test", ">Bestanden:</p>", "fotogpj.exe (2 KB)",
                      "14 maart 2025 om 14:05 CET"):
            self.assertIn(value, html)
        self.assertNotIn("\u202e", plain + html)

    def test_noLink(self) -> None:
        """The link is the recipients' secret: never in the sender's confirmation."""
        raw = confirmationMail("gw", "n@x", "a@x", ["b@y"], [("a.pdf", 1)], EXPIRES, "", "en")
        message = self.assertWellFormed(raw, "confirmation", True)
        self.assertEqual(message["Subject"], "Confirmation: attachments sent securely")
        plain, html = bodies(message)
        self.assertNotIn("/t/", plain + html)
        self.assertNotIn("href", html)
        self.assertIn("until 14 March 2025 at 14:05 CET", plain)

    def test_senderLink(self) -> None:
        """The sender's own link, when there is one, as text and as a button."""
        senderLink = "https://gw.example/s/SENDER-secret"
        raw = confirmationMail("gw", "n@x", "a@x", ["b@y"], [("a.pdf", 1)], EXPIRES, "", "nl", senderLink=senderLink)
        plain, html = bodies(self.assertWellFormed(raw, "confirmation", True))
        self.assertIn("trek de verzending in:\n" + senderLink + "\n", plain)
        self.assertIn(f'href="{senderLink}"', html)
        self.assertIn(">Downloads bekijken</a>", html)

    @settings(max_examples=100, deadline=None)
    @given(HOSTILE, HOSTILE, st.lists(st.tuples(HOSTILE, st.integers(0, 1 << 40)), max_size=4), HOSTILE)
    def test_hostile(self, facility: str, subject: str, files: list[tuple[str, int]], sender: str) -> None:
        raw = confirmationMail("gw", facility, sender, [sender, facility], files, EXPIRES, subject, "nl")
        message = self.assertWellFormed(raw, "confirmation", True)
        self.assertEqual(len(message["To"].addresses), 1)
        plain, _ = bodies(message)
        for name, _size in files:
            self.assertIn(f"- {shown(name)} (", plain)


class WelcomeTests(SystemMessageChecks, SynchronousTestCase):
    def test_dutch(self) -> None:
        raw = welcomeMail("gw.example", "noreply@example.test", "alice@example.test", "nl", date=0.0)
        message = self.assertWellFormed(raw, "welcome", True)
        self.assertEqual(message["Subject"], "Welkom bij SecuDoc")
        self.assertEqual(message["To"].addresses[0].addr_spec, "alice@example.test")
        plain, html = bodies(message)
        self.assertTrue(plain.startswith("Beste alice@example.test,\n"))
        self.assertIn("beveiligde downloadlink", plain)
        self.assertIn("beveiligde downloadlink", html)

    def test_english(self) -> None:
        message = self.assertWellFormed(welcomeMail("gw", "n@x", "bob@x", "en"), "welcome", True)
        self.assertEqual(message["Subject"], "Welcome to SecuDoc")
        self.assertIn("secure download link", bodies(message)[0])

    @settings(max_examples=100, deadline=None)
    @given(HOSTILE, HOSTILE)
    def test_hostile(self, user: str, facility: str) -> None:
        message = self.assertWellFormed(welcomeMail("gw", facility, user, "nl"), "welcome", True)
        self.assertEqual(len(message["To"].addresses), 1)
        self.assertIn(shown(user).split(" ")[0], bodies(message)[0])


class SourceTests(SynchronousTestCase):
    """Date and random source are parameters: fixed ones give the same message, byte for byte."""

    def test_fixed(self) -> None:
        def fixed(n: int) -> bytes:
            return bytes(range(n))

        def made() -> list[bytes]:
            banner = bannerFor("en", "alice@example.test", [("a.pdf", 1)], "https://gw/t/T", 86400.0)
            return [
                welcomeMail("gw.example", "noreply@example.test", "alice@example.test", "nl", date=0.0,
                            randomBytes=fixed),
                separateMessage("gw.example", "alice@example.test", ["bob@x.test"], "Hi", banner, "en", date=0.0,
                                randomBytes=fixed),
                confirmationMail("gw.example", "noreply@example.test", "alice@example.test", ["bob@x.test"],
                                 [("a.pdf", 1)], 86400.0, "Hi", "en", date=0.0, randomBytes=fixed),
            ]

        first = made()
        self.assertEqual(made(), first)
        for raw in first:
            message = email.message_from_bytes(raw, policy=email.policy.default)
            self.assertEqual(message["Date"], "Thu, 01 Jan 1970 00:00:00 +0000")
            self.assertEqual(message["Message-ID"], f"<{bytes(range(16)).hex()}@gw.example>")
            self.assertEqual(message.get_boundary(), "=_secudoc_" + bytes(range(16)).hex())
