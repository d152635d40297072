"""
The SPEC section 5 table, row by row, against the running service:
real SMTP in, the maildir relay's envelope read back from X-Envelope-To.
"""

from __future__ import annotations

import email
import email.policy
import os
from email.message import EmailMessage

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from secudoc_gateway.errors import StorageError
from secudoc_gateway.testing import DEMO_TENANT, startGateway, writeConfig
from tests.support import (
    asyncTest, breakStorage, databaseRows, inThread, maildirMessages, sendBDAT, splitEnvelope, storedObjects, until,
)

TENANT_ID = "0b7f8a52-55f4-4c1e-9a0e-3f4c1d2e5a61"


def outgoing(attachment: int = 4096, headers: dict | None = None, sender: str = "alice@example.test",
             to: str = "bob@external.test", messageId: str | None = "<m-1@example.test>") -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = "Offerte"
    if messageId:
        message["Message-ID"] = messageId
    for name, value in (headers or {}).items():
        message[name] = value
    message.set_content("Zie bijlage.\n")
    if attachment:
        message.add_attachment(os.urandom(attachment), maintype="application", subtype="pdf",
                               filename="offerte.pdf")
    return message.as_bytes()


class PolicyTestCase(TestCase):
    async def start(self, **tenant) -> None:
        self.folder = os.path.abspath(self.mktemp())
        self.gateway = await startGateway(writeConfig(self.folder, [dict(DEMO_TENANT, **tenant)]), reactor)
        self.addCleanup(self.gateway.stop)
        self.seen: set[bytes] = set()

    async def send(self, raw: bytes, sender: str = "alice@example.test",
                   recipients: tuple[str, ...] = ("bob@external.test",)) -> tuple[int, bytes]:
        return await inThread(sendBDAT, self.gateway.smtpPort, sender, list(recipients), raw)

    def relayed(self) -> list[tuple[str, list[str], email.message.EmailMessage, bytes]]:
        """Messages relayed since the last call: (sender, recipients, message, raw)."""
        out = []
        for stored in maildirMessages(os.path.join(self.folder, "outbox", "example")):
            if stored in self.seen:
                continue
            self.seen.add(stored)
            sender, recipients, raw = splitEnvelope(stored)
            out.append((sender, recipients, email.message_from_bytes(raw, policy=email.policy.default), raw))
        return out

    async def status(self, raw: bytes, **kw) -> str:
        code, text = await self.send(raw, **kw)
        self.assertEqual(code, 250, text)
        [(_, _, message, _)] = self.relayed()
        self.assertEqual(message.get_all("X-SecuDoc"), ["1.0"])
        return message["X-SecuDoc-Status"]


