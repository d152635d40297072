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
from secudoc_gateway.testing import DEMO_TENANT, TWISTD, startGateway, writeConfig
from secudoc_gateway.testing.gateway import run
from tests import test_recipient
from tests.support import asyncTest, inThread, maildirMessages, sendMail, splitEnvelope
from tests.test_logs import message

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
        parsed = cli.parse([*args, "--config", self.config])
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
        self.assertEqual((trail["transfer"], trail["file"], trail["name"], trail["recipient"]),
                         (transferId, 0, "secret.txt", None))  # no verification: nobody is named
        self.assertEqual(await self.records("audit", "--since", "2999-01-01"), [])
        header, row = (await self.cli("audit")).splitlines()
        self.assertEqual(header.split(), ["AT", "TRANSFER", "TENANT", "FILE", "NAME", "RECIPIENT", "CLIENT",
                                          "USER", "AGENT"])
        self.assertEqual(row.split()[4:7], ["secret.txt", "-", "127.0.0.1"])
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
    async def test_extendBounds(self) -> None:
        """DAYS is a whole number from 1 to 3650: anything else is a usage error, and nothing changes."""
        transferId = await self.idOf("alice@example.test")
        [before] = await self.records("transfers", "list", "--sender", "alice@example.test")
        for days in ("0", "-1", "1.5", "3651", "1e3", "nan", "inf", "x", "٣"):
            result = await inThread(run, [*CLI, "transfers", "extend", transferId, days, "--config", self.config])
            self.assertEqual(result.returncode, 2, days)
            self.assertIn("not a whole number of days from 1 to 3650", result.stderr, days)
        [after] = await self.records("transfers", "list", "--sender", "alice@example.test")
        self.assertEqual(after["expires"], before["expires"])
        await self.records("transfers", "extend", transferId, "3650")
        self.assertIn("from 1 to 3650", (await inThread(run, [*CLI, "transfers", "extend", "--help"])).stdout)

    @asyncTest
    async def test_extendRevokedOrPurged(self) -> None:
        """What was withdrawn stays withdrawn: extend refuses a revoked and a purged transfer, and says why."""
        transferId = await self.idOf("alice@example.test")
        await self.cli("transfers", "revoke", transferId)
        result = await inThread(run, [*CLI, "transfers", "extend", transferId, "5", "--config", self.config])
        self.assertEqual(result.returncode, 1)
        self.assertIn(f"transfer {transferId} was revoked at ", result.stderr)
        self.assertIn("a revoked transfer cannot be extended", result.stderr)
        [record] = await self.records("transfers", "list", "--sender", "alice@example.test")
        self.assertEqual(record["state"], "revoked")
        await self.cli("purge")
        result = await inThread(run, [*CLI, "transfers", "extend", transferId, "5", "--config", self.config])
        self.assertEqual(result.returncode, 1)
        self.assertIn(f"transfer {transferId} was purged at ", result.stderr)
        response, _ = await self.download(transferId)
        self.assertEqual(response.code, 410)

    @asyncTest
    async def test_configBeforeOrAfterTheVerb(self) -> None:
        """``--config`` goes before or after the verb, for every operator command (SPEC 2)."""
        for args in (["transfers", "--config", self.config, "list", "--json"],
                     ["transfers", "list", "--config", self.config, "--json"],
                     ["--config", self.config, "transfers", "list", "--json"]):
            result = await inThread(run, [*CLI, *args])
            self.assertEqual(result.returncode, 0, (args, result.stderr))
            self.assertEqual({r["id"] for r in json.loads(result.stdout)}, set(self.links), args)
        for args in (["--config", self.config, "audit", "--json"], ["audit", "--config", self.config, "--json"],
                     ["--config", self.config, "purge", "--dry-run"], ["purge", "--config", self.config, "--dry-run"],
                     ["--config", self.config, "check-config"], ["check-config", "--config", self.config]):
            result = await inThread(run, [*CLI, *args])
            self.assertEqual(result.returncode, 0, (args, result.stderr))
        # In this process, where every parser's defaults could undo the option given before the verb.
        for args in (["--config", "a.toml", "test-relay", "example"], ["test-relay", "--config", "a.toml", "example"],
                     ["transfers", "--config", "a.toml", "show", "ID"], ["--config", "a.toml", "transfers", "extend",
                                                                         "ID", "1"]):
            self.assertEqual(cli.parse(args).config, "a.toml", args)
        self.assertEqual(cli.parse(["audit"]).config, "etc/secudoc-gateway.toml")
        missing = os.path.join(self.folder, "missing.toml")
        result = await inThread(run, [*CLI, "transfers", "--config", missing, "list"])
        self.assertEqual(result.returncode, 2)
        self.assertIn("missing.toml", result.stderr)

    @asyncTest
    async def test_purgeDryRun(self) -> None:
        transferId = await self.idOf("alice@example.test")
        with sqlite3.connect(os.path.join(self.folder, "gateway.sqlite3")) as db:
            db.execute("UPDATE transfers SET expires = ? WHERE id = ?", (time.time() - 60, transferId))
        revokedId = next(t for t in self.links if t != transferId)
        await self.cli("transfers", "revoke", revokedId)
        text = await self.cli("purge", "--dry-run")
        self.assertIn(f"would purge {transferId} (tenant example, expired ", text)
        self.assertIn(f"would purge {revokedId} (tenant example, revoked ", text)
        self.assertIn("2 transfer(s) would be purged: 1 expired, 1 revoked", text)
        self.assertEqual({r["state"] for r in await self.records("transfers", "list")}, {"expired", "revoked"})
        self.assertIn("purged 2 transfer(s): 1 expired, 1 revoked", await self.cliProcess("purge"))

    @asyncTest
    async def test_tombstone(self) -> None:
        """A purged transfer shows the same in ``list`` and ``show``: its state, dates and sender, no files."""
        transferId = await self.idOf("alice@example.test")
        [before] = await self.records("transfers", "list", "--sender", "alice@example.test")
        await self.cli("transfers", "revoke", transferId)
        await self.cli("purge")
        [listed] = await self.records("transfers", "list", "--sender", "alice@example.test")
        shown = await self.records("transfers", "show", transferId)
        for record in (listed, shown):
            self.assertEqual(record["state"], "purged")
            self.assertEqual((record["sender"], record["created"], record["expires"]),
                             (before["sender"], before["created"], before["expires"]))
            self.assertIsNotNone(record["revoked"])
            self.assertIsNotNone(record["purged"])
            self.assertEqual(record["files"], [])
        self.assertEqual({k: v for k, v in shown.items() if k != "downloads"}, listed)
        table = await self.cli("transfers", "list")
        [row] = [line for line in table.splitlines() if transferId in line]
        self.assertEqual(row.split()[3:6], ["purged", "example", "alice@example.test"])
        self.assertRegex(await self.cli("transfers", "show", transferId), r"state: purged\n(.*\n)*purged: \d{4}-")


