"""
Tests for L{secudoc_gateway.mails}: the download banner in both languages.
"""

from __future__ import annotations

import datetime
import sys

from twisted.trial.unittest import SynchronousTestCase

from secudoc_gateway.mails import MAX_HTML_LINE, Banner, bannerFor, formatDate, humanSize

EXPIRY = datetime.date(2025, 3, 14)
LINK = "https://gw.example/t/AbC-123_x"


class SizeAndDateTests(SynchronousTestCase):
    def test_humanSize(self) -> None:
        self.assertEqual(humanSize(0, "nl"), "0 bytes")
        self.assertEqual(humanSize(1023, "en"), "1023 bytes")
        self.assertEqual(humanSize(1024, "nl"), "1 KB")
        self.assertEqual(humanSize(1025, "nl"), "2 KB")
        self.assertEqual(humanSize(340 * 1024, "en"), "340 KB")
        self.assertEqual(humanSize(1258291, "nl"), "1,2 MB")
        self.assertEqual(humanSize(1258291, "en"), "1.2 MB")
        self.assertEqual(humanSize(150 * 1024**3, "en"), "150.0 GB")
        self.assertEqual(humanSize(5 * 1024**4, "nl"), "5,0 TB")

    def test_formatDate(self) -> None:
        self.assertEqual(formatDate(EXPIRY, "nl"), "14 maart 2025")
        self.assertEqual(formatDate(datetime.datetime(2025, 12, 1, 23, 59), "en"), "1 December 2025")


class BannerTests(SynchronousTestCase):
    def banner(self, language: str = "nl", **kwargs: object) -> Banner:
        arguments: dict[str, object] = dict(
            sender="Alice <alice@example.test>",
            files=[("rapport.pdf", 1258291), ("foto.jpg", 340 * 1024)],
            link=LINK,
            expiry=EXPIRY,
            disclaimer="",
        )
        arguments.update(kwargs)
        return bannerFor(language, **arguments)  # type: ignore[arg-type]

    def test_dutch(self) -> None:
        banner = self.banner("nl")
        self.assertEqual(
            banner.text.splitlines()[:7],
            [
                "Alice <alice@example.test> heeft u 2 bestanden gestuurd via een beveiligde downloadlink:",
                "",
                "- rapport.pdf (1,2 MB)",
                "- foto.jpg (340 KB)",
                "",
                f"Download: {LINK}",
                "Beschikbaar tot 14 maart 2025.",
            ],
        )
        self.assertIn(f'href="{LINK}"', banner.html)
        self.assertIn("1,2 MB", banner.html)

    def test_english(self) -> None:
        banner = self.banner("en", files=[("a.pdf", 10)])
        self.assertTrue(banner.text.startswith("Alice <alice@example.test> sent you a file through a secure download link:\n"))
        self.assertIn("- a.pdf (10 bytes)\n", banner.text)
        self.assertIn("Available until 14 March 2025.", banner.text)
        self.assertIn("Available until 14 March 2025.", banner.html)

    def test_singular(self) -> None:
        self.assertIn("heeft u een bestand gestuurd", self.banner("nl", files=[("a.pdf", 10)]).text)

    def test_unknownLanguageIsEnglish(self) -> None:
        self.assertIn("sent you", self.banner("fr").text)

    def test_namesCleaned(self) -> None:
        """Control and bidi characters go, in the text and the HTML."""
        banner = self.banner(files=[("invoice\u202efdp.exe\r\nBcc: x", 5)], sender="Eve\u0000 <eve@x>\n")
        for value in (banner.text, banner.html):
            self.assertNotIn("\u202e", value)
            self.assertNotIn("\x00", value)
        self.assertIn("- invoicefdp.exe Bcc: x (5 bytes)\n", banner.text)
        self.assertTrue(banner.text.startswith("Eve <eve@x> heeft"))

    def test_htmlEscapedAsciiShortLines(self) -> None:
        """Every value escaped, non-ASCII as references, no long line."""
        banner = self.banner(
            sender='"Zoë" <z@x>',
            files=[("<script>alert(1)</script>&.pdf", 1), ("日本語" * 40 + ".pdf", 2)],
            disclaimer="Vertrouwelijk & privé\nRegel twee <b>",
        )
        self.assertTrue(banner.html.isascii())
        self.assertNotIn("<script>", banner.html)
        self.assertIn("&lt;script&gt;alert(1)&lt;/script&gt;&amp;.pdf", banner.html)
        self.assertIn("&quot;Zo&#235;&quot;", banner.html)
        self.assertIn("Vertrouwelijk &amp; priv&#233;", banner.html)
        self.assertIn("Regel twee &lt;b&gt;", banner.html)
        self.assertIn("&#26085;&#26412;", banner.html)
        for line in banner.html.splitlines():
            if not line.startswith("<"):
                self.assertLessEqual(len(line), MAX_HTML_LINE + 3, line)
            self.assertLessEqual(len(line), 400)
        # A broken-up name still reads whole once the comments go.
        joined = banner.html.replace("<!--\n-->", "")
        self.assertIn("&#26085;&#26412;&#35486;" * 40 + ".pdf", joined)

    def test_disclaimer(self) -> None:
        banner = self.banner(disclaimer="Line one\r\n\r\nLine two")
        self.assertIn("\nLine one\nLine two\n", banner.text)
        self.assertIn("Line one\n<br>\nLine two", banner.html)
        self.assertNotIn("<br>", self.banner(disclaimer="").html)

    def test_textHardLines(self) -> None:
        """No banner line ends in a space (format=flowed would join it)."""
        banner = self.banner(sender="Bob   ", files=[("a  .pdf ", 1)])
        for line in banner.text.splitlines():
            self.assertEqual(line, line.rstrip(" "))
        self.assertTrue(banner.text.endswith("\n\n"))

    def test_noReactorImport(self) -> None:
        """The sans-I/O modules never load the reactor machinery."""
        import secudoc_gateway.mails
        import secudoc_gateway.mime.rewrite
        import secudoc_gateway.mime.structure

        for module in (secudoc_gateway.mails, secudoc_gateway.mime.rewrite, secudoc_gateway.mime.structure):
            source = open(module.__file__ or "", encoding="utf-8").read()
            self.assertNotIn("twisted", source)
        self.assertIn("secudoc_gateway.mime.rewrite", sys.modules)