class Rules(PolicyTestCase):
    @asyncTest
    async def test_rule1TenantId(self) -> None:
        await self.start(microsoft_tenant_id=TENANT_ID)
        for headers in ({}, {"X-MS-Exchange-CrossTenant-Id": "11111111-2222-3333-4444-555555555555"}):
            code, text = await self.send(outgoing(headers=headers))
            self.assertEqual((code, text[:5]), (550, b"5.7.1"))
        repeated = outgoing().replace(b"From:", f"X-MS-Exchange-CrossTenant-Id: {TENANT_ID}\r\n"
                                      f"X-MS-Exchange-CrossTenant-Id: {TENANT_ID}\r\nFrom:".encode(), 1)
        code, _ = await self.send(repeated)
        self.assertEqual(code, 550)
        self.assertEqual(self.relayed(), [])
        self.assertEqual(await storedObjects(self.folder), {})
        ok = await self.status(outgoing(headers={"X-MS-Exchange-CrossTenant-Id": TENANT_ID.upper()}))
        self.assertEqual(ok, "protected")

    @asyncTest
    async def test_rule2Loop(self) -> None:
        await self.start()
        raw = outgoing(headers={"X-SecuDoc": "1.0", "X-SecuDoc-Status": "protected"})
        code, _ = await self.send(raw)
        self.assertEqual(code, 250)
        [(_, _, message, relayedRaw)] = self.relayed()
        self.assertEqual(message["X-SecuDoc-Status"], "passed; reason=loop")
        self.assertEqual(message.get_all("X-SecuDoc-Status"), ["passed; reason=loop"])
        self.assertTrue(relayedRaw.endswith(raw.split(b"\n\n", 1)[1]))

    @asyncTest
    async def test_rule3ExcludedSender(self) -> None:
        await self.start(exclude_senders=["facturen@*"], users=["*@example.test"])
        status = await self.status(outgoing(sender="Facturen@Example.test"), sender="Facturen@Example.test")
        self.assertEqual(status, "passed; reason=excluded-sender")

    @asyncTest
    async def test_rule4AddInChoice(self) -> None:
        """The seed's fourth validation test: the Outlook add-in's choice."""
        await self.start()
        self.assertEqual(await self.status(outgoing(headers={"X-SecuDoc-Enabled": "0"})),
                         "passed; reason=not-enabled")
        self.assertEqual(await self.status(outgoing(messageId="<m-2@x>", headers={"X-SecuDoc-Enabled": "1"})),
                         "protected")

    @asyncTest
    async def test_rule4OptIn(self) -> None:
        await self.start(mode="opt-in")
        self.assertEqual(await self.status(outgoing()), "passed; reason=not-enabled")
        self.assertEqual(await self.status(outgoing(messageId="<m-2@x>", headers={"X-SecuDoc-Enabled": "1"})),
                         "protected")

    @asyncTest
    async def test_rule5RequiredHeader(self) -> None:
        await self.start(required_header="X-Classification: confidential")
        self.assertEqual(await self.status(outgoing()), "passed; reason=required-header")
        self.assertEqual(await self.status(outgoing(messageId="<m-2@x>", headers={"X-Classification": "Confidential"})),
                         "protected")

    @asyncTest
    async def test_rule6Signed(self) -> None:
        await self.start()
        raw = (b"From: alice@example.test\r\nTo: bob@external.test\r\nSubject: signed\r\nMIME-Version: 1.0\r\n"
               b"Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=sha-256;"
               b" boundary=s\r\n\r\n--s\r\nContent-Type: multipart/mixed; boundary=m\r\n\r\n--m\r\n"
               b"Content-Type: text/plain\r\n\r\nsigned text\r\n--m\r\nContent-Type: application/pdf; name=a.pdf\r\n"
               b"Content-Transfer-Encoding: base64\r\n\r\n" + b"QUJD" * 1000 + b"\r\n--m--\r\n--s\r\n"
               b"Content-Type: application/pkcs7-signature; name=smime.p7s\r\nContent-Transfer-Encoding: base64\r\n\r\n"
               b"MIAGCSqGSIb3DQEHAqCAMIACAQExDzANBglghkgBZQMEAgEFADCABgkqhkiG9w0BBwEAAKCAMIIC\r\n--s--\r\n")
        code, _ = await self.send(raw)
        self.assertEqual(code, 250)
        [(_, _, message, relayedRaw)] = self.relayed()
        self.assertEqual(message["X-SecuDoc-Status"], "passed; reason=signed")
        body = raw.split(b"\r\n\r\n", 1)[1]
        self.assertTrue(relayedRaw.endswith(body))

    @asyncTest
    async def test_rule7UnknownSenderPass(self) -> None:
        await self.start(users=[], auto_create_users="no", unknown_sender="pass")
        self.assertEqual(await self.status(outgoing()), "passed; reason=unknown-sender")

    @asyncTest
    async def test_rule7UnknownSenderReject(self) -> None:
        await self.start(users=[], auto_create_users="no", unknown_sender="reject")
        code, text = await self.send(outgoing())
        self.assertEqual((code, text[:5]), (550, b"5.7.1"))
        self.assertEqual(self.relayed(), [])

    @asyncTest
    async def test_rule7SilentCreation(self) -> None:
        await self.start(users=[], auto_create_users="silent")
        self.assertEqual(await self.status(outgoing()), "protected")
        self.assertEqual(databaseRows(self.gateway.service.config.database,
                                      "SELECT tenant, address, how FROM users"),
                         [("example", "alice@example.test", "silent")])
        self.assertEqual(self.relayed(), [])

    @asyncTest
    async def test_rule7KnownFromDatabase(self) -> None:
        """A user created earlier is known: no second row, protection goes on."""
        await self.start(users=[], auto_create_users="silent")
        await self.status(outgoing())
        self.assertEqual(await self.status(outgoing(messageId="<m-2@x>")), "protected")

    @asyncTest
    async def test_rule8NoAttachment(self) -> None:
        """The seed's first validation test: a mail without attachment."""
        await self.start()
        self.assertEqual(await self.status(outgoing(attachment=0)), "passed; reason=no-attachment")

    @asyncTest
    async def test_rule9Protected(self) -> None:
        """The seed's second validation test: an attachment to someone outside."""
        await self.start()
        self.assertEqual(await self.status(outgoing()), "protected")


