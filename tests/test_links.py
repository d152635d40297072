"""The ``/t/`` links built in one place, and their redaction in any spelling."""

from __future__ import annotations

import string

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from secudoc_gateway import links

TOKEN = "Ab3_-" + "x" * 38
ALPHABET = string.ascii_letters + string.digits + "-_"


class Building(SynchronousTestCase):
    def test_rootPublicURL(self) -> None:
        self.assertEqual(links.transferURL("http://127.0.0.1:8080", TOKEN), f"http://127.0.0.1:8080/t/{TOKEN}")
        self.assertEqual(links.senderURL("http://127.0.0.1:8080", "s"), "http://127.0.0.1:8080/t/sender/s")
        self.assertEqual(links.transferPath("http://h", TOKEN, links.LOGO), f"/t/{TOKEN}/logo")

    def test_publicURLWithAPath(self) -> None:
        """A proxy's prefix stays in every link and every path a page refers to."""
        base = "https://host/secudoc"
        self.assertEqual(links.transferURL(base, TOKEN), f"https://host/secudoc/t/{TOKEN}")
        self.assertEqual(links.transferPath(base, TOKEN, links.LOGO), f"/secudoc/t/{TOKEN}/logo")
        self.assertEqual(links.transferPath(base + "/", TOKEN, "0"), f"/secudoc/t/{TOKEN}/0")
        self.assertEqual(links.senderPath(base, "s", "revoke"), "/secudoc/t/sender/s/revoke")
        self.assertEqual(links.senderURL(base, "s"), "https://host/secudoc/t/sender/s")


class Redaction(SynchronousTestCase):
    def test_spellings(self) -> None:
        cases = {
            f'"GET /t/{TOKEN} HTTP/1.1"': '"GET /t/<redacted> HTTP/1.1"',
            f"/t/{TOKEN}/0": "/t/<redacted>/0",
            f"/t/{TOKEN}/all.zip?x=1": "/t/<redacted>/all.zip?x=1",
            f"/%74/{TOKEN}": "/t/<redacted>",
            f"/%54/{TOKEN}/logo": "/t/<redacted>/logo",
            f"/T/{TOKEN}": "/t/<redacted>",
            f"//t//{TOKEN}": "/t/<redacted>",
            f"/%2574/{TOKEN}": "/t/<redacted>",
            f"/t%2F{TOKEN}": "/t/<redacted>",
            f"/t/%2e%2e/{TOKEN}": "/t/<redacted>",
            f"/t/{TOKEN}/{TOKEN}": "/t/<redacted>",
            f"/t/sender/{TOKEN}": "/t/sender/<redacted>",
            f"/t/sender/{TOKEN}/revoke": "/t/sender/<redacted>/revoke",
            f"/t/sender%2f{TOKEN}": "/t/sender/<redacted>",
            f"https://host/secudoc/t/{TOKEN}": "https://host/secudoc/t/<redacted>",
            f'{{"message":"GET /t/{TOKEN}\\" 200"}}': '{"message":"GET /t/<redacted>\\" 200"}',
            "/healthz /t x/ty/ /tee/": "/healthz /t x/ty/ /tee/",
        }
        for text, redacted in cases.items():
            self.assertEqual(links.redact(text), redacted, text)
            # The access log's formatter redacts, then the log's own pass does:
            # twice reads as once, never ``/t/<redacted><redacted>``.
            self.assertEqual(links.redact(redacted), redacted, text)

    @given(token=st.text(ALPHABET, min_size=22, max_size=43), data=st.data())
    def test_anySpellingOfThePrefix(self, token: str, data: st.DataObject) -> None:
        """However the client spells ``/t/`` and the token, no token character run survives."""

        def spell(text: str) -> str:
            out = ""
            for c in text:
                kind = data.draw(st.sampled_from(["as is", "other case", "encoded", "encoded twice"]))
                if kind == "other case":
                    out += c.swapcase()
                elif kind == "encoded":
                    out += f"%{ord(c):02X}"
                elif kind == "encoded twice":
                    out += f"%25{ord(c):02x}"
                else:
                    out += c
            return out

        slashes = lambda: "".join(spell("/") for _ in range(data.draw(st.integers(1, 3))))  # noqa: E731
        path = slashes() + spell("t") + slashes() + spell(token)
        line = f'127.0.0.1 - - "GET {path} HTTP/1.1" 200 -'
        self.assertNotIn(token, links.redact(line))
        self.assertNotIn(path, links.redact(line))
        self.assertEqual(links.redact(links.redact(line)), links.redact(line))
