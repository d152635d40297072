"""
The transaction glue on its own: backpressure from a lagging store, and
limits.  The stages themselves have their own tests; the whole path runs
against real servers in test_service, test_protection and test_corpus.
"""

from __future__ import annotations

import base64
import hashlib
import os
from typing import Any

from twisted.internet import defer, task
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from secudoc_gateway.envelope import Envelope
from secudoc_gateway.errors import StorageError
from secudoc_gateway.interfaces import IObjectStore, ITransaction
from secudoc_gateway.ingress.extractor import MAX_PENDING_WRITES
from secudoc_gateway.ingress.gateway import Gateway
from secudoc_gateway import replies
from secudoc_gateway.testing import MemoryStore, envelopeFor, ingressOn


class Producer:
    def __init__(self) -> None:
        self.paused = 0
        self.resumed = 0

    def pauseProducing(self) -> None:
        self.paused += 1

    def resumeProducing(self) -> None:
        self.resumed += 1

    def stopProducing(self) -> None:
        pass


def bigAttachmentMessage(size: int) -> bytes:
    data = base64.encodebytes(os.urandom(size)).replace(b"\n", b"\r\n")
    return (b"From: alice@example.test\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n"
            b"--b\r\nContent-Type: application/pdf; name=a.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            + data + b"--b--\r\n")


class TransactionTests(TestCase):
    def gateway(self, store=None, **smtp) -> Gateway:
        return ingressOn(task.Clock(), os.path.abspath(self.mktemp()), smtp=smtp, store=store)

    def envelope(self, gateway: Gateway) -> Envelope:
        return envelopeFor(gateway)

    def test_interfaces(self) -> None:
        store = MemoryStore()
        self.assertTrue(verifyObject(IObjectStore, store))
        gateway = self.gateway(store)
        tx = gateway.begin(self.envelope(gateway), Producer())
        self.assertTrue(verifyObject(ITransaction, tx))
        tx.abort()

    def lagging(self) -> tuple[MemoryStore, Producer, Any, list]:
        """
        A big attachment written against a store that holds every write:
        the client is paused once; the held writes are handed back and
        the store answers at once from then on.
        """
        store = MemoryStore()
        store.hold = True
        gateway = self.gateway(store)
        producer = Producer()
        tx = gateway.begin(self.envelope(gateway), producer)
        message = bigAttachmentMessage(2_000_000)
        for at in range(0, len(message), 65536):
            tx.write(message[at:at + 65536])
        self.assertEqual(producer.paused, 1)
        held, store.held = store.held, []
        store.hold = False
        return store, producer, tx, held

    def test_laggingStorePausesTheClient(self) -> None:
        """Unacknowledged store writes pause the SMTP transport; acknowledgements resume it."""
        store, producer, tx, held = self.lagging()
        self.assertGreaterEqual(len(held), MAX_PENDING_WRITES)
        for d in held:
            d.callback(None)
        self.assertEqual(producer.resumed, 1)
        tx.abort()

    def test_leavingAttachmentLeftOutOfTheSpool(self) -> None:
        """
        A message bound to be protected: a big attachment's body is left
        out of the spool, every other byte is kept, and an attached
        message that ends in the same chunk is copied from the spool
        byte-exact (the spool is written up to a part's end before the
        extractor sees the end).
        """
        store = MemoryStore()
        gateway = self.gateway(store)
        tx = gateway.begin(self.envelope(gateway), Producer())
        inner = b"From: carol@example.test\r\nSubject: inner\r\n\r\nhello"
        message = bigAttachmentMessage(2_000_000).removesuffix(b"--b--\r\n") + (
            b"--b\r\nContent-Type: message/rfc822\r\n\r\n" + inner + b"\r\n--b--\r\n")
        for at in range(0, len(message), 65536):
            tx.write(message[at:at + 65536])
        self.assertTrue(tx.reception.skipped)
        pdf, attached = tx.reception.structure[(1,)], tx.reception.structure[(2,)]
        spooled = b"".join(tx.reception.spool.read())
        self.assertEqual(len(spooled), len(message))
        self.assertEqual(spooled[:pdf.bodyStart + 65536], message[:pdf.bodyStart + 65536])
        self.assertNotEqual(spooled[pdf.bodyStart:pdf.bodyEnd], message[pdf.bodyStart:pdf.bodyEnd])
        self.assertEqual(spooled[pdf.bodyEnd:], message[pdf.bodyEnd:])
        self.assertEqual(message[attached.bodyStart:attached.bodyEnd], inner)
        files = self.successResultOf(defer.ensureDeferred(tx.reception.extractor.attachments()))
        self.assertEqual([c.path for c in files], [(1,), (2,)])
        self.assertEqual(files[1].sha256, hashlib.sha256(inner).hexdigest())
        tx.abort()

    def test_madeOfCollaborators(self) -> None:
        """
        A transaction holds its stages (receiving; deciding and
        protecting; the legs) and calls them: none is a base class of
        another, so each file shows what it owns.
        """
        from secudoc_gateway.ingress.legs import Legs
        from secudoc_gateway.ingress.protection import Protection
        from secudoc_gateway.ingress.reception import Reception
        from secudoc_gateway.ingress.transaction import Transaction

        for cls in (Transaction, Reception, Protection, Legs):
            self.assertEqual(cls.__bases__, (object,), cls)
        gateway = self.gateway(MemoryStore())
        tx = gateway.begin(self.envelope(gateway), Producer())
        self.assertIsInstance(tx.reception, Reception)
        self.assertFalse(hasattr(tx, "spool"))
        tx.abort()

    def test_droppedFileForgotten(self) -> None:
        """
        A TNEF file cut short is dropped: the extractor lets its file go
        (nothing more can reach it, it is not listed); the whole file and
        the part itself, copied from the spool, are the attachments.
        """
        from tests.tnefdata import TnefFile, tnef, winmailMessage

        stream = tnef([TnefFile(b"whole", "A.TXT", "whole.txt"), TnefFile(b"cut short" * 20, "B.TXT", "cut.txt")])
        cut = stream[:len(stream) - 40]
        gateway = self.gateway(MemoryStore())
        tx = gateway.begin(self.envelope(gateway), Producer())
        tx.write(winmailMessage(cut))
        extractor = tx.reception.extractor
        # Slots: 0 the part itself (copied from the spool at its end), 1 whole.txt, 2 cut.txt.
        self.assertEqual([c.name for c in extractor.planner.candidates], [None, "whole.txt"])
        files = self.successResultOf(defer.ensureDeferred(extractor.attachments()))
        self.assertEqual([(f.name, f.size) for f in files], [(None, len(cut)), ("whole.txt", 5)])
        self.assertEqual(sorted(extractor.sinks), sorted(f.slot for f in files))
        self.assertEqual(extractor.stored, {f.slot for f in files})
        self.assertEqual(sorted(extractor.sinks), [0, 1])  # 2, cut.txt's, was dropped
        tx.abort()

    def test_mimeLimitRefused(self) -> None:
        """Past max_mime_depth: 554 5.6.0, nothing relayed or kept."""
        store = MemoryStore()
        gateway = self.gateway(store, max_mime_depth=3)
        tx = gateway.begin(self.envelope(gateway), Producer())
        nested = b"From: alice@example.test\r\nSubject: deep\r\n"
        for level in range(6):
            nested += f"Content-Type: multipart/mixed; boundary=l{level}\r\n\r\n--l{level}\r\n".encode()
        tx.write(nested + b"Content-Type: text/plain\r\n\r\nbottom\r\n")
        reply = self.successResultOf(tx.finish())
        self.assertEqual(reply, replies.MIME_LIMIT)
        self.assertEqual(store.objects, {})

    def test_attachedMessageStoredAsItArrives(self) -> None:
        """
        An attached message goes to its file as its bytes pass, byte-exact
        and never read back from the spool: before its delimiter arrives,
        all of it is stored but the line break that may be the
        delimiter's.  A store that lags pauses the client as for any file.
        """
        store = MemoryStore()
        store.hold = True
        gateway = self.gateway(store)
        producer = Producer()
        tx = gateway.begin(self.envelope(gateway), producer)
        inner = (b"From: carol@example.test\r\nSubject: inner\r\nContent-Type: multipart/mixed; boundary=in\r\n\r\n"
                 b"--in\r\n\r\n" + b"x" * 3_000_000 + b"\r\n--in--\r\n")
        head = (b"From: alice@example.test\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
                b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n"
                b"--b\r\nContent-Type: message/rfc822\r\n\r\n")
        message = head + inner + b"\r\n--b--\r\n"
        cut = len(head) + len(inner) + 1  # in the middle of the line break before the delimiter
        for at in range(0, cut, 1000):
            tx.write(message[at:min(at + 1000, cut)])
        [candidate] = tx.reception.extractor.planner.candidates
        self.assertEqual(tx.reception.extractor.sinks[candidate.slot].size, len(inner))
        self.assertEqual(producer.paused, 1)
        while store.held:
            store.held.pop(0).callback(None)
        self.assertEqual(producer.resumed, 1)
        store.hold = False
        tx.write(message[cut:])
        self.assertEqual(b"".join(tx.reception.spool.read()), message)
        [attached] = self.successResultOf(defer.ensureDeferred(tx.reception.extractor.attachments()))
        self.assertEqual(attached.sha256, hashlib.sha256(inner).hexdigest())
        tx.abort()

    def test_laggingStoreFails(self) -> None:
        """Held writes that fail resume the client; the message gets 451 4.3.0, nothing is kept."""
        store, producer, tx, held = self.lagging()
        for d in held:
            d.errback(StorageError("the disk is gone"))
        self.assertEqual(producer.resumed, 1)
        self.assertEqual(self.successResultOf(tx.finish()), replies.LOCAL_TEMPFAIL)
        self.assertEqual(store.objects, {})
        self.assertEqual(len(self.flushLoggedErrors(StorageError)), 2)
