"""
The recipient's side end to end (SPEC 8): real messages in over SMTP,
the links out of the maildir, pages, files, ranges, ZIPs, codes and
the sender's link over HTTP, purge on the real store and database.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import io
import os
import re
import socket
import time
import zipfile
from email.message import EmailMessage
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import TestCase

from secudoc_gateway import crypto
from secudoc_gateway.errors import StorageError
from secudoc_gateway.purge import Purged, purgeExpired
from secudoc_gateway.testing import DEMO_TENANT, startGateway, writeConfig
from secudoc_gateway.testing.ports import freePort
from tests.support import (
    Browser, asyncTest, databaseRows, inThread, maildirMessages, sendBDAT, splitEnvelope, until,
)

TOKEN_LINK = re.compile(r"https?://[^/\s]+(/t/[A-Za-z0-9_-]{43})")
SENDER_LINK = re.compile(r"https?://[^/\s]+(/t/sender/[A-Za-z0-9_-]{43})")
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082")


class ShiftedClock:
    """The real time, moved on by ``offset`` seconds: ages codes without waiting."""

    def __init__(self) -> None:
        self.offset = 0.0

    def seconds(self) -> float:
        return time.time() + self.offset


class RecipientTestCase(TestCase):
    files: dict[str, bytes] = {}

    async def start(self, publicURL: str = "", **tenant: Any) -> None:
        self.folder = os.path.abspath(self.mktemp())
        os.makedirs(self.folder)
        with open(os.path.join(self.folder, "logo.png"), "wb") as f:
            f.write(PNG)
        self.clock = ShiftedClock()
        settings = dict(DEMO_TENANT, organisation="Gemeente Voorbeeld", help_contact="servicedesk@example.test",
                        logo="../logo.png", **tenant)
        port = freePort()
        web = {"listen": [f"tcp:{port}:interface=127.0.0.1"], "public_url": publicURL or f"http://127.0.0.1:{port}"}
        self.gateway = await startGateway(writeConfig(self.folder, [settings], web=web), reactor, clock=self.clock)
        self.addCleanup(self.gateway.stop)

    @property
    def outbox(self) -> str:
        return os.path.join(self.folder, "outbox", "example")

    async def send(self, files: dict[str, bytes], recipients: tuple[str, ...] = ("bob@external.test",),
                   subject: str = "Offerte 2025") -> str:
        """Protect a message with ``files``; returns its link's path."""
        message = EmailMessage()
        message["From"] = "Alice de Vries <alice@example.test>"
        message["To"] = ", ".join(recipients)
        message["Subject"] = subject
        message.set_content("Zie bijlagen.\n")
        for name, data in files.items():
            message.add_attachment(data, maintype="application", subtype="octet-stream", filename=name)
        before = set(maildirMessages(self.outbox))
        code, text = await inThread(sendBDAT, self.gateway.smtpPort, "alice@example.test", list(recipients),
                                    message.as_bytes())
        self.assertEqual(code, 250, text)
        for stored in maildirMessages(self.outbox):
            if stored not in before and b"kind=" not in stored:
                out = email.message_from_bytes(splitEnvelope(stored)[2], policy=email.policy.default)
                [path] = set(TOKEN_LINK.findall(out.get_body(("plain",)).get_content()))
                return path
        raise AssertionError("no protected message relayed")

    async def mails(self, kind: str, count: int, deadline: float = 30) -> list[email.message.EmailMessage]:
        """The gateway's own messages of ``kind``, once ``count`` have arrived."""
        found = lambda: [email.message_from_bytes(splitEnvelope(m)[2], policy=email.policy.default)
                         for m in maildirMessages(self.outbox) if f"kind={kind}".encode() in m]
        await until(lambda: len(found()) >= count, f"{count} {kind} mail(s)", deadline)
        return found()

    def browser(self) -> Browser:
        return Browser(self.gateway.webURL)

    def count(self, sql: str, *args: Any) -> int:
        return self.rows(sql, args)[0][0]

    def rows(self, sql: str, args: tuple = ()) -> list[tuple]:
        """What the gateway wrote, on SQLite or PostgreSQL."""
        return databaseRows(self.gateway.service.config.database, sql, args)


