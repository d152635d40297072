"""
Tests for L{secudoc_gateway.notices.banner}: what a recipient reads, in both
languages, as text and HTML, with hostile values from messages.
"""

from __future__ import annotations

from html.parser import HTMLParser

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from secudoc_gateway.mime.transforms import flowedSafe
from secudoc_gateway.display import shown
from secudoc_gateway.notices.banner import Banner, bannerFor, escape
from secudoc_gateway.notices.texts import formatMoment

EXPIRES = 1741957500.0  # 14 March 2025, 13:05 UTC, 14:05 in Amsterdam
LINK = "https://gw.example/t/AbC-123_x"
VOID = {"br", "img", "meta"}


class Tree(HTMLParser):
    """Tags opened and closed in order, and the text a reader sees."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[str] = []
        self.problems: list[str] = []
        self.text: list[str] = []
        self.comments: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in ("td", "p", "br"):
            self.text.append(" ")
        if tag not in VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open.pop() != tag:
            self.problems.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def handle_comment(self, data: str) -> None:
        self.comments.append(data)


def shownText(markup: str) -> str:
    """The HTML's text as one whitespace-normalised line, checked balanced."""
    tree = Tree()
    tree.feed(markup)
    tree.close()
    assert not tree.problems and not tree.open and not tree.comments, (tree.problems, tree.open, tree.comments)
    return " ".join("".join(tree.text).split())


