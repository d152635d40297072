"""
The SMTP listener: a thin Twisted adapter over ``smtp.session.Session``.

It moves bytes between the transport and the session, answers the
session's questions through the ``IIngress``, feeds message data to the
``ITransaction`` and owns what only I/O can do: connection limits,
STARTTLS, timeouts (RFC 5321 4.5.3.2) and flow control.

Flow control has two owners.  The transaction pauses the client while
storage or the relay lags; the protocol pauses it while it holds
pipelined commands behind an unanswered message.  Each gets its own
pause (the transaction through a producer proxy), and the transport
reads only when neither holds one, so neither resumes what the other
paused.  Timeouts do not run while the transport is paused: a client
that we stopped reading from is not idle.

A timeout alone lets a client hold a connection forever with a byte
every few seconds.  So while a message's data comes in (DATA or BDAT,
from the start of the data to its end), the client must also send at
least ``minDataRate`` bytes a second, measured over each window of
``rateWindow`` seconds in which we read (Postfix's smtpd_min_data_rate):
a window, not the whole message, so a slow link over a big message
passes, and a rate, not an overall deadline, so the limit does not grow
with the message size.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Optional

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.internet.protocol import Protocol, ServerFactory, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from secudoc_gateway.config import DATA_RATE_WINDOW
from secudoc_gateway.envelope import Envelope
from secudoc_gateway.interfaces import IIngress, ITransaction
from secudoc_gateway.metrics import Metrics
from secudoc_gateway import replies
from secudoc_gateway.replies import Reply
from secudoc_gateway.smtp.events import (
    NEED_DATA,
    PAUSED,
    Close,
    DataAbort,
    DataChunk,
    DataEnd,
    DataStart,
    Event,
    MailFrom,
    SendReply,
    StartTLS,
)
from secudoc_gateway.smtp.session import Session, State

#: Pipelined input held behind an unanswered message before the protocol
#: stops reading (the session closes at its own, larger, ``maxPending``).
PAUSE_PENDING = 64 * 1024
#: After a closing reply, how long a client that does not read it may
#: keep the connection before it is aborted.
CLOSE_GRACE = 10.0

_PENDING = "pending"
_TRANSACTION = "transaction"


@implementer(IPushProducer)
class _TransactionProducer:
    """
    What a transaction gets as the client's transport: its pause is its
    own, and it goes dead when the transaction ends (a late resume from
    a finished transaction must not restart reading).
    """

    def __init__(self, protocol: "SMTPProtocol") -> None:
        self._protocol: Optional[SMTPProtocol] = protocol

    def detach(self) -> None:
        protocol, self._protocol = self._protocol, None
        if protocol is not None:
            protocol._resume(_TRANSACTION)

    def pauseProducing(self) -> None:
        if self._protocol is not None:
            self._protocol._pause(_TRANSACTION)

    def resumeProducing(self) -> None:
        if self._protocol is not None:
            self._protocol._resume(_TRANSACTION)

    def stopProducing(self) -> None:
        if self._protocol is not None:
            self._protocol.transport.loseConnection()


class SMTPProtocol(Protocol):
    """One client connection."""

    _log = Logger()

    def __init__(self, factory: "SMTPFactory") -> None:
        self.factory = factory
        self.peer = ""
        self.session: Optional[Session] = None
        self._admitted = False
        self._lost = False
        self._pumping = False
        self._pauses: set[str] = set()
        self._timer: Optional[IDelayedCall] = None
        self._closer: Optional[IDelayedCall] = None
        self._tenant: Any = None
        self._tx: Optional[ITransaction] = None
        self._producer: Optional[_TransactionProducer] = None
        self._finishing = False
        self._rateTimer: Optional[IDelayedCall] = None
        self._windowBytes = 0

    # --- connection ---------------------------------------------------------

    def connectionMade(self) -> None:
        self.peer = getattr(self.transport.getPeer(), "host", "") or ""
        refusal = self.factory._admit(self)
        if refusal is not None:
            self.factory.countReply(refusal)
            self.transport.write(refusal.toBytes())
            self.transport.loseConnection()
            return
        self._admitted = True
        f = self.factory
        self.session = Session(
            hostname=f.hostname,
            maxMessageSize=f.maxMessageSize,
            maxRecipients=f.maxRecipients,
            tlsAvailable=f.tlsOptions is not None,
            requireTLS=f.requireTLS,
        )
        self._pump()

    def dataReceived(self, data: bytes) -> None:
        if self.session is None:
            return
        self._windowBytes += len(data)
        self.session.receiveData(data)
        self._pump()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._lost = True
        for call in (self._timer, self._closer, self._rateTimer):
            if call is not None and call.active():
                call.cancel()
        self._timer = self._closer = self._rateTimer = None
        if not self._finishing:
            self._abortTransaction()
        if self._admitted:
            self._admitted = False
            self.factory._remove(self)

    @property
    def holdsTransaction(self) -> bool:
        return self._tx is not None or self._finishing

    def shutdown(self) -> None:
        """Close now with 421 4.3.2 unless a message is being received or answered."""
        if self.session is None or self._lost or self.holdsTransaction:
            return
        self.session.close(replies.SHUTTING_DOWN)
        self._pump()

    def expire(self) -> None:
        """
        The shutdown's grace period is over: 421 4.3.2 now, even to a
        message being received or relayed (it is abandoned; EXO retries).
        """
        if self.session is None or self._lost:
            return
        self._abortTransaction()
        self.session.close(replies.SHUTTING_DOWN)
        self._pump()

    # --- the session's events -----------------------------------------------

    def _pump(self) -> None:
        """Run the session until it needs bytes or waits for us."""
        if self._pumping or self.session is None:
            return  # the outer loop picks up what a callback changed
        self._pumping = True
        try:
            while not self._lost:
                event = self.session.nextEvent()
                if event is NEED_DATA or event is PAUSED:
                    break
                self._handle(event)  # type: ignore[arg-type]
        finally:
            self._pumping = False
        self._flow()

    def _handle(self, event: Event) -> None:
        session = self.session
        assert session is not None
        if isinstance(event, SendReply):
            self.factory.countReply(event.reply)
            self.transport.write(event.data)
        elif isinstance(event, DataChunk):
            if self._tx is not None:
                try:
                    self._tx.write(event.data)
                except Exception:
                    self._log.failure("transaction write failed from {peer}", peer=self.peer)
                    self._abortTransaction()
        elif isinstance(event, MailFrom):
            try:
                refusal, tenant = self.factory.ingress.checkSender(self.peer, event.sender)
            except Exception:
                self._log.failure("checkSender failed for {sender!r}", sender=event.sender)
                refusal, tenant = replies.LOCAL_TEMPFAIL, None
            if refusal is not None:
                session.refuseMail(refusal)
            else:
                self._tenant = tenant
                session.acceptMail()
        elif isinstance(event, DataStart):
            self._begin(event)
        elif isinstance(event, DataEnd):
            self._finish()
        elif isinstance(event, DataAbort):
            self._abortTransaction()
        elif isinstance(event, StartTLS):
            self.transport.startTLS(self.factory.tlsOptions)
        elif isinstance(event, Close):
            self.transport.loseConnection()
            self._closer = self.factory.reactor.callLater(CLOSE_GRACE, self.transport.abortConnection)

    def _begin(self, event: DataStart) -> None:
        envelope = Envelope(
            sender=event.sender,
            recipients=event.recipients,
            body=event.body,
            smtputf8=event.smtputf8,
            size=event.size,
            peer=self.peer,
            helo=event.helo,
            tls=event.tls,
            tenant=self._tenant,
        )
        self._producer = _TransactionProducer(self)
        try:
            self._tx = self.factory.ingress.begin(envelope, self._producer)
        except Exception:
            self._log.failure("ingress.begin failed from {peer}", peer=self.peer)
            self._abortTransaction()

    def _finish(self) -> None:
        tx = self._tx
        self._finishing = True
        d: Deferred[Reply]
        if tx is None:  # begin or a write failed: the data went nowhere
            d = Deferred()
            d.callback(replies.LOCAL_TEMPFAIL)
        else:
            d = maybeDeferred(tx.finish)
        d.addErrback(self._finishFailed)
        d.addCallback(self._finished)

    def _finishFailed(self, failure: Failure) -> Reply:
        self._log.failure("transaction failed from {peer}", failure, peer=self.peer)
        return replies.LOCAL_TEMPFAIL

    def _finished(self, reply: Reply) -> None:
        """
        The reply is written before the transaction is let go: a drain
        waits for the connection to close, which flushes what was written.
        """
        self._finishing = False
        session = self.session
        if not self._lost and session is not None and session.state is State.FINISHING:
            session.finalReply(reply)
            if self.factory.draining:
                session.close(replies.SHUTTING_DOWN)
            self._pump()
        self._releaseTransaction()

    def _abortTransaction(self) -> None:
        tx = self._tx
        if tx is not None:
            self._tx = None
            try:
                tx.abort()
            except Exception:
                self._log.failure("transaction abort failed from {peer}", peer=self.peer)
        self._releaseTransaction()

    def _releaseTransaction(self) -> None:
        self._tx = None
        if self._producer is not None:
            self._producer.detach()
            self._producer = None

    # --- flow control and timeouts ------------------------------------------

    def _pause(self, owner: str) -> None:
        if not self._pauses and not self._lost:
            self.transport.pauseProducing()
        self._pauses.add(owner)
        self._armTimer()

    def _resume(self, owner: str) -> None:
        if owner not in self._pauses:
            return
        self._pauses.discard(owner)
        if not self._pauses and not self._lost:
            self.transport.resumeProducing()
        self._armTimer()

    def _flow(self) -> None:
        session = self.session
        if session is None or self._lost or session.state is State.CLOSED:
            self._armTimer()
            return
        if session.state is State.FINISHING and session.pendingBytes > PAUSE_PENDING:
            self._pause(_PENDING)
        elif session.state is not State.FINISHING:
            self._resume(_PENDING)
        self._armTimer()

    def _armTimer(self) -> None:
        """RFC 5321 4.5.3.2: a timeout for a command, another for data."""
        self._armRate()
        session = self.session
        idle = (
            session is not None
            and not self._lost
            and not self._pauses
            and session.state not in (State.FINISHING, State.CLOSED)
        )
        if not idle:
            if self._timer is not None and self._timer.active():
                self._timer.cancel()
            self._timer = None
            return
        assert session is not None
        seconds = self.factory.dataTimeout if session.receivingData else self.factory.commandTimeout
        if self._timer is not None and self._timer.active():
            self._timer.reset(seconds)
        else:
            self._timer = self.factory.reactor.callLater(seconds, self._timedOut)

    def _armRate(self) -> None:
        """The data rate's window runs while message data comes in and we read."""
        measuring = (
            self._tx is not None
            and not self._finishing
            and not self._lost
            and not self._pauses
            and self.factory.minDataRate > 0
        )
        if not measuring:
            if self._rateTimer is not None and self._rateTimer.active():
                self._rateTimer.cancel()
            self._rateTimer = None
        elif self._rateTimer is None:
            self._windowBytes = 0
            self._rateTimer = self.factory.reactor.callLater(self.factory.rateWindow, self._windowEnded)

    def _windowEnded(self) -> None:
        self._rateTimer = None
        if self.session is None or self._lost:
            return
        if self._windowBytes < self.factory.minDataRate * self.factory.rateWindow:
            self._log.info("SMTP data from {peer} too slow: {count} bytes in {window:g} s",
                           peer=self.peer, count=self._windowBytes, window=self.factory.rateWindow)
            self.session.close(replies.TOO_SLOW)
            self._pump()
            return
        self._armRate()

    def _timedOut(self) -> None:
        self._timer = None
        if self.session is None or self._lost:
            return
        self._log.info("SMTP timeout from {peer} in {state}", peer=self.peer, state=self.session.state.value)
        self.session.close(replies.TIMEOUT)
        self._pump()