class LandingPage(RecipientTestCase):
    @asyncTest
    async def test_everythingARecipientNeeds(self) -> None:
        await self.start()
        name = "Een heel lang bestandsnaam zonder spaties_" + "x" * 120 + ".pdf"
        path = await self.send({name: os.urandom(3000), "b.txt": b"hello" * 300})
        code, page, response = await self.browser().request("GET", path)
        self.assertEqual(code, 200)
        text = page.decode("utf-8")
        self.assertIn('<html lang="nl">', text)
        self.assertIn('name="viewport"', text)
        self.assertIn("Alice de Vries &lt;alice@example.test&gt;", text)
        self.assertIn("Gemeente Voorbeeld", text)
        self.assertIn("Offerte 2025", text)
        self.assertIn("2 bestanden", text)
        self.assertIn("heeft u 2 bestanden gestuurd", text)
        self.assertIn(f'href="{path}/0"', text)
        self.assertIn(f'href="{path}/all.zip"', text)
        self.assertIn("Alle bestanden downloaden (ZIP,", text)
        self.assertRegex(text, r"Beschikbaar tot \d+ \w+ \d{4} om \d\d:\d\d")
        self.assertIn("servicedesk@example.test", text)
        self.assertIn("overflow-wrap: anywhere", text)
        self.assertIn(":focus-visible", text)
        self.assertEqual(response.headers.getRawHeaders("referrer-policy"), ["no-referrer"])
        code, _, response = await self.browser().request("PUT", path)
        self.assertIn(code, (405, 501))
        self.assertEqual(response.headers.getRawHeaders("cache-control"), ["no-store"])
        self.assertIn(f'src="{path}/logo"', text)
        code, logo, response = await self.browser().request("GET", path + "/logo")
        self.assertEqual((code, logo), (200, PNG))
        self.assertEqual(response.headers.getRawHeaders("content-type"), ["image/png"])

    @asyncTest
    async def test_oneFileInEnglish(self) -> None:
        await self.start(language="en")
        path = await self.send({"contract.pdf": os.urandom(2000)})
        code, page, _ = await self.browser().request("GET", path)
        text = page.decode("utf-8")
        self.assertIn('<html lang="en">', text)
        self.assertIn("sent you a file.", text)
        self.assertIn("1 file<", text)
        self.assertNotIn("all.zip", text)
        self.assertIn("Download contract.pdf", text)

    @asyncTest
    async def test_valuesEscaped(self) -> None:
        await self.start()
        path = await self.send({"<script>alert(1)</script>.pdf": os.urandom(2000)}, subject="<b>&</b>")
        _, page, _ = await self.browser().request("GET", path)
        self.assertNotIn(b"<script>", page)
        self.assertIn(b"&lt;script&gt;", page)
        self.assertIn(b"&lt;b&gt;&amp;&lt;/b&gt;", page)


