"""
In-memory fakes of the I/O seams (``interfaces``), for unit tests of the
code in front of them: each provides its interface (a test checks it
with ``verifyObject``), records what it was asked, and can be told to
lag, fail or hang, which the real backends cannot be made to do on
demand.  The end-to-end tests run the real ones.
"""

from __future__ import annotations

from typing import Any, Optional, Union

import attrs
from twisted.internet import defer
from twisted.internet.defer import Deferred
from zope.interface import implementer

from secudoc_gateway import replies
from secudoc_gateway.config import Tenant
from secudoc_gateway.envelope import Envelope
from secudoc_gateway.interfaces import IIngress, IMessageSource, IObjectStore, IObjectWriter, IRelay, ITransaction
from secudoc_gateway.replies import Reply

OK_REPLY = Reply(250, "2.0.0", "Ok q1")
"""What a ``FakeTransaction`` answers unless told otherwise."""


@implementer(ITransaction)
class FakeTransaction:
    """Collects the data; answers ``reply``, or waits for the test to fire ``finished`` when it is None."""

    def __init__(self, envelope: Any, producer: Any, reply: Optional[Reply]) -> None:
        self.envelope = envelope
        self.producer = producer
        self.chunks: list[bytes] = []
        self.reply = reply
        self.finished: Optional[Deferred[Reply]] = None
        self.aborted = False

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)

    def write(self, data: bytes) -> None:
        self.chunks.append(data)

    def finish(self) -> "Deferred[Reply]":
        self.finished = Deferred()
        if self.reply is not None:
            self.finished.callback(self.reply)
        return self.finished

    def abort(self) -> None:
        self.aborted = True


@implementer(IIngress)
class FakeIngress:
    """
    Refuses the peers and senders listed, records the senders asked
    about and the transactions begun; each answers ``reply``.  The
    tenant of an accepted sender is ``("tenant", domain)``.
    """

    def __init__(self) -> None:
        self.refusedPeers: set[str] = set()
        self.refusedSenders: set[str] = set()
        self.senders: list[str] = []
        self.transactions: list[FakeTransaction] = []
        self.refusedMessages: list[tuple[Envelope, Reply, str]] = []
        self.reply: Optional[Reply] = OK_REPLY

    def checkConnection(self, peer: str) -> Optional[Reply]:
        return replies.ACCESS_DENIED if peer in self.refusedPeers else None

    def refused(self, envelope: Envelope, reply: Reply, reason: str) -> None:
        self.refusedMessages.append((envelope, reply, reason))

    def checkSender(self, peer: str, sender: str) -> tuple[Optional[Reply], Any]:
        self.senders.append(sender)
        if sender in self.refusedSenders:
            return replies.RELAY_DENIED, None
        return None, ("tenant", sender.rpartition("@")[2]) if sender else None

    def begin(self, envelope: Any, producer: Any) -> FakeTransaction:
        tx = FakeTransaction(envelope, producer, self.reply)
        self.transactions.append(tx)
        return tx


@attrs.frozen
class Sent:
    """One ``send`` a ``FakeRelay`` was asked for: the envelope and the whole message."""

    envelope: Any
    message: bytes


HANG = object()
"""A ``FakeRelay`` outcome: the send waits in ``hanging`` until the test fires it."""

Outcome = Union[str, Exception, object]


@implementer(IRelay)
class FakeRelay:
    """
    A relay target that records every message it is given (``sent``,
    read whole through ``chunks()`` as a real relay reads it) and
    answers each send with the next of ``outcomes``: a reply text, an
    exception to fail with (a ``RelayError``, or any other for a bug),
    or ``HANG``; with none left, ``reply``.  ``factory`` stands in for
    ``relayFor``, so every tenant of a ``Gateway`` gets this relay.
    """

    def __init__(self, reply: str = "2.0.0 Ok: queued as FAKE") -> None:
        self.reply = reply
        self.outcomes: list[Outcome] = []
        self.sent: list[Sent] = []
        self.hanging: list[Deferred[str]] = []
        self.closed = 0
        self._waiting: list[tuple[int, Deferred[list[Sent]]]] = []

    def answer(self, *outcomes: Outcome) -> None:
        """The outcomes of the next sends, in order."""
        self.outcomes.extend(outcomes)

    def sends(self, count: int) -> "Deferred[list[Sent]]":
        """
        Fires with ``sent`` once it holds ``count`` messages: a test
        waits on it for a send that follows work it cannot see end.
        """
        d: Deferred[list[Sent]] = Deferred()
        self._waiting.append((count, d))
        self._wake()
        return d

    def _wake(self) -> None:
        due = [w for w in self._waiting if len(self.sent) >= w[0]]
        self._waiting = [w for w in self._waiting if w not in due]
        for _, d in due:
            d.callback(self.sent)

    def factory(self, tenant: Tenant, hostname: str, reactor: Any) -> "FakeRelay":
        return self

    def send(self, envelope: Any, message: IMessageSource) -> "Deferred[str]":
        self.sent.append(Sent(envelope, b"".join(message.chunks())))
        outcome = self.outcomes.pop(0) if self.outcomes else self.reply
        if outcome is HANG:
            d: Deferred[str] = Deferred()
            self.hanging.append(d)
        elif isinstance(outcome, Exception):
            d = defer.fail(outcome)
        else:
            assert isinstance(outcome, str)
            d = defer.succeed(outcome)
        self._wake()
        return d

    def close(self) -> "Deferred[None]":
        self.closed += 1
        return defer.succeed(None)


@implementer(IObjectWriter)
class MemoryWriter:
    """A writer of ``MemoryStore``: held writes model a store that lags."""

    def __init__(self, store: "MemoryStore", key: str) -> None:
        self._store = store
        self._key = key
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> Deferred:
        if self._store.broken is not None:
            return defer.fail(self._store.broken)
        self._parts.append(data)
        if self._store.hold:
            d: Deferred = Deferred()
            self._store.held.append(d)
            return d
        return defer.succeed(None)

    def finish(self) -> Deferred:
        if self._store.broken is not None:
            return defer.fail(self._store.broken)
        self._store.objects[self._key] = b"".join(self._parts)
        return defer.succeed(len(self._store.objects[self._key]))

    def abort(self) -> Deferred:
        self._parts = []
        return defer.succeed(None)


@implementer(IObjectStore)
class MemoryStore:
    """
    An in-memory ``IObjectStore`` for unit tests of the glue, where a
    real store cannot be made to lag or fail on demand.  With ``hold``
    set, writes stay unacknowledged in ``held`` until a test fires
    them; with ``broken`` set, writes and finishes fail with it.
    """

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.hold = False
        self.held: list[Deferred] = []
        self.broken: Optional[Exception] = None

    def writer(self, key: str) -> MemoryWriter:
        return MemoryWriter(self, key)

    def produce(self, key: str, consumer: Any, offset: int = 0, length: Optional[int] = None) -> Deferred:
        data = self.objects[key]
        consumer.write(data[offset:] if length is None else data[offset:offset + length])
        return defer.succeed(None)

    def size(self, key: str) -> Deferred:
        return defer.succeed(len(self.objects[key]))

    def delete(self, key: str) -> Deferred:
        self.objects.pop(key, None)
        return defer.succeed(None)

    def check(self) -> Deferred:
        return defer.succeed(None)

    def removeLeftovers(self, olderThan: float, now: float) -> Deferred:
        return defer.succeed(0)  # an unfinished writer leaves nothing here

    def close(self) -> Deferred:
        return defer.succeed(None)
