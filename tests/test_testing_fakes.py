"""
The shipped fakes: each provides its interface, and does what its
docstring promises a test can tell it to.
"""

from __future__ import annotations

from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from secudoc_gateway.envelope import Envelope
from secudoc_gateway.errors import RelayError, StorageError
from secudoc_gateway.interfaces import IIngress, IObjectStore, IObjectWriter, IRelay, ITransaction
from secudoc_gateway.outgoing import OutgoingMessage
from secudoc_gateway.spool import MemoryBudget, Spool
from secudoc_gateway.testing import HANG, FakeIngress, FakeRelay, MemoryStore, Sent


class InterfaceTests(SynchronousTestCase):
    def test_ingressAndTransaction(self) -> None:
        ingress = FakeIngress()
        self.assertTrue(verifyObject(IIngress, ingress))
        tx = ingress.begin(Envelope("a@b.test"), StringTransport())
        self.assertTrue(verifyObject(ITransaction, tx))

    def test_relay(self) -> None:
        self.assertTrue(verifyObject(IRelay, FakeRelay()))

    def test_store(self) -> None:
        store = MemoryStore()
        self.assertTrue(verifyObject(IObjectStore, store))
        self.assertTrue(verifyObject(IObjectWriter, store.writer("k")))


class FakeRelayTests(SynchronousTestCase):
    def message(self, data: bytes) -> OutgoingMessage:
        spool = Spool(MemoryBudget(1 << 20))
        self.addCleanup(spool.close)
        return OutgoingMessage(spool, [data])

    def test_outcomesInOrder(self) -> None:
        """Each send takes the next outcome, then the default reply; every message is recorded."""
        relay = FakeRelay("2.0.0 default")
        refused = RelayError("rcpt", "no such user", permanent=True)
        relay.answer("2.0.0 first", refused, HANG)
        envelope = Envelope("a@b.test", ("c@d.test",))
        self.assertEqual(self.successResultOf(relay.send(envelope, self.message(b"one"))), "2.0.0 first")
        self.assertIs(self.failureResultOf(relay.send(envelope, self.message(b"two")), RelayError).value, refused)
        hung = relay.send(envelope, self.message(b"three"))
        self.assertNoResult(hung)
        self.assertEqual(self.successResultOf(relay.send(envelope, self.message(b"four"))), "2.0.0 default")
        relay.hanging[0].callback("2.0.0 late")
        self.assertEqual(self.successResultOf(hung), "2.0.0 late")
        self.assertEqual(relay.sent, [Sent(envelope, b"one"), Sent(envelope, b"two"), Sent(envelope, b"three"),
                                      Sent(envelope, b"four")])
        self.assertIs(relay.factory(None, "mx.test", None), relay)
        self.assertEqual(self.successResultOf(relay.sends(4)), relay.sent)
        self.successResultOf(relay.close())
        self.assertEqual(relay.closed, 1)


    def test_sends(self) -> None:
        """``sends(n)`` fires at the n-th send, not before."""
        relay = FakeRelay()
        waiting = relay.sends(2)
        relay.send(Envelope("a@b.test"), self.message(b"one"))
        self.assertNoResult(waiting)
        relay.send(Envelope("a@b.test"), self.message(b"two"))
        self.assertEqual([s.message for s in self.successResultOf(waiting)], [b"one", b"two"])


class MemoryStoreTests(SynchronousTestCase):
    def test_heldWrites(self) -> None:
        store = MemoryStore()
        store.hold = True
        writer = store.writer("k")
        d = writer.write(b"abc")
        self.assertNoResult(d)
        store.held.pop().callback(None)
        self.successResultOf(d)
        self.assertEqual(self.successResultOf(writer.finish()), 3)
        self.assertEqual(store.objects, {"k": b"abc"})

    def test_broken(self) -> None:
        store = MemoryStore()
        writer = store.writer("k")
        self.successResultOf(writer.write(b"abc"))
        store.broken = StorageError("gone")
        self.failureResultOf(writer.write(b"def"), StorageError)
        self.failureResultOf(writer.finish(), StorageError)
        self.assertEqual(store.objects, {})