class Downloads(RecipientTestCase):
    @asyncTest
    async def test_zipByteExact(self) -> None:
        await self.start()
        files = {"a.bin": os.urandom(200_000), "b.txt": b"hello\n" * 1000, "empty.pdf": b"",
                 "Ünïcødé 日本.bin": os.urandom(70_000)}
        path = await self.send(files)
        code, body, response = await self.browser().request("GET", path + "/all.zip")
        self.assertEqual(code, 200)
        self.assertEqual(response.length, len(body))
        self.assertEqual(response.headers.getRawHeaders("content-type"), ["application/zip"])
        archive = zipfile.ZipFile(io.BytesIO(body))
        self.assertIsNone(archive.testzip())
        self.assertEqual(sorted(archive.namelist()), sorted(files))
        for name, data in files.items():
            self.assertEqual(archive.read(name), data)
        self.assertEqual(self.count("SELECT COUNT(*) FROM downloads"), len(files))

    @asyncTest
    async def test_ranges(self) -> None:
        await self.start()
        data = os.urandom(300_000)  # five frames of 64 KiB
        path = await self.send({"big.bin": data, "small.bin": os.urandom(2000)})
        browser = self.browser()
        code, body, response = await browser.request("GET", path + "/0")
        self.assertEqual((code, body), (200, data))
        self.assertEqual(response.headers.getRawHeaders("accept-ranges"), ["bytes"])
        etag = response.headers.getRawHeaders("etag")[0]
        for header, first, last in (("bytes=65530-65545", 65530, 65545), ("bytes=0-0", 0, 0),
                                    ("bytes=299990-", 299990, 299999), ("bytes=-5", 299995, 299999),
                                    ("bytes=131072-196607", 131072, 196607), ("bytes=100-999999", 100, 299999)):
            code, body, response = await browser.request("GET", path + "/0", headers={"Range": header})
            self.assertEqual(code, 206, header)
            self.assertEqual(body, data[first:last + 1], header)
            self.assertEqual(response.headers.getRawHeaders("content-range"), [f"bytes {first}-{last}/300000"])
        code, body, response = await browser.request("GET", path + "/0", headers={"Range": "bytes=300000-"})
        self.assertEqual((code, body), (416, b""))
        self.assertEqual(response.headers.getRawHeaders("content-range"), ["bytes */300000"])
        code, body, _ = await browser.request("GET", path + "/0", headers={"Range": "bytes=10-", "If-Range": '"x"'})
        self.assertEqual((code, body), (200, data))
        code, body, _ = await browser.request("GET", path + "/0", headers={"Range": "bytes=10-", "If-Range": etag})
        self.assertEqual((code, body), (206, data[10:]))

    @asyncTest
    async def test_resumeAfterInterruptedDownload(self) -> None:
        """A download cut off midway is finished with a range from where it stopped."""
        await self.start()
        data = os.urandom(1_000_000)
        path = await self.send({"video.bin": data})

        def interrupted() -> bytes:
            with socket.create_connection(("127.0.0.1", self.gateway.webPort), timeout=30) as s:
                s.sendall(f"GET {path}/0 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
                received = b""
                while b"\r\n\r\n" not in received or len(received.partition(b"\r\n\r\n")[2]) < 300_000:
                    received += s.recv(65536)
                return received.partition(b"\r\n\r\n")[2]

        partial = await inThread(interrupted)
        self.assertEqual(partial, data[: len(partial)])
        self.assertLess(len(partial), len(data))
        code, rest, _ = await self.browser().request("GET", path + "/0", headers={"Range": f"bytes={len(partial)}-"})
        self.assertEqual(code, 206)
        self.assertEqual(hashlib.sha256(partial + rest).digest(), hashlib.sha256(data).digest())


class DeadLinks(RecipientTestCase):
    @asyncTest
    async def test_unknownInBothLanguages(self) -> None:
        await self.start()
        unknown = "/t/" + crypto.newToken()
        code, page, _ = await self.browser().request("GET", unknown)
        self.assertEqual(code, 404)
        self.assertIn(b'lang="nl"', page)
        self.assertIn(b"Deze link is onbekend", page)
        code, page, _ = await self.browser().request("GET", unknown, headers={"Accept-Language": "en-GB,nl;q=0.5"})
        self.assertEqual(code, 404)
        self.assertIn(b'lang="en"', page)
        self.assertIn(b"This link is not known", page)

    @asyncTest
    async def test_tombstoneAfterPurge(self) -> None:
        """A purged link still says "expired, ask the sender", in the tenant's language."""
        await self.start()
        path = await self.send({"a.bin": os.urandom(5000)})
        self.rows("UPDATE transfers SET expires = 1")
        service = self.gateway.service
        web = service.webListeners[0].factory.resource.children[b"t"].context
        purged = await purgeExpired(web.transfers, web.store, time.time())
        self.assertEqual(purged, Purged(expired=1))
        self.assertEqual(self.count("SELECT COUNT(*) FROM files"), 0)
        self.assertEqual(os.listdir(os.path.join(self.folder, "objects")), [])
        self.assertEqual(self.rows("SELECT subject, recipients FROM transfers"), [("", "[]")])
        for suffix in ("", "/0", "/all.zip"):
            code, page, _ = await self.browser().request("GET", path + suffix)
            self.assertEqual(code, 410, suffix)
            self.assertIn(b"Deze link is verlopen", page)
            self.assertIn(b"Vraag Alice de Vries &lt;alice@example.test&gt; om ze opnieuw te sturen", page)
        self.assertEqual(await purgeExpired(web.transfers, web.store, time.time()), Purged())

    @asyncTest
    async def test_expiredInEnglish(self) -> None:
        await self.start(language="en")
        path = await self.send({"a.bin": os.urandom(5000)})
        self.rows("UPDATE transfers SET expires = 1")
        code, page, _ = await self.browser().request("GET", path)
        self.assertEqual(code, 410)
        self.assertIn(b"This link has expired", page)


class Verification(RecipientTestCase):
    async def startVerifying(self, **tenant: Any) -> str:
        await self.start(recipient_verification="email-code", **tenant)
        self.data = os.urandom(5000)
        return await self.send({"a.bin": self.data, "b.bin": b"b" * 2000},
                               recipients=("bob@external.test", "carol@external.test"))

    async def askCode(self, browser: Browser, path: str, address: str) -> tuple[int, bytes]:
        await browser.request("GET", path)  # the address form's token
        code, page, _ = await browser.request("POST", path + "/code", {"csrf": browser.csrf(), "address": address})
        return code, page

    async def enter(self, browser: Browser, path: str, address: str, code: str) -> tuple[int, bytes, Any]:
        return await browser.request("POST", path + "/verify",
                                     {"csrf": browser.csrf(), "address": address, "code": code})

    async def codeFor(self, address: str, count: int = 1) -> str:
        mails = [m for m in await self.mails("code", count) if m["To"] == address]
        self.assertEqual(len(mails), count)
        self.assertEqual(mails[-1]["From"], "noreply@example.test")
        self.assertEqual(mails[-1]["X-SecuDoc"], "1.0")
        [code] = re.findall(r"\b(\d{6})\b", mails[-1].get_body(("plain",)).get_content())
        return code

    @asyncTest
    async def test_flow(self) -> None:
        path = await self.startVerifying()
        browser = self.browser()
        code, page, _ = await browser.request("GET", path)
        self.assertEqual(code, 200)
        self.assertIn(b'type="email"', page)
        self.assertNotIn(b"a.bin", page)
        code, _, response = await browser.request("GET", path + "/0")
        self.assertEqual(code, 303)
        self.assertEqual(response.headers.getRawHeaders("location"), [path])
        code, page = await self.askCode(browser, path, "Bob@External.test")
        self.assertEqual(code, 200)
        secret = await self.codeFor("bob@external.test")
        code, _, response = await self.enter(browser, path, "bob@external.test", secret)
        self.assertEqual(code, 303)
        [cookie] = [c for c in browser.setCookies if c.startswith("sd_session=")]
        self.assertIn("HttpOnly", cookie)
        # Lax: a link clicked in webmail (another site) still carries it.
        self.assertIn("samesite=lax", cookie.lower())
        self.assertIn(f"Path={path}", cookie)
        self.assertNotIn("Secure", cookie)
        code, page, _ = await browser.request("GET", path)
        self.assertIn(b"a.bin", page)
        code, body, _ = await browser.request("GET", path + "/0")
        self.assertEqual((code, body), (200, self.data))
        self.assertEqual(self.rows("SELECT recipient FROM downloads"),
                         [("bob@external.test",)])
        self.assertEqual(self.count("SELECT COUNT(*) FROM codes"), 0)
        stored = str(self.rows("SELECT * FROM sessions"))
        self.assertNotIn(browser.cookies["sd_session"], stored)
        # The same code in another browser: used up.
        other = self.browser()
        await self.askCode(other, path, "mallory@evil.test")  # a code form, without asking bob's code anew
        code, page, _ = await self.enter(other, path, "bob@external.test", secret)
        self.assertEqual(code, 400)
        self.assertIn(b"klopt niet", page)
        code, _, _ = await other.request("GET", path + "/0")
        self.assertEqual(code, 303)

    @asyncTest
    async def test_strangerGetsTheSameAnswer(self) -> None:
        path = await self.startVerifying()
        browser = self.browser()
        code, stranger = await self.askCode(browser, path, "mallory@evil.test")
        code2, recipient = await self.askCode(browser, path, "carol@external.test")
        self.assertEqual((code, code2), (200, 200))
        self.assertEqual(stranger.replace(b"mallory@evil.test", b"X"), recipient.replace(b"carol@external.test", b"X"))
        await self.codeFor("carol@external.test")
        self.assertEqual([m["To"] for m in await self.mails("code", 1)], ["carol@external.test"])

    @asyncTest
    async def test_getNeverSendsACode(self) -> None:
        path = await self.startVerifying()
        browser = self.browser()
        for suffix in ("", "/code", "/verify"):
            code, _, _ = await browser.request("GET", path + suffix)
            self.assertIn(code, (200, 303))
        await browser.request("HEAD", path + "/code")
        self.assertEqual(self.count("SELECT COUNT(*) FROM codes"), 0)
        self.assertEqual(self.count("SELECT COUNT(*) FROM attempts"), 0)
        await self.askCode(browser, path, "bob@external.test")
        await self.codeFor("bob@external.test")
        self.assertEqual(len(await self.mails("code", 1)), 1)

    @asyncTest
    async def test_sixthTryRefused(self) -> None:
        path = await self.startVerifying()
        browser = self.browser()
        await self.askCode(browser, path, "bob@external.test")
        secret = await self.codeFor("bob@external.test")
        wrong = f"{(int(secret) + 1) % 10**6:06d}"
        for _ in range(5):
            code, page, _ = await self.enter(browser, path, "bob@external.test", wrong)
            self.assertEqual(code, 400)
        code, page, _ = await self.enter(browser, path, "bob@external.test", secret)
        self.assertEqual(code, 429)
        self.assertIn(b"te vaak verkeerd", page)
        self.assertNotIn("sd_session", browser.cookies)

    @asyncTest
    async def test_expiredCode(self) -> None:
        path = await self.startVerifying(language="en")
        browser = self.browser()
        await self.askCode(browser, path, "bob@external.test")
        secret = await self.codeFor("bob@external.test")
        self.clock.offset = 15 * 60
        code, page, _ = await self.enter(browser, path, "bob@external.test", secret)
        self.assertEqual(code, 400)
        self.assertIn(b"This code has expired", page)
        self.assertNotIn("sd_session", browser.cookies)

    @asyncTest
    async def test_csrfRefused(self) -> None:
        path = await self.startVerifying()
        browser = self.browser()
        await browser.request("GET", path)
        code, _, _ = await browser.request("POST", path + "/code", {"csrf": "forged", "address": "bob@external.test"})
        self.assertEqual(code, 403)
        code, _, _ = await browser.request("POST", path + "/code", {"csrf": browser.csrf(), "address": "bob@external.test"},
                                           headers={"Origin": "https://evil.test"})
        self.assertEqual(code, 403)
        stranger = self.browser()  # no cookie of ours: a cross-site form
        code, _, _ = await stranger.request("POST", path + "/code", {"csrf": browser.csrf(), "address": "bob@external.test"})
        self.assertEqual(code, 403)
        self.assertEqual(self.count("SELECT COUNT(*) FROM codes"), 0)

    @asyncTest
    async def test_bodyTooLarge(self) -> None:
        """A form body past 64 KiB is refused before it is kept anywhere."""
        path = await self.startVerifying()
        browser = self.browser()
        await browser.request("GET", path)
        code, _, _ = await browser.request(
            "POST", path + "/code", {"csrf": browser.csrf(), "address": "bob@external.test", "pad": "x" * 70000})
        self.assertEqual(code, 413)
        self.assertEqual(self.count("SELECT COUNT(*) FROM codes"), 0)
        code, _ = await self.askCode(browser, path, "bob@external.test")
        self.assertEqual(code, 200)

    @asyncTest
    async def test_rateLimitPerTransfer(self) -> None:
        path = await self.startVerifying()
        for n in range(5):
            code, _ = await self.askCode(self.browser(), path, f"x{n}@evil.test")
            self.assertEqual(code, 200)
        code, page = await self.askCode(self.browser(), path, "bob@external.test")
        self.assertEqual(code, 429)
        self.assertIn(b"Te veel pogingen", page)


class SenderLink(RecipientTestCase):
    @asyncTest
    async def test_downloadsAndRevoke(self) -> None:
        await self.start(confirmation_mail=True, download_notification=True)
        path = await self.send({"a.bin": os.urandom(3000), "b.bin": os.urandom(4000)})
        [confirmation] = await self.mails("confirmation", 1)
        text = confirmation.get_body(("plain",)).get_content()
        self.assertNotIn(path, text)
        [senderPath] = set(SENDER_LINK.findall(text))
        seen: list[str] = []
        observer = lambda event: seen.append(formatEvent(event) or "")  # noqa: E731
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        sender = self.browser()
        code, page, response = await sender.request("GET", senderPath)
        self.assertEqual(code, 200)
        self.assertIsNone(response.headers.getRawHeaders("server"))  # no software named (SPEC 8)
        self.assertTrue([line for line in seen if "/t/sender/<redacted>" in line])
        self.assertFalse([line for line in seen if senderPath.rsplit("/", 1)[1] in line])
        self.assertIn(b"Nog niet gedownload", page)
        # The sender's link opens no file.
        code, _, _ = await sender.request("GET", senderPath.replace("/sender", "") + "/0")
        self.assertEqual(code, 404)
        recipient = self.browser()
        for n in (0, 0, 1):
            code, _, _ = await recipient.request("GET", f"{path}/{n}")
            self.assertEqual(code, 200)
        notices = await self.mails("download", 2)
        self.assertEqual(sorted(m["Subject"] for m in notices), ["Gedownload: a.bin", "Gedownload: b.bin"])
        self.assertEqual({m["To"] for m in notices}, {"alice@example.test"})
        code, page, _ = await sender.request("GET", senderPath)
        self.assertEqual(page.count(b"<td>a.bin</td>"), 2)
        code, _, _ = await sender.request("POST", senderPath + "/revoke", {"csrf": "forged"})
        self.assertEqual(code, 403)
        code, _, _ = await recipient.request("GET", path)
        self.assertEqual(code, 200)
        code, _, response = await sender.request("POST", senderPath + "/revoke", {"csrf": sender.csrf()})
        self.assertEqual(code, 303)
        for suffix in ("", "/0"):
            code, page, _ = await recipient.request("GET", path + suffix)
            self.assertEqual(code, 410)
            self.assertIn(b"ingetrokken", page)
        code, page, _ = await sender.request("GET", senderPath)
        self.assertIn(b"U hebt deze verzending ingetrokken", page)
        self.assertNotIn(b"<form", page)
        self.assertEqual(len(await self.mails("download", 2)), 2)


class Forms(Verification):
    """CSRF (SPEC 8): a form token is the gateway's signature, bound to the transfer and the step."""

    @asyncTest
    async def test_madeUpPairRefused(self) -> None:
        """A cookie and field the client made up, equal to each other, are not ours."""
        path = await self.startVerifying()
        browser = self.browser()
        await browser.request("GET", path)
        made = crypto.newToken()
        browser.cookies["sd_csrf"] = made
        code, page, _ = await browser.request("POST", path + "/code", {"csrf": made, "address": "bob@external.test"})
        self.assertEqual(code, 403)
        self.assertIn(b"formulier was verlopen", page)
        self.assertEqual(self.count("SELECT COUNT(*) FROM codes"), 0)

    @asyncTest
    async def test_tokenOfAnotherTransferOrStepRefused(self) -> None:
        path = await self.startVerifying()
        other = await self.send({"c.bin": b"c" * 3000}, recipients=("bob@external.test",))
        browser = self.browser()
        await browser.request("GET", other)
        foreign = browser.csrf()  # signed, for this browser's nonce, but for the other transfer
        await browser.request("GET", path)
        self.assertNotEqual(browser.csrf(), foreign)
        code, _, _ = await browser.request("POST", path + "/code", {"csrf": foreign, "address": "bob@external.test"})
        self.assertEqual(code, 403)
        # The address form's token does not check a code.
        code, _, _ = await self.enter(browser, path, "bob@external.test", "123456")
        self.assertEqual(code, 403)
        self.assertEqual(self.count("SELECT COUNT(*) FROM codes"), 0)
        self.assertEqual(self.count("SELECT COUNT(*) FROM attempts"), 0)
        code, _ = await self.askCode(browser, path, "bob@external.test")
        self.assertEqual(code, 200)

    @asyncTest
    async def test_revokeRefusesMadeUpAndForeignTokens(self) -> None:
        await self.start(confirmation_mail=True)
        path = await self.send({"a.bin": b"a" * 3000})
        await self.send({"b.bin": b"b" * 3000})
        senderPaths = [SENDER_LINK.findall(m.get_body(("plain",)).get_content())[0]
                       for m in await self.mails("confirmation", 2)]
        first, second = sorted(senderPaths, key=lambda p: p != senderPaths[0])
        sender = self.browser()
        await sender.request("GET", second)
        foreign = sender.csrf()
        await sender.request("GET", first)
        made = crypto.newToken()
        for cookie, field in ((sender.cookies["sd_csrf"], foreign), (made, made)):
            sender.cookies["sd_csrf"] = cookie
            code, _, _ = await sender.request("POST", first + "/revoke", {"csrf": field})
            self.assertEqual(code, 403, field)
        self.assertEqual(self.count("SELECT COUNT(*) FROM transfers WHERE revoked IS NOT NULL"), 0)
        await sender.request("GET", first)
        code, _, _ = await sender.request("POST", first + "/revoke", {"csrf": sender.csrf()})
        self.assertEqual(code, 303)
        self.assertEqual(self.count("SELECT COUNT(*) FROM transfers WHERE revoked IS NOT NULL"), 1)

    @asyncTest
    async def test_cookiesWithHttps(self) -> None:
        """
        Behind a proxy with an https public URL: every cookie Secure,
        HttpOnly and SameSite=Lax, so the session survives the click from
        webmail (a top-level navigation from another site).
        """
        path = await self.startVerifying(publicURL="https://gw.example.test")
        browser = self.browser()
        await browser.request("GET", path)
        origin = {"Origin": "https://gw.example.test"}
        await browser.request("POST", path + "/code", {"csrf": browser.csrf(), "address": "bob@external.test"},
                              headers=origin)
        secret = await self.codeFor("bob@external.test")
        code, _, _ = await browser.request("POST", path + "/verify",
                                           {"csrf": browser.csrf(), "address": "bob@external.test", "code": secret},
                                           headers=origin)
        self.assertEqual(code, 303)
        names = set()
        for cookie in browser.setCookies:
            names.add(cookie.split("=", 1)[0])
            attributes = {a.strip().split("=")[0].lower(): a.strip().partition("=")[2].lower()
                          for a in cookie.split(";")[1:]}
            self.assertIn("secure", attributes, cookie)
            self.assertIn("httponly", attributes, cookie)
            self.assertEqual(attributes["samesite"], "lax", cookie)
            self.assertEqual(attributes["path"], path.lower(), cookie)
        self.assertEqual(names, {"sd_csrf", "sd_session"})
        code, page, _ = await browser.request("GET", path)
        self.assertIn(b"a.bin", page)


class FirstDownloadNotice(RecipientTestCase):
    """The sender hears of a file's first download once a response sent its last byte (SPEC 6, 8)."""

    @asyncTest
    async def test_rangesCountButOnlyTheEndNotifies(self) -> None:
        await self.start(download_notification=True)
        data = os.urandom(300_000)
        path = await self.send({"a.bin": data, "b.bin": b"b" * 3000})
        browser = self.browser()
        # A link scanner's probe, and a middle part: in the audit, no news.
        for header in ("bytes=0-0", "bytes=1000-1999"):
            code, _, _ = await browser.request("GET", path + "/0", headers={"Range": header})
            self.assertEqual(code, 206)
        code, body, _ = await browser.request("GET", path + "/1")
        self.assertEqual((code, body), (200, b"b" * 3000))
        [notice] = await self.mails("download", 1)
        self.assertEqual(notice["Subject"], "Gedownload: b.bin")
        self.assertEqual(self.count("SELECT COUNT(*) FROM downloads WHERE n = 0"), 2)
        self.assertEqual(self.rows("SELECT notified FROM files WHERE n = 0"), [(None,)])
        # A resumed download that reaches the end is the download.
        code, body, _ = await browser.request("GET", path + "/0", headers={"Range": "bytes=2000-"})
        self.assertEqual((code, body), (206, data[2000:]))
        notices = await self.mails("download", 2)
        self.assertEqual(sorted(m["Subject"] for m in notices), ["Gedownload: a.bin", "Gedownload: b.bin"])
        code, _, _ = await browser.request("GET", path + "/0")
        self.assertEqual(code, 200)
        code, _, _ = await browser.request("GET", path + "/all.zip")
        self.assertEqual(code, 200)
        await browser.request("GET", path + "/1")
        self.assertEqual(self.count("SELECT COUNT(*) FROM downloads"), 8)
        # Each file's notice was claimed once, by the downloads that ended it: none is left to send.
        self.assertEqual(self.count("SELECT COUNT(*) FROM files WHERE notified IS NULL"), 0)
        self.assertEqual(len(await self.mails("download", 2)), 2)


class Failures(RecipientTestCase):
    def objectFiles(self) -> list[str]:
        root = os.path.join(self.folder, "objects")
        return [os.path.join(d, f) for d, _, names in os.walk(root) for f in names]

    @asyncTest
    async def test_lostObjectIsABranded503(self) -> None:
        """A download whose object cannot be read: a page saying so, in the visitor's language, with the help contact."""
        await self.start()
        path = await self.send({"a.bin": os.urandom(3000), "b.bin": os.urandom(100)})
        for name in self.objectFiles():
            os.unlink(name)
        for suffix, accept, words in (("/0", "", b"niet beschikbaar"), ("/all.zip", "en", b"not available")):
            code, page, response = await self.browser().request("GET", path + suffix,
                                                                headers={"Accept-Language": accept})
            self.assertEqual(code, 503, suffix)
            self.assertEqual(response.headers.getRawHeaders("content-type"), ["text/html; charset=utf-8"])
            self.assertIsNone(response.headers.getRawHeaders("content-disposition"))
            self.assertIn(words, page)
            self.assertIn(b"servicedesk@example.test", page)
            self.assertIn(b"Gemeente Voorbeeld", page)
        self.assertEqual(self.count("SELECT COUNT(*) FROM downloads"), 0)

    @asyncTest
    async def test_zipNamesSafe(self) -> None:
        await self.start()
        files = {name: bytes([n]) * 3000 for n, name in enumerate(["CON.txt", "a:b.txt", "A_B.txt", "x\u202etxt.exe"])}
        path = await self.send(files)
        code, body, _ = await self.browser().request("GET", path + "/all.zip")
        self.assertEqual(code, 200)
        archive = zipfile.ZipFile(io.BytesIO(body))
        self.assertEqual(archive.namelist(), ["_CON.txt", "a_b.txt", "A_B (2).txt", "xtxt.exe"])
        self.assertEqual([archive.read(n) for n in archive.namelist()], list(files.values()))


class Languages(Verification):
    @asyncTest
    async def test_browserLanguageOnADutchTenant(self) -> None:
        await self.start()
        path = await self.send({"a.bin": b"a" * 3000, "b.bin": b"b" * 3000})
        code, page, _ = await self.browser().request("GET", path, headers={"Accept-Language": "en-US,en;q=0.9"})
        self.assertEqual(code, 200)
        self.assertIn(b'<html lang="en">', page)
        self.assertIn(b"sent you 2 files", page)
        self.assertIn(f'href="{path}?lang=nl" hreflang="nl" lang="nl">Nederlands</a>'.encode(), page)
        # A browser that prefers neither language sees the tenant's.
        code, page, _ = await self.browser().request("GET", path, headers={"Accept-Language": "de"})
        self.assertIn(b'<html lang="nl">', page)
        self.assertIn(f'href="{path}?lang=en"'.encode(), page)
        self.rows("UPDATE transfers SET expires = 1")
        code, page, _ = await self.browser().request("GET", path, headers={"Accept-Language": "en"})
        self.assertEqual(code, 410)
        self.assertIn(b"This link has expired", page)

    @asyncTest
    async def test_switchKeptThroughTheFlow(self) -> None:
        """The switch holds for the address form, the code page, its mail and the files page."""
        path = await self.startVerifying()
        browser = self.browser()
        english = {"Accept-Language": "en"}
        code, page, _ = await browser.request("GET", path, headers=english)
        self.assertIn(b"lang=\"en\"", page)
        code, page, _ = await browser.request("GET", path + "?lang=nl", headers=english)
        self.assertIn(b'<html lang="nl">', page)
        self.assertIn(b'name="csrf"', page)
        code, page, _ = await browser.request("POST", path + "/code",
                                              {"csrf": browser.csrf(), "address": "bob@external.test"},
                                              headers=english)
        self.assertEqual(code, 200)
        self.assertIn(b'<html lang="nl">', page)
        self.assertIn(b"Vul uw code in", page)
        [mail] = await self.mails("code", 1)
        self.assertTrue(mail["Subject"].startswith("Uw code"))
        secret = await self.codeFor("bob@external.test")
        await browser.request("POST", path + "/verify",
                              {"csrf": browser.csrf(), "address": "bob@external.test", "code": secret}, headers=english)
        code, page, _ = await browser.request("GET", path, headers=english)
        self.assertIn(b'<html lang="nl">', page)
        self.assertIn(b"a.bin", page)
        code, page, _ = await browser.request("GET", path + "?lang=en")
        self.assertIn(b'<html lang="en">', page)
        self.assertIn(b"sent you 2 files", page)


class Health(RecipientTestCase):
    async def health(self, url: str) -> int:
        code, _, _ = await Browser(url).request("GET", "/healthz")
        return code

    @asyncTest
    async def test_goneFolderIsDownAndStaysGone(self) -> None:
        """An object folder that is gone (an unmounted share) is unhealthy; nothing makes it anew."""
        await self.start()
        path = await self.send({"a.bin": b"a" * 3000})
        self.assertEqual(await self.health(self.gateway.webURL), 200)
        objects = os.path.join(self.folder, "objects")
        os.rename(objects, objects + ".unmounted")
        for url in (self.gateway.webURL, self.gateway.metricsURL):
            await until(lambda: self._down(url), "/healthz to say 503", 30)
        self.assertFalse(os.path.exists(objects))
        # Nor does a message: it is refused for now, the share not replaced by a local folder.
        message = EmailMessage()
        message["From"] = "alice@example.test"
        message["To"] = "bob@external.test"
        message["Subject"] = "x"
        message.set_content("x")
        message.add_attachment(os.urandom(3000), maintype="application", subtype="octet-stream", filename="x.bin")
        code, _ = await inThread(sendBDAT, self.gateway.smtpPort, "alice@example.test", ["bob@external.test"],
                                 message.as_bytes())
        self.assertEqual(code // 100, 4)
        self.assertFalse(os.path.exists(objects))
        self.assertTrue(self.flushLoggedErrors(StorageError))
        os.rename(objects + ".unmounted", objects)
        await until(lambda: self._up(self.gateway.webURL), "/healthz to say 200 again", 30)
        code, _, _ = await self.browser().request("GET", path + "/0")
        self.assertEqual(code, 200)

    async def _down(self, url: str) -> bool:
        return await self.health(url) == 503

    async def _up(self, url: str) -> bool:
        return await self.health(url) == 200

    @asyncTest
    async def test_hungDatabaseAnswersAtOnce(self) -> None:
        """
        A database that does not answer (its lock held elsewhere): /healthz
        still answers, from the background round, and says 503.
        """
        await self.start()
        self.assertEqual(await self.health(self.gateway.webURL), 200)
        config = self.gateway.service.config.database
        if config.kind == "sqlite":
            import sqlite3

            holder: Any = sqlite3.connect(config.url[len("sqlite:"):], isolation_level=None)
            holder.execute("BEGIN EXCLUSIVE")
        else:
            import psycopg

            password = os.environ[config.password_env] if config.password_env else None
            holder = psycopg.connect(config.url, password=password, autocommit=True)
            holder.execute("BEGIN")
            holder.execute("LOCK TABLE schema_version IN ACCESS EXCLUSIVE MODE")
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                holder.execute("ROLLBACK")
                holder.close()

        self.addCleanup(release)
        codes: list[int] = []

        async def answered() -> bool:
            # Each answer within a generous deadline, whatever the database does.
            d = Deferred.fromCoroutine(Browser(self.gateway.webURL).request("GET", "/healthz"))
            code, _, _ = await d.addTimeout(5, reactor)
            codes.append(code)
            return code == 503

        await until(answered, "/healthz to say 503", 30)
        self.assertEqual(set(codes) - {200}, {503})
        release()
        await until(lambda: self._up(self.gateway.webURL), "/healthz to say 200 again", 30)
