"""
The legs of a message (ingress/legs.py) on their own: which leg goes to
whom in which order, the reply they earn when one fails, the dedup
claims around each (a resend relays only what is missing, a failed leg
releases its claim), and the messages the gateway makes, whose failure
is never the reply.  A ``FakeRelay`` answers, refuses or hangs as told;
the dedup records are a real ``TransferStore`` on SQLite; time is a
``task.Clock``.  The whole path over sockets is in test_protection,
test_policy_e2e and test_faults.
"""

from __future__ import annotations

import os
from email.message import EmailMessage
from typing import Any

from prometheus_client import CollectorRegistry
from twisted.internet import defer, task
from twisted.internet.testing import StringTransport
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import TestCase

from secudoc_gateway import replies
from secudoc_gateway.db import Database
from secudoc_gateway.errors import RelayError
from secudoc_gateway.logs import BOUNCED, DEFERRED, SENT, SKIPPED, SUMMARY
from secudoc_gateway.replies import Reply
from secudoc_gateway.testing import DEMO_TENANT, HANG, FakeRelay, MemoryStore, envelopeFor, ingressOn
from secudoc_gateway.transfers import TransferStore
from tests.support import asyncTest

PDF = b"%PDF-1.4 offerte " * 256
INTERNAL, EXTERNAL = "carol@example.test", "bob@external.test"


def message(messageId: str = "<m-1@example.test>") -> bytes:
    """A message with one attachment, protected for external recipients."""
    m = EmailMessage()
    m["From"] = "alice@example.test"
    m["To"] = EXTERNAL
    m["Subject"] = "Offerte"
    m["Message-ID"] = messageId
    m.set_content("Zie bijlage.\n")
    m.add_attachment(PDF, maintype="application", subtype="pdf", filename="offerte.pdf")
    return m.as_bytes()


class GatewayTestCase(TestCase):
    """
    A ``Gateway`` on a ``task.Clock`` with a ``FakeRelay``, a
    ``MemoryStore`` and the dedup and transfer records in SQLite; the
    summary line of each leg collected as (leg, status).
    """

    async def startGateway(self, **tenant: Any) -> None:
        folder = os.path.abspath(self.mktemp())
        self.db = Database(os.path.join(folder, "gateway.sqlite3"))
        self.addCleanup(self.db.close)
        await self.db.open()
        self.clock = task.Clock()
        self.clock.advance(1_800_000_000)
        self.relay = FakeRelay()
        self.store = MemoryStore()
        self.registry = CollectorRegistry()
        self.gateway = ingressOn(self.clock, folder, [dict(DEMO_TENANT, **tenant)],
                                 database={"url": "sqlite:gateway.sqlite3"}, registry=self.registry,
                                 store=self.store, transfers=TransferStore(self.db, self.clock),
                                 relayFactory=self.relay.factory)
        self.summaries: list[tuple[str, str]] = []

        def observe(event: dict) -> None:
            if event.get("log_format") == SUMMARY:
                self.summaries.append((event["leg"], event["status"]))

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)

    def begin(self, recipients: tuple[str, ...]) -> Any:
        return self.gateway.begin(envelopeFor(self.gateway, recipients), StringTransport())

    def deliver(self, raw: bytes, recipients: tuple[str, ...] = (EXTERNAL,)) -> defer.Deferred:
        """Fires with the final reply to ``raw``, written in one chunk."""
        tx = self.begin(recipients)
        tx.write(raw)
        return tx.finish()

    async def rows(self, sql: str) -> list[tuple]:
        return list(await self.db.runQuery(sql))

    async def claims(self) -> list[str]:
        """The dedup records' states, sorted."""
        return sorted(state for state, in await self.rows("SELECT state FROM relayed"))


