"""
How fast an SMTP connection may go, and how slow: flow control, the
timeouts of RFC 5321 4.5.3.2 and the minimum data rate.  A part of
``SMTPProtocol`` of its own because it is a job of its own with its own
state (the pauses, two timers, a byte count), that every other part
only starts: a reply written, a message begun or finished, bytes read.

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

from typing import Any, Callable, Optional, Protocol as Structural

from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from zope.interface import implementer

from secudoc_gateway import replies
from secudoc_gateway.interfaces import IConnection, IIngress, ITransaction
from secudoc_gateway.replies import Reply
from secudoc_gateway.smtp.session import Session, SessionLimits, State

#: Pipelined input held behind an unanswered message before the protocol
#: stops reading (the session closes at its own, larger, ``maxPending``).
PAUSE_PENDING = 64 * 1024

_PENDING = "pending"
_TRANSACTION = "transaction"


class Listener(Structural):
    """
    What a connection reads of the listener that made it
    (``smtp.factory.SMTPFactory``): its limits, the ingress, and the
    admission a connection asks for and gives back.
    """

    ingress: IIngress
    hostname: str
    tlsOptions: Any
    requireTLS: bool
    limits: SessionLimits
    reactor: IReactorTime
    draining: bool
    commandTimeout: float
    dataTimeout: float
    minDataRate: int
    rateWindow: float

    def admit(self, protocol: Any) -> Optional[tuple[Reply, str]]: ...

    def remove(self, protocol: Any) -> None: ...

    def countReply(self, reply: Reply) -> None: ...


class Pacing(Protocol):
    """
    The pauses and timers of one connection (module docstring), for
    ``SMTPProtocol``, whose state it reads: its factory's limits, its
    session, whether it holds a transaction, whether the connection is
    gone.
    """

    _log = Logger()

    factory: Listener
    transport: IConnection
    peer: str
    session: Optional[Session]
    _lost: bool
    _tx: Optional[ITransaction]
    _finishing: bool
    _pump: Callable[[], None]

    def __init__(self) -> None:
        self._pauses: set[str] = set()
        self._timer: Optional[IDelayedCall] = None
        self._rateTimer: Optional[IDelayedCall] = None
        self._windowBytes = 0

    def _stopTimers(self) -> None:
        for call in (self._timer, self._rateTimer):
            if call is not None and call.active():
                call.cancel()
        self._timer = self._rateTimer = None

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


@implementer(IPushProducer)
class TransactionProducer:
    """
    What a transaction gets as the client's transport: its pause is its
    own, and it goes dead when the transaction ends (a late resume from
    a finished transaction must not restart reading).
    """

    def __init__(self, protocol: Pacing) -> None:
        self._protocol: Optional[Pacing] = protocol

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
