"""
The message trace (SPEC 7) and ``secudoc-gateway trace`` (SPEC 2): the
seed's validation tests (section 12) sent through the real gateway, each
found in the trace with its decision; refusals with their reply, the
relaying refusal not at all; the purge after ``trace_days``; and
``--follow`` printing a message answered after it started.  With
``SECUDOC_TEST_DATABASE=postgresql`` the same on PostgreSQL.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from email.message import EmailMessage
from typing import Any, Optional

from prometheus_client import CollectorRegistry
from twisted.internet import defer, reactor, task
from twisted.trial.unittest import SynchronousTestCase, TestCase

from secudoc_gateway import cli
from secudoc_gateway.config import loadUsableConfig
from secudoc_gateway.db import Database
from secudoc_gateway.ingress.tracer import Tracer
from secudoc_gateway.metrics import Metrics
from secudoc_gateway.purge import PurgeService
from secudoc_gateway.replies import ACCEPTED
from secudoc_gateway.testing import DEMO_TENANT, startGateway, writeConfig
from secudoc_gateway.testing.fakes import MemoryStore
from secudoc_gateway.testing.gateway import testDatabase
from secudoc_gateway.tracing import traceCommand
from secudoc_gateway.transfers import TraceEntry, TransferStore
from tests.support import asyncTest, inThread, sendMail
from tests.test_operators import closedPort

CLI = [sys.executable, "-m", "secudoc_gateway.cli"]
DAY = 86400.0


def mail(n: str, to: str = "bob@external.test", attachment: bool = False, sender: str = "alice@example.test",
         **fields: str) -> bytes:
    """A test mail of the seed's section 12, its Message-ID ``<n@example.test>``."""
    m = EmailMessage()
    m["From"] = sender
    m["To"] = to
    m["Subject"] = f"Validation test {n}"
    m["Message-ID"] = f"<{n}@example.test>"
    for name, value in fields.items():
        m[name.replace("_", "-")] = value
    m.set_content("Hello.\n")
    if attachment:
        m.add_attachment(b"%PDF-1.4 report\n" * 200, maintype="application", subtype="pdf", filename="report.pdf")
    return m.as_bytes()


def runCLI(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)


