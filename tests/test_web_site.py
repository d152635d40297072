"""
The web listener under hostile clients (SPEC 8), over real sockets: no
secret in any log whatever the request's spelling, the security headers
on every answer (the framework's own error pages too), limits that
answer instead of dropping, slow and idle clients closed, a cap per
client address, and SMTP still answering while idle web clients pile up
on a gateway started with few file descriptors.
"""

from __future__ import annotations

import email
import email.policy
import os
import re
import shutil
import socket
import time
from email.message import EmailMessage
from typing import Any, Optional

from twisted.internet import reactor
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.resource import Resource

from secudoc_gateway.errors import ObjectNotFound
from secudoc_gateway.testing import DEMO_TENANT, GatewayProcess, startGateway, writeConfig
from secudoc_gateway.testing.ports import freePort
from tests.support import asyncTest, inThread, maildirMessages, sendBDAT, splitEnvelope, until

PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082")
LINK = re.compile(r"https?://[^/\s]+((?:/[a-z]+)?)/t/([A-Za-z0-9_-]{43})")
SENDER_LINK = re.compile(r"/t/sender/([A-Za-z0-9_-]{43})")


def exchange(port: int, request: bytes, timeout: float = 20) -> bytes:
    """Send ``request`` on a new connection and read until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        return readToEnd(s)


def readToEnd(s: socket.socket) -> bytes:
    chunks = []
    while True:
        try:
            data = s.recv(65536)
        except ConnectionResetError:
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


def parse(response: bytes) -> tuple[int, dict[str, list[str]], bytes]:
    """Status, headers (lower-case names) and body of the first response in ``response``."""
    head, _, body = response.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return int(lines[0].split()[1]), headers, body


def get(target: str, *headers: str, method: str = "GET") -> bytes:
    extra = "".join(f"{h}\r\n" for h in headers)
    return f"{method} {target} HTTP/1.1\r\nHost: gateway\r\n{extra}Connection: close\r\n\r\n".encode("latin-1")


class WebTestCase(TestCase):
    async def start(self, path: str = "", scheme: str = "http", smtp: Optional[dict[str, Any]] = None,
                    **tenant: Any) -> None:
        self.folder = os.path.abspath(self.mktemp())
        os.makedirs(self.folder)
        with open(os.path.join(self.folder, "logo.png"), "wb") as f:
            f.write(PNG)
        settings = dict(DEMO_TENANT, organisation="Gemeente Voorbeeld", logo="../logo.png", **tenant)
        port = freePort()
        web = {"listen": [f"tcp:{port}:interface=127.0.0.1"], "public_url": f"{scheme}://127.0.0.1:{port}{path}"}
        self.gateway = await startGateway(writeConfig(self.folder, [settings], web=web, smtp=smtp), reactor)
        self.addCleanup(self.gateway.stop)
        self.site = self.gateway.service.webListeners[0].factory

    async def send(self) -> tuple[str, str]:
        """Protect a message; returns the link's path prefix (a proxy's) and its token."""
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = "alice@example.test", "bob@external.test", "Offerte"
        message.set_content("Zie bijlage.\n")
        message.add_attachment(os.urandom(3000), maintype="application", subtype="octet-stream",
                               filename="a.bin")
        outbox = os.path.join(self.folder, "outbox", "example")
        code, text = await inThread(sendBDAT, self.gateway.smtpPort, "alice@example.test", ["bob@external.test"],
                                    message.as_bytes())
        self.assertEqual(code, 250, text)
        for stored in maildirMessages(outbox):
            if b"kind=" not in stored:
                out = email.message_from_bytes(splitEnvelope(stored)[2], policy=email.policy.default)
                [(prefix, token)] = set(LINK.findall(out.get_body(("plain",)).get_content()))
                return prefix, token
        raise AssertionError("no protected message relayed")

    async def senderSecret(self) -> str:
        outbox = os.path.join(self.folder, "outbox", "example")
        found: list[str] = []

        def confirmation() -> bool:
            found[:] = [s for m in maildirMessages(outbox) if b"kind=confirmation" in m
                        for s in SENDER_LINK.findall(m.decode("ascii", "replace"))]
            return bool(found)

        await until(confirmation, "the confirmation mail")
        return found[0]

    async def ask(self, request: bytes) -> tuple[int, dict[str, list[str]], bytes]:
        return parse(await inThread(exchange, self.gateway.webPort, request))


class Secrets(WebTestCase):
    @asyncTest
    async def test_noSecretInAnyLog(self) -> None:
        """
        Every spelling of a token's path, the ones that open the transfer
        and the ones that route nowhere, and the sender's secret: none of
        them reaches a log line, the access log says ``/t/<redacted>``.
        """
        await self.start(confirmation_mail=True)
        _, token = await self.send()
        secret = await self.senderSecret()
        seen: list[str] = []
        observer = lambda event: seen.append(formatEvent(event) or "")  # noqa: E731
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        encoded = "".join(f"%{ord(c):02X}" for c in token)
        one = f"{token[:5]}%{ord(token[5]):02x}{token[6:]}"
        opening = [f"/t/{token}", f"/%74/{token}", f"/t/{one}", f"/t/{encoded}",
                   f"/%74/{token}/0", f"/t/{token}/all.zip", f"http://gateway/t/{token}"]
        nowhere = [f"/T/{token}", f"/%54/{token}", f"//t//{token}", f"/t//{token}", f"/t/%2e%2e/{token}", f"/%2574/{token}",
                   f"/t%2f{token}", f"/t/{token}%2f0", f"/x/{token}", f"/t;x/{token}", f"/t/sender/x/{secret}",
                   f"/t/sender//{secret}", f"/t/sender%2f{secret}", f"ftp://gateway/t/{token}"]
        for target in opening:
            code, _, _ = await self.ask(get(target))
            self.assertEqual(code, 200, target)
        for target in nowhere:
            code, _, _ = await self.ask(get(target, f"Referer: http://gateway/%74/{token}"))
            self.assertIn(code, (404, 410), target)
        for target in (f"/t/sender/{secret}", f"/%74/sender/{secret}"):
            code, _, _ = await self.ask(get(target))
            self.assertEqual(code, 200, target)
        code, _, _ = await self.ask(get(f"/t/sender/{secret}/revoke", "Content-Length: 0", method="POST"))
        self.assertEqual(code, 403)
        # A secret in any header the access line shows; HEAD of a 404 (no warning line either).
        code, _, _ = await self.ask(get("/nothing", f"User-Agent: x{token}", f"Referer: {secret}", method="HEAD"))
        self.assertEqual(code, 404)
        sent = len(opening) + len(nowhere) + 4
        await until(lambda: sum(' HTTP/1.1" ' in line for line in seen) >= sent, "an access line for each request")
        text = "\n".join(seen)
        for secretText in [token, secret, encoded, one, f"/%74/sender/{secret}"] + opening + nowhere:
            self.assertNotIn(secretText, text)
        self.assertNotIn("Warning", text)
        self.assertIn('"GET /t/<redacted>/0 HTTP/1.1" 200', text)
        self.assertIn('"GET /t/sender/<redacted> HTTP/1.1" 200', text)
        self.assertIn('"POST /t/sender/<redacted>/revoke HTTP/1.1" 403', text)


    @asyncTest
    async def test_everyRefusalLogged(self) -> None:
        """
        The answers the connection gives itself, before any resource, leave
        an access line like any other, the secret redacted there too.
        """
        await self.start()
        token = "A" * 43
        seen: list[str] = []
        observer = lambda event: seen.append(formatEvent(event) or "")  # noqa: E731
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        requests = {
            '"POST /t/<redacted> HTTP/1.1" 413': get(f"/t/{token}", "Content-Length: 100000000", method="POST"),
            '"GET /t/<redacted>/0 HTTP/1.1" 400': f"GET /t/{token}/0 HTTP/1.1\r\n\r\n".encode(),
            '"GET /t/<redacted> HTTP/1.1" 431': get(f"/t/{token}", "X-Long: " + "a" * 70000),
            '"- - -" 400': b"\x16\x03\x01\x02\x00\r\n\r\n",
        }
        for request in requests.values():
            await self.ask(request)
        await until(lambda: all(any(line in logged for logged in seen) for line in requests), "a line for each")
        self.assertNotIn(token, "\n".join(seen))


class Links(WebTestCase):
    @asyncTest
    async def test_publicURLWithAPath(self) -> None:
        """Behind a proxy's prefix, the mail's link, the page's links and its logo keep the prefix."""
        await self.start(path="/secudoc")
        prefix, token = await self.send()
        self.assertEqual(prefix, "/secudoc")
        code, _, page = await self.ask(get(f"/t/{token}"))  # the proxy strips its prefix
        self.assertEqual(code, 200)
        self.assertIn(f'src="/secudoc/t/{token}/logo"'.encode(), page)
        self.assertIn(f'href="/secudoc/t/{token}/0"'.encode(), page)
        code, headers, logo = await self.ask(get(f"/t/{token}/logo"))
        self.assertEqual((code, logo), (200, PNG))