class SMTPFactory(ServerFactory):
    """
    The listener's factory: connection limits, the shared ingress, and
    ``drain()`` for an orderly stop.
    """

    _log = Logger()

    def __init__(
        self,
        ingress: IIngress,
        hostname: str,
        tlsOptions: Any,
        requireTLS: bool,
        maxMessageSize: int,
        maxRecipients: int,
        maxConnections: int,
        maxConnectionsPerIP: int,
        commandTimeout: float,
        dataTimeout: float,
        reactor: IReactorTime,
        metrics: Optional[Metrics] = None,
        minDataRate: int = 0,
        rateWindow: float = DATA_RATE_WINDOW,
    ) -> None:
        self.ingress = ingress
        self.hostname = hostname
        self.tlsOptions = tlsOptions
        self.requireTLS = requireTLS
        self.maxMessageSize = maxMessageSize
        self.maxRecipients = maxRecipients
        self.maxConnections = maxConnections
        self.maxConnectionsPerIP = maxConnectionsPerIP
        self.commandTimeout = commandTimeout
        self.dataTimeout = dataTimeout
        self.minDataRate = minDataRate
        self.rateWindow = rateWindow
        self.reactor = reactor
        self.metrics = metrics
        self.draining = False
        self.connections: set[SMTPProtocol] = set()
        self._perIP: Counter[str] = Counter()
        self._drainWaiters: list[Deferred[None]] = []

    def buildProtocol(self, addr: Any) -> SMTPProtocol:
        return SMTPProtocol(self)

    def drain(self) -> "Deferred[None]":
        """
        Stop serving: idle connections get 421 4.3.2 now, the others
        after their message's final reply.  Fires when every connection
        is closed, so every reply written was flushed to its client (a
        client that does not read is cut off after ``CLOSE_GRACE``).
        """
        self.draining = True
        for protocol in list(self.connections):
            protocol.shutdown()
        return self._whenClosed()

    def expire(self) -> "Deferred[None]":
        """
        The grace period is over: 421 4.3.2 to every connection, messages
        in flight too.  Fires when every connection is closed.
        """
        self.draining = True
        for protocol in list(self.connections):
            protocol.expire()
        return self._whenClosed()

    def _whenClosed(self) -> "Deferred[None]":
        d: Deferred[None] = Deferred()
        self._drainWaiters.append(d)
        self._checkDrained()
        return d

    def countReply(self, reply: Reply) -> None:
        if self.metrics is not None:
            self.metrics.replies.labels(code=str(reply.code)).inc()

    def _admit(self, protocol: SMTPProtocol) -> Optional[Reply]:
        """``None`` when ``protocol`` may be served, else the reply to refuse it."""
        peer = protocol.peer
        if self.draining:
            return replies.SHUTTING_DOWN
        if len(self.connections) >= self.maxConnections:
            return replies.TOO_MANY_CONNECTIONS
        if self._perIP[peer] >= self.maxConnectionsPerIP:
            return replies.TOO_MANY_FROM_IP
        try:
            refusal = self.ingress.checkConnection(peer)
        except Exception:
            self._log.failure("checkConnection failed for {peer}", peer=peer)
            return replies.CONNECT_TEMPFAIL
        if refusal is not None:
            return refusal
        self.connections.add(protocol)
        self._perIP[peer] += 1
        if self.metrics is not None:
            self.metrics.connections.inc()
            self.metrics.sessionsActive.inc()
        return None

    def _remove(self, protocol: SMTPProtocol) -> None:
        self.connections.discard(protocol)
        self._perIP[protocol.peer] -= 1
        if self._perIP[protocol.peer] <= 0:
            del self._perIP[protocol.peer]
        if self.metrics is not None:
            self.metrics.sessionsActive.dec()
        self._checkDrained()

    def _checkDrained(self) -> None:
        if self.draining and not self.connections:
            waiters, self._drainWaiters = self._drainWaiters, []
            for d in waiters:
                d.callback(None)
