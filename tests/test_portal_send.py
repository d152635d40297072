"""
Sending files from the browser (SPEC 9) end to end, through the real
web listener with real clients: a signed-in user posts multipart/form-
data to /portal/send (treq, the body produced as it is sent, or raw
sockets for hostile and broken bodies); the recipients' mail, the link,
the files and the ZIP byte-exact; memory flat for a 200 MB file; a
cancelled, cut, oversized or hostile upload leaves no object and no row
(on fs, and on S3 with SECUDOC_TEST_STORAGE=s3); EICAR refused or
withheld; a relay's refusal leaves the transfer "not sent", and a retry
sends it.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import os
import random
import re
import socket
import tempfile
import zipfile
from typing import Any, Iterator, Optional
from urllib.parse import urlsplit

import treq
from twisted.internet import reactor
from twisted.internet.defer import ensureDeferred
from twisted.web.client import Agent, FileBodyProducer, HTTPConnectionPool

from secudoc_gateway.replies import Reply
from secudoc_gateway.testing.smtp import SinkServerFactory
from tests.portal_support import LOGIN_LINK, PortalTestCase
from tests.support import Browser, asyncTest, inThread, storageOf, storedObjects, until

TOKEN_LINK = re.compile(r"https?://[^/\s]+(/t/[A-Za-z0-9_-]{43})")
BOUNDARY = "----secudocTestBoundary7MA4YWxkTrZu0gW"
CHUNK = 1 << 20
BIG = int(os.environ.get("SECUDOC_TEST_UPLOAD_MB", "200")) * CHUNK
EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


def generated(seed: int, size: int) -> Iterator[bytes]:
    """``size`` pseudo-random bytes in 1 MiB pieces, the same for the same seed: never whole in memory."""
    rng = random.Random(seed)
    left = size
    while left:
        n = min(CHUNK, left)
        yield rng.randbytes(n)
        left -= n


def digest(seed: int, size: int) -> str:
    h = hashlib.sha256()
    for piece in generated(seed, size):
        h.update(piece)
    return h.hexdigest()


class FormBody:
    """
    A multipart/form-data body read like a file (for ``FileBodyProducer``):
    the fields, then each file ``(name, seed or bytes, size)``, produced
    as the client sends it.  ``stopAfter`` makes it end (short) there.
    """

    def __init__(self, fields: list[tuple[str, str]], files: list[tuple[str, Any, int]],
                 stopAfter: Optional[int] = None) -> None:
        self.pieces: list[Any] = []
        for name, value in fields:
            self.pieces.append(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
                               .encode("utf-8"))
        for filename, source, size in files:
            self.pieces.append(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"'
                               f'\r\nContent-Type: application/octet-stream\r\n\r\n'.encode("utf-8"))
            self.pieces.append((source, size))
            self.pieces.append(b"\r\n")
        self.pieces.append(f"--{BOUNDARY}--\r\n".encode("ascii"))
        self.length = sum(p[1] if isinstance(p, tuple) else len(p) for p in self.pieces)
        self.stopAfter = stopAfter
        self._iter = self._chunks()
        self._buffer = b""
        self._position = 0
        self._sent = 0

    def _chunks(self) -> Iterator[bytes]:
        for piece in self.pieces:
            if isinstance(piece, tuple):
                source, size = piece
                if isinstance(source, bytes):
                    yield source
                else:
                    yield from generated(source, size)
            else:
                yield piece

    def read(self, n: int) -> bytes:
        while len(self._buffer) < n:
            more = next(self._iter, None)
            if more is None:
                break
            self._buffer += more
        out, self._buffer = self._buffer[:n], self._buffer[n:]
        if self.stopAfter is not None:
            out = out[:max(0, self.stopAfter - self._sent)]
        self._sent += len(out)
        return out

    def seek(self, offset: int, whence: int = 0) -> None:
        self._position = self.length if whence == 2 else offset

    def tell(self) -> int:
        return self._position

    def close(self) -> None:
        """Nothing to free: the body is made as it is read."""


def rssPeak() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))


def resetPeak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


class SendTestCase(PortalTestCase):
    async def signedIn(self, address: str = "alice@example.test") -> Browser:
        browser = await self.signIn(address)
        code, page, response = await browser.request("GET", "/portal/send")
        self.assertEqual(code, 200, page)
        return browser

    async def post(self, browser: Browser, body: FormBody, **headers: str) -> tuple[int, bytes, Any]:
        sent = {"Cookie": "; ".join(f"{k}={v}" for k, v in browser.cookies.items()),
                "Content-Type": f"multipart/form-data; boundary={BOUNDARY}", "Origin": browser.base, **headers}
        client = treq.client.HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))
        response = await client.request("POST", browser.base + "/portal/send", headers={k: [v] for k, v in sent.items()},
                                        data=FileBodyProducer(body, readSize=65536), allow_redirects=False)
        return response.code, await response.content(), response

    def fields(self, browser: Browser, recipients: str = "bob@external.test, carol@external.test",
               subject: str = "Bouwtekeningen", message: str = "Beste Bob,\nhierbij de tekeningen.") -> list:
        return [("csrf", browser.csrf()), ("recipients", recipients), ("subject", subject), ("message", message),
                ("expiry_days", "5")]

    async def nothingLeft(self) -> None:
        """No object and no transfer row, once what was written is removed."""
        async def empty() -> bool:
            return not await storedObjects(self.folder)

        await until(empty, "no object left", timeout=15)
        storage = storageOf(self.folder)
        if storage.get("backend") == "s3":
            from secudoc_gateway.testing.s3 import sharedServer

            def noUploads() -> bool:
                found = sharedServer().client().list_multipart_uploads(Bucket=storage["bucket"])
                return not found.get("Uploads")

            async def aborted() -> bool:
                return bool(await inThread(noUploads))

            await until(aborted, "no multipart upload left", timeout=15)
        site = self.gateway.service.webListeners[0].factory
        await until(lambda: not site.connections._open, "every connection closed", timeout=15)
        self.assertEqual(self.rows("SELECT COUNT(*) FROM transfers"), [(0,)])
        self.assertEqual(self.rows("SELECT COUNT(*) FROM browser_sends"), [(0,)])

    def rawPost(self, browser: Browser, body: bytes, contentType: str = "", length: Optional[int] = None,
                close: bool = False) -> bytes:
        """A POST from a raw socket (blocking: run it in a thread); the answer, or b"" on a cut."""
        address = urlsplit(browser.base)
        cookie = "; ".join(f"{k}={v}" for k, v in browser.cookies.items())
        head = (f"POST /portal/send HTTP/1.1\r\nHost: {address.netloc}\r\nCookie: {cookie}\r\n"
                f"Content-Type: {contentType or f'multipart/form-data; boundary={BOUNDARY}'}\r\n"
                f"Content-Length: {len(body) if length is None else length}\r\nConnection: close\r\n\r\n").encode("latin-1")
        with socket.create_connection((address.hostname, address.port), timeout=30) as s:
            s.sendall(head)
            try:
                s.sendall(body)
            except OSError:
                pass  # refused early: the answer is read below
            if close:
                return b""
            answer = b""
            try:
                while True:
                    got = s.recv(65536)
                    if not got:
                        break
                    answer += got
            except OSError:
                pass  # the gateway reset the connection after its answer: what came is the answer
            return answer


class Send(SendTestCase):
    @asyncTest
    async def test_threeFilesOneBig(self) -> None:
        """Three files, one of 200 MB, streamed: the mail, the link, the files and the ZIP byte-exact; memory flat."""
        await self.start()
        browser = await self.signedIn()
        code, page, response = await browser.request("GET", "/portal/send")
        text = page.decode("utf-8")
        csp = response.headers.getRawHeaders("content-security-policy")[0]
        self.assertIn("script-src 'self'", csp)
        self.assertNotIn("unsafe-inline'; script", csp)
        self.assertIn('<script src="/portal/send.js"></script>', text)
        self.assertEqual(len(re.findall(r"<script", text)), 1)
        self.assertIn('enctype="multipart/form-data"', text)
        self.assertIn('<label for="recipients">Ontvangers</label>', text)
        self.assertIn('aria-live="polite"', text)
        code, script, response = await browser.request("GET", "/portal/send.js")
        self.assertEqual(code, 200)
        self.assertIn(b"xhr.upload.addEventListener", script)
        self.assertEqual(response.headers.getRawHeaders("content-type"), ["text/javascript; charset=utf-8"])

        small = os.urandom(3000)
        files = [("tekening A.pdf", small, len(small)), ("groot.bin", 7, BIG), ("leeg.txt", b"", 0)]
        resetPeak()
        before = rssPeak()
        code, body, response = await self.post(browser, FormBody(self.fields(browser), files))
        grown = rssPeak() - before
        self.assertEqual(code, 303, body)
        [location] = response.headers.getRawHeaders("location")
        transferId = location.rsplit("/", 1)[1]
        self.assertEqual(location, f"/portal/transfers/{transferId}")
        self.assertLess(grown, 64 * CHUNK, f"peak RSS grew {grown / CHUNK:.0f} MiB for a {BIG // CHUNK} MiB upload")

        # A mail of their own to each recipient: neither sees the other's address.
        mails = await self.waitMails("upload", 2)
        self.assertEqual(sorted(m["To"] for m in mails), ["bob@external.test", "carol@external.test"])
        [mail] = self.mails("upload", to="bob@external.test")
        [other] = self.mails("upload", to="carol@external.test")
        self.assertEqual(mail["To"], "bob@external.test")
        self.assertNotIn("carol", mail.as_string())
        self.assertEqual(TOKEN_LINK.findall(other.get_body(("plain",)).get_content()),
                         TOKEN_LINK.findall(mail.get_body(("plain",)).get_content()))
        self.assertEqual(mail["From"], "noreply@example.test")
        self.assertEqual(mail["Reply-To"], "alice@example.test")
        self.assertEqual(mail["Subject"], "Bouwtekeningen")
        self.assertEqual(mail["X-SecuDoc-Transfer"], transferId)
        plain = mail.get_body(("plain",)).get_content()
        self.assertIn("hierbij de tekeningen", plain)
        self.assertIn("alice@example.test", plain)
        self.assertIn("groot.bin", plain)
        [link] = TOKEN_LINK.findall(plain)
        envelope = [m for m in os.listdir(os.path.join(self.outbox, "new"))]
        self.assertTrue(envelope)

        # The transfer in the list and on its page, like a mail transfer.
        code, page, _ = await browser.request("GET", "/portal/")
        self.assertIn(transferId, page.decode("utf-8"))
        code, page, _ = await browser.request("GET", location)
        text = page.decode("utf-8")
        self.assertEqual(code, 200)
        self.assertIn(hashlib.sha256(small).hexdigest(), text)
        self.assertIn(digest(7, BIG), text)
        self.assertIn("bob@external.test", text)
        self.assertEqual(self.rows("SELECT state, sealed_token FROM browser_sends"), [("sent", None)])
        [(expires, created)] = self.rows("SELECT expires, created FROM transfers")
        self.assertAlmostEqual(expires - created, 5 * 86400, delta=1)

        # The recipient's side: each file and the ZIP, byte-exact.
        recipient = Browser(self.gateway.webURL)
        for n, (name, source, size) in enumerate(files):
            got = await self.download(recipient.base + f"{link}/{n}")
            self.assertEqual(got, hashlib.sha256(source).hexdigest() if isinstance(source, bytes) else digest(7, BIG),
                             name)
        with tempfile.TemporaryFile() as archive:
            await self.download(recipient.base + f"{link}/all.zip", archive)
            archive.seek(0)
            with zipfile.ZipFile(archive) as opened:
                self.assertEqual(sorted(opened.namelist()), sorted(name for name, _, _ in files))
                for name, source, size in files:
                    h = hashlib.sha256()
                    with opened.open(name) as member:
                        for piece in iter(lambda: member.read(CHUNK), b""):
                            h.update(piece)
                    self.assertEqual(h.hexdigest(), hashlib.sha256(source).hexdigest()
                                     if isinstance(source, bytes) else digest(7, BIG), name)
        self.assertEqual(len(await storedObjects(self.folder)) if BIG < 64 * CHUNK else 1, 1)

    async def download(self, url: str, into: Any = None) -> str:
        """A download's sha256, streamed (and written to ``into``)."""
        client = treq.client.HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))
        response = await client.get(url)
        self.assertEqual(response.code, 200, url)
        h = hashlib.sha256()

        def collect(data: bytes) -> None:
            h.update(data)
            if into is not None:
                into.write(data)

        await treq.collect(response, collect)
        return h.hexdigest()

    @asyncTest
    async def test_formProblemsComeBack(self) -> None:
        """A wrong recipient or no file: 400, the form again with the message and what was typed; nothing kept."""
        await self.start()
        browser = await self.signedIn()
        code, page, _ = await self.post(browser, FormBody(self.fields(browser, recipients="bob@external.test, nee"),
                                                          [("a.txt", b"x" * 100000, 100000)]))
        text = page.decode("utf-8")
        self.assertEqual(code, 400)
        self.assertIn("Deze ontvangers zijn geen geldige e-mailadressen: nee", text)
        self.assertIn("bob@external.test, nee</textarea>", text)
        code, page, _ = await self.post(browser, FormBody(self.fields(browser), []))
        self.assertEqual(code, 400)
        self.assertIn("Kies ten minste één bestand.", page.decode("utf-8"))
        await self.nothingLeft()

    @asyncTest
    async def test_forgedTokenAndNoSession(self) -> None:
        """Another session's token, or none: 403 before a byte is stored."""
        await self.start()
        browser = await self.signedIn()
        fields = [("csrf", "forged")] + self.fields(browser)[1:]
        answer = await inThread(self.rawPost, browser, FormBody(fields, [("a.bin", b"a" * 500000, 500000)]).read(
            1 << 30))
        self.assertTrue(answer.startswith(b"HTTP/1.1 403"), answer[:100])
        stranger = Browser(self.gateway.webURL)
        answer = await inThread(self.rawPost, stranger, FormBody(self.fields(browser), [("a.bin", b"a" * 10, 10)])
                                .read(1 << 30))
        self.assertTrue(answer.startswith(b"HTTP/1.1 403"), answer[:100])
        await self.nothingLeft()

    @asyncTest
    async def test_cancelAndCut(self) -> None:
        """A connection closed mid-file (a cancel, a cut) leaves no object and no row."""
        await self.start()
        browser = await self.signedIn()
        body = FormBody(self.fields(browser), [("a.bin", b"a" * 300000, 300000), ("b.bin", 3, 20 * CHUNK)])
        full = body.length
        partial = body.read(5 * CHUNK)
        await inThread(self.rawPost, browser, partial, length=full, close=True)
        await self.nothingLeft()
        # treq, cancelled while it sends.
        body = FormBody(self.fields(browser), [("c.bin", 4, 30 * CHUNK)])
        request = self.post(browser, body)
        d = ensureDeferred(request)
        await until(lambda: body._sent > 8 * CHUNK, "8 MiB sent", timeout=15)
        d.cancel()
        try:
            await d
        except Exception:
            pass  # the cancelled request fails, as it should: what counts is what the gateway kept
        await self.nothingLeft()

    @asyncTest
    async def test_overMaxUploadSize(self) -> None:
        """Past max_upload_size: 413 at once (declared or counted), what was stored removed."""
        await self.start(portal={"max_upload_size": 2 * CHUNK})
        browser = await self.signedIn()
        body = FormBody(self.fields(browser), [("a.bin", 5, CHUNK), ("b.bin", 6, 2 * CHUNK)])
        raw = body.read(1 << 30)
        answer = await inThread(self.rawPost, browser, raw)
        self.assertTrue(answer.startswith(b"HTTP/1.1 413"), answer[:100])
        answer = await inThread(self.rawPost, browser, raw[:100], length=10 * CHUNK)
        self.assertTrue(answer.startswith(b"HTTP/1.1 413"), answer[:100])
        await self.nothingLeft()

    @asyncTest
    async def test_hostileBodies(self) -> None:
        """No boundary, the boundary in the data, a thousand parts, a 10 MB header, bad file names: 4xx, nothing left."""
        await self.start()
        browser = await self.signedIn()
        token = browser.csrf()
        head = (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="csrf"\r\n\r\n{token}\r\n'
                f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="recipients"\r\n\r\nbob@external.test\r\n'
                ).encode()
        part = (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a.bin"\r\n\r\n').encode()
        end = f"\r\n--{BOUNDARY}--\r\n".encode()
        cases = {
            "no boundary": (head + part + b"x" * 1000 + end, "multipart/form-data"),
            "not multipart": (b"csrf=" + token.encode(), "application/x-www-form-urlencoded"),
            "boundary in the data": (head + part + b"x" * 70000 + f"\r\n--{BOUNDARY}X".encode() + b"y" * 10 + end, ""),
            "a thousand parts": (head + b"".join(
                f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="f{i}"\r\n\r\nx\r\n'.encode()
                for i in range(1000)) + f"--{BOUNDARY}--\r\n".encode(), ""),
            "a 10 MB header": (head + f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
                                      f'filename="a"\r\nX-Long: '.encode() + b"h" * (10 * CHUNK) + b"\r\n\r\nx" + end,
                               ""),
            "CRLF in a file name": (head + f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
                                           f'filename="a\r\nb.txt"\r\n\r\n'.encode() + b"x" * 100 + end, ""),
            "a path in a file name": (head + f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
                                             f'filename="../../etc/passwd"\r\n\r\n'.encode() + b"x" * 100 + end, ""),
            "no end": (head + part + b"x" * 100000, ""),
        }
        for name, (body, contentType) in cases.items():
            answer = await inThread(self.rawPost, browser, body, contentType)
            self.assertRegex(answer[:12], rb"HTTP/1.1 4\d\d", name)
            if answer.startswith(b"HTTP/1.1 400"):
                self.assertIn(b'role="alert"', answer, name)
        await self.nothingLeft()


class Malware(SendTestCase):
    """Uploads go through clamd like mail attachments (SPEC 10), with the tests' own signatures."""

    async def startScanning(self, **tenant: Any) -> None:
        from tests.test_scan_e2e import clamd

        await self.start(scan={"clamd": clamd().address, "timeout": 10}, min_attachment_size=0, **tenant)

    @asyncTest
    async def test_rejected(self) -> None:
        """on_malware = "reject": 400, the form again naming the file and the signature; no mail, object or row."""
        await self.startScanning(on_malware="reject")
        browser = await self.signedIn()
        code, page, _ = await self.post(browser, FormBody(self.fields(browser), [
            ("schoon.txt", b"fine\n" * 1000, 5000), ("eicar.com", EICAR, len(EICAR))]))
        text = page.decode("utf-8")
        self.assertEqual(code, 400, text)
        self.assertIn("eicar.com bevat malware (SecuDoc.Test.EICAR.UNOFFICIAL). Er is niets verstuurd of bewaard.",
                      text)
        self.assertIn("bob@external.test, carol@external.test</textarea>", text)
        await self.nothingLeft()
        self.assertEqual(self.mails("upload"), [])
        self.assertEqual(self.rows("SELECT COUNT(*) FROM withheld"), [(0,)])

    @asyncTest
    async def test_stripped(self) -> None:
        """on_malware = "strip": the transfer goes without the file; the page and the mail say which and why."""
        await self.startScanning(on_malware="strip")
        browser = await self.signedIn()
        clean = b"fine\n" * 1000
        code, body, response = await self.post(browser, FormBody(self.fields(browser, recipients="bob@external.test"), [
            ("eicar.com", EICAR, len(EICAR)), ("schoon.txt", clean, len(clean))]))
        self.assertEqual(code, 303, body)
        [location] = response.headers.getRawHeaders("location")
        code, page, _ = await browser.request("GET", location)
        text = page.decode("utf-8")
        self.assertIn("Niet verstuurd, want het bevat malware: eicar.com (SecuDoc.Test.EICAR.UNOFFICIAL).", text)
        self.assertIn("schoon.txt", text)
        self.assertEqual(self.rows("SELECT n, name, scan FROM files"), [(0, "schoon.txt", "clean")])
        self.assertEqual(self.rows("SELECT name, signature FROM withheld"),
                         [("eicar.com", "SecuDoc.Test.EICAR.UNOFFICIAL")])
        [mail] = await self.waitMails("upload", 1)
        plain = mail.get_body(("plain",)).get_content()
        self.assertIn("eicar.com is niet meegestuurd: er is malware in gevonden.", plain)
        [link] = TOKEN_LINK.findall(plain)
        recipient = Browser(self.gateway.webURL)
        self.assertEqual(await self.download(recipient.base + f"{link}/0"), hashlib.sha256(clean).hexdigest())
        code, _, _ = await recipient.request("GET", f"{link}/1")
        self.assertEqual(code, 404)

    download = Send.download


class Relay(SendTestCase):
    @asyncTest
    async def test_refusedThenRetried(self) -> None:
        """
        The relay refuses the mail to one of two recipients: the other has
        theirs, the page says "not sent", to whom and why; the retry mails
        only the one refused.
        """
        sink = await self.startRefusingBob()
        browser = await self.signInBySink(sink)
        location = await self.sendOne(browser, "bob@external.test, carol@external.test")

        def uploads() -> list[tuple[str, ...]]:
            return [m.recipients for m in sink.messages if b"kind=upload" in m.data]

        self.assertEqual(uploads(), [("carol@external.test",)])
        [carols] = [m for m in sink.messages if b"kind=upload" in m.data]
        self.assertIn(b"\r\nTo: carol@external.test\r\n", carols.data)
        self.assertNotIn(b"bob@external.test", carols.data)
        code, page, _ = await browser.request("GET", location)
        text = page.decode("utf-8")
        self.assertIn("niet aan alle ontvangers verstuurd", text)
        self.assertIn("bob@external.test: 550 5.1.1 No such user here", text)
        self.assertIn('<li>bob@external.test <span class="state-unsent">(niet verstuurd)</span></li>', text)
        self.assertIn("<li>carol@external.test</li>", text)
        self.assertIn("Opnieuw versturen", text)
        code, page, _ = await browser.request("GET", "/portal/")
        self.assertIn("niet verstuurd", page.decode("utf-8"))
        self.assertEqual(self.rows("SELECT state, pending FROM browser_sends"), [("unsent", '["bob@external.test"]')])

        # Still refused: still unsent, nobody mailed twice.
        code, _, response = await browser.request("POST", location + "/resend", {"csrf": browser.csrf()})
        self.assertEqual(code, 303)
        self.assertEqual(uploads(), [("carol@external.test",)])
        self.assertEqual(self.rows("SELECT state, pending FROM browser_sends"), [("unsent", '["bob@external.test"]')])

        sink.replies.clear()
        code, _, response = await browser.request("POST", location + "/resend", {"csrf": browser.csrf()})
        self.assertEqual(code, 303)
        self.assertEqual(uploads(), [("carol@external.test",), ("bob@external.test",)])
        self.assertEqual(self.rows("SELECT state, sealed_token, pending FROM browser_sends"), [("sent", None, "")])
        code, page, _ = await browser.request("GET", location)
        self.assertNotIn("niet verstuurd", page.decode("utf-8"))

    @asyncTest
    async def test_otherSessionCannotRetry(self) -> None:
        """The link's token is sealed under the sending session's secret: another session of the same user may not resend."""
        sink = await self.startRefusingBob()
        browser = await self.signInBySink(sink)
        location = await self.sendOne(browser, "bob@external.test")
        sink.replies.clear()
        other = await self.signInBySink(sink)
        code, page, _ = await other.request("GET", location)
        code, page, _ = await other.request("POST", location + "/resend", {"csrf": other.csrf()})
        self.assertEqual(code, 409)
        self.assertIn("alleen in de sessie waarin u de bestanden verstuurde", page.decode("utf-8"))
        self.assertEqual([m for m in sink.messages if b"kind=upload" in m.data], [])
        self.assertEqual(self.rows("SELECT state FROM browser_sends"), [("unsent",)])

    @asyncTest
    async def test_refusedThenDeleted(self) -> None:
        sink = await self.startRefusingBob()
        browser = await self.signInBySink(sink)
        location = await self.sendOne(browser, "bob@external.test")
        code, page, _ = await browser.request("GET", location)
        code, page, _ = await browser.request("POST", location + "/delete", {"csrf": browser.csrf()})
        self.assertEqual(code, 200)
        await self.nothingLeft()

    async def startRefusingBob(self) -> SinkServerFactory:
        """The gateway relaying to an SMTP server that refuses bob@external.test as a real one would."""
        sink = SinkServerFactory(replies={"rcpt:bob@external.test": Reply(550, "5.1.1", "No such user here")})
        port = reactor.listenTCP(0, sink, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        await self.start(relay=f"smtp://127.0.0.1:{port.getHost().port}", relay_require_tls=False)
        return sink

    async def sendOne(self, browser: Browser, recipients: str) -> str:
        """One small file sent from the page to ``recipients``: the new transfer's page."""
        await browser.request("GET", "/portal/send")
        code, body, response = await self.post(browser, FormBody(self.fields(browser, recipients=recipients),
                                                                 [("a.txt", b"hello\n", 6)]))
        self.assertEqual(code, 303, body)
        [location] = response.headers.getRawHeaders("location")
        return location

    async def signInBySink(self, sink: SinkServerFactory) -> Browser:
        """Signed in by the newest login link the relay took (a second call: a second session)."""
        def found() -> list[str]:
            paths = []
            for m in sink.messages:
                parsed = email.message_from_bytes(m.data, policy=email.policy.default)
                paths += LOGIN_LINK.findall(parsed.get_body(("plain",)).get_content())
            return paths

        already = len(found())
        browser = self.browser()
        code, _ = await self.askLink("alice@example.test", browser)
        self.assertEqual(code, 200)
        await until(lambda: len(found()) > already, "the login link", timeout=15)
        path = found()[-1]
        await browser.request("GET", path)
        code, _, _ = await browser.request("POST", path, {"csrf": browser.csrf()})
        self.assertEqual(code, 303)
        return browser

