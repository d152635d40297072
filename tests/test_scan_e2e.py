"""
Malware scanning end to end (SPEC 10): real SMTP into the real service,
files streamed to a real clamd (Debian's, with the tests' own signature
database, ``tests/clamav``), verdicts in the reply, the database, the
page, ``transfers show`` and the metrics.
"""

from __future__ import annotations

import atexit
import contextlib
import email
import email.policy
import io
import os
import re
import socket
import zipfile
from typing import Any, Optional

import treq
from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from secudoc_gateway import cli
from secudoc_gateway.config import loadUsableConfig
from secudoc_gateway.testing import DEMO_TENANT, startGateway, writeConfig
from secudoc_gateway.testing.clamd import STREAM_MAX_LENGTH, Clamd
from tests.support import (
    asyncTest, databaseRows, inThread, maildirMessages, sendBDAT, splitEnvelope, storedObjects, until,
    withAttachments,
)
from tests.tnefdata import TnefFile, tnef, winmailMessage

DATABASE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "clamav")
EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
MARKER = b"SECUDOC-TEST-MALWARE-7f3a9c51"  # secudoc.ndb's own body signature
HASHED = b"SecuDoc hash-signature test file: this exact content is flagged by secudoc.hdb.\n" * 100
FRAME = 64 * 1024  # crypto's frame: the marker is put across one
LINK = re.compile(r"http://127\.0\.0\.1:8080(/t/[A-Za-z0-9_-]{43})")

_clamd: Optional[Clamd] = None


def clamd() -> Clamd:
    """The module's clamd: started once (a second or so), killed when the run ends."""
    global _clamd
    if _clamd is None:
        _clamd = Clamd(DATABASE).start()
        atexit.register(_clamd.destroy)
    elif _clamd.process is None:
        _clamd.start()
    return _clamd


def newMessage(*files: tuple[str, bytes]) -> bytes:
    return withAttachments(*files, sender="Alice <alice@example.test>")


def zipped(name: str, data: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, data)
    return out.getvalue()


class ScanTestCase(TestCase):
    async def start(self, scan: Optional[dict[str, Any]] = None, **tenant: Any) -> None:
        self.clamd = clamd()
        self.folder = os.path.abspath(self.mktemp())
        self.config = writeConfig(self.folder, [dict(DEMO_TENANT, **{"language": "en", "min_attachment_size": 0, **tenant})],
                                  scan=scan or {"clamd": self.clamd.address, "timeout": 10})
        self.gateway = await startGateway(self.config, reactor)
        self.addCleanup(self.gateway.stop)

    async def send(self, raw: bytes, chunkSize: int = 1 << 20) -> tuple[int, str]:
        code, text = await inThread(sendBDAT, self.gateway.smtpPort, "alice@example.test",
                                    ["bob@external.test"], raw, chunkSize)
        return code, text.decode()

    def relayed(self) -> list[email.message.EmailMessage]:
        return [email.message_from_bytes(splitEnvelope(m)[2], policy=email.policy.default)
                for m in maildirMessages(os.path.join(self.folder, "outbox", "example"))]

    def rows(self, sql: str) -> list[tuple]:
        return databaseRows(self.gateway.service.config.database, sql)

    async def get(self, url: str) -> tuple[int, str]:
        response = await treq.get(url, persistent=False)
        return response.code, (await response.content()).decode("utf-8", "replace")

    async def assertRefused(self, raw: bytes, signature: str, chunkSize: int = 1 << 20) -> None:
        """554 naming the signature; nothing relayed, no transfer row, no object left."""
        code, text = await self.send(raw, chunkSize)
        self.assertEqual((code, text), (554, f"5.7.1 Malware found: SecuDoc.Test.{signature}.UNOFFICIAL"))
        self.assertEqual(self.relayed(), [])
        self.assertEqual(self.rows("SELECT id FROM transfers"), [])
        self.assertEqual(self.rows("SELECT decision, reply_code, scan FROM message_trace"),
                         [("rejected", 554, "infected")])

        async def empty() -> bool:
            return await storedObjects(self.folder) == {}

        await until(empty, "the object removed")

    async def scans(self) -> dict[str, float]:
        _, text = await self.get(self.gateway.metricsURL + "/metrics")
        return {m[0]: float(m[1]) for m in
                re.findall(r'secudoc_scans_total\{result="(\w+)",tenant="example"\} (\S+)', text)}