class LegOrderTests(GatewayTestCase):
    @asyncTest
    async def test_protected(self) -> None:
        """An external recipient gets the protected copy: no attachment, the status field, 250 with the transfer id."""
        await self.startGateway()
        reply = await self.deliver(message())
        [(transferId,)] = await self.rows("SELECT id FROM transfers")
        self.assertEqual(reply, replies.ACCEPTED.withText(f"Ok {transferId}"))
        [sent] = self.relay.sent
        self.assertEqual((sent.envelope.sender, sent.envelope.recipients), ("alice@example.test", (EXTERNAL,)))
        self.assertIn(b"X-SecuDoc-Status: protected", sent.message)
        self.assertNotIn(b"offerte.pdf", sent.message.split(b"\n\n", 1)[0])
        self.assertEqual(self.summaries, [("protected", SENT)])
        self.assertEqual(await self.claims(), ["done"])

    @asyncTest
    async def test_originalBeforeProtected(self) -> None:
        """Internal recipients get the original first, as one leg; the external ones the protected copy."""
        await self.startGateway()
        reply = await self.deliver(message(), (EXTERNAL, INTERNAL))
        self.assertEqual(reply.code, 250)
        original, protected = self.relay.sent
        self.assertEqual(original.envelope.recipients, (INTERNAL,))
        self.assertIn(b"X-SecuDoc-Status: passed", original.message)
        self.assertIn(b"filename=\"offerte.pdf\"", original.message)
        self.assertEqual(protected.envelope.recipients, (EXTERNAL,))
        self.assertIn(b"X-SecuDoc-Status: protected", protected.message)
        self.assertEqual(self.summaries, [("original", SENT), ("protected", SENT)])

    @asyncTest
    async def test_relayTimedOnTheClock(self) -> None:
        """The relay's time and the summary's delay come from the gateway's clock."""
        await self.startGateway()
        self.relay.answer(HANG)
        reply = self.deliver(message())
        await self.relay.sends(1)
        self.clock.advance(7)
        self.relay.hanging[0].callback("2.0.0 Ok")
        self.assertEqual((await reply).code, 250)
        self.assertEqual(self.registry.get_sample_value(
            "secudoc_relay_seconds_sum", {"tenant": "example"}), 7)


class FailureTests(GatewayTestCase):
    @asyncTest
    async def test_temporaryFailure(self) -> None:
        """A relay that cannot take the leg: 451 4.4.1, the transfer gone, the claim released."""
        await self.startGateway()
        self.relay.answer(RelayError("connect", "connection refused"))
        self.assertEqual(await self.deliver(message()), replies.RELAY_TEMPFAIL)
        self.assertEqual(self.summaries, [("protected", DEFERRED)])
        self.assertEqual(await self.rows("SELECT id FROM transfers"), [])
        self.assertEqual(await self.claims(), [])
        self.assertEqual(self.store.objects, {})
        self.assertEqual(self.registry.get_sample_value(
            "secudoc_relay_errors_total", {"tenant": "example", "kind": "connect"}), 1)

    @asyncTest
    async def test_permanentRefusal(self) -> None:
        """A 5xx from the target: 554 with its enhanced code and text (5.0.0 when it gave none)."""
        await self.startGateway()
        self.relay.answer(
            RelayError("rcpt", "refused", permanent=True, reply=Reply(550, "5.7.1", "Not here")),
            RelayError("data", "refused", permanent=True, reply=Reply(550, "", "")),
        )
        self.assertEqual(await self.deliver(message()), Reply(554, "5.7.1", "Not here"))
        self.assertEqual(await self.deliver(message()),
                         Reply(554, "5.0.0", "Relay target refused the message"))
        self.assertEqual(self.summaries, [("protected", BOUNCED)] * 2)
        self.assertEqual(len(self.relay.sent), 2)

    @asyncTest
    async def test_partialFailure(self) -> None:
        """
        The original leg went out, the protected one failed: 451, and the
        resend relays only the protected leg (SPEC 4).
        """
        await self.startGateway()
        self.relay.answer("2.0.0 Ok", RelayError("data", "timeout"))
        self.assertEqual(await self.deliver(message(), (INTERNAL, EXTERNAL)), replies.RELAY_TEMPFAIL)
        self.assertEqual(await self.claims(), ["done"])
        self.assertEqual(await self.rows("SELECT id FROM transfers"), [])
        reply = await self.deliver(message(), (INTERNAL, EXTERNAL))
        self.assertEqual(reply.code, 250)
        self.assertEqual([s.envelope.recipients for s in self.relay.sent], [(INTERNAL,), (EXTERNAL,), (EXTERNAL,)])
        self.assertEqual(self.summaries, [("original", SENT), ("protected", DEFERRED),
                                          ("original", SKIPPED), ("protected", SENT)])
        self.assertEqual(await self.claims(), ["done", "done"])