class SecurityHeaders(WebTestCase):
    def assertGuarded(self, what: str, headers: dict[str, list[str]]) -> None:
        [csp] = headers.get("content-security-policy", ["none"])
        self.assertIn("frame-ancestors 'none'", csp, what)
        self.assertEqual(headers.get("x-frame-options"), ["DENY"], what)
        self.assertEqual(headers.get("x-content-type-options"), ["nosniff"], what)
        self.assertEqual(headers.get("strict-transport-security"), ["max-age=31536000"], what)
        self.assertNotIn("server", headers, what)

    @asyncTest
    async def test_everyAnswer(self) -> None:
        await self.start(scheme="https")
        _, token = await self.send()

        class Broken(Resource):
            isLeaf = True

            def render_GET(self, request: Any) -> bytes:
                raise RuntimeError("a fault no request can make for real")

        self.site.resource.putChild(b"broken", Broken())
        expected = {
            "page": (get(f"/t/{token}"), 200),
            "download": (get(f"/t/{token}/0"), 200),
            "range": (get(f"/t/{token}/0", "Range: bytes=0-9"), 206),
            "unsatisfiable": (get(f"/t/{token}/0", "Range: bytes=99999-"), 416),
            "zip": (get(f"/t/{token}/all.zip"), 200),
            "logo": (get(f"/t/{token}/logo"), 200),
            "healthz": (get("/healthz"), 200),
            "not found": (get("/nothing"), 404),
            "unknown link": (get("/t/" + "x" * 43), 404),
            "not allowed": (get("/healthz", "Content-Length: 0", method="POST"), 405),
            "not implemented": (get("/healthz", method="BREW"), 501),
            "internal error": (get("/broken"), 500),
            "malformed header": (get("/healthz", "No colon here"), 400),
            "bad request line": (b"GET\r\n\r\n", 400),
            "body too large": (get("/healthz", "Content-Length: 100000000", method="POST"), 413),
            "header line too long": (get("/healthz", "X-Long: " + "a" * 70000), 431),
            "headers too large": (get("/healthz", *[f"X-{n}: {'b' * 100}" for n in range(200)]), 431),
            "too many headers": (get("/healthz", *[f"X-{n}: b" for n in range(600)]), 431),
        }
        for what, (request, code) in expected.items():
            got, headers, body = await self.ask(request)
            self.assertEqual(got, code, what)
            self.assertGuarded(what, headers)
            self.assertNotIn(b"Traceback", body)
        _, headers, _ = await self.ask(get(f"/t/{token}/0"))
        self.assertIn("sandbox", headers["content-security-policy"][0])
        # A download whose object is gone: 503, guarded all the same.
        shutil.rmtree(os.path.join(self.folder, "objects"))
        code, headers, _ = await self.ask(get(f"/t/{token}/0"))
        self.assertEqual(code, 503)
        self.assertGuarded("unavailable", headers)
        self.flushLoggedErrors(RuntimeError, ObjectNotFound)

    @asyncTest
    async def test_absurdNumbers(self) -> None:
        """Thousands of digits in a Range or a Content-Length: a 4xx or the whole file, never a 5xx."""
        await self.start()
        _, token = await self.send()
        digits = "9" * 5000
        for header, codes in [(f"Range: bytes={digits}-", (416,)), (f"Range: bytes=0-{digits}", (200, 206)),
                              (f"Range: bytes=-{digits}", (200, 206)), (f"Range: bytes={digits}-{digits}", (416,)),
                              ("Range: bytes=\xff\xfe-1", (200,)), (f"If-Range: {digits}", (200,)),
                              (f"Content-Length: {digits}", (413,)), (f"Content-Length: 1{'x' * 30}", (400,)),
                              (f"Cookie: {'=' * 3000}", (200,)), (f"Accept-Language: {'nl;q=' * 2000}", (200,))]:
            code, _, body = await self.ask(get(f"/t/{token}/0", header))
            self.assertIn(code, codes, header[:40])
            if code < 300:
                self.assertEqual(len(body), 3000, header[:40])