class Recipients(PolicyTestCase):
    @asyncTest
    async def test_colleagueGetsTheOriginal(self) -> None:
        """The seed's third validation test: to a colleague only."""
        await self.start()
        raw = outgoing(to="carol@example.test")
        status = await self.status(raw, recipients=("carol@Example.TEST",))
        self.assertEqual(status, "passed; reason=internal-recipient")

    @asyncTest
    async def test_split(self) -> None:
        """Internal and excluded recipients get the original, the rest the protected copy."""
        await self.start(exclude_recipients=["*@scanner.test"])
        recipients = ("bob@external.test", "carol@example.test", "inbox@scanner.test", "eve@other.test")
        code, text = await self.send(outgoing(), recipients=recipients)
        self.assertEqual(code, 250, text)
        legs = {message["X-SecuDoc-Status"]: (sender, rcpts, message) for sender, rcpts, message, _ in self.relayed()}
        self.assertEqual(set(legs), {"protected", "passed; reason=internal-recipient"})
        _, original, originalMessage = legs["passed; reason=internal-recipient"]
        self.assertEqual(original, ["carol@example.test", "inbox@scanner.test"])
        self.assertEqual(len(list(originalMessage.iter_attachments())), 1)
        _, protected, protectedMessage = legs["protected"]
        self.assertEqual(protected, ["bob@external.test", "eve@other.test"])
        self.assertEqual(list(protectedMessage.iter_attachments()), [])


class Dedup(PolicyTestCase):
    @asyncTest
    async def test_resendIsNotRelayedTwice(self) -> None:
        await self.start()
        raw = outgoing(headers={"X-MS-Exchange-CrossTenant-Network-Message-Id": "9c2f8d1e-net-1"})
        first = await self.send(raw)
        second = await self.send(raw)
        self.assertEqual((first[0], second[0]), (250, 250))
        self.assertEqual(len(self.relayed()), 1)
        other = await self.send(raw, recipients=("someone@else.test",))
        self.assertEqual(other[0], 250)
        self.assertEqual(len(self.relayed()), 1)

    @asyncTest
    async def test_noIdNoDedup(self) -> None:
        await self.start()
        raw = outgoing(messageId=None)
        await self.send(raw)
        await self.send(raw)
        self.assertEqual(len(self.relayed()), 2)

    @asyncTest
    async def test_retryRelaysOnlyTheMissingLeg(self) -> None:
        """The original leg was accepted, the protected one failed: a retry sends only the latter."""
        await self.start()
        recipients = ("carol@example.test", "bob@external.test")
        outbox = os.path.join(self.folder, "outbox", "example")
        raw = outgoing()
        gateway = self.gateway.service.gateway
        realRelayFor = gateway.relayFor
        calls = []

        class FailSecond:
            def __init__(self, relay):
                self.relay = relay

            def send(self, envelope, message):
                calls.append(envelope.recipients)
                if len(calls) == 2:
                    from twisted.internet import defer
                    from secudoc_gateway.errors import RelayError

                    return defer.fail(RelayError("connect", "target down"))
                return self.relay.send(envelope, message)

        gateway.relayFor = lambda tenant: FailSecond(realRelayFor(tenant))
        code, _ = await self.send(raw, recipients=recipients)
        self.assertEqual(code, 451)
        self.assertEqual([r for _, r, _, _ in self.relayed()], [["carol@example.test"]])
        gateway.relayFor = realRelayFor
        code, _ = await self.send(raw, recipients=recipients)
        self.assertEqual(code, 250)
        [(_, rcpts, message, _)] = self.relayed()
        self.assertEqual((rcpts, message["X-SecuDoc-Status"]), (["bob@external.test"], "protected"))
        self.assertEqual(len(maildirMessages(outbox)), 2)

    @asyncTest
    async def test_copyWhileFirstInFlight(self) -> None:
        """A resend arriving while the first copy is still being relayed gets 451 4.3.0."""
        from twisted.internet import defer

        await self.start()
        gateway = self.gateway.service.gateway
        realRelayFor = gateway.relayFor
        held: list = []

        class Held:
            def __init__(self, relay):
                self.relay = relay

            def send(self, envelope, message):
                gate = defer.Deferred()
                held.append(gate)
                return gate.addCallback(lambda _: self.relay.send(envelope, message))

        gateway.relayFor = lambda tenant: Held(realRelayFor(tenant))
        raw = outgoing(attachment=0)
        first = defer.ensureDeferred(self.send(raw))
        await until(lambda: held, "the first message to reach the relay")
        code, text = await self.send(raw)
        self.assertEqual((code, text[:5]), (451, b"4.3.0"))
        held[0].callback(None)
        code, _ = await first
        self.assertEqual(code, 250)
        self.assertEqual(len(self.relayed()), 1)