class Infected(ScanTestCase):
    @asyncTest
    async def test_attachment(self) -> None:
        await self.start()
        await self.assertRefused(newMessage(("clean.txt", b"fine\n" * 100), ("eicar.com", EICAR)), "EICAR")
        self.assertEqual((await self.scans())["infected"], 1)

    @asyncTest
    async def test_inZip(self) -> None:
        await self.start()
        await self.assertRefused(newMessage(("docs.zip", zipped("readme.com", EICAR))), "EICAR")

    @asyncTest
    async def test_insideTnef(self) -> None:
        await self.start()
        stream = tnef([TnefFile(b"plain notes\r\n", "NOTES.TXT"), TnefFile(EICAR, "EICAR.COM")])
        await self.assertRefused(winmailMessage(stream), "EICAR")

    @asyncTest
    async def test_splitAcrossChunksAndFrames(self) -> None:
        """The marker lies across a crypto frame and across BDAT chunks (and base64 lines)."""
        await self.start()
        data = os.urandom(FRAME - 11) + MARKER + os.urandom(5000)
        await self.assertRefused(newMessage(("big.bin", data)), "Marker", chunkSize=7001)

    @asyncTest
    async def test_hashSignature(self) -> None:
        await self.start()
        await self.assertRefused(newMessage(("report.txt", HASHED)), "Hash")

    @asyncTest
    async def test_strip(self) -> None:
        """The message goes, the infected file withheld: the banner and the page say which and why."""
        await self.start(on_malware="strip")
        code, text = await self.send(newMessage(("clean.txt", b"fine\n"), ("eicar.com", EICAR)))
        self.assertEqual(code, 250, text)
        [out] = self.relayed()
        self.assertEqual(list(out.iter_attachments()), [])
        body = out.get_body(("plain",)).get_content()
        self.assertIn("eicar.com was withheld: malware was found in it.", body)
        self.assertIn("clean.txt", body)
        self.assertEqual(self.rows("SELECT n, name, scan FROM files"), [(0, "clean.txt", "clean")])
        self.assertEqual(self.rows("SELECT decision, scan FROM message_trace"), [("protected", "infected")])
        self.assertEqual(self.rows("SELECT name, signature FROM withheld"),
                         [("eicar.com", "SecuDoc.Test.EICAR.UNOFFICIAL")])
        [path] = set(LINK.findall(body))
        code, page = await self.get(self.gateway.webURL + path)
        self.assertEqual(code, 200)
        self.assertIn("eicar.com: withheld, malware was found in it (SecuDoc.Test.EICAR.UNOFFICIAL).", page)
        self.assertEqual((await self.get(self.gateway.webURL + path + "/1"))[0], 404)
        self.assertEqual(await self.get(self.gateway.webURL + path + "/0"), (200, "fine\n"))

    @asyncTest
    async def test_stripInDutch(self) -> None:
        await self.start(on_malware="strip", language="nl")
        code, text = await self.send(newMessage(("a.txt", b"x"), ("virus.com", EICAR)))
        self.assertEqual(code, 250, text)
        [out] = self.relayed()
        self.assertIn("virus.com is niet meegestuurd: er is malware in gevonden.",
                      out.get_body(("plain",)).get_content())


