"""
Link mode end to end (SPEC sections 5-8): real messages in over SMTP,
the protected message out into a maildir, the files back over HTTP.
"""

from __future__ import annotations

import base64
import email
import email.policy
import hashlib
import os
import re
from email.message import EmailMessage

import treq
from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from secudoc_gateway import crypto
from secudoc_gateway.config import loadConfig
from secudoc_gateway.purge import Purged, purgeOnce
from secudoc_gateway.testing import DEMO_TENANT, startGateway, writeConfig
from tests.support import (
    asyncTest, databaseRows, inThread, maildirMessages, sendBDAT, splitEnvelope, storedObjects,
)

LINK = re.compile(r"http://127\.0\.0\.1:8080(/t/[A-Za-z0-9_-]{43})")


def newMessage(text: str = "", html: str = "") -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Alice <alice@example.test>"
    message["To"] = "bob@external.test"
    message["Subject"] = "Files"
    if text:
        message.set_content(text)
        if html:
            message.add_alternative(html, subtype="html")
    elif html:
        message.set_content(html, subtype="html")
    return message


def attach(message: EmailMessage, data: bytes, filename: str, maintype: str = "application",
           subtype: str = "octet-stream") -> None:
    message.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)


class ProtectionTestCase(TestCase):
    async def start(self, **tenant) -> None:
        self.folder = os.path.abspath(self.mktemp())
        self.gateway = await startGateway(writeConfig(self.folder, [dict(DEMO_TENANT, **tenant)]), reactor)
        self.addCleanup(self.gateway.stop)

    async def relay(self, message: EmailMessage | bytes) -> email.message.EmailMessage:
        raw = message if isinstance(message, bytes) else message.as_bytes()
        before = set(maildirMessages(self.outbox))
        code, text = await inThread(sendBDAT, self.gateway.smtpPort, "alice@example.test",
                                    ["bob@external.test"], raw)
        self.assertEqual(code, 250, text)
        [stored] = [m for m in maildirMessages(self.outbox) if m not in before]
        _, _, out = splitEnvelope(stored)
        self.raw = out
        return email.message_from_bytes(out, policy=email.policy.default)

    def rows(self, sql: str) -> list[tuple]:
        return databaseRows(self.gateway.service.config.database, sql)

    @property
    def outbox(self) -> str:
        return os.path.join(self.folder, "outbox", "example")

    def link(self, message: email.message.EmailMessage) -> str:
        body = message.get_body(("plain", "html"))
        [path] = set(LINK.findall(body.get_content()))
        return path

    async def get(self, path: str, method: str = "GET") -> tuple[int, bytes, object]:
        response = await treq.request(method, self.gateway.webURL + path, persistent=False)
        return response.code, await response.content(), response


class BodyShapes(ProtectionTestCase):
    @asyncTest
    async def test_textOnly(self) -> None:
        await self.start()
        message = newMessage(text="Dear Bob,\nthe contract.\n")
        attach(message, os.urandom(4000), "contract.pdf", "application", "pdf")
        out = await self.relay(message)
        self.assertEqual(out["X-SecuDoc-Status"], "protected")
        text = out.get_body(("plain",)).get_content()
        self.assertTrue(text.index("contract.pdf") < text.index("Dear Bob,"))
        self.assertIn("Dear Bob,\nthe contract.\n", text)
        self.assertEqual(list(out.iter_attachments()), [])
        self.assertEqual(out.get_body(("plain",))["Content-Transfer-Encoding"], "quoted-printable")

    @asyncTest
    async def test_htmlOnly(self) -> None:
        await self.start(language="en")
        message = newMessage(html="<html><body class=x><p>Dear Bob</p></body></html>\n")
        attach(message, os.urandom(4000), "plan <b>é</b>.pdf", "application", "pdf")
        out = await self.relay(message)
        html = out.get_body(("html",)).get_content()
        self.assertTrue(html.startswith("<html><body class=x>"))
        self.assertLess(html.index("/t/"), html.index("<p>Dear Bob</p>"))
        self.assertIn("plan &lt;b&gt;&#233;&lt;/b&gt;.pdf", html)
        self.assertEqual(list(out.iter_attachments()), [])

    @asyncTest
    async def test_alternative(self) -> None:
        await self.start()
        message = newMessage(text="plain words\n", html="<html><body><p>html words</p></body></html>\n")
        attach(message, os.urandom(4000), "a.bin")
        out = await self.relay(message)
        plain = out.get_body(("plain",)).get_content()
        html = out.get_body(("html",)).get_content()
        self.assertEqual(set(LINK.findall(plain)), set(LINK.findall(html)))
        self.assertIn("plain words", plain)
        self.assertIn("html words", html)

    @asyncTest
    async def test_noTextBody(self) -> None:
        """A message of only an attachment gets a text part with the banner."""
        await self.start()
        raw = (b"From: alice@example.test\r\nTo: bob@external.test\r\nSubject: scan\r\n"
               b"MIME-Version: 1.0\r\nContent-Type: application/pdf; name=scan.pdf\r\n"
               b"Content-Transfer-Encoding: base64\r\n\r\n"
               + __import__("base64").encodebytes(b"%PDF" + os.urandom(3000)).replace(b"\n", b"\r\n"))
        out = await self.relay(raw)
        self.assertEqual(out["X-SecuDoc-Status"], "protected")
        self.assertIn("scan.pdf", out.get_body(("plain",)).get_content())


