"""
The log: lines as operators and log shippers read them, the summary
line of every relay leg, and JSON on standard output under a real
``twistd -n`` that stays bounded over a thousand messages.
"""

from __future__ import annotations

import email
import email.policy
import io
import json
import os
import re
import signal
import smtplib
from email.message import EmailMessage

from twisted.internet import reactor
from twisted.logger import Logger, LogLevel, LogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from secudoc_gateway.logs import SUMMARY, Addresses, LineObserver, LogService, jsonLine, textLine
from secudoc_gateway.testing import DEMO_TENANT, startGateway, writeConfig
from tests.support import asyncTest, inThread, maildirMessages, sendMail, splitEnvelope
from secudoc_gateway.testing import GatewayProcess

RFC3339_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\Z")
SUMMARY_FIELDS = {"queue_id", "tenant", "sender", "recipients", "size", "leg", "status", "reason",
                  "transfer_id", "relay", "reply", "delay"}


def emitted(**kw) -> dict:
    """One event as a Logger makes it."""
    publisher = LogPublisher()
    events: list[dict] = []
    publisher.addObserver(events.append)
    Logger(namespace="secudoc_gateway.test", observer=publisher).emit(kw.pop("level", LogLevel.info), **kw)
    return events[0]


def message(marker: str = "", to: str = "bob@external.test", n: int = 0) -> bytes:
    m = EmailMessage()
    m["From"] = "alice@example.test"
    m["To"] = to
    m["Subject"] = f"Message {n}"
    m["Message-ID"] = f"<log-{n}@example.test>"
    m.set_content("Hello.\n")
    if marker:
        m.add_attachment((marker + "\n") * 100, filename="secret.txt")
    return m.as_bytes()


class LineTests(SynchronousTestCase):
    def test_json(self) -> None:
        """time (RFC 3339, UTC), level, message, the named fields; no Twisted bookkeeping."""
        event = emitted(format="{queue_id}: {n} files", queue_id="ABC", n=2, where=("a", "b"))
        record = json.loads(jsonLine(event))
        self.assertRegex(record["time"], RFC3339_UTC)
        self.assertEqual((record["level"], record["message"]), ("info", "ABC: 2 files"))
        self.assertEqual((record["queue_id"], record["n"], record["where"]), ("ABC", 2, ["a", "b"]))
        self.assertEqual(record["logger"], "secudoc_gateway.test")
        self.assertFalse([key for key in record if key.startswith("log_")])

    def test_jsonFailure(self) -> None:
        try:
            1 / 0
        except ZeroDivisionError:
            failure = Failure()
        record = json.loads(jsonLine(emitted(format="it broke", level=LogLevel.error, log_failure=failure)))
        self.assertEqual(record["level"], "error")
        self.assertIn("ZeroDivisionError", record["error"])

    def test_tokensRedacted(self) -> None:
        """A token that slipped into a message or a field is not written, in either format."""
        token = "k" * 43
        event = emitted(format="GET /t/{token}/0", token=f"/t/{token}")
        for line in (jsonLine(event), textLine(event)):
            self.assertNotIn(token, line)
            self.assertIn("/t/<redacted>", line)

    def test_text(self) -> None:
        line = textLine(emitted(format="hello {who}", who="world", level=LogLevel.warn))
        self.assertRegex(line, r"^\S+Z \[secudoc_gateway\.test#warn\] hello world\n\Z")

    def test_summaryText(self) -> None:
        """Postfix-style: every field in the text line too."""
        event = emitted(format=SUMMARY, queue_id="Q1", tenant="example", sender="alice@example.test",
                        recipients=Addresses(["bob@external.test", "eve@other.test"]), size=1234,
                        leg="protected", status="sent", reason="protected", transfer_id="T1",
                        relay="maildir:/x", reply="maildir 1.2", delay=0.25)
        self.assertIn("Q1: tenant=example, from=<alice@example.test>, to=<bob@external.test>,<eve@other.test>,"
                      " size=1234, leg=protected, status=sent (protected), transfer=T1,"
                      " relay=maildir:/x (maildir 1.2), delay=0.25", textLine(event))
        self.assertEqual(json.loads(jsonLine(event))["recipients"], ["bob@external.test", "eve@other.test"])

    def test_infoAndAbove(self) -> None:
        stream = io.StringIO()
        observer = LineObserver("json", stream)
        observer(emitted(format="quiet", level=LogLevel.debug))
        observer(emitted(format="loud"))
        self.assertEqual([json.loads(line)["message"] for line in stream.getvalue().splitlines()], ["loud"])


class LogServiceTests(SynchronousTestCase):
    def test_fileWhileRunning(self) -> None:
        path = self.mktemp()
        publisher = LogPublisher()
        service = LogService("json", path, publisher)
        service.startService()
        Logger(observer=publisher).info("one")
        service.stopService()
        Logger(observer=publisher).info("two")
        with open(path) as f:
            self.assertEqual([json.loads(line)["message"] for line in f], ["one"])


