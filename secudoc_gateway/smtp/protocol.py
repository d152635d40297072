"""
The SMTP connection: a thin Twisted adapter over ``smtp.session.Session``.

It moves bytes between the transport and the session, answers the
session's questions through the ``IIngress``, feeds message data to the
``ITransaction`` and does what only I/O can do: STARTTLS and closing.
Its pauses, timeouts and data rate are ``pacing``'s; the listener's
connection limits and its drain are ``factory``'s.
"""

from __future__ import annotations

from typing import Optional

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure

from secudoc_gateway.config.values import Tenant
from secudoc_gateway.envelope import Envelope
from secudoc_gateway.interfaces import ITransaction
from secudoc_gateway import replies
from secudoc_gateway.logs import CONNECT, END_OF_MESSAGE, MAIL, RCPT, logReject
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
    Refused,
    SendReply,
    StartTLS,
)
from secudoc_gateway.smtp.pacing import Listener, Pacing, TransactionProducer
from secudoc_gateway.smtp.session import Session, State

#: After a closing reply, how long a client that does not read it may
#: keep the connection before it is aborted.
CLOSE_GRACE = 10.0
#: The refusal line's stage for the command a refused reply answers.
_STAGES = {"MAIL": MAIL, "RCPT": RCPT, "DATA": END_OF_MESSAGE, "BDAT": END_OF_MESSAGE}


class SMTPProtocol(Pacing):
    """One client connection."""

    def __init__(self, factory: Listener) -> None:
        super().__init__()
        self.factory = factory
        self.peer = ""
        self.session: Optional[Session] = None
        self._admitted = False
        self._lost = False
        self._pumping = False
        self._closer: Optional[IDelayedCall] = None
        self._tenant: Optional[Tenant] = None
        self._tx: Optional[ITransaction] = None
        self._producer: Optional[TransactionProducer] = None
        self._finishing = False

    # --- connection ---------------------------------------------------------

    def connectionMade(self) -> None:
        self.peer = getattr(self.transport.getPeer(), "host", "") or ""
        refusal = self.factory.admit(self)
        if refusal is not None:
            reply, reason = refusal
            logReject(self._log, CONNECT, self.peer, reply, reason, proto="SMTP")
            self.factory.countReply(reply)
            self.transport.write(reply.toBytes())
            self.transport.loseConnection()
            return
        self._admitted = True
        f = self.factory
        self.session = Session(
            hostname=f.hostname,
            limits=f.limits,
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
        self._stopTimers()
        if self._closer is not None and self._closer.active():
            self._closer.cancel()
        self._closer = None
        if not self._finishing:
            self._abortTransaction()
        if self._admitted:
            self._admitted = False
            self.factory.remove(self)

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
                session.refuseMail(refusal, "internal error" if refusal is replies.LOCAL_TEMPFAIL
                                   else "no tenant allows this sender from this address")
            else:
                self._tenant = tenant
                session.acceptMail()
        elif isinstance(event, DataStart):
            self._begin(event)
        elif isinstance(event, DataEnd):
            self._finish()
        elif isinstance(event, DataAbort):
            self._abortTransaction()
        elif isinstance(event, Refused):
            logReject(self._log, _STAGES[event.command], self.peer, event.reply, event.reason,
                      sender=event.sender, recipients=event.recipients, proto="ESMTP" if event.esmtp else "SMTP",
                      helo=event.helo)
            if _STAGES[event.command] == END_OF_MESSAGE:
                try:
                    self.factory.ingress.refused(Envelope(
                        sender=event.sender, recipients=event.recipients, peer=self.peer, helo=event.helo,
                        tls=session.tlsActive, tenant=self._tenant), event.reply, event.reason)
                except Exception:
                    self._log.failure("tracing the refused message from {peer} failed", peer=self.peer)
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
        self._producer = TransactionProducer(self)
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