class DedupTests(GatewayTestCase):
    @asyncTest
    async def test_resendRecognised(self) -> None:
        """A copy sent again within the window: 250, nothing relayed, no second transfer."""
        await self.startGateway()
        first = await self.deliver(message())
        again = await self.deliver(message())
        self.assertEqual(again.code, 250)
        self.assertNotEqual(again, first)  # its own queue id
        self.assertEqual(len(self.relay.sent), 1)
        self.assertEqual(self.summaries, [("protected", SENT), ("protected", SKIPPED)])
        self.assertEqual(len(await self.rows("SELECT id FROM transfers")), 1)

    @asyncTest
    async def test_otherMessageRelayed(self) -> None:
        """Another Message-ID is another message."""
        await self.startGateway()
        await self.deliver(message("<m-1@example.test>"))
        await self.deliver(message("<m-2@example.test>"))
        self.assertEqual(len(self.relay.sent), 2)

    @asyncTest
    async def test_copyInFlight(self) -> None:
        """
        A copy arriving while the first is being relayed: 451, so EXO
        retries; once the first is through, the retry relays nothing.
        """
        await self.startGateway()
        self.relay.answer(HANG)
        first = self.deliver(message())
        await self.relay.sends(1)
        self.assertEqual(await self.deliver(message()), replies.DUPLICATE_IN_FLIGHT)
        self.relay.hanging[0].callback("2.0.0 Ok")
        self.assertEqual((await first).code, 250)
        self.assertEqual((await self.deliver(message())).code, 250)
        self.assertEqual(len(self.relay.sent), 1)
        self.assertEqual(self.summaries, [("protected", DEFERRED), ("protected", SENT), ("protected", SKIPPED)])

    @asyncTest
    async def test_staleClaimTakenOver(self) -> None:
        """A claim whose relay hangs past the in-flight timeout: the next copy relays."""
        await self.startGateway()
        self.relay.answer(HANG)
        first = self.deliver(message())
        await self.relay.sends(1)
        self.clock.advance(self.gateway.transfers.inflightTimeout)
        self.assertEqual((await self.deliver(message())).code, 250)
        self.relay.hanging[0].callback("2.0.0 Ok")
        self.assertEqual((await first).code, 250)
        self.assertEqual(len(self.relay.sent), 2)


class ExtraTests(GatewayTestCase):
    @asyncTest
    async def test_extraFailureIsNotTheReply(self) -> None:
        """The confirmation mail failing (relay or bug) is logged and counted; the reply stays 250."""
        await self.startGateway(confirmation_mail=True)
        self.relay.answer("2.0.0 Ok", RelayError("connect", "refused"), "2.0.0 Ok", RuntimeError("bug"))
        for n in range(2):
            self.assertEqual((await self.deliver(message(f"<m-{n}@example.test>"))).code, 250)
        protected, confirmation = self.relay.sent[:2]
        self.assertEqual(confirmation.envelope.recipients, ("alice@example.test",))
        self.assertEqual(confirmation.envelope.sender, "noreply@example.test")
        self.assertEqual(self.summaries, [("protected", SENT), ("confirmation", DEFERRED)] * 2)
        self.assertEqual(self.registry.get_sample_value(
            "secudoc_relay_errors_total", {"tenant": "example", "kind": "connect"}), 1)
        self.assertEqual(self.registry.get_sample_value(
            "secudoc_relay_errors_total", {"tenant": "example", "kind": "internal"}), 1)
