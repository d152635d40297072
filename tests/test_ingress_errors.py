"""
A tenant's ``on_error`` (Transaction._internalError): storage, database
or a bug of ours gets 451 4.3.0 so EXO retries ("tempfail"), or the
original, unprotected, to every recipient no leg reached ("pass").  The
store is a ``MemoryStore`` told to fail, the relay a ``FakeRelay``;
test_policy_e2e breaks a real store under the running service.
"""

from __future__ import annotations

from secudoc_gateway import replies
from secudoc_gateway.errors import RelayError, StorageError
from secudoc_gateway.logs import DEFERRED, SENT
from tests.support import asyncTest
from tests.test_ingress_legs import EXTERNAL, INTERNAL, GatewayTestCase, message


class TempfailTests(GatewayTestCase):
    @asyncTest
    async def test_storageFails(self) -> None:
        """Nothing relayed, 451 4.3.0, the failure logged (where it happened, and as the reason)."""
        await self.startGateway()
        self.store.broken = StorageError("the bucket is gone")
        self.assertEqual(await self.deliver(message()), replies.LOCAL_TEMPFAIL)
        self.assertEqual(self.relay.sent, [])
        self.assertEqual(len(self.flushLoggedErrors(StorageError)), 2)
        self.assertEqual(await self.rows("SELECT id FROM transfers"), [])

    @asyncTest
    async def test_afterALeg(self) -> None:
        """
        A bug after the original leg went out: 451, the original's record
        kept and the protected claim released, so the retry sends only
        the protected copy.
        """
        await self.startGateway()
        self.relay.answer("2.0.0 Ok", RuntimeError("bug"))
        self.assertEqual(await self.deliver(message(), (INTERNAL, EXTERNAL)), replies.LOCAL_TEMPFAIL)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(await self.claims(), ["done"])
        self.assertEqual(await self.rows("SELECT id FROM transfers"), [])
        self.assertEqual((await self.deliver(message(), (INTERNAL, EXTERNAL))).code, 250)
        self.assertEqual([s.envelope.recipients for s in self.relay.sent], [(INTERNAL,), (EXTERNAL,), (EXTERNAL,)])


class PassTests(GatewayTestCase):
    @asyncTest
    async def test_storageFails(self) -> None:
        """The original, attachment and all, to everyone, marked "passed; reason=error"; 250."""
        await self.startGateway(on_error="pass")
        self.store.broken = StorageError("the bucket is gone")
        reply = await self.deliver(message(), (EXTERNAL, INTERNAL))
        self.assertEqual(reply.code, 250)
        [sent] = self.relay.sent
        self.assertEqual(sent.envelope.recipients, (EXTERNAL, INTERNAL))
        self.assertIn(b"X-SecuDoc-Status: passed; reason=error", sent.message)
        self.assertIn(b'filename="offerte.pdf"', sent.message)
        self.assertEqual(self.summaries, [("original", SENT)])
        self.assertEqual(len(self.flushLoggedErrors(StorageError)), 2)
        self.assertEqual(self.registry.get_sample_value(
            "secudoc_messages_total", {"tenant": "example", "status": "passed"}), 1)

    @asyncTest
    async def test_onlyToTheMissing(self) -> None:
        """A bug after the original leg reached the internal recipient: the original to the rest only."""
        await self.startGateway(on_error="pass")
        self.relay.answer("2.0.0 Ok", RuntimeError("bug"))
        self.assertEqual((await self.deliver(message(), (INTERNAL, EXTERNAL))).code, 250)
        original, protected, passed = self.relay.sent
        self.assertEqual(original.envelope.recipients, (INTERNAL,))
        self.assertEqual(passed.envelope.recipients, (EXTERNAL,))
        self.assertIn(b"X-SecuDoc-Status: passed; reason=error", passed.message)
        self.assertEqual(self.summaries, [("original", SENT), ("protected", DEFERRED), ("original", SENT)])
        self.assertEqual(await self.rows("SELECT id FROM transfers"), [])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    @asyncTest
    async def test_relayFailsToo(self) -> None:
        """The passed original cannot be relayed either: the relay's 451, or 451 4.3.0 for a bug."""
        await self.startGateway(on_error="pass")
        self.store.broken = StorageError("the bucket is gone")
        self.relay.answer(RelayError("connect", "refused"), RuntimeError("bug"))
        self.assertEqual(await self.deliver(message()), replies.RELAY_TEMPFAIL)
        self.assertEqual(await self.deliver(message()), replies.LOCAL_TEMPFAIL)
        self.assertEqual(len(self.relay.sent), 2)
        self.assertEqual(await self.claims(), [])
        self.assertEqual(len(self.flushLoggedErrors(StorageError)), 4)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