class SummaryTests(TestCase):
    """The summary line of each leg, from the running service."""

    async def run_(self, message: bytes, recipients: list[str]) -> tuple[list[dict], str]:
        folder = os.path.abspath(self.mktemp())
        path = writeConfig(folder, [DEMO_TENANT], log={"format": "json", "path": "gateway.log"})
        gateway = await startGateway(path, reactor)
        try:
            code, text = await inThread(sendMail, gateway.smtpPort, "alice@example.test", recipients, message)
            self.assertEqual(code, 250, text)
        finally:
            await gateway.stop()
        with open(os.path.join(folder, "gateway.log"), encoding="utf-8") as f:
            events = [json.loads(line) for line in f]
        return [e for e in events if "leg" in e], os.path.join(folder, "outbox", "example")

    @asyncTest
    async def test_twoLegs(self) -> None:
        """A protected message with an internal recipient: one line per leg, every field."""
        legs, outbox = await self.run_(message("x" * 40), ["bob@external.test", "carol@example.test"])
        self.assertEqual([(e["leg"], e["status"]) for e in legs], [("original", "sent"), ("protected", "sent")])
        original, protected = legs
        for e in legs:
            self.assertEqual(set(e) - {"time", "level", "message", "logger"}, SUMMARY_FIELDS)
            self.assertEqual((e["tenant"], e["sender"]), ("example", "alice@example.test"))
            self.assertTrue(e["relay"].startswith("maildir:"))
            self.assertTrue(e["reply"])
            self.assertGreater(e["size"], 4000)
            self.assertGreaterEqual(e["delay"], 0)
        self.assertEqual(original["recipients"], ["carol@example.test"])
        self.assertEqual(original["reason"], "passed; reason=internal-recipient")
        self.assertEqual(protected["recipients"], ["bob@external.test"])
        self.assertEqual(protected["reason"], "protected")
        self.assertEqual(original["transfer_id"], protected["transfer_id"])
        relayed = [splitEnvelope(m)[2] for m in maildirMessages(outbox)]
        self.assertTrue([m for m in relayed if f"X-SecuDoc-Transfer: {protected['transfer_id']}".encode() in m])

    @asyncTest
    async def test_deferred(self) -> None:
        """A relay target that is down: the leg's line says deferred, with the stage."""
        folder = os.path.abspath(self.mktemp())
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        path = writeConfig(folder, [dict(DEMO_TENANT, relay=f"smtp://127.0.0.1:{port}")],
                           log={"format": "json", "path": "gateway.log"})
        gateway = await startGateway(path, reactor)
        try:
            code, _ = await inThread(sendMail, gateway.smtpPort, "alice@example.test", ["bob@external.test"],
                                     message())
            self.assertEqual(code, 451)
        finally:
            await gateway.stop()
        with open(os.path.join(folder, "gateway.log"), encoding="utf-8") as f:
            [leg] = [e for e in map(json.loads, f) if "leg" in e]
        self.assertEqual((leg["status"], leg["level"]), ("deferred", "warn"))
        self.assertTrue(leg["reason"].startswith("connect: "), leg["reason"])


class TwistdStandardOutputTests(SynchronousTestCase):
    """``format = "json"`` on standard output under a real ``twistd -n``."""

    MESSAGES = 1000

    def test_thousandMessages(self) -> None:
        gateway = GatewayProcess.inFolder(os.path.abspath(self.mktemp()), log={"format": "json"})
        gateway.start()
        self.addCleanup(gateway.stop)
        marker = "FILE-CONTENT-" + os.urandom(8).hex()
        protected = 0
        with smtplib.SMTP("127.0.0.1", gateway.smtpPort, timeout=60) as client:
            for n in range(self.MESSAGES):
                if n % 100 == 0:  # protected, with an internal recipient: two legs
                    recipients = ["bob@external.test", "carol@example.test"]
                    client.sendmail("alice@example.test", recipients, message(marker, n=n))
                    protected += 1
                else:
                    client.sendmail("alice@example.test", ["bob@external.test"], message(n=n))
        self.assertEqual(gateway.stop(), -signal.SIGTERM)  # twistd ends as its signal says
        out, err = gateway.output()

        lines = out.decode("utf-8").splitlines()
        records = [json.loads(line) for line in lines]  # every line one JSON object
        for record in records:
            self.assertRegex(record["time"], RFC3339_UTC)
            self.assertIn(record["level"], ("debug", "info", "warn", "error", "critical"))
            self.assertFalse([key for key in record if key.startswith("log_")], record)
        legs = [r for r in records if "leg" in r]
        self.assertEqual(len(legs), self.MESSAGES + protected)
        self.assertEqual({r["status"] for r in legs}, {"sent"})
        # Bounded: no line fed back into the log, nothing but a few lines a message.
        self.assertLess(len(out), self.MESSAGES * 1536, f"{len(out)} bytes for {self.MESSAGES} messages")
        self.assertLess(max(map(len, lines)), 4096)
        self.assertEqual(err, b"")
        print(f"{len(out)} bytes of log, {len(lines)} lines, for {self.MESSAGES} messages")

        outbox = os.path.join(gateway.folder, "outbox", "example")
        tokens = set()
        for stored in maildirMessages(outbox):
            body = email.message_from_bytes(splitEnvelope(stored)[2], policy=email.policy.default)
            if body["X-SecuDoc-Status"] == "protected":
                tokens.update(re.findall(r"/t/([A-Za-z0-9_-]{43})", body.get_body(("plain",)).get_content()))
        self.assertEqual(len(tokens), protected)
        for secret in [marker, *tokens]:
            self.assertNotIn(secret.encode(), out)


class WorkerTagTests(SynchronousTestCase):
    def test_workerField(self) -> None:
        """A worker's observer tags each line: ``worker=N`` in text, a ``worker`` field in JSON."""
        import io

        for format, check in (("json", lambda line: json.loads(line)["worker"] == 1),
                              ("text", lambda line: "[t#info] worker=1 hello bob" in line)):
            stream = io.StringIO()
            LineObserver(format, stream, worker=1)({"log_format": "hello {who}", "who": "bob", "log_namespace": "t",
                                                    "log_level": LogLevel.info, "log_time": 0.0})
            self.assertTrue(check(stream.getvalue()), stream.getvalue())
            stream = io.StringIO()
            LineObserver(format, stream)({"log_format": "hello", "log_namespace": "t", "log_level": LogLevel.info,
                                          "log_time": 0.0})
            self.assertNotIn("worker", stream.getvalue())
