"""
End to end: the real service from a real config, real clients over
real sockets, relaying into a maildir or to a real ESMTP sink that
requires a TLS client certificate.
"""

from __future__ import annotations

import email
import os
import signal
import smtplib
import socket
import subprocess
import sys
import time

import treq
from twisted.internet import defer, reactor
from twisted.trial.unittest import TestCase

from secudoc_gateway import devcert, tls
from secudoc_gateway.testing import DEMO_TENANT, GatewayProcess, startGateway, writeConfig
from secudoc_gateway.testing.smtp import SinkServerFactory
from secudoc_gateway.testing.ports import accepts
from secudoc_gateway.replies import Reply
from tests.support import (asyncTest, breakStorage, inThread, maildirMessages, sendBDAT, sendMail, splitEnvelope,
                           until, untilBlocking)

PLAIN = (
    b"From: alice@example.test\r\n"
    b"To: bob@external.test\r\n"
    b"Subject: plain\r\n"
    b"Message-ID: <plain-1@example.test>\r\n"
    b"X-SecuDoc-Status: forged\r\n"
    b"\r\n"
    b"Hello Bob.\r\n"
    b".A line that starts with a dot.\r\n"
)


class ServiceTestCase(TestCase):
    tenantOverrides: dict = {}
    smtpOverrides: dict = {}

    async def startService(self, **tenantOverrides) -> None:
        self.folder = os.path.abspath(self.mktemp())
        tenant = dict(DEMO_TENANT, **self.tenantOverrides, **tenantOverrides)
        self.configPath = writeConfig(self.folder, [tenant], smtp=self.smtpOverrides)
        self.gateway = await startGateway(self.configPath, reactor)
        self.addCleanup(self.gateway.stop)

    @property
    def outbox(self) -> str:
        return os.path.join(self.folder, "outbox", "example")

    def send(self, message: bytes = PLAIN, sender: str = "alice@example.test",
             recipients=("bob@external.test",), **kw) -> defer.Deferred:
        return inThread(sendMail, self.gateway.smtpPort, sender, list(recipients), message, **kw)


