"""
Tests for L{secudoc_gateway.notices.downloads}: the recipient's code and
the sender's download notice, built like every message the gateway makes,
their times as every text shows them.  End to end: L{tests.test_recipient}.
"""

from __future__ import annotations

import attrs
from hypothesis import given, settings
from twisted.trial.unittest import SynchronousTestCase

from secudoc_gateway.display import shown
from secudoc_gateway.notices.downloads import codeMail, downloadNotice
from tests.test_notices_mails import EXPIRES, HOSTILE, SystemMessageChecks, bodies


@attrs.frozen
class Tenant:
    language: str = "nl"
    facility_sender: str = "SecuDoc <noreply@example.test>"


class CodeMailTests(SystemMessageChecks, SynchronousTestCase):
    def test_dutch(self) -> None:
        """The code and until when it works: minutes, so the time of day alone."""
        raw = codeMail("gw.example", Tenant(), "bob@external.test", "Alice <alice@example.test>", "123456",
                       EXPIRES, EXPIRES - 900, "T1")
        message = self.assertWellFormed(raw, "code", True, frozenset({"x-secudoc-transfer"}))
        self.assertEqual(message["Subject"], "Uw code voor de bestanden van Alice <alice@example.test>")
        self.assertEqual(message["To"].addresses[0].addr_spec, "bob@external.test")
        self.assertEqual(message["From"].addresses[0].addr_spec, "noreply@example.test")
        plain, html = bodies(message)
        self.assertIn("Uw code is 123456. Vul hem in op de downloadpagina; hij is geldig tot 14:05 CET.\n", plain)
        self.assertIn("geldig tot 14:05 CET.", html)

    def test_english(self) -> None:
        raw = codeMail("gw", Tenant("en"), "bob@x", "a@x", "000001", EXPIRES, EXPIRES - 900, "")
        plain, _ = bodies(self.assertWellFormed(raw, "code", True))
        self.assertIn("Your code is 000001. Enter it on the download page; it is valid until 14:05 CET.\n", plain)


class DownloadNoticeTests(SystemMessageChecks, SynchronousTestCase):
    def test_dutch(self) -> None:
        raw = downloadNotice("gw.example", Tenant(), "alice@example.test", "rapport.pdf", "bob@external.test",
                             EXPIRES, "T1")
        message = self.assertWellFormed(raw, "download", True, frozenset({"x-secudoc-transfer"}))
        self.assertEqual(message["Subject"], "Gedownload: rapport.pdf")
        self.assertEqual(message["To"].addresses[0].addr_spec, "alice@example.test")
        plain, _ = bodies(message)
        self.assertIn("bob@external.test heeft rapport.pdf gedownload op 14 maart 2025 om 14:05 CET.\n", plain)

    def test_englishUnverified(self) -> None:
        """Without verification the recipient is not known: "A recipient"."""
        raw = downloadNotice("gw", Tenant("en"), "alice@x", "a.pdf", None, EXPIRES, "T1")
        plain, _ = bodies(self.assertWellFormed(raw, "download", True, frozenset({"x-secudoc-transfer"})))
        self.assertIn("A recipient downloaded a.pdf on 14 March 2025 at 14:05 CET.\n", plain)

    @settings(max_examples=100, deadline=None)
    @given(HOSTILE, HOSTILE, HOSTILE)
    def test_hostile(self, name: str, recipient: str, sender: str) -> None:
        """Whatever the names hold, the notice stays one well-formed message to one address."""
        raw = downloadNotice("gw", Tenant(facility_sender=sender), sender, name, recipient or None, EXPIRES,
                             "T\r\nBcc: x")
        message = self.assertWellFormed(raw, "download", True, frozenset({"x-secudoc-transfer"}))
        self.assertEqual(len(message["To"].addresses), 1)
        self.assertEqual(message["X-SecuDoc-Transfer"], "TBccx")
        self.assertNotIn("\u202e", bodies(message)[0])
        self.assertEqual(message["Subject"], shown("Gedownload: " + shown(name)))
