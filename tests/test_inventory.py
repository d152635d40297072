"""
The operator's commands on the records, on the same database as a
running gateway: transfers list, show, revoke and extend, the audit
trail, purge --dry-run, and --version and --help everywhere.  The
commands run in this process, their output captured, where the test is
about what they print; once each in their own process, as operators
run them (a Python start-up each was most of this module's time).
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import io
import json
import os
import re
import sqlite3
import sys
import time

import treq
from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase

from secudoc_gateway import __version__, cli
from secudoc_gateway.config import loadUsableConfig
from secudoc_gateway.testing import DEMO_TENANT, startGateway, writeConfig
from tests.support import asyncTest, inThread, maildirMessages, sendMail, splitEnvelope
from tests.test_logs import message
from tests.twistd import TWISTD, run

CLI = [sys.executable, "-m", "secudoc_gateway.cli"]


class TransferCommandTests(TestCase):
    async def setUp(self) -> None:
        self.folder = os.path.abspath(self.mktemp())
        self.config = writeConfig(self.folder, [dict(DEMO_TENANT, language="nl")])
        self.gateway = await startGateway(self.config, reactor)
        self.addCleanup(self.gateway.stop)
        self.links = {}
        for n, sender in enumerate(["alice@example.test", "Bob@Example.test"]):
            raw = message("z" * 40, n=n).replace(b"alice@example.test", sender.encode())
            code, text = await inThread(sendMail, self.gateway.smtpPort, sender, ["eve@external.test"], raw)
            self.assertEqual(code, 250, text)
        for stored in maildirMessages(os.path.join(self.folder, "outbox", "example")):
            relayed = email.message_from_bytes(splitEnvelope(stored)[2], policy=email.policy.default)
            [path] = re.findall(r"/t/[A-Za-z0-9_-]{43}", relayed.get_body(("plain",)).get_content())
            self.links[relayed["X-SecuDoc-Transfer"]] = path

    async def cli(self, *args: str, status: int = 0) -> str:
        """The command's standard output, run in this process on this reactor."""
        parsed = cli.commands().parse_args([*args, "--config", self.config])
        config = loadUsableConfig(self.config)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            if parsed.command == "purge":
                code = await cli.purgeCommand(parsed, config, reactor)
            else:
                code = await cli.transfersCommand(parsed, parsed.work, config, reactor)
        self.assertEqual(code, status, err.getvalue())
        return out.getvalue()

    async def cliProcess(self, *args: str, status: int = 0) -> str:
        """The command's standard output, run in its own process."""
        result = await inThread(run, [*CLI, *args, "--config", self.config])
        self.assertEqual(result.returncode, status, result.stderr)
        return result.stdout

    async def records(self, *args: str) -> list:
        return json.loads(await self.cli(*args, "--json"))

    async def idOf(self, sender: str) -> str:
        [record] = await self.records("transfers", "list", "--sender", sender)
        return record["id"]

    async def download(self, transferId: str, suffix: str = "/0"):
        response = await treq.get(self.gateway.webURL + self.links[transferId] + suffix, persistent=False)
        return response, await response.text()

    @asyncTest
    async def test_list(self) -> None:
        records = await self.records("transfers", "list")
        self.assertEqual({r["id"] for r in records}, set(self.links))
        self.assertEqual({r["state"] for r in records}, {"live"})
        self.assertEqual(records[0]["files"][0]["name"], "secret.txt")
        self.assertEqual(await self.records("transfers", "list", "--tenant", "other"), [])
        self.assertEqual(await self.records("transfers", "list", "--since", "2999-01-01"), [])
        self.assertEqual(len(await self.records("transfers", "list", "--since", "2000-01-01T00:00")), 2)
        [bob] = await self.records("transfers", "list", "--sender", "bob@example.test")
        self.assertEqual(bob["sender"].lower(), "bob@example.test")
        text = await self.cliProcess("transfers", "list")
        header, *rows = text.splitlines()
        self.assertEqual(header.split(), ["ID", "CREATED", "EXPIRES", "STATE", "TENANT", "SENDER", "RECIPIENTS",
                                          "FILES", "BYTES"])
        self.assertEqual(len(rows), 2)
        for transferId in self.links:
            self.assertIn(transferId, text)

    @asyncTest
    async def test_showAndAudit(self) -> None:
        transferId = await self.idOf("alice@example.test")
        response, _ = await self.download(transferId)
        self.assertEqual(response.code, 200)
        record = await self.records("transfers", "show", transferId)
        self.assertEqual((record["id"], record["recipients"]), (transferId, ["eve@external.test"]))
        self.assertEqual([d["client"] for d in record["downloads"]], ["127.0.0.1"])
        text = await self.cli("transfers", "show", transferId)
        self.assertIn("secret.txt", text)
        self.assertIn("downloads: 1", text)
        [trail] = await self.records("audit", "--transfer", transferId)
        self.assertEqual((trail["transfer"], trail["file"], trail["name"]), (transferId, 0, "secret.txt"))
        self.assertEqual(await self.records("audit", "--since", "2999-01-01"), [])
        self.assertIn("secret.txt", await self.cli("audit"))
        await self.cliProcess("transfers", "show", "nosuchid", status=1)

    @asyncTest
    async def test_revoke(self) -> None:
        """A revoked link answers 410 "withdrawn" in the tenant's language, page and files alike."""
        transferId = await self.idOf("alice@example.test")
        record = await self.records("transfers", "revoke", transferId)
        self.assertEqual(record["state"], "revoked")
        for suffix in ("", "/0"):
            response, body = await self.download(transferId, suffix)
            self.assertEqual(response.code, 410)
            self.assertIn("ingetrokken", body)
        other = next(t for t in self.links if t != transferId)
        response, _ = await self.download(other)
        self.assertEqual(response.code, 200)
        await self.cli("transfers", "revoke", "nosuchid", status=1)

    @asyncTest
    async def test_extend(self) -> None:
        transferId = await self.idOf("alice@example.test")
        [before] = await self.records("transfers", "list", "--sender", "alice@example.test")
        after = await self.records("transfers", "extend", transferId, "10")
        days = (_seconds(after["expires"]) - _seconds(before["expires"])) / 86400
        self.assertAlmostEqual(days, 10, places=3)
        await self.cli("transfers", "extend", "nosuchid", "1", status=1)

    @asyncTest
    async def test_purgeDryRun(self) -> None:
        transferId = await self.idOf("alice@example.test")
        with sqlite3.connect(os.path.join(self.folder, "gateway.sqlite3")) as db:
            db.execute("UPDATE transfers SET expires = ? WHERE id = ?", (time.time() - 60, transferId))
        text = await self.cli("purge", "--dry-run")
        self.assertIn(f"would purge {transferId} (tenant example", text)
        self.assertIn("1 expired transfer(s) would be purged", text)
        self.assertEqual(len(await self.records("transfers", "list")), 2)
        self.assertIn("purged 1 expired transfer(s)", await self.cliProcess("purge"))
        self.assertEqual([r["id"] for r in await self.records("transfers", "list")],
                         [t for t in self.links if t != transferId])