class MaildirTests(ServiceTestCase):
    @asyncTest
    async def test_passThroughToMaildir(self) -> None:
        """The relayed message is the original plus the gateway's fields, envelope first."""
        await self.startService()
        code, text = await self.send(recipients=("bob@external.test", "eve@other.test"))
        self.assertEqual(code, 250, text)
        self.assertRegex(text.decode(), r"^2\.0\.0 Ok \S+$")
        [stored] = maildirMessages(self.outbox)
        sender, recipients, message = splitEnvelope(stored)
        self.assertEqual(sender, "alice@example.test")
        self.assertEqual(recipients, ["bob@external.test", "eve@other.test"])
        head, _, body = message.partition(b"\r\n\r\n")
        self.assertEqual(head.count(b"X-SecuDoc: 1.0"), 1)
        self.assertIn(b"X-SecuDoc-Status: passed; reason=no-attachment", head)
        self.assertNotIn(b"forged", head)
        self.assertTrue(head.startswith(b"Received: from client.test ([127.0.0.1])"))
        self.assertEqual(body, b"Hello Bob.\r\n.A line that starts with a dot.\r\n")

    @asyncTest
    async def test_strayContinuationNeverFoldsIntoTheEnvelope(self) -> None:
        """
        A header block that starts with folding whitespace (the corpus's
        enmime__bad-header-start.eml): the maildir's envelope lines and
        the gateway's status stay whole, our Received takes the stray line.
        """
        await self.startService()
        message = (b" From: James Hillyerd <james@makita.skynet>\r\nSubject: plain text\r\n"
                   b"To: bob@external.test\r\n\r\nA text section\r\n")
        code, text = await inThread(sendBDAT, self.gateway.smtpPort, "alice@example.test",
                                    ["bob@external.test", "eve@other.test"], message)
        self.assertEqual(code, 250, text)
        [stored] = maildirMessages(self.outbox)
        parsed = email.message_from_bytes(stored)
        self.assertEqual(parsed.get_all("Return-Path"), ["<alice@example.test>"])
        self.assertEqual(parsed.get_all("X-Envelope-To"), ["bob@external.test", "eve@other.test"])
        self.assertEqual(parsed.get_all("X-SecuDoc-Status"), ["passed; reason=no-attachment"])
        self.assertEqual(parsed.get_all("Subject"), ["plain text"])
        self.assertIn(b"From: James Hillyerd", parsed["Received"].encode())
        self.assertTrue(stored.endswith(b"\r\n\r\nA text section\r\n"))

    @asyncTest
    async def test_startTLS(self) -> None:
        """STARTTLS with a client that verifies the certificate; Received says ESMTPS."""
        await self.startService()
        code, text = await self.send(startTLS=True)
        self.assertEqual(code, 250, text)
        [stored] = maildirMessages(self.outbox)
        self.assertIn(b"with ESMTPS id", stored)

    @asyncTest
    async def test_relayingDenied(self) -> None:
        await self.startService()
        code, text = await self.send(sender="mallory@elsewhere.test")
        self.assertEqual((code, text), (550, b"5.7.1 Relaying denied"))
        self.assertEqual(maildirMessages(self.outbox), [])

    @asyncTest
    async def test_nullSenderWithoutTenantHeader(self) -> None:
        """A bounce that names no tenant is refused after the data, never relayed."""
        await self.startService()
        code, text = await self.send(sender="")
        self.assertEqual(code, 550)
        self.assertTrue(text.startswith(b"5.7.1"))
        self.assertEqual(maildirMessages(self.outbox), [])

    @asyncTest
    async def test_nullSenderWithTenantHeader(self) -> None:
        """EXO's connector validation message (MAIL FROM:<>) is relayed."""
        tid = "6f0d3d8e-3b7e-4d43-9a53-6a3c1e2f9b10"
        await self.startService(microsoft_tenant_id=tid)
        message = f"X-MS-Exchange-CrossTenant-Id: {tid}\r\n".encode() + PLAIN
        code, text = await self.send(message, sender="")
        self.assertEqual(code, 250, text)
        [stored] = maildirMessages(self.outbox)
        self.assertTrue(stored.startswith(b"Return-Path: <>"))

    @asyncTest
    async def test_metricsAndHealth(self) -> None:
        await self.startService()
        await self.send()
        health = await treq.get(self.gateway.webURL + "/healthz", persistent=False)
        self.assertEqual(health.code, 200)
        self.assertEqual(await health.text(), "ok\n")
        metrics = await (await treq.get(self.gateway.metricsURL + "/metrics", persistent=False)).text()
        self.assertIn('secudoc_messages_total{status="passed",tenant="example"} 1.0', metrics)
        self.assertIn("secudoc_smtp_connections_total 1.0", metrics)
        self.assertIn("secudoc_message_seconds_count 1.0", metrics)

    @asyncTest
    async def test_healthDownWhenStorageIsGone(self) -> None:
        await self.startService()
        await breakStorage(self.folder)

        async def down() -> bool:
            # /healthz says what the background round found: poll for it.
            health = await treq.get(self.gateway.webURL + "/healthz", persistent=False)
            return health.code == 503 and "storage: down" in await health.text()

        await until(down, "/healthz to say the storage is down", 30)

    @asyncTest
    async def test_drainOnStop(self) -> None:
        """Stopping the service lets a transaction in flight finish and relay."""
        await self.startService()
        sock = socket.create_connection(("127.0.0.1", self.gateway.smtpPort))
        self.addCleanup(sock.close)
        reader = sock.makefile("rb")

        def converse(lines: bytes, replies: int) -> list[bytes]:
            sock.sendall(lines)
            return [reader.readline() for _ in range(replies)]

        await inThread(reader.readline)
        await inThread(converse, b"HELO client.test\r\nMAIL FROM:<alice@example.test>\r\n"
                       b"RCPT TO:<bob@external.test>\r\nDATA\r\n", 4)
        await inThread(sock.sendall, b"Subject: drained\r\n\r\nfirst half\r\n")
        stopped = self.gateway.stop()
        await inThread(sock.sendall, b"second half\r\n.\r\n")
        final = await inThread(reader.readline)
        self.assertTrue(final.startswith(b"250 Ok "), final)
        await stopped
        [stored] = maildirMessages(self.outbox)
        self.assertTrue(stored.endswith(b"first half\r\nsecond half\r\n"))


