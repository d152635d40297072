"""
One relay connection: the thin Twisted adapter over ``client.py``.  It
writes commands, matches replies to a queue of waiters in order (so
pipelined commands need no special case, RFC 2920 3.1), keeps one
watchdog timer (RFC 5321 4.5.3.2) and streams the message as a push
producer, pulling the next chunk only when the transport wants more.
What to say and what the replies mean lives in ``relay.py``; whether
the connection is kept for the next message lives in ``pool.py``.
"""

from __future__ import annotations

import collections
from typing import Any, Iterator, Optional

from OpenSSL import SSL
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IHandshakeListener, IPushProducer
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from secudoc_gateway.errors import RelayError
from secudoc_gateway.interfaces import IConnection
from secudoc_gateway.relay.client import DataEncoder, ProtocolViolation, ReplyReader, Timeouts, _judged
from secudoc_gateway.replies import Reply


@implementer(IHandshakeListener, IPushProducer)
class _ClientProtocol(Protocol):
    """
    The Twisted side of one relay connection: writes, reply matching,
    the watchdog, STARTTLS and the message stream.  What to say and what
    the replies mean lives in ``SMTPRelay._greet`` and ``_transaction``.
    """

    transport: IConnection

    def __init__(self, reactor: Any, timeouts: Timeouts) -> None:
        self._reactor = reactor
        self._timeouts = timeouts
        self._reader = ReplyReader()
        self._replies: collections.deque[Reply] = collections.deque()
        self._waiters: collections.deque[tuple[Deferred, str, float]] = collections.deque()
        self._timer: Any = None
        self._handshake: Optional[Deferred] = None
        self._lostError: Optional[RelayError] = None
        self._closing = False
        self.stage = "greeting"
        # True while the remote is in its data state: a polite QUIT would
        # be read as message content, so leaving means aborting.
        self.inData = False
        self.closed: Deferred = Deferred()
        # the message stream
        self._source: Optional[Iterator[bytes]] = None
        self._encoder: Optional[DataEncoder] = None
        self._chunking = False
        self._pipelining = False
        self._held: Optional[bytes] = None
        self._started = False
        self._paused = False
        self._producing = False
        self._awaitingChunkReply = False
        self._done: Optional[Deferred] = None
        # the connection cache (see pool.py)
        self.extensions: dict[str, str] = {}
        self.transactions = 0
        self.mailSent = False
        self.mailAccepted = False
        self.pooled = False
        self.idleTimer: Any = None

    @property
    def lost(self) -> bool:
        """Closed or closing: no further command can be sent."""
        return self._closing or self._lostError is not None

    def reusable(self) -> bool:
        """Between transactions, nothing outstanding: another may start."""
        return not (
            self.lost
            or self.inData
            or self._waiters
            or self._replies
            or self._reader.buffered
            or self._handshake is not None
            or self._source is not None
            or self._done is not None
        )

    # replies

    def dataReceived(self, data: bytes) -> None:
        if self._closing or self._lostError is not None:
            return
        if self.pooled:
            # Unasked-for while idle: a 421 before the server closes
            # (RFC 5321 3.8, 4.5.3.2.7) or garbage; either way not a
            # connection to start a transaction on.
            self._abort(RelayError("idle", "the target spoke while the connection was idle"))
            return
        try:
            replies = self._reader.feed(data)
        except ProtocolViolation as e:
            self._abort(RelayError("protocol", str(e)))
            return
        reader = self._reader
        for reply in replies:
            if self._lostError is not None or self._reader is not reader:
                # Lost, or STARTTLS began: what followed the 220 in this
                # read was sent in the clear and is dropped.
                return
            if self._waiters:
                d, _, _ = self._waiters.popleft()
                self._rearm()
                d.callback(reply)
            else:
                self._replies.append(reply)

    def expect(self, stage: str, timeout: float) -> Deferred:
        """The next reply, in order; ``stage`` names the failure kind."""
        if self._lostError is not None:
            return defer.fail(self._lostError)
        if self._replies:
            return defer.succeed(self._replies.popleft())
        d: Deferred = Deferred()
        self._waiters.append((d, stage, timeout))
        self.stage = stage
        if len(self._waiters) == 1:
            self._rearm()
        return d

    def sendLines(self, lines: list[bytes]) -> None:
        """Commands in one write: RFC 2920 pipelining when there are several."""
        self.transport.write(b"".join(line + b"\r\n" for line in lines))

    def command(self, line: bytes, stage: str, timeout: float) -> Deferred:
        self.sendLines([line])
        return self.expect(stage, timeout)

    # the watchdog

    def _currentTimeout(self) -> Optional[float]:
        if self._handshake is not None:
            return self._timeouts.tls
        if self._waiters:
            return self._waiters[0][2]
        if self._source is not None:
            return self._timeouts.dataBlock
        return None

    def _rearm(self) -> None:
        self._cancelTimer()
        timeout = self._currentTimeout()
        if timeout is not None and self._lostError is None:
            self._timer = self._reactor.callLater(timeout, self._timedOut, timeout)

    def _timedOut(self, timeout: float) -> None:
        self._timer = None
        stage = self._waiters[0][1] if self._waiters else ("tls" if self._handshake else self.stage)
        self._abort(RelayError("timeout", f"no progress at {stage} within {timeout:g} seconds"))

    # STARTTLS (RFC 3207)

    def startTLS(self, options: Any) -> Deferred:
        """
        Start the handshake; fires when it completed.  Anything the
        server sent after its 220 is dropped: it came before TLS and must
        not be taken as a reply inside it (RFC 3207 4.2, response
        injection).
        """
        self._reader = ReplyReader()
        self._replies.clear()
        self.stage = "tls"
        self._handshake = Deferred()
        d = self._handshake
        self.transport.startTLS(options)
        self._rearm()
        return d

    def handshakeCompleted(self) -> None:
        d, self._handshake = self._handshake, None
        self._rearm()
        if d is not None:
            d.callback(None)

    # the message stream

    def streamMessage(self, chunks: Iterator[bytes], chunking: bool, pipelining: bool) -> Deferred:
        """
        Send the message: BDAT chunks (RFC 3030) when ``chunking``, else
        DATA content after the 354.  Fires with the reply to the end of
        the data.  BDAT commands are pipelined only with PIPELINING.
        """
        self._source = iter(chunks)
        self._chunking = chunking
        self._pipelining = pipelining
        self._encoder = None if chunking else DataEncoder()
        # A cached connection streams again: forget the last message.
        self._held = None
        self._started = False
        self._paused = False
        self._awaitingChunkReply = False
        self._done = Deferred()
        self.stage = "data"
        done = self._done
        self.transport.registerProducer(self, True)
        self._rearm()
        self._produce()
        return done

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        self._produce()

    def stopProducing(self) -> None:
        self._source = None

    def _produce(self) -> None:
        if self._producing:
            return
        self._producing = True
        try:
            while (
                self._source is not None
                and not self._paused
                and not self._awaitingChunkReply
                and self._lostError is None
            ):
                try:
                    chunk = next(self._source, None)
                except Exception as e:
                    self._abort(RelayError("data", f"reading the message failed: {e!r}"))
                    return
                if self._chunking:
                    self._chunk(chunk)
                else:
                    self._dataContent(chunk)
                self._rearm()
        finally:
            self._producing = False

    def _dataContent(self, chunk: Optional[bytes]) -> None:
        assert self._encoder is not None
        if chunk is None:
            self.transport.write(self._encoder.finish())
            self._endOfData()
        else:
            out = self._encoder.feed(chunk)
            if out:
                self.transport.write(out)

    def _chunk(self, chunk: Optional[bytes]) -> None:
        """One BDAT step, one chunk behind the source so the last gets LAST."""
        if chunk is not None and not chunk:
            return
        if not self._started:
            self._started = True
            if chunk is not None:
                self._held = chunk
                return
        held, self._held = self._held, chunk
        if chunk is None:
            size = len(held) if held else 0
            self.transport.writeSequence([b"BDAT %d LAST\r\n" % size, held or b""])
            self._endOfData()
            return
        assert held is not None
        self.transport.writeSequence([b"BDAT %d\r\n" % len(held), held])
        d = self.expect("data", self._timeouts.dataBlock)
        if not self._pipelining:
            self._awaitingChunkReply = True
        d.addCallbacks(self._chunkReply, lambda f: None)

    def _chunkReply(self, reply: Reply) -> None:
        if reply.code // 100 != 2:
            self._finishStream(_judged("data", reply, "BDAT refused"))
            return
        if self._awaitingChunkReply:
            self._awaitingChunkReply = False
            self._produce()

    def _endOfData(self) -> None:
        self._source = None
        self.transport.unregisterProducer()
        d = self.expect("data", self._timeouts.dataTermination)
        d.addCallbacks(self._finishStream, lambda f: self._finishStream(f.value))

    def _finishStream(self, result: Any) -> None:
        self._source = None
        done, self._done = self._done, None
        if done is not None:
            if isinstance(result, Exception):
                done.errback(Failure(result))
            else:
                done.callback(result)

    # leaving

    def quit(self) -> None:
        """QUIT and close; the reply is not awaited (RFC 5321 4.1.1.10)."""
        if self._lostError is not None or self._closing:
            return
        if self.inData or self._waiters or self._handshake is not None:
            self._abort(RelayError(self.stage, "connection closed by us"))
            return
        self._closing = True
        self._cancelTimer()
        self.sendLines([b"QUIT"])
        self.transport.loseConnection()

    def _abort(self, error: RelayError) -> None:
        if self._lostError is None:
            self._fail(error)
        self.transport.abortConnection()

    def _cancelTimer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _fail(self, error: RelayError) -> None:
        self._lostError = error
        self._cancelTimer()
        self._source = None
        waiters, self._waiters = self._waiters, collections.deque()
        handshake, self._handshake = self._handshake, None
        for d, _, _ in waiters:
            d.errback(Failure(error))
        if handshake is not None:
            handshake.errback(Failure(error))
        self._finishStream(error)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        if self._lostError is None:
            if reason is not None and reason.check(SSL.Error):
                kind = "tls"
            else:
                kind = self._waiters[0][1] if self._waiters else self.stage
            detail = reason.getErrorMessage() if reason is not None else "connection lost"
            self._fail(RelayError(kind, f"connection lost: {detail}"))
        self._cancelTimer()
        if not self.closed.called:
            self.closed.callback(None)