class TraceCommandTests(TestCase):
    """The seed's validation tests and refusals, through the gateway, then ``trace``."""

    async def start(self, tenants: Optional[list[dict[str, Any]]] = None) -> None:
        self.folder = os.path.abspath(self.mktemp())
        self.config = writeConfig(self.folder, tenants or [DEMO_TENANT])
        self.gateway = await startGateway(self.config, reactor)
        self.addCleanup(self.gateway.stop)

    async def send(self, raw: bytes, to: str = "bob@external.test", sender: str = "alice@example.test",
                   code: int = 250) -> bytes:
        got, text = await inThread(sendMail, self.gateway.smtpPort, sender, [to], raw)
        self.assertEqual(got, code, text)
        return text

    async def trace(self, *args: str) -> list[dict[str, Any]]:
        """``trace --json`` run in this process, on this reactor: its records."""
        parsed = cli.commands().parse_args(["trace", *args, "--json", "--config", self.config])
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            status = await traceCommand(parsed, loadUsableConfig(self.config), reactor)
        self.assertEqual(status, 0)
        return json.loads(out.getvalue())

    @asyncTest
    async def test_validationTests(self) -> None:
        """Section 12's four tests, each in the trace with its decision, found by every filter."""
        await self.start()
        await self.send(mail("no-attachment"))
        protected = await self.send(mail("external", attachment=True))
        await self.send(mail("internal", to="carol@example.test", attachment=True), to="carol@example.test")
        await self.send(mail("opt-out", attachment=True, X_SecuDoc_Enabled="0"))
        records = await self.trace()
        byId = {r["message_id"]: r for r in records}
        self.assertEqual(
            {mid: (r["decision"], r["reason"]) for mid, r in byId.items()},
            {"<no-attachment@example.test>": ("passed", "no-attachment"),
             "<external@example.test>": ("protected", ""),
             "<internal@example.test>": ("passed", "internal-recipient"),
             "<opt-out@example.test>": ("passed", "not-enabled")})
        self.assertEqual([r["message_id"] for r in records], list(byId))  # oldest first, as sent
        external = byId["<external@example.test>"]
        self.assertEqual((external["tenant"], external["sender"], external["recipients"]),
                         ("example", "alice@example.test", ["bob@external.test"]))
        self.assertEqual(external["reply_code"], 250)
        self.assertEqual(external["reply"], "250 " + protected.decode())
        self.assertRegex(external["transfer_id"], r"^\S+$")
        self.assertIn(external["transfer_id"], protected.decode())
        self.assertIn("maildir", external["relay_reply"])
        self.assertIsNone(external["scan"])
        self.assertGreater(external["size"], 3000)
        for record in records:
            self.assertNotIn("subject", record)
            self.assertNotIn("Validation test", json.dumps(record))
            if record is not external:
                self.assertIsNone(record["transfer_id"])

        # Each filter, as an admin narrows the trace down.
        [found] = await self.trace("--message-id", "external@example.test")
        self.assertEqual(found, external)
        self.assertEqual(await self.trace("--message-id", "<external@example.test>"), [external])
        internal = await self.trace("--recipient", "Carol@EXAMPLE.test")
        self.assertEqual([r["message_id"] for r in internal], ["<internal@example.test>"])
        self.assertEqual(len(await self.trace("--sender", "ALICE@example.test", "--since", "1d")), 4)
        self.assertEqual(await self.trace("--sender", "nobody@example.test"), [])
        self.assertEqual(await self.trace("--tenant", "other"), [])
        self.assertEqual(await self.trace("--since", "2999-01-01"), [])
        self.assertEqual(len(await self.trace("--tenant", "example", "--recipient", "bob@external.test",
                                              "--since", "2000-01-01")), 3)

        # The real command, in its own process: a table, then --json.
        result = await inThread(runCLI, ["trace", "--config", self.config])
        self.assertEqual(result.returncode, 0, result.stderr)
        header, *rows = result.stdout.splitlines()
        self.assertEqual(header.split(), ["TIME", "QUEUE", "ID", "TENANT", "SENDER", "RECIPIENTS", "SIZE",
                                          "DECISION", "REASON", "TRANSFER", "REPLY"])
        self.assertEqual(len(rows), 4)
        for row, (decision, reason) in zip(rows, [("passed", "no-attachment"), ("protected", None),
                                                  ("passed", "internal-recipient"), ("passed", "not-enabled")]):
            words = row.split()
            self.assertIn(decision, words)
            if reason:
                self.assertIn(reason, words)
        result = await inThread(runCLI, ["trace", "--json", "--sender", "alice@example.test", "--config",
                                         self.config])
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(json.loads(result.stdout), records)

    @asyncTest
    async def test_resend(self) -> None:
        """EXO's resend of a relayed message: answered 250 again, a row of its own, relayed once."""
        await self.start()
        await self.send(mail("twice", attachment=True))
        await self.send(mail("twice", attachment=True))
        first, second = await self.trace("--message-id", "twice@example.test")
        self.assertEqual((first["decision"], second["decision"]), ("protected", "protected"))
        self.assertNotEqual(first["queue_id"], second["queue_id"])
        self.assertEqual(second["relay_reply"], "already relayed")

    @asyncTest
    async def test_refusals(self) -> None:
        """
        A rejection and a tempfail of a known tenant are in the trace with
        their reply; a relaying refusal (no tenant) is not.
        """
        down = dict(DEMO_TENANT, id="down", domains=["down.test"], users=["*@down.test"],
                    relay=f"smtp://127.0.0.1:{closedPort()}", facility_sender="noreply@down.test")
        strict = dict(DEMO_TENANT, users=["alice@example.test"], unknown_sender="reject")
        await self.start([strict, down])
        rejected = await self.send(mail("unknown", sender="mallory@example.test", attachment=True),
                                   sender="mallory@example.test", code=550)
        await self.send(mail("down", sender="dave@down.test", attachment=True), sender="dave@down.test", code=451)
        await self.send(mail("denied", sender="eve@nowhere.test"), sender="eve@nowhere.test", code=550)
        records = await self.trace()
        self.assertEqual([r["message_id"] for r in records], ["<unknown@example.test>", "<down@example.test>"])
        unknown, tempfailed = records
        self.assertEqual((unknown["decision"], unknown["reason"], unknown["reply"]),
                         ("rejected", "unknown-sender", "550 " + rejected.decode()))
        self.assertEqual((tempfailed["tenant"], tempfailed["decision"], tempfailed["reply_code"]),
                         ("down", "tempfailed", 451))
        self.assertIn("connect", tempfailed["reason"])
        self.assertIsNone(tempfailed["transfer_id"])  # deleted with the failed relay
        self.assertEqual(await self.trace("--sender", "eve@nowhere.test"), [])

    @asyncTest
    async def test_overSize(self) -> None:
        """A message refused 552 for its size, drained and never held, has its row too."""
        self.folder = os.path.abspath(self.mktemp())
        self.config = writeConfig(self.folder, [DEMO_TENANT], smtp={"max_message_size": 4096})
        self.gateway = await startGateway(self.config, reactor)
        self.addCleanup(self.gateway.stop)
        await self.send(mail("big", attachment=True), code=552)
        await until(self.trace, lambda records: len(records) == 1)  # written as the 552 goes out, not before it
        [record] = await self.trace()
        self.assertEqual((record["tenant"], record["sender"], record["recipients"], record["decision"],
                          record["reply_code"], record["reason"]),
                         ("example", "alice@example.test", ["bob@external.test"], "rejected", 552,
                          "over max_message_size 4096"))

    @asyncTest
    async def test_follow(self) -> None:
        """``trace --follow`` prints a message answered after it started, and stops cleanly on Ctrl-C."""
        await self.start()
        await self.send(mail("before"))
        follower = subprocess.Popen([*CLI, "trace", "--follow", "--json", "--config", self.config],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(lambda: follower.poll() is None and follower.kill())
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(iter(follower.stdout.readline, "")), daemon=True)
        reader.start()

        async def seen(marker: str) -> None:
            deadline = time.monotonic() + 30
            while not any(marker in line for line in list(lines)):
                self.assertIsNone(follower.poll(), follower.stderr.read() if follower.poll() is not None else "")
                self.assertLess(time.monotonic(), deadline, f"{marker} not printed: {lines}")
                await task.deferLater(reactor, 0.05, lambda: None)

        await seen("<before@example.test>")
        await self.send(mail("after", attachment=True))
        await seen("<after@example.test>")
        follower.send_signal(signal.SIGINT)
        status = await inThread(follower.wait, 30)
        reader.join(10)
        self.assertEqual(status, 0)
        self.assertNotIn("Traceback", follower.stderr.read())
        records = [json.loads(line) for line in lines]
        self.assertEqual([(r["message_id"], r["decision"]) for r in records],
                         [("<before@example.test>", "passed"), ("<after@example.test>", "protected")])