class SMTPRelayTests(ServiceTestCase):
    """Relay to a real ESMTP server that demands a client certificate."""

    async def startSink(self, **sinkOptions) -> tuple[SinkServerFactory, dict]:
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        ca = devcert.makeCA("connector CA")
        caFile = os.path.join(folder, "ca.pem")
        with open(caFile, "wb") as f:
            f.write(ca.certificatePEM())
        server = devcert.issue(ca, "localhost", ["localhost", "127.0.0.1"]).writeTo(os.path.join(folder, "server.pem"))
        client = devcert.issue(ca, "secudoc.example.test", client=True).writeTo(os.path.join(folder, "client.pem"))
        sink = SinkServerFactory(offerStartTLS=True, tlsOptions=tls.serverOptions(server, clientCA=caFile), **sinkOptions)
        port = reactor.listenTCP(0, sink, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        tenant = {
            "relay": f"smtp://localhost:{port.getHost().port}",
            "relay_tls_certificate": client,
            "relay_ca_file": caFile,
        }
        return sink, tenant

    @asyncTest
    async def test_relayWithClientCertificate(self) -> None:
        sink, tenant = await self.startSink()
        await self.startService(**tenant)
        code, text = await self.send()
        self.assertEqual(code, 250, text)  # given after the sink's own 250: its message is in
        [message] = sink.messages
        self.assertTrue(message.tls)
        self.assertEqual(message.clientSubject, "secudoc.example.test")
        self.assertEqual(message.sender, "alice@example.test")
        self.assertEqual(message.recipients, ("bob@external.test",))
        self.assertIn(b"X-SecuDoc: 1.0\r\n", message.data)
        self.assertTrue(message.data.endswith(b"Hello Bob.\r\n.A line that starts with a dot.\r\n"))

    @asyncTest
    async def test_relayTemporaryFailure(self) -> None:
        sink, tenant = await self.startSink(replies={"mail": Reply(452, "4.3.1", "Insufficient storage")})
        await self.startService(**tenant)
        code, text = await self.send()
        self.assertEqual(code, 451)
        self.assertTrue(text.startswith(b"4.4.1"))

    @asyncTest
    async def test_relayPermanentFailureAtMailIsTemporary(self) -> None:
        """A 5xx before the transaction (e.g. a refused certificate) must not bounce."""
        sink, tenant = await self.startSink(replies={"mail": Reply(550, "5.7.1", "Not authorized")})
        await self.startService(**tenant)
        code, _ = await self.send()
        self.assertEqual(code, 451)

    @asyncTest
    async def test_relayRecipientRefused(self) -> None:
        sink, tenant = await self.startSink(replies={"rcpt": Reply(550, "5.1.1", "No such user here")})
        await self.startService(**tenant)
        code, text = await self.send()
        self.assertEqual((code, text), (554, b"5.1.1 No such user here"))

    @asyncTest
    async def test_relayDataRefused(self) -> None:
        sink, tenant = await self.startSink(replies={"message": Reply(554, "5.6.0", "Content rejected")})
        await self.startService(**tenant)
        code, text = await self.send()
        self.assertEqual((code, text), (554, b"5.6.0 Content rejected"))

    @asyncTest
    async def test_relayDown(self) -> None:
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        await self.startService(relay=f"smtp://127.0.0.1:{port}")
        code, text = await self.send()
        self.assertEqual(code, 451)
        metrics = await (await treq.get(self.gateway.metricsURL + "/metrics", persistent=False)).text()
        self.assertIn('secudoc_relay_errors_total{kind="connect",tenant="example"} 1.0', metrics)
        self.assertIn('secudoc_messages_total{status="tempfailed",tenant="example"} 1.0', metrics)


class ShutdownTests(TestCase):
    """SIGTERM to a real twistd process while a message is on its way in."""

    def test_sigtermAnswersTheMessageInFlight(self) -> None:
        """
        The message arrives while the gateway stops: it is relayed once
        and its client gets 250 before the process exits (without a
        Message-ID no dedup would save a resend).
        """
        gateway = GatewayProcess.inFolder(os.path.abspath(self.mktemp())).start()
        self.addCleanup(gateway.stop)
        port = gateway.smtpPort
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            reader = sock.makefile("rb")
            reader.readline()
            sock.sendall(b"HELO client.test\r\nMAIL FROM:<alice@example.test>\r\n"
                         b"RCPT TO:<bob@external.test>\r\nDATA\r\n")
            self.assertEqual([reader.readline()[:3] for _ in range(4)], [b"250", b"250", b"250", b"354"])
            sock.sendall(b"From: alice@example.test\r\nSubject: no id\r\n\r\nfirst half\r\n")
            gateway.process.send_signal(signal.SIGTERM)
            untilBlocking(lambda: not accepts(port), "the listener closes on SIGTERM", 30)
            sock.sendall(b"second half\r\n.\r\n")
            final = reader.readline()
            closing = reader.readline()
        self.assertTrue(final.startswith(b"250 Ok "), final)
        self.assertTrue(closing.startswith(b"421 4.3.2"), closing)
        # After a clean stop twistd ends itself with the signal that stopped it.
        self.assertIn(gateway.wait(60), (0, -signal.SIGTERM))
        [stored] = maildirMessages(os.path.join(gateway.folder, "outbox", "example"))
        self.assertNotIn(b"Message-ID", stored)
        self.assertTrue(stored.endswith(b"first half\r\nsecond half\r\n"))


def crashLeftovers(folder: str) -> tuple[str, str]:
    """A temporary object older than the longest transaction, and one a writer may still own."""
    objects = os.path.join(folder, "objects", "q4")
    os.makedirs(objects, exist_ok=True)
    old, young = os.path.join(objects, ".tmp-0123456789abcdef"), os.path.join(objects, ".tmp-fedcba9876543210")
    for path, age in [(old, 13 * 3600), (young, 3600)]:
        with open(path, "wb") as f:
            f.write(b"x" * 1000)
        os.utime(path, (time.time() - age, time.time() - age))
    return old, young


class LeftoverTests(TestCase):
    """Temporary objects a crash left behind (SIGKILL mid-message) go at start and with every purge."""

    @asyncTest
    async def test_removedAtStart(self) -> None:
        folder = os.path.abspath(self.mktemp())
        config = writeConfig(folder)
        old, young = crashLeftovers(folder)
        gateway = await startGateway(config, reactor)
        self.addCleanup(gateway.stop)
        await until(lambda: not os.path.exists(old), "the leftover is removed", 30)
        self.assertTrue(os.path.exists(young))

    def test_removedByPurge(self) -> None:
        folder = os.path.abspath(self.mktemp())
        config = writeConfig(folder)
        old, young = crashLeftovers(folder)
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        result = subprocess.run([sys.executable, "-m", "secudoc_gateway.cli", "purge", "--config", config],
                                capture_output=True, text=True, timeout=60,
                                env=dict(os.environ, PYTHONPATH=root))
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertFalse(os.path.exists(old))
        self.assertTrue(os.path.exists(young))


class CommandLineTests(TestCase):
    """``check-config`` and ``twistd`` report the same problems, the same way."""

    def badConfig(self) -> str:
        folder = os.path.abspath(self.mktemp())
        path = writeConfig(folder, [dict(DEMO_TENANT, mode="sometimes")], smtp={"max_recipients": 0})
        return path

    def run_(self, *args: str) -> subprocess.CompletedProcess:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
        return subprocess.run(args, capture_output=True, text=True, env=env, timeout=60)

    def test_checkConfig(self) -> None:
        path = self.badConfig()
        result = self.run_(sys.executable, "-m", "secudoc_gateway.cli", "check-config", "--config", path)
        self.assertEqual(result.returncode, 2)
        self.assertIn(f"{path}: smtp.max_recipients:", result.stderr)
        tenantFile = os.path.join(os.path.dirname(path), "tenants", "example.toml")
        self.assertIn(f"{tenantFile}: mode:", result.stderr)

    def test_checkConfigGood(self) -> None:
        path = writeConfig(os.path.abspath(self.mktemp()))
        result = self.run_(sys.executable, "-m", "secudoc_gateway.cli", "check-config", "--config", path)
        self.assertEqual(result.returncode, 0, result.stderr)

    def test_twistdRefusesToStart(self) -> None:
        path = self.badConfig()
        twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        result = self.run_(twistd, "--nodaemon", "--pidfile=", "secudoc-gateway", "--config", path)
        self.assertEqual(result.returncode, 2)
        self.assertIn(f"{path}: smtp.max_recipients:", result.stderr)


def attachmentMessage(data: bytes, filename: str = "report.pdf", text: str = "See attached.") -> bytes:
    from email.message import EmailMessage

    message = EmailMessage()
    message["From"] = "alice@example.test"
    message["To"] = "bob@external.test"
    message["Subject"] = "Report"
    message["Message-ID"] = "<report-1@example.test>"
    message.set_content(text)
    message.add_attachment(data, maintype="application", subtype="pdf", filename=filename)
    return message.as_bytes()


class ProtectionTests(ServiceTestCase):
    """Link mode end to end: the attachment leaves, the link gives it back."""

    @asyncTest
    async def test_attachmentOutLinkIn(self) -> None:
        import email
        import email.policy
        import hashlib
        import re

        await self.startService()
        data = os.urandom(50_000)
        code, text = await self.send(attachmentMessage(data))
        self.assertEqual(code, 250, text)
        [stored] = maildirMessages(self.outbox)
        _, recipients, raw = splitEnvelope(stored)
        self.assertEqual(recipients, ["bob@external.test"])
        message = email.message_from_bytes(raw, policy=email.policy.default)
        self.assertEqual(message["X-SecuDoc"], "1.0")
        self.assertEqual(message["X-SecuDoc-Status"], "protected")
        transferId = message["X-SecuDoc-Transfer"]
        self.assertEqual(text.decode(), f"2.0.0 Ok {transferId}")
        self.assertEqual([p for p in message.iter_attachments()], [])
        body = message.get_body(("plain",)).get_content()
        self.assertIn("report.pdf", body)
        self.assertIn("See attached.", body)
        [link] = re.findall(r"http://\S+/t/[A-Za-z0-9_-]+", body)
        self.assertTrue(link.startswith("http://127.0.0.1:8080/t/"))
        path = link[len("http://127.0.0.1:8080"):]
        landing = await treq.get(self.gateway.webURL + path, persistent=False)
        self.assertEqual(landing.code, 200)
        self.assertEqual(landing.headers.getRawHeaders("referrer-policy"), ["no-referrer"])
        self.assertEqual(landing.headers.getRawHeaders("cache-control"), ["no-store"])
        self.assertEqual(landing.headers.getRawHeaders("x-content-type-options"), ["nosniff"])
        self.assertIn("report.pdf", await landing.text())
        download = await treq.get(self.gateway.webURL + path + "/0", persistent=False)
        self.assertEqual(download.code, 200)
        content = await download.content()
        self.assertEqual(hashlib.sha256(content).hexdigest(), hashlib.sha256(data).hexdigest())
        self.assertEqual(download.length, len(data))
        self.assertEqual(download.headers.getRawHeaders("content-disposition"),
                         ["attachment; filename=\"report.pdf\"; filename*=UTF-8''report.pdf"])
        missing = await treq.get(self.gateway.webURL + "/t/" + "A" * 43, persistent=False)
        self.assertEqual(missing.code, 404)
        await missing.content()
        metrics = await (await treq.get(self.gateway.metricsURL + "/metrics", persistent=False)).text()
        self.assertIn('secudoc_messages_total{status="protected",tenant="example"} 1.0', metrics)
        self.assertIn('secudoc_downloads_total{tenant="example"} 1.0', metrics)
        self.assertIn('secudoc_attachment_bytes_total{tenant="example"} 50000.0', metrics)


class ReloadTests(ServiceTestCase):
    @asyncTest
    async def test_sighupReloadsTenants(self) -> None:
        """A new tenant file counts after SIGHUP; a bad one keeps the old tenants."""
        import signal

        await self.startService()
        code, _ = await self.send(sender="carol@second.test")
        self.assertEqual(code, 550)
        second = dict(DEMO_TENANT, id="second", domains=["second.test"], relay="maildir:../outbox/second",
                      facility_sender="noreply@second.test")
        from secudoc_gateway.testing import tomlTable

        tenants = os.path.join(self.folder, "tenants")
        with open(os.path.join(tenants, "second.toml"), "w") as f:
            f.write(tomlTable(second))
        # A connection open across the reload is not dropped.
        sock = socket.create_connection(("127.0.0.1", self.gateway.smtpPort))
        self.addCleanup(sock.close)
        reader = sock.makefile("rb")
        await inThread(reader.readline)
        os.kill(os.getpid(), signal.SIGHUP)
        # The reload runs from the reactor loop, soon.
        await until(lambda: "second" in {t.id for t in self.gateway.service.config.tenants}, "the reload after SIGHUP")
        code, text = await self.send(sender="carol@second.test")
        self.assertEqual(code, 250, text)
        self.assertEqual(len(maildirMessages(os.path.join(self.folder, "outbox", "second"))), 1)
        await inThread(sock.sendall, b"NOOP\r\n")
        self.assertTrue((await inThread(reader.readline)).startswith(b"250"))

        with open(os.path.join(tenants, "broken.toml"), "w") as f:
            f.write('id = "broken"\nmode = "sometimes"\n')
        self.assertFalse(self.gateway.service.reload())
        code, _ = await self.send(sender="carol@second.test")
        self.assertEqual(code, 250)


class TestRelayCommandTests(ServiceTestCase):
    """``secudoc-gateway test-relay TENANT`` against a real inbound connector."""

    def runCommand(self, *args: str) -> defer.Deferred:
        from twisted.internet import utils

        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ, PYTHONPATH=root)
        return utils.getProcessOutputAndValue(sys.executable, ("-m", "secudoc_gateway.cli") + args, env=env)

    startSink = SMTPRelayTests.startSink

    @asyncTest
    async def test_success(self) -> None:
        sink, tenant = await self.startSink()
        folder = os.path.abspath(self.mktemp())
        path = writeConfig(folder, [dict(DEMO_TENANT, **tenant)])
        out, err, code = await self.runCommand("test-relay", "--config", path, "example")
        self.assertEqual(code, 0, err)
        self.assertIn(b"250", out)
        [message] = sink.messages
        self.assertEqual(message.recipients, ("noreply@example.test",))
        self.assertIn(b"Subject: Uw mailserver is ingesteld", message.data)
        self.assertEqual(message.clientSubject, "secudoc.example.test")

    @asyncTest
    async def test_remoteRefuses(self) -> None:
        sink, tenant = await self.startSink(replies={"rcpt": Reply(550, "5.7.1", "Unknown connector")})
        folder = os.path.abspath(self.mktemp())
        path = writeConfig(folder, [dict(DEMO_TENANT, **tenant)])
        out, err, code = await self.runCommand("test-relay", "--config", path, "example")
        self.assertEqual(code, 1)
        self.assertIn(b"550 5.7.1 Unknown connector", err)