class VerifiedAuditTests(test_recipient.RecipientTestCase):
    """Where the tenant verifies recipients, the audit trail names the verified recipient of each download."""

    askCode = test_recipient.Verification.askCode
    enter = test_recipient.Verification.enter
    codeFor = test_recipient.Verification.codeFor

    @asyncTest
    async def test_auditNamesTheRecipient(self) -> None:
        await self.start(recipient_verification="email-code")
        path = await self.send({"a.bin": os.urandom(3000)}, recipients=("bob@external.test", "carol@external.test"))
        browser = self.browser()
        code, _ = await self.askCode(browser, path, "Carol@External.test")
        self.assertEqual(code, 200)
        code, _, _ = await self.enter(browser, path, "carol@external.test", await self.codeFor("carol@external.test"))
        self.assertIn(code, (200, 303))
        code, _, _ = await browser.request("GET", path + "/0")
        self.assertEqual(code, 200)
        configPath = os.path.join(self.folder, "gateway.toml")
        result = await inThread(run, [*CLI, "audit", "--json", "--config", configPath])
        self.assertEqual(result.returncode, 0, result.stderr)
        [trail] = json.loads(result.stdout)
        self.assertEqual((trail["file"], trail["recipient"]), (0, "carol@external.test"))
        result = await inThread(run, [*CLI, "audit", "--config", configPath])
        header, row = result.stdout.splitlines()
        self.assertEqual(row.split()[5], "carol@external.test")


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
                    ["transfers", "show"], ["transfers", "revoke"], ["transfers", "extend"], ["audit"], ["exo-setup"],
                    ["tenants"], ["tenants", "list"], ["tenants", "show"]]
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
            if command and command not in (["transfers"], ["tenants"]):
                self.assertIn("--config PATH", text, command)
        twistd = run([TWISTD, "secudoc-gateway", "--help"])
        self.assertEqual(twistd.returncode, 0)
        self.assertRegex(twistd.stdout, r"--config=\s+Main configuration file")


class TenantsCommand(SynchronousTestCase):
    """``tenants list|show`` on a fresh database: every value from the file or its default."""

    def test_listAndShow(self) -> None:
        folder = os.path.abspath(self.mktemp())
        path = writeConfig(folder, [dict(DEMO_TENANT, content_mode="separate")])
        for args in (["tenants", "--config", path, "show", "example", "--json"],
                     ["tenants", "show", "example", "--config", path, "--json"]):
            result = run([*CLI, *args])
            self.assertEqual(result.returncode, 0, result.stderr)
            shown = json.loads(result.stdout)
            self.assertEqual((shown["tenant"], shown["file"]), ("example", os.path.join(folder, "tenants", "example.toml")))
            byKey = {r["key"]: r for r in shown["settings"]}
            self.assertEqual(byKey["content_mode"], {"key": "content_mode", "value": "separate", "source": "file",
                                                     "who": None, "when": None})
            self.assertEqual(byKey["on_malware"]["source"], "default")
            self.assertNotIn("document", byKey)
        result = run([*CLI, "tenants", "show", "example", "--config", path])
        self.assertRegex(result.stdout, r'(?m)^content_mode +"separate" +file$')
        result = run([*CLI, "tenants", "list", "--config", path])
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertRegex(result.stdout, r"(?m)^example +example\.test +0 +/")
        result = run([*CLI, "tenants", "show", "nobody", "--config", path])
        self.assertEqual(result.returncode, 2)
        self.assertIn("no tenant 'nobody' (tenants: example)", result.stderr)