class Attachments(ProtectionTestCase):
    @asyncTest
    async def test_fiftyAttachmentsWithUTF8Names(self) -> None:
        await self.start()
        message = newMessage(text="many\n")
        files = {f"offerte-{i}-Ünïcødé-日本.bin": os.urandom(1500 + i) for i in range(50)}
        for name, data in files.items():
            attach(message, data, name)
        out = await self.relay(message)
        path = self.link(out)
        code, page, _ = await self.get(path)
        self.assertEqual(code, 200)
        for n, (name, data) in enumerate(files.items()):
            code, content, response = await self.get(f"{path}/{n}")
            self.assertEqual(code, 200)
            self.assertEqual(hashlib.sha256(content).digest(), hashlib.sha256(data).digest())
            disposition = response.headers.getRawHeaders("content-disposition")[0]
            self.assertIn("filename*=UTF-8''" + __import__("urllib.parse").parse.quote(name, safe=""), disposition)
            self.assertIn(name, page.decode("utf-8"))
        code, _, _ = await self.get(f"{path}/50")
        self.assertEqual(code, 404)

    @asyncTest
    async def test_oneObjectPerTransfer(self) -> None:
        """
        Leaves, an attached message between them and an inline image
        shown by cid: all go into one object, each file a range of it
        read back on its own; purge removes the one object.
        """
        await self.start()
        inner = b"From: carol@example.test\r\nSubject: thread\r\n\r\n" + b"y" * 5000 + b"\r\n"
        first, last, logo = os.urandom(3000), os.urandom(300_000), os.urandom(4000)
        raw = (b"From: alice@example.test\r\nTo: bob@external.test\r\nSubject: many\r\nMIME-Version: 1.0\r\n"
               b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
               b"Content-Type: multipart/related; boundary=r\r\n\r\n--r\r\n"
               b"Content-Type: text/html\r\n\r\n<html><body><img src=\"cid:logo@x\"></body></html>\r\n--r\r\n"
               b"Content-Type: image/png\r\nContent-ID: <logo@x>\r\nContent-Transfer-Encoding: base64\r\n\r\n"
               + base64.encodebytes(logo).replace(b"\n", b"\r\n") + b"--r--\r\n--b\r\n"
               b"Content-Type: application/pdf; name=first.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
               + base64.encodebytes(first).replace(b"\n", b"\r\n") + b"--b\r\n"
               b"Content-Type: message/rfc822\r\n\r\n" + inner + b"\r\n--b\r\n"
               b"Content-Type: application/octet-stream; name=last.bin\r\nContent-Transfer-Encoding: base64\r\n\r\n"
               + base64.encodebytes(last).replace(b"\n", b"\r\n") + b"--b--\r\n")
        out = await self.relay(raw)
        self.assertEqual(out["X-SecuDoc-Status"], "protected")
        [(key, sealed)] = (await storedObjects(self.folder)).items()
        rows = self.rows("SELECT n, object_key, object_offset, object_length FROM files ORDER BY n")
        self.assertEqual([(n, k) for n, k, _, _ in rows], [(0, key), (1, key), (2, key)])
        ranges = [(offset, offset + length) for _, _, offset, length in rows]
        self.assertEqual(ranges, sorted(ranges))
        self.assertTrue(all(a[1] <= b[0] for a, b in zip(ranges, ranges[1:])))
        self.assertLessEqual(ranges[-1][1], len(sealed))
        path = self.link(out)
        for n, data in enumerate((first, inner, last)):
            code, content, _ = await self.get(f"{path}/{n}")
            self.assertEqual((code, hashlib.sha256(content).hexdigest()), (200, hashlib.sha256(data).hexdigest()))
        self.rows("UPDATE transfers SET expires = 1")
        self.assertEqual(await purgeOnce(loadConfig(os.path.join(self.folder, "gateway.toml")), reactor), Purged(expired=1))
        self.assertEqual(await storedObjects(self.folder), {})

    @asyncTest
    async def test_threshold(self) -> None:
        """1023 decoded bytes pass (rule 8); 1024 bytes are protected."""
        await self.start()
        small = newMessage(text="small\n")
        attach(small, os.urandom(1023), "small.bin")
        out = await self.relay(small)
        self.assertEqual(out["X-SecuDoc-Status"], "passed; reason=no-attachment")
        self.assertEqual(len(list(out.iter_attachments())), 1)
        self.assertEqual(await storedObjects(self.folder), {})
        exact = newMessage(text="exact\n")
        attach(exact, os.urandom(1024), "exact.bin")
        out = await self.relay(exact)
        self.assertEqual(out["X-SecuDoc-Status"], "protected")

    @asyncTest
    async def test_inlineImageAndCalendarKept(self) -> None:
        await self.start()
        message = newMessage(text="see logo\n", html='<html><body><img src="cid:logo@x"></body></html>\n')
        html = message.get_body(("html",))
        logo = os.urandom(5000)
        html.add_related(logo, maintype="image", subtype="png", cid="<logo@x>")
        message.add_attachment("BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n" * 100, subtype="calendar",
                               filename="invite.ics")
        attach(message, os.urandom(3000), "agenda.pdf")
        out = await self.relay(message)
        self.assertEqual(out["X-SecuDoc-Status"], "protected")
        kept = [part.get_content_type() for part in out.walk() if not part.is_multipart()]
        self.assertIn("image/png", kept)
        self.assertIn("text/calendar", kept)
        [image] = [p for p in out.walk() if p.get_content_type() == "image/png"]
        self.assertEqual(image.get_content(), logo)
        code, page, _ = await self.get(self.link(out))
        self.assertIn(b"agenda.pdf", page)
        self.assertNotIn(b"invite.ics", page)

    @asyncTest
    async def test_attachedMessageStoredByteExact(self) -> None:
        await self.start()
        inner = (b"From: carol@example.test\r\nSubject: the thread\r\n\r\n" + b"x" * 3000 + b"\r\n")
        raw = (b"From: alice@example.test\r\nTo: bob@external.test\r\nSubject: fwd\r\nMIME-Version: 1.0\r\n"
               b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nfwd\r\n"
               b"--b\r\nContent-Type: message/rfc822\r\n\r\n" + inner + b"\r\n--b--\r\n")
        out = await self.relay(raw)
        path = self.link(out)
        code, content, response = await self.get(path + "/0")
        self.assertEqual(content, inner)
        self.assertIn("the thread.eml", response.headers.getRawHeaders("content-disposition")[0])