class LogTests(ServiceTestCase):
    @asyncTest
    async def test_jsonLogFile(self) -> None:
        """[log] format = "json", path = FILE: one JSON object a line, tokens redacted."""
        import json

        self.folder = os.path.abspath(self.mktemp())
        self.configPath = writeConfig(self.folder, [DEMO_TENANT], log={"format": "json", "path": "gateway.log"})
        self.gateway = await startGateway(self.configPath, reactor)
        self.addCleanup(self.gateway.stop)
        code, _ = await self.send(attachmentMessage(os.urandom(5000)))
        self.assertEqual(code, 250)
        [stored] = maildirMessages(self.outbox)
        import email, email.policy, re

        body = email.message_from_bytes(splitEnvelope(stored)[2], policy=email.policy.default)
        [token] = re.findall(r"/t/([A-Za-z0-9_-]{43})", body.get_body(("plain",)).get_content())
        response = await treq.get(f"{self.gateway.webURL}/t/{token}/0", persistent=False)
        await response.content()
        await self.gateway.stop()
        with open(os.path.join(self.folder, "gateway.log"), encoding="utf-8") as f:
            lines = f.read().splitlines()
        events = [json.loads(line) for line in lines]
        self.assertTrue([e for e in events if e.get("leg") == "protected" and e.get("status") == "sent"])
        self.assertFalse([key for e in events for key in e if key.startswith("log_")])
        self.assertFalse([line for line in lines if token in line])