def traceEntry(at: float, n: int) -> TraceEntry:
    return TraceEntry(at=at, tenant="example", queue_id=f"Q{n}", message_id=f"<{n}@example.test>",
                      sender="alice@example.test", recipients=("bob@external.test", "Eve@Other.test"),
                      size=1000, decision="passed", reason="no-attachment", transfer_id=None,
                      reply_code=250, reply_text="2.0.0 Ok", relay_reply="250 ok")


class TracePurgeTests(TestCase):
    """Rows older than ``trace_days`` go with the hourly purge (a ``task.Clock``)."""

    @asyncTest
    async def test_purge(self) -> None:
        folder = os.path.abspath(self.mktemp())
        config = loadUsableConfig(writeConfig(folder, database=testDatabase()))
        clock = task.Clock()
        database = Database.fromConfig(config.database, reactor)
        await database.open()
        self.addCleanup(database.close)
        store = TransferStore(database, clock)
        await store.recordTrace(traceEntry(0, 1))
        await store.recordTrace(traceEntry(2 * DAY, 2))
        clock.advance(30 * DAY + 3600)
        service = PurgeService(store, MemoryStore(), clock, Metrics(CollectorRegistry()), 3600,
                               traceDays=config.portal.trace_days)
        service.startService()  # purges at once, then hourly
        self.addCleanup(service.stopService)
        await until(lambda: store.traceEntries(), lambda rows: [r.queue_id for r in rows] == ["Q2"])
        [(count,)] = await database.runQuery("SELECT COUNT(*) FROM message_trace_recipients")
        self.assertEqual(count, 2)
        self.assertEqual([r.queue_id for r in await store.traceEntries(recipient="eve@other.test")], ["Q2"])
        clock.advance(2 * DAY)  # hourly purges
        await until(lambda: store.traceEntries(), lambda rows: rows == [])
        [(count,)] = await database.runQuery("SELECT COUNT(*) FROM message_trace_recipients")
        self.assertEqual(count, 0)


async def until(query: Any, done: Any, timeout: float = 10.0) -> None:
    """Run ``query()`` until ``done(result)``, within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = await query()
        if done(result):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {result!r}")
        await task.deferLater(reactor, 0.02, lambda: None)


class TracerTests(SynchronousTestCase):
    """The ``Tracer`` hands each row to the database's group commit; a row it cannot write is only logged."""

    def test_failureLogged(self) -> None:
        writes: list[tuple[str, defer.Deferred]] = []

        class Store:
            def recordTrace(self, entry: TraceEntry) -> defer.Deferred:
                d: defer.Deferred = defer.Deferred()
                writes.append((entry.queue_id, d))
                return d

        tracer = Tracer(Store(), task.Clock())
        written, lost = tracer.record(traceEntry(0, 0)), tracer.record(traceEntry(0, 1))
        self.assertEqual([queueId for queueId, _ in writes], ["Q0", "Q1"])
        self.assertNoResult(written)
        writes[0][1].callback(None)
        self.successResultOf(written)
        writes[1][1].errback(RuntimeError("database down"))  # logged, never the reply's failure
        self.successResultOf(lost)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_off(self) -> None:
        """Switched off (the bench's "without"), it makes no rows."""
        for tracer in (Tracer(object(), task.Clock(), enabled=False), Tracer(None, task.Clock())):
            entry = tracer.entry(None, "Q", None, None, 0, "passed", "", ACCEPTED)  # type: ignore[arg-type]
            self.assertIsNone(entry)
            self.successResultOf(tracer.record(entry))