class BannerTests(SynchronousTestCase):
    def banner(self, language: str = "nl", **kwargs: object) -> Banner:
        arguments: dict[str, object] = dict(
            sender="alice@example.test",
            files=[("rapport.pdf", 1258291), ("foto.jpg", 340 * 1024)],
            url=LINK,
            expires=EXPIRES,
            disclaimer="",
            senderName="Alice de Vries",
            organisation="Van Dijk & Zonen",
            helpContact="helpdesk@example.test",
        )
        arguments.update(kwargs)
        return bannerFor(language, **arguments)  # type: ignore[arg-type]

    def test_dutchText(self) -> None:
        self.assertEqual(
            self.banner("nl", disclaimer="Vertrouwelijk.").text.splitlines(),
            [
                "Alice de Vries <alice@example.test> van Van Dijk & Zonen heeft u 2 bestanden gestuurd.",
                "Om de bijlagen te beschermen zijn ze niet meegestuurd, maar beveiligd opgeslagen."
                " U downloadt ze via de link hieronder.",
                "",
                "- rapport.pdf (1,2 MB)",
                "- foto.jpg (340 KB)",
                "",
                f"Bestanden downloaden: {LINK}",
                "Beschikbaar tot 14 maart 2025 om 14:05 CET.",
                "",
                "Vertrouwelijk.",
                "Vragen? Neem contact op met helpdesk@example.test.",
                "_" * 40,
                "",
            ],
        )

    def test_englishText(self) -> None:
        text = self.banner("en", files=[("a.pdf", 10)]).text
        self.assertTrue(text.startswith("Alice de Vries <alice@example.test> of Van Dijk & Zonen sent you a file.\n"))
        for line in ("To protect the attachments", "- a.pdf (10 bytes)\n", f"Download files: {LINK}\n",
                     "Available until 14 March 2025 at 14:05 CET.\n", "Questions? Contact helpdesk@example.test.\n"):
            self.assertIn(line, text)

    def test_dutchHtml(self) -> None:
        banner = self.banner("nl", disclaimer="Vertrouwelijk.")
        self.assertEqual(
            shownText(banner.html),
            "Alice de Vries (alice@example.test) van Van Dijk & Zonen heeft u 2 bestanden gestuurd."
            " Om de bijlagen te beschermen zijn ze niet meegestuurd, maar beveiligd opgeslagen."
            " U downloadt ze via de knop hieronder."
            " rapport.pdf 1,2 MB foto.jpg 340 KB Bestanden downloaden"
            " Beschikbaar tot 14 maart 2025 om 14:05 CET."
            f" Werkt de knop niet? Open dan deze link: {LINK}"
            " Vertrouwelijk. Vragen? Neem contact op met helpdesk@example.test.",
        )
        self.assertIn(f'href="{LINK}" target="_blank" style="font-family:Arial', banner.html)
        self.assertIn('href="mailto:helpdesk@example.test"', banner.html)

    def test_englishHtml(self) -> None:
        shown = shownText(self.banner("en").html)
        for value in ("sent you 2 files.", "Download files", "Available until 14 March 2025 at 14:05 CET.",
                      "Questions? Contact helpdesk@example.test."):
            self.assertIn(value, shown)

    def test_outlookLayout(self) -> None:
        """Tables and inline styles: no style sheet, no div or list for layout."""
        markup = self.banner().html
        self.assertTrue(markup.startswith('<table role="presentation" width="100%"'))
        for absent in ("<style", "<div", "<ul", "class=", "<!--"):
            self.assertNotIn(absent, markup)
        self.assertIn('<td bgcolor="#0b5cad"', markup)

    def test_withoutOptionalParts(self) -> None:
        """No name, organisation, disclaimer or help contact: none of their words."""
        banner = self.banner(senderName="", organisation="", helpContact="", files=[("a.pdf", 1)])
        self.assertTrue(banner.text.startswith("alice@example.test heeft u een bestand gestuurd.\n"))
        self.assertTrue(shownText(banner.html).startswith("alice@example.test heeft u een bestand gestuurd."))
        self.assertNotIn("Vragen", banner.text + banner.html)
        self.assertIn(f"Beschikbaar tot 14 maart 2025 om 14:05 CET.\n{'_' * 40}\n", banner.text)

    def test_unknownLanguageIsEnglish(self) -> None:
        self.assertIn("sent you", self.banner("fr").text)

    def test_helpContactKinds(self) -> None:
        self.assertIn('href="https://help.example/x?a=1&amp;b=2"',
                      self.banner(helpContact="https://help.example/x?a=1&b=2").html)
        phone = self.banner(helpContact="+31 20 123 4567").html
        self.assertIn("met +31 20 123 4567.", phone)
        self.assertNotIn("mailto:", phone)
        self.assertNotIn('href="javascript', self.banner(helpContact="javascript:alert(1)").html)

    def test_namesCleaned(self) -> None:
        """Control and bidi characters go, in the text and the HTML."""
        banner = self.banner(files=[("invoice\u202efdp.exe\r\nBcc: x", 5)], senderName="Eve\u0000\n",
                             sender="eve@x")
        for value in (banner.text, banner.html):
            self.assertNotIn("\u202e", value)
            self.assertNotIn("\x00", value)
        self.assertIn("- invoicefdp.exe Bcc: x (5 bytes)\n", banner.text)
        self.assertTrue(banner.text.startswith("Eve <eve@x> van"))

    def test_htmlEscapedAscii(self) -> None:
        """Every value escaped, non-ASCII as references, a long name never broken up."""
        banner = self.banner(
            senderName='"Zoë"',
            files=[("<script>alert(1)</script>&.pdf", 1), ("日本語" * 40 + ".pdf", 2)],
            disclaimer="Vertrouwelijk & privé\nRegel twee <b>",
            organisation="Ærø <Holding>",
        )
        self.assertTrue(banner.html.isascii())
        self.assertNotIn("<script>", banner.html)
        self.assertIn("&lt;script&gt;alert(1)&lt;/script&gt;&amp;.pdf", banner.html)
        self.assertIn("&quot;Zo&#235;&quot;", banner.html)
        self.assertIn("Vertrouwelijk &amp; priv&#233;<br>Regel twee &lt;b&gt;", banner.html)
        self.assertIn("&#198;r&#248; &lt;Holding&gt;", banner.html)
        self.assertIn("&#26085;&#26412;&#35486;" * 40 + ".pdf", banner.html)

    def test_textHardLines(self) -> None:
        """No banner line ends in a space (format=flowed would join it)."""
        banner = self.banner(senderName="Bob   ", files=[("a  .pdf ", 1)], disclaimer="x ")
        for line in banner.text.splitlines():
            self.assertEqual(line, line.rstrip(" "))
        self.assertTrue(banner.text.endswith("\n\n"))

    @settings(max_examples=200, deadline=None)
    @given(
        st.sampled_from(["nl", "en"]),
        st.text(max_size=40),
        st.text(max_size=40),
        st.lists(st.tuples(st.text(min_size=1, max_size=60), st.integers(0, 1 << 42)), min_size=1, max_size=5),
        st.text(max_size=60),
        st.text(max_size=40),
        st.text(max_size=40),
        st.floats(0, 4e9),
    )
    def test_anyValues(self, language: str, name: str, address: str, files: list[tuple[str, int]],
                       disclaimer: str, organisation: str, contact: str, expires: float) -> None:
        """
        Whatever the values: the HTML is ASCII, balanced, has no comment,
        and shows each value whole (no markup inside a word); the text
        has every file and stays valid format=flowed.
        """
        banner = bannerFor(language, address, files, LINK, expires, disclaimer,
                           senderName=name, organisation=organisation, helpContact=contact)
        self.assertTrue(banner.html.isascii())
        seen = shownText(banner.html)
        for value in [file for file, _ in files] + [name, address, organisation, contact]:
            if shown(value):
                self.assertIn(escape(shown(value)), banner.html)
                self.assertIn(shown(value), seen)
                self.assertIn(shown(value), banner.text)
        for value in (formatMoment(expires, language), LINK):
            self.assertIn(value, seen)
            self.assertEqual(banner.text.count(value), 1)
        for line in flowedSafe(banner.text).split("\n"):
            self.assertFalse(line.endswith(" "))
            self.assertFalse(line.startswith((">", "From ")))


class LayerTests(SynchronousTestCase):
    def test_noReactorImport(self) -> None:
        """The sans-I/O modules never load Twisted."""
        import secudoc_gateway.mime.rewrite
        import secudoc_gateway.mime.transforms
        import secudoc_gateway.notices.banner
        import secudoc_gateway.notices.downloads
        import secudoc_gateway.notices.mails
        import secudoc_gateway.notices.texts

        modules = (secudoc_gateway.notices.banner, secudoc_gateway.notices.downloads, secudoc_gateway.notices.mails,
                   secudoc_gateway.notices.texts, secudoc_gateway.mime.rewrite, secudoc_gateway.mime.transforms)
        for module in modules:
            source = open(module.__file__ or "", encoding="utf-8").read()
            self.assertNotIn("twisted", source)
