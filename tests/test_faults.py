"""
Faults and edge cases found in review, each shown against the running
service: real SMTP in, the maildir relay read back, the real web side
and the real SQLite file (faults made real with a SQLite trigger).
"""

from __future__ import annotations

import base64
import email
import email.policy
import http.client
import os
import re
import socket
import sqlite3
import tracemalloc

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from secudoc_gateway.errors import ObjectNotFound
from secudoc_gateway.storage.s3upload import MAX_PARTS_IN_FLIGHT
from secudoc_gateway.testing import DEMO_TENANT, startGateway, writeConfig
from tests.support import (
    asyncTest, deleteObjects, inThread, maildirMessages, sendBDAT, splitEnvelope, storageOf, storedObjects, until,
)
from tests.test_policy_e2e import outgoing

OTHER_GUID = "6d1c2f0e-8a3b-4c5d-9e7f-0a1b2c3d4e5f"


def sendBDATNoCopy(port: int, sender: str, recipients: list[str], message: bytes) -> tuple[int, bytes]:
    """BDAT in 1 MiB chunks sent from a memoryview: the client copies nothing."""
    with socket.create_connection(("127.0.0.1", port), timeout=120) as s:
        reader = s.makefile("rb")

        def reply() -> tuple[int, bytes]:
            while True:
                line = reader.readline()
                if line[3:4] != b"-":
                    return int(line[:3]), line[4:].rstrip()

        reply()
        s.sendall(b"EHLO client.test\r\n")
        reply()
        s.sendall(f"MAIL FROM:<{sender}>\r\n".encode())
        reply()
        for r in recipients:
            s.sendall(f"RCPT TO:<{r}>\r\n".encode())
            reply()
        view = memoryview(message)
        size = 1 << 20
        for at in range(0, len(message), size):
            chunk = view[at:at + size]
            last = at + size >= len(message)
            s.sendall(f"BDAT {len(chunk)}{' LAST' if last else ''}\r\n".encode())
            s.sendall(chunk)
            code, text = reply()
        s.sendall(b"QUIT\r\n")
        return code, text


class ReviewTestCase(TestCase):
    async def start(self, tenants: list[dict]) -> None:
        self.folder = os.path.abspath(self.mktemp())
        self.gateway = await startGateway(writeConfig(self.folder, tenants), reactor)
        self.addCleanup(self.gateway.stop)

    def relayed(self, tenant: str = "example") -> list[tuple[str, list[str], bytes]]:
        return [splitEnvelope(m) for m in maildirMessages(os.path.join(self.folder, "outbox", tenant))]

    def database(self) -> sqlite3.Connection:
        db = sqlite3.connect(os.path.join(self.folder, "gateway.sqlite3"))
        self.addCleanup(db.close)
        return db


class NullSenderForeignSource(ReviewTestCase):
    """
    A null-sender message whose tenant does not allow the connection's
    source: known at the top header block, so extraction stops before
    any attachment is stored; refused 550 5.7.1, nothing relayed, no
    object left behind.
    """

    @asyncTest
    async def test_refusedMessageLeavesNoObjects(self) -> None:
        other = {
            "id": "other", "domains": ["other.test"], "allowed_sources": ["10.0.0.0/8"],
            "microsoft_tenant_id": OTHER_GUID, "relay": "maildir:../outbox/other",
            "users": ["*@other.test"], "facility_sender": "noreply@other.test",
        }
        await self.start([DEMO_TENANT, other])
        raw = outgoing(attachment=65536, sender="alice@other.test",
                       headers={"X-MS-Exchange-CrossTenant-Id": OTHER_GUID})
        # 127.0.0.1 may connect (the demo tenant allows it) but is not one of "other"'s sources.
        code, text = await inThread(sendBDAT, self.gateway.smtpPort, "", ["bob@external.test"], raw)
        self.assertEqual((code, text[:5]), (550, b"5.7.1"))
        self.assertEqual(self.relayed("other"), [])
        await self.gateway.stop()  # drained: the transaction is over, its writes are in

        async def nothingStored() -> bool:
            return await storedObjects(self.folder) == {}

        await until(nothingStored, "the refused message's object to be removed")


class ExtraLegDatabaseFault(ReviewTestCase):
    """
    ingress/legs.py _relay, transaction.py _protect: a database error at the claim of an
    extra leg (confirmation) after the protected leg was relayed deletes
    the relayed message's transfer and answers 451.
    """

    @asyncTest
    async def test_relayedTransferSurvives(self) -> None:
        await self.start([dict(DEMO_TENANT, confirmation_mail=True)])
        db = self.database()
        # A real fault in the real database: a second "inflight" claim fails.
        db.execute(
            "CREATE TRIGGER injected BEFORE INSERT ON relayed"
            " WHEN NEW.state = 'inflight' AND (SELECT count(*) FROM relayed) >= 1"
            " BEGIN SELECT RAISE(ABORT, 'injected fault'); END")
        db.commit()
        code, text = await inThread(sendBDAT, self.gateway.smtpPort, "alice@example.test",
                                    ["bob@external.test"], outgoing())
        relayed = self.relayed()
        self.assertEqual(len(relayed), 1, "the protected message was relayed")
        message = email.message_from_bytes(relayed[0][2], policy=email.policy.default)
        self.assertEqual(message["X-SecuDoc-Status"], "protected")
        await self.gateway.stop()  # drained, its database closed: nothing of this message is still to come
        self.flushLoggedErrors(sqlite3.IntegrityError)
        # It went out with a link: its transfer must still be there.
        self.assertEqual(db.execute("SELECT id FROM transfers").fetchall(),
                         [(message["X-SecuDoc-Transfer"],)])
        self.assertEqual(code, 250, text)