def _seconds(text: str) -> float:
    import datetime

    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class HelpTests(SynchronousTestCase):
    def test_version(self) -> None:
        for args in ([*CLI, "--version"], [TWISTD, "secudoc-gateway", "--version"]):
            result = run(args)
            self.assertEqual((result.returncode, result.stdout.strip()), (0, f"secudoc-gateway {__version__}"))

    def test_helpEverywhere(self) -> None:
        """Every command answers --help, and every option in it says what it does."""
        self.patch(os, "environ", dict(os.environ, COLUMNS="80"))  # as wide as when its output is a pipe
        commands = [[], ["check-config"], ["test-relay"], ["purge"], ["transfers"], ["transfers", "list"],
                    ["transfers", "show"], ["transfers", "revoke"], ["transfers", "extend"], ["audit"], ["exo-setup"]]
        for command in commands:
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                exited = self.assertRaises(SystemExit, cli.main, [*command, "--help"])
            self.assertEqual(exited.code, 0, command)
            text = out.getvalue()
            options = re.findall(r"^  (-[-\w]+(?: [A-Z_]+)?(?:, -[-\w]+)?)(.*)$", text, re.M)
            self.assertTrue(options, command)
            for option, helptext in options:
                self.assertTrue(helptext.strip(), f"{command} {option} has no help")
            if command and command != ["transfers"]:
                self.assertIn("--config PATH", text, command)
        twistd = run([TWISTD, "secudoc-gateway", "--help"])
        self.assertEqual(twistd.returncode, 0)
        self.assertRegex(twistd.stdout, r"--config=\s+Main configuration file")