class Clean(ScanTestCase):
    @asyncTest
    async def test_tenFiles(self) -> None:
        await self.start()
        files = [(f"file{n}.bin", os.urandom(20000 * (n + 1))) for n in range(10)]
        code, text = await self.send(newMessage(*files))
        self.assertEqual(code, 250, text)
        self.assertEqual(self.rows("SELECT scan FROM files ORDER BY n"), [("clean",)] * 10)
        self.assertEqual((await self.scans())["clean"], 10)
        self.assertEqual(self.rows("SELECT decision, scan FROM message_trace"), [("protected", "clean")])
        [(transferId,)] = self.rows("SELECT id FROM transfers")
        shown = await self.transfersShow(transferId)
        self.assertEqual(len(re.findall(r" clean$", shown, re.MULTILINE)), 10)

    async def transfersShow(self, transferId: str) -> str:
        parsed = cli.commands().parse_args(["transfers", "show", transferId, "--config", self.config])
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = await cli.transfersCommand(parsed, parsed.work, loadUsableConfig(self.config), reactor)
        self.assertEqual(code, 0)
        return out.getvalue()

    @asyncTest
    async def test_pastStreamLimitSkipped(self) -> None:
        """Past clamd's StreamMaxLength, or past max_file_size: stored, scan=skipped, the page says so."""
        await self.start(scan={"clamd": clamd().address, "max_file_size": 300000})
        code, text = await self.send(newMessage(("big.bin", os.urandom(STREAM_MAX_LENGTH + 1000)),
                                                ("medium.bin", os.urandom(400000)), ("small.txt", b"ok")))
        self.assertEqual(code, 250, text)
        self.assertEqual(self.rows("SELECT name, scan FROM files ORDER BY n"),
                         [("big.bin", "skipped"), ("medium.bin", "skipped"), ("small.txt", "clean")])
        [out] = self.relayed()
        [path] = set(LINK.findall(out.get_body(("plain",)).get_content()))
        _, page = await self.get(self.gateway.webURL + path)
        self.assertEqual(page.count("not scanned for malware"), 2)

    @asyncTest
    async def test_passedMessagesNotScanned(self) -> None:
        """An internal recipient's message passes (rule 2-8): clamd is not asked, EICAR goes as it is."""
        await self.start()
        code, text = await inThread(sendBDAT, self.gateway.smtpPort, "alice@example.test",
                                    ["carol@example.test"], newMessage(("eicar.com", EICAR)))
        self.assertEqual(code, 250, text)
        self.assertEqual(len(self.relayed()), 1)
        self.assertEqual(sum((await self.scans()).values()), 0)


def sendInTwo(port: int, first: bytes, rest: bytes, between: Any) -> tuple[int, str]:
    """BDAT ``first``, wait for its 250, call ``between()``, then BDAT ``rest`` LAST: the final reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        reader = s.makefile("rb")

        def reply() -> tuple[int, str]:
            while True:
                line = reader.readline()
                if line[3:4] != b"-":
                    return int(line[:3]), line[4:].decode().strip()

        reply()
        for command in (b"EHLO client.test", b"MAIL FROM:<alice@example.test>", b"RCPT TO:<bob@external.test>"):
            s.sendall(command + b"\r\n")
            reply()
        s.sendall(f"BDAT {len(first)}\r\n".encode() + first)
        code, _ = reply()
        assert code == 250
        between()
        s.sendall(f"BDAT {len(rest)} LAST\r\n".encode() + rest)
        return reply()


class ClamdDown(ScanTestCase):
    async def health(self, expected: tuple[int, str]) -> None:
        async def answers() -> bool:
            return await self.get(self.gateway.metricsURL + "/healthz") == expected

        await until(answers, f"/healthz answers {expected}")

    @asyncTest
    async def test_stoppedMidScan(self) -> None:
        """clamd dies while a file streams to it: 451, nothing relayed; the retry passes once it is back."""
        await self.start()
        raw = newMessage(("report.bin", os.urandom(300000)))
        half = len(raw) // 2
        code, text = await inThread(sendInTwo, self.gateway.smtpPort, raw[:half], raw[half:], self.clamd.stop)
        self.assertEqual((code, text), (451, "4.3.0 Malware scan unavailable, try again later"))
        self.assertEqual(self.relayed(), [])
        self.assertEqual(self.rows("SELECT id FROM transfers"), [])
        self.assertEqual((await self.scans())["error"], 1)
        clamd()
        code, text = await self.send(raw)
        self.assertEqual(code, 250, text)
        self.assertEqual(self.rows("SELECT scan FROM files"), [("clean",)])

    @asyncTest
    async def test_passStoresUnscanned(self) -> None:
        """on_scan_error = "pass": stored with scan=error, the page says so; /healthz degraded, not down."""
        await self.start(on_scan_error="pass")
        self.clamd.stop()
        self.addCleanup(clamd)
        code, text = await self.send(newMessage(("a.pdf", b"%PDF-1.4 " * 100)))
        self.assertEqual(code, 250, text)
        self.assertEqual(self.rows("SELECT scan FROM files"), [("error",)])
        [out] = self.relayed()
        [path] = set(LINK.findall(out.get_body(("plain",)).get_content()))
        self.assertIn("not scanned for malware", (await self.get(self.gateway.webURL + path))[1])
        await self.health((200, "ok\nclamd: down (degraded)\n"))

    @asyncTest
    async def test_healthTempfail(self) -> None:
        """With a tenant that tempfails on scan errors, clamd down is a 503."""
        await self.start()
        await self.health((200, "ok\n"))
        self.clamd.stop()
        self.addCleanup(clamd)
        await self.health((503, "clamd: down\n"))