class GatewayFieldSpelling(ReviewTestCase):
    """
    parser.py _HEADER_LINE / stamp.py fieldName: a field with blanks
    before its colon (RFC 5322 4.5.3 obs-optional, which must be
    accepted) ends the header block, so every field below it is "body":
    the incoming X-SecuDoc survives next to ours, and the Content-Type
    below it is never seen (a multipart with an attachment passes as
    ``no-attachment``).
    """

    @asyncTest
    async def test_exactlyOneXSecuDoc(self) -> None:
        await self.start([DEMO_TENANT])
        raw = outgoing().replace(b"Subject:", b"X-SecuDoc : 1.0\nX-SecuDoc-Status : protected\nSubject:", 1)
        code, text = await inThread(sendBDAT, self.gateway.smtpPort, "alice@example.test",
                                    ["bob@external.test"], raw)
        self.assertEqual(code, 250, text)
        [(_, _, relayedRaw)] = self.relayed()
        head = relayedRaw.split(b"\n\n", 1)[0]
        self.assertEqual(len(re.findall(rb"(?im)^x-secudoc[ \t]*:", head)), 1, head)
        self.assertEqual(len(re.findall(rb"(?im)^x-secudoc-status[ \t]*:", head)), 1, head)


class DownloadOfMissingObject(ReviewTestCase):
    """download.py _failed: a 503 keeps the file's Content-Length, so the client waits for bytes."""

    @asyncTest
    async def test_503IsComplete(self) -> None:
        await self.start([DEMO_TENANT])
        code, text = await inThread(sendBDAT, self.gateway.smtpPort, "alice@example.test",
                                    ["bob@external.test"], outgoing())
        self.assertEqual(code, 250, text)
        [(_, _, relayedRaw)] = self.relayed()
        message = email.message_from_bytes(relayedRaw, policy=email.policy.default)
        token = re.search(r"/t/([A-Za-z0-9_-]{22,})", message.get_body(("plain",)).get_content()).group(1)
        await deleteObjects(self.folder)  # storage lost the object (or an operator's cleanup)

        def get() -> tuple[int, bytes]:
            connection = http.client.HTTPConnection("127.0.0.1", self.gateway.webPort, timeout=5)
            try:
                connection.request("GET", f"/t/{token}/0")
                response = connection.getresponse()
                try:
                    return response.status, response.read()
                except TimeoutError:
                    return response.status, b"<timed out waiting for the announced Content-Length>"
            finally:
                connection.close()

        status, body = await inThread(get)
        self.flushLoggedErrors(ObjectNotFound)
        self.assertEqual(status, 503)
        self.assertTrue(body.rstrip().endswith(b"</html>"), body[-200:])  # the branded page, whole


class AttachedMessageMemory(ReviewTestCase):
    """ingress/extractor.py partEnd: an attached message is copied to the store in one reactor turn."""

    async def peak(self, attachedMessage: bool) -> int:
        await self.start([DEMO_TENANT])
        encoded = base64.encodebytes(os.urandom(24 << 20)).replace(b"\n", b"\r\n")
        if attachedMessage:
            part = (b"Content-Type: message/rfc822\r\nContent-Disposition: attachment; filename=big.eml\r\n\r\n"
                    b"From: x@other.test\r\nSubject: inner\r\nMIME-Version: 1.0\r\n"
                    b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n")
        else:
            part = (b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
                    b"Content-Disposition: attachment; filename=big.bin\r\n\r\n")
        raw = (b"From: alice@example.test\r\nTo: bob@external.test\r\nSubject: Fwd\r\n"
               b"Message-ID: <fwd@example.test>\r\nMIME-Version: 1.0\r\n"
               b"Content-Type: multipart/mixed; boundary=b1\r\n\r\n"
               b"--b1\r\nContent-Type: text/plain\r\n\r\nSee the attachment.\r\n"
               b"--b1\r\n" + part + encoded + b"--b1--\r\n")
        del encoded
        tracemalloc.start()
        try:
            code, text = await inThread(sendBDATNoCopy, self.gateway.smtpPort, "alice@example.test",
                                        ["bob@external.test"], raw)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        self.assertEqual(code, 250, text)
        return peak

    def bound(self) -> int:
        """A few MiB, plus on S3 the part buffers (the one filling and those going up)."""
        storage = storageOf(self.folder)
        parts = (MAX_PARTS_IN_FLIGHT + 1) * storage["part_size"] if storage.get("backend") == "s3" else 0
        return (12 << 20) + parts

    @asyncTest
    async def test_attachedMessageMemoryBounded(self) -> None:
        """A 32 MB attached message: the gateway should hold a few MiB, not the message."""
        peak = await self.peak(attachedMessage=True)
        self.assertLess(peak, self.bound(), f"peak {peak / (1 << 20):.1f} MiB")

    @asyncTest
    async def test_leafAttachmentMemoryBounded(self) -> None:
        """The control: the same bytes as a plain attachment stay within the bound today."""
        peak = await self.peak(attachedMessage=False)
        self.assertLess(peak, self.bound(), f"peak {peak / (1 << 20):.1f} MiB")