class Requests(WebTestCase):
    @asyncTest
    async def test_hostHeader(self) -> None:
        """RFC 9112 3.2: an HTTP/1.1 request needs exactly one Host that names a host; HTTP/1.0 may omit it."""
        await self.start()
        for request, code in [(b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n", 400),
                              (get("/healthz", "Host: other"), 400),
                              (get("/healthz").replace(b"Host: gateway", b"Host: a b"), 400),
                              (get("/healthz").replace(b"Host: gateway", b"Host: a@evil"), 400),
                              (get("/healthz").replace(b"Host: gateway", b"Host: [::1]:8080"), 200),
                              (b"GET /healthz HTTP/1.0\r\n\r\n", 200)]:
            got, headers, _ = await self.ask(request)
            self.assertEqual(got, code, request)
            self.assertEqual(headers.get("x-frame-options"), ["DENY"], request)

    @asyncTest
    async def test_transferCodings(self) -> None:
        """
        RFC 9112 6.1, 6.3: chunked is the one transfer coding; ``identity``
        next to a Content-Length (a smuggling shape) or any coding on
        HTTP/1.0 is faulty framing, a 400 that closes.
        """
        await self.start()
        body = b"3\r\nabc\r\n0\r\n\r\n"
        for request, code in [(get("/healthz", "Transfer-Encoding: chunked", method="POST") + body, 405),
                              (get("/healthz", "Transfer-Encoding: identity", "Content-Length: 3", method="POST")
                               + b"abc", 400),
                              (get("/healthz", "Content-Length: 3", "Transfer-Encoding: Identity", method="POST")
                               + b"abc", 400),
                              (b"POST /healthz HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n" + body, 400)]:
            got, _, _ = await self.ask(request)
            self.assertEqual(got, code, request)

    @asyncTest
    async def test_noInterimAnswerAfterARefusal(self) -> None:
        """A refused ``Expect: 100-continue`` request gets its one answer, no ``100 Continue`` after it."""
        await self.start()
        request = get("/healthz", "Expect: 100-continue", "Content-Length: 100000000", method="POST")
        answer = await inThread(exchange, self.gateway.webPort, request)
        self.assertTrue(answer.startswith(b"HTTP/1.1 413 "), answer)
        self.assertEqual(answer.count(b"HTTP/1.1"), 1, answer)

    @asyncTest
    async def test_absoluteForm(self) -> None:
        """RFC 9112 3.2.2: a server accepts a target in absolute form; its path is what routes."""
        await self.start()
        for target, code in [("http://gateway/healthz", 200), ("HTTPS://gateway:443/healthz?x", 200),
                             ("http://gateway", 404), ("http://gateway/metrics", 404)]:
            got, _, _ = await self.ask(get(target))
            self.assertEqual(got, code, target)

    @asyncTest
    async def test_chunkTooLarge(self) -> None:
        """
        A chunk that declares more than a request may carry is a 413 as its
        size line arrives, not a connection held until the idle timeout.
        """
        await self.start()
        self.site.timeOut = 600
        for size in ("f" * 100, "10001"):
            request = get("/healthz", "Transfer-Encoding: chunked", method="POST") + f"{size}\r\nabc".encode()
            code, headers, _ = await self.ask(request)
            self.assertEqual(code, 413, size)
            self.assertEqual(headers.get("x-frame-options"), ["DENY"])
        code, _, _ = await self.ask(get("/healthz", "Transfer-Encoding: chunked", method="POST")
                                    + b"3\r\nabc\r\n0\r\n\r\n")
        self.assertEqual(code, 405)


class Clients(WebTestCase):
    @asyncTest
    async def test_headersTooSlow(self) -> None:
        """A request whose headers trickle in is answered 408 and closed; one that sends nothing is closed."""
        await self.start()
        self.site.headerTimeout = 0.5

        def trickle() -> bytes:
            with socket.create_connection(("127.0.0.1", self.gateway.webPort), timeout=20) as s:
                s.sendall(b"GET /healthz HTTP/1.1\r\n")
                deadline = time.monotonic() + 15
                s.settimeout(0.2)
                while time.monotonic() < deadline:
                    try:
                        s.sendall(b"X-Slow: 1\r\n")  # each line would reset an idle timer
                        data = s.recv(65536)
                    except socket.timeout:
                        continue
                    except OSError:
                        return b""
                    s.settimeout(20)
                    return data + readToEnd(s)
                raise AssertionError("still open")

        code, headers, _ = parse(await inThread(trickle))
        self.assertEqual(code, 408)
        self.assertEqual(headers.get("x-frame-options"), ["DENY"])
        self.assertEqual(await inThread(exchange, self.gateway.webPort, b""), b"")

        def slowBody(pause: float) -> bytes:
            with socket.create_connection(("127.0.0.1", self.gateway.webPort), timeout=20) as s:
                s.sendall(get("/healthz", "Content-Length: 10", method="POST"))
                try:
                    for _ in range(10):
                        time.sleep(pause)
                        s.sendall(b"x")
                except OSError:
                    pass  # refused meanwhile: the answer is waiting
                return readToEnd(s)

        # A body is not bound by the header deadline, only by a pace: a
        # byte every 0.15 s keeps up 1 byte a second over 0.5 s windows ...
        self.site.minBodyRate = 1
        code, _, _ = parse(await inThread(slowBody, 0.15))
        self.assertEqual(code, 405)
        # ... and a byte every 0.6 s does not (R.U.D.Y., a slow POST).
        code, headers, _ = parse(await inThread(slowBody, 0.6))
        self.assertEqual(code, 408)
        self.assertEqual(headers.get("x-frame-options"), ["DENY"])

    @asyncTest
    async def test_idleBetweenRequests(self) -> None:
        """A keep-alive connection serves requests, then is closed once idle for ``timeOut``."""
        await self.start()
        self.site.timeOut = 1.0

        def keepAlive() -> tuple[bytes, bytes]:
            with socket.create_connection(("127.0.0.1", self.gateway.webPort), timeout=20) as s:
                answers = []
                for _ in range(2):
                    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n")
                    answers.append(s.recv(65536))
                return b"".join(answers), readToEnd(s)

        answers, rest = await inThread(keepAlive)
        self.assertEqual(answers.count(b"HTTP/1.1 200 OK"), 2)
        self.assertEqual(rest, b"")

    @asyncTest
    async def test_capPerAddress(self) -> None:
        """Past ``max_connections_per_ip`` a connection is closed at once; one freed makes room."""
        await self.start(smtp={"max_connections_per_ip": 3})
        held = [socket.create_connection(("127.0.0.1", self.gateway.webPort), timeout=20) for _ in range(3)]
        self.addCleanup(lambda: [s.close() for s in held])
        await until(lambda: not self.site.connections.admits("127.0.0.1"), "three connections counted")
        self.assertEqual(await inThread(exchange, self.gateway.webPort, get("/healthz")), b"")
        held.pop().close()
        await until(lambda: self.site.connections.admits("127.0.0.1"), "one connection gone")
        code, _, _ = await self.ask(get("/healthz"))
        self.assertEqual(code, 200)


class FileDescriptors(SynchronousTestCase):
    def test_idleWebClientsCannotStarveSMTP(self) -> None:
        """
        twistd started with a soft limit of 64 open files raises it to the
        hard limit (256); 400 idle web clients from one address then hold
        at most ``max_connections_per_ip`` of them, and SMTP still greets.
        """
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        gateway = GatewayProcess.inFolder(folder, smtp={"max_connections_per_ip": 100}, fileLimit=(64, 256))
        self.addCleanup(gateway.stop)
        gateway.start()
        assert gateway.process is not None
        with open(f"/proc/{gateway.process.pid}/limits") as f:
            [limit] = [line.split()[3:5] for line in f if line.startswith("Max open files")]
        self.assertEqual(limit, ["256", "256"])
        clients = []
        self.addCleanup(lambda: [s.close() for s in clients])
        for _ in range(400):
            clients.append(socket.create_connection(("127.0.0.1", gateway.webPort), timeout=20))
        with socket.create_connection(("127.0.0.1", gateway.smtpPort), timeout=20) as smtp:
            self.assertEqual(smtp.recv(4), b"220 ")
        self.assertIsNone(gateway.process.poll())