class Links(ProtectionTestCase):
    async def protected(self) -> tuple[str, bytes]:
        data = os.urandom(70_000)
        message = newMessage(text="x\n")
        attach(message, data, "x.bin")
        out = await self.relay(message)
        return self.link(out), data

    @asyncTest
    async def test_headIsNotADownload(self) -> None:
        await self.start()
        path, data = await self.protected()
        code, body, response = await self.get(path + "/0", "HEAD")
        self.assertEqual((code, body), (200, b""))
        self.assertEqual(self.rows("SELECT count(*) FROM downloads"), [(0,)])
        await self.get(path)
        self.assertEqual(self.rows("SELECT count(*) FROM downloads"), [(0,)])
        await self.get(path + "/0")
        self.assertEqual(self.rows("SELECT count(*) FROM downloads"), [(1,)])

    @asyncTest
    async def test_unknownAndExpired(self) -> None:
        await self.start()
        path, _ = await self.protected()
        code, _, response = await self.get("/t/" + crypto.newToken())
        self.assertEqual(code, 404)
        self.assertEqual(response.headers.getRawHeaders("referrer-policy"), ["no-referrer"])
        self.rows("UPDATE transfers SET expires = 1")
        for suffix in ("", "/0"):
            code, _, response = await self.get(path + suffix)
            self.assertEqual(code, 410)
            self.assertEqual(response.headers.getRawHeaders("cache-control"), ["no-store"])

    @asyncTest
    async def test_storeAndDatabaseWithoutTokenCannotDecrypt(self) -> None:
        """Everything on disk, tried as keys: no file decrypts without the link."""
        await self.start()
        path, data = await self.protected()
        token = path.rsplit("/", 1)[1]
        [(transferId, tokenHash)] = self.rows("SELECT id, token_hash FROM transfers")
        [(objectKey, offset, length, slot)] = self.rows(
            "SELECT object_key, object_offset, object_length, key_index FROM files")
        stored = (await storedObjects(self.folder))[objectKey]
        sealed = stored[offset:offset + length]
        self.assertNotIn(data[:64], stored)
        self.assertEqual(tokenHash, crypto.tokenHash(token))
        dump = b"\n".join(str(row).encode() for table in ("transfers", "files", "users", "relayed")
                          for row in self.rows(f"SELECT * FROM {table}"))
        self.assertNotIn(token.encode(), dump)
        for guess in (tokenHash, transferId, objectKey):
            decryptor = crypto.Decryptor(crypto.fileKey(guess, transferId, slot))
            self.assertRaises(crypto.DecryptionError, lambda: decryptor.feed(sealed) + decryptor.finish())
        decryptor = crypto.Decryptor(crypto.fileKey(token, transferId, slot))
        self.assertEqual(decryptor.feed(sealed) + decryptor.finish(), data)

    @asyncTest
    async def test_tokensNeverLogged(self) -> None:
        await self.start()
        path, _ = await self.protected()
        from twisted.logger import globalLogPublisher

        seen: list[str] = []
        observer = lambda event: seen.append(str(event.get("log_format", "")) + str(event))
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        await self.get(path)
        await self.get(path + "/0")
        token = path.rsplit("/", 1)[1]
        self.assertTrue(seen)
        self.assertFalse([line for line in seen if token in line])
        self.assertTrue([line for line in seen if "/t/<redacted>" in line])