class OnError(PolicyTestCase):
    """An internal failure (here: the object store is gone) per on_error."""


    @asyncTest
    async def test_tempfail(self) -> None:
        await self.start()
        await breakStorage(self.folder)
        code, text = await self.send(outgoing())
        self.assertEqual((code, text[:5]), (451, b"4.3.0"))
        self.assertEqual(self.relayed(), [])
        self.assertTrue(self.flushLoggedErrors(StorageError))

    @asyncTest
    async def test_pass(self) -> None:
        await self.start(on_error="pass")
        await breakStorage(self.folder)
        raw = outgoing()
        status = await self.status(raw)
        self.assertEqual(status, "passed; reason=error")
        self.assertTrue(self.flushLoggedErrors(StorageError))


class ContentModes(PolicyTestCase):
    @asyncTest
    async def test_link(self) -> None:
        await self.start(content_mode="link", disclaimer="Vertrouwelijk.")
        await self.send(outgoing())
        [(_, _, message, _)] = self.relayed()
        text = message.get_body(("plain",)).get_content()
        self.assertIn("offerte.pdf", text)
        self.assertIn("Vertrouwelijk.", text)
        self.assertIn("Zie bijlage.", text)

    @asyncTest
    async def test_transfer(self) -> None:
        await self.start(content_mode="transfer", language="en")
        await self.send(outgoing())
        [(_, rcpts, message, _)] = self.relayed()
        self.assertEqual(rcpts, ["bob@external.test"])
        self.assertEqual(message["X-SecuDoc-Status"], "protected")
        self.assertEqual(message.get_content_type(), "multipart/alternative")
        text = message.get_body(("plain",)).get_content()
        self.assertIn("offerte.pdf", text)
        self.assertIn("/t/", text)
        self.assertLess(text.index("/t/"), text.index("Zie bijlage."))
        self.assertIn("Zie bijlage.", message.get_body(("html",)).get_content())

    @asyncTest
    async def test_separate(self) -> None:
        """The original without attachments and banner, then a second message with the link."""
        await self.start(content_mode="separate")
        await self.send(outgoing())
        relayed = self.relayed()
        self.assertEqual(len(relayed), 2)
        byStatus = {m["X-SecuDoc-Status"]: (sender, rcpts, m) for sender, rcpts, m, _ in relayed}
        _, rcpts, main = byStatus["protected"]
        self.assertEqual(list(main.iter_attachments()), [])
        self.assertNotIn("/t/", main.get_body(("plain",)).get_content())
        sender, rcpts, notice = byStatus["generated; kind=separate"]
        self.assertEqual((sender, rcpts), ("alice@example.test", ["bob@external.test"]))
        self.assertEqual(notice["Subject"], "Bestanden bij: Offerte")
        self.assertEqual(notice.get_all("X-SecuDoc"), ["1.0"])
        self.assertIn("/t/", notice.get_body(("plain",)).get_content())

    @asyncTest
    async def test_confirmation(self) -> None:
        await self.start(confirmation_mail=True, language="en")
        await self.send(outgoing())
        relayed = self.relayed()
        byStatus = {m["X-SecuDoc-Status"]: (sender, rcpts, m) for sender, rcpts, m, _ in relayed}
        self.assertEqual(set(byStatus), {"protected", "generated; kind=confirmation"})
        sender, rcpts, confirmation = byStatus["generated; kind=confirmation"]
        self.assertEqual((sender, rcpts), ("noreply@example.test", ["alice@example.test"]))
        self.assertEqual(confirmation["From"], "noreply@example.test")
        text = confirmation.get_body(("plain",)).get_content()
        self.assertIn("bob@external.test", text)
        self.assertIn("offerte.pdf", text)
        # The sender's own link, never the recipients' download token.
        self.assertRegex(text, r"http://127\.0\.0\.1:8080/t/sender/[A-Za-z0-9_-]{43}\r?\n")
        self.assertNotRegex(text, r"/t/[A-Za-z0-9_-]{43}")

    @asyncTest
    async def test_welcome(self) -> None:
        """auto_create_users = "welcome": the user row, then a welcome after the main message."""
        await self.start(users=[], auto_create_users="welcome")
        await self.send(outgoing())
        relayed = self.relayed()
        statuses = [m["X-SecuDoc-Status"] for _, _, m, _ in relayed]
        self.assertEqual(sorted(statuses), ["generated; kind=welcome", "protected"])
        [(sender, rcpts, welcome)] = [(s, r, m) for s, r, m, _ in relayed
                                      if m["X-SecuDoc-Status"] == "generated; kind=welcome"]
        self.assertEqual((sender, rcpts), ("noreply@example.test", ["alice@example.test"]))
        self.assertEqual(databaseRows(self.gateway.service.config.database, "SELECT how FROM users"),
                         [("welcome",)])
        await self.send(outgoing(messageId="<m-2@x>"))
        self.assertEqual([m["X-SecuDoc-Status"] for _, _, m, _ in self.relayed()], ["protected"])