class RefusalLogTests(ServiceTestCase):
    """
    Every refusal is one Postfix-style line (``NOQUEUE: reject: ...``, the
    queue id once the message has one), its facts named in JSON.
    """

    async def refusals(self, send, tenant: dict = {}, smtp: dict = {}) -> list[dict]:
        """Start the service, run ``send`` against it, stop it: the refusal lines of its JSON log."""
        import json

        self.folder = os.path.abspath(self.mktemp())
        self.configPath = writeConfig(self.folder, [dict(DEMO_TENANT, **tenant)], smtp=smtp,
                                      log={"format": "json", "path": "gateway.log"})
        self.gateway = await startGateway(self.configPath, reactor)
        self.addCleanup(self.gateway.stop)
        await send()
        await self.gateway.stop()
        with open(os.path.join(self.folder, "gateway.log"), encoding="utf-8") as f:
            events = [json.loads(line) for line in f]
        return [e for e in events if "stage" in e]

    @asyncTest
    async def test_connect(self) -> None:
        """A source no tenant allows: 554 at the greeting, a CONNECT line without envelope."""
        async def send() -> None:
            with self.assertRaises(smtplib.SMTPConnectError) as raised:
                await inThread(smtplib.SMTP, "127.0.0.1", self.gateway.smtpPort, timeout=30)
            self.assertEqual(raised.exception.smtp_code, 554)

        [line] = await self.refusals(send, tenant={"allowed_sources": ["192.0.2.0/24"]})
        self.assertEqual(line["message"], "NOQUEUE: reject: CONNECT from unknown[127.0.0.1]: 554 5.7.1 Access denied"
                                          " (no tenant allows this address); proto=SMTP")
        self.assertEqual((line["stage"], line["client_address"], line["code"], line["reason"]),
                         ("CONNECT", "127.0.0.1", 554, "no tenant allows this address"))

    @asyncTest
    async def test_mail(self) -> None:
        """Relaying denied: a MAIL line with the sender and the client's HELO."""
        async def send() -> None:
            code, _ = await self.send(sender="mallory@elsewhere.test")
            self.assertEqual(code, 550)

        [line] = await self.refusals(send)
        self.assertEqual(line["message"], "NOQUEUE: reject: MAIL from unknown[127.0.0.1]: 550 5.7.1 Relaying denied"
                                          " (no tenant allows this sender from this address);"
                                          " from=<mallory@elsewhere.test> proto=ESMTP helo=<client.test>")
        self.assertEqual((line["queue_id"], line["stage"], line["sender"], line["reply"], line["helo"]),
                         ("NOQUEUE", "MAIL", "mallory@elsewhere.test", "550 5.7.1 Relaying denied", "client.test"))

    @asyncTest
    async def test_rcpt(self) -> None:
        """One recipient too many: 452, a RCPT line naming the recipient refused."""
        async def send() -> None:
            code, _ = await self.send(recipients=("bob@external.test", "carol@external.test"))
            self.assertEqual(code, 452)

        [line] = await self.refusals(send, smtp={"max_recipients": 1})
        self.assertEqual(line["message"], "NOQUEUE: reject: RCPT from unknown[127.0.0.1]: 452 4.5.3 Too many"
                                          " recipients (max_recipients 1 reached); from=<alice@example.test>"
                                          " to=<carol@external.test> proto=ESMTP helo=<client.test>")
        self.assertEqual((line["recipients"], line["code"]), (["carol@external.test"], 452))

    @asyncTest
    async def test_endOfMessageStructure(self) -> None:
        """A message past the MIME limits: 554 5.6.0, the line carries the queue id and the defect."""
        parts = b"".join(b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n" for _ in range(5))
        message = (b"From: alice@example.test\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
                   + parts + b"--b--\r\n")

        async def send() -> None:
            code, _ = await self.send(message)
            self.assertEqual(code, 554)

        [line] = await self.refusals(send, smtp={"max_mime_parts": 3})
        self.assertRegex(line["queue_id"], "^[0-9A-F]{16}$")
        self.assertEqual(line["message"], f"{line['queue_id']}: reject: END-OF-MESSAGE from unknown[127.0.0.1]:"
                                          " 554 5.6.0 Message structure exceeds limits (too many parts at byte"
                                          f" {line['reason'].rsplit(' ', 1)[1]}); from=<alice@example.test>"
                                          " to=<bob@external.test> proto=ESMTP helo=<client.test>")
        self.assertTrue(line["reason"].startswith("too many parts at byte "))

    @asyncTest
    async def test_endOfMessageTenant(self) -> None:
        """A bounce naming no tenant: 550 after the data, the line says why."""
        async def send() -> None:
            code, _ = await self.send(sender="")
            self.assertEqual(code, 550)

        [line] = await self.refusals(send)
        self.assertEqual((line["stage"], line["sender"], line["recipients"], line["reply"]),
                         ("END-OF-MESSAGE", "", ["bob@external.test"],
                          "550 5.7.1 Message does not belong to a known tenant"))
        self.assertIn("from=<> to=<bob@external.test>", line["message"])


class S3CredentialsTests(TestCase):
    def test_checkConfigNamesMissingVariables(self) -> None:
        """Secrets come only from the environment: check-config says which variable is missing."""
        folder = os.path.abspath(self.mktemp())
        path = writeConfig(folder, storage={
            "backend": "s3", "endpoint": "https://s3.test", "bucket": "b", "region": "r",
            "access_key_id_env": "SECUDOC_TEST_ABSENT_KEY", "secret_access_key_env": "SECUDOC_TEST_ABSENT_SECRET"})
        command = (sys.executable, "-m", "secudoc_gateway.cli", "check-config", "--config", path)
        result = CommandLineTests.run_(self, *command)
        self.assertEqual(result.returncode, 2)
        self.assertEqual(result.stderr.splitlines(), [
            f"{path}: storage.access_key_id_env: environment variable SECUDOC_TEST_ABSENT_KEY is not set",
            f"{path}: storage.secret_access_key_env: environment variable SECUDOC_TEST_ABSENT_SECRET is not set",
        ])
        os.environ["SECUDOC_TEST_ABSENT_KEY"] = "key"
        self.addCleanup(os.environ.pop, "SECUDOC_TEST_ABSENT_KEY")
        result = CommandLineTests.run_(self, *command)
        self.assertEqual(result.stderr.splitlines(), [
            f"{path}: storage.secret_access_key_env: environment variable SECUDOC_TEST_ABSENT_SECRET is not set",
        ])
        os.environ["SECUDOC_TEST_ABSENT_SECRET"] = "secret"
        self.addCleanup(os.environ.pop, "SECUDOC_TEST_ABSENT_SECRET")
        result = CommandLineTests.run_(self, *command)
        self.assertEqual((result.returncode, result.stderr), (0, ""))
