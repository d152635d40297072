"""
Relay targets: ESMTP to a tenant's Exchange Online inbound connector,
or a Maildir for the demo and tests.

Theory of operation (ESMTP).  Two plain classes do the byte work:
``ReplyReader`` turns received bytes into ``Reply`` values (RFC 5321
4.2), ``DataEncoder`` turns message chunks into DATA content (CRLF line
ends, dot-stuffing, RFC 5321 4.5.2).  ``_ClientProtocol`` is a thin
adapter: it writes commands, matches replies to a queue of waiters in
order (so pipelined commands need no special case, RFC 2920 3.1), keeps
one watchdog timer (RFC 5321 4.5.3.2) and streams the message as a push
producer, pulling the next chunk only when the transport wants more.
``SMTPRelay._greet`` and ``SMTPRelay._transaction`` read top to bottom
as the SMTP conversation.

Connections are cached, like Postfix's smtp(8) connection cache: the
greeting, EHLO, STARTTLS with its handshake and the second EHLO are paid
once per connection, not per message.  After a transaction's final
reply (or a refusal followed by RSET, RFC 5321 4.1.1.5) the connection
goes back to a small per-relay pool (LIFO, so the warmest is reused and
the rest time out); it is closed with QUIT after ``maxIdleTime``, when
the pool is full, or after ``maxMessages`` transactions.  The server
may close an idle connection (RFC 5321 4.5.3.2.7, or 421 and close,
3.8): anything it says while idle, or its close, drops the connection
from the pool.  Racing that, a send on a reused connection may still
find it gone; such a send is retried once on a new connection, but only
when the target had not yet accepted MAIL, so no message is ever sent
twice.  Each ``SMTPRelay`` is one target with one client certificate
(one tenant), so connections are never shared across tenants.

Failures map to ``RelayError``: only a 5xx to RCPT or to the message
data is permanent, because only then has the target judged the message
itself; everything else (connect, TLS, certificates, greeting, EHLO,
MAIL, 4xx, timeouts, lost connections) is temporary, so Exchange Online
keeps the message and retries (SPEC section 4).
"""

from __future__ import annotations

import collections
import os
import re
import secrets
import socket
import time
import urllib.parse
from typing import Any, Iterator, Optional

import attrs
from OpenSSL import SSL
from twisted.internet import defer, ssl
from twisted.internet.defer import Deferred
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.interfaces import IHandshakeListener, IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from secudoc_gateway import tls
from secudoc_gateway.errors import RelayError
from secudoc_gateway.interfaces import IMessageSource, IRelay
from secudoc_gateway.smtp.replies import Reply

MAX_REPLY_LINE = 4096
MAX_REPLY_LINES = 256
DEFAULT_SMTP_PORT = 25
# The connection cache, after Postfix's smtp_connection_cache_* settings:
# an idle connection costs the target little for a few seconds, a message
# stream of one per few seconds or more keeps it warm, and a bounded
# count of messages spreads load over the target's front ends and picks
# up DNS changes.
DEFAULT_MAX_IDLE = 20
DEFAULT_MAX_IDLE_TIME = 5.0
DEFAULT_MAX_MESSAGES = 100


@attrs.frozen
class Timeouts:
    """
    Seconds to wait, per RFC 5321 4.5.3.2 (five minutes for the greeting
    and each command, two for the DATA 354, three per data block, ten for
    the reply to the end of the data).  ``connect`` and ``tls`` are ours.
    """

    connect: float = 60.0
    greeting: float = 300.0
    command: float = 300.0
    tls: float = 60.0
    dataInitiation: float = 120.0
    dataBlock: float = 180.0
    dataTermination: float = 600.0


class ProtocolViolation(Exception):
    """The remote sent something that is not an SMTP reply."""


_ENHANCED = re.compile(r"([245]\.\d{1,3}\.\d{1,3})(?: |$)")


class ReplyReader:
    """
    Bytes in, ``Reply`` values out (RFC 5321 4.2: ``ddd-text`` lines
    continue a reply, ``ddd text`` ends it).  A leading RFC 3463 enhanced
    code is taken from the first line and stripped from every line.
    """

    def __init__(self, maxLineLength: int = MAX_REPLY_LINE, maxLines: int = MAX_REPLY_LINES) -> None:
        self._maxLineLength = maxLineLength
        self._maxLines = maxLines
        self._buffer = b""
        self._code: Optional[int] = None
        self._lines: list[str] = []

    @property
    def buffered(self) -> bool:
        """Whether bytes of an incomplete reply are waiting."""
        return bool(self._buffer or self._lines)

    def feed(self, data: bytes) -> list[Reply]:
        self._buffer += data
        replies: list[Reply] = []
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                if len(self._buffer) > self._maxLineLength:
                    raise ProtocolViolation("reply line too long")
                return replies
            if end > self._maxLineLength:
                raise ProtocolViolation("reply line too long")
            line = self._buffer[:end]
            self._buffer = self._buffer[end + 1 :]
            if line.endswith(b"\r"):
                line = line[:-1]
            reply = self._line(line)
            if reply is not None:
                replies.append(reply)

    def _line(self, line: bytes) -> Optional[Reply]:
        code = line[:3]
        separator = line[3:4]
        if len(code) != 3 or not code.isdigit() or not (b"2" <= code[:1] <= b"5") or separator not in (
            b"",
            b" ",
            b"-",
        ):
            raise ProtocolViolation(f"not an SMTP reply: {line[:80]!r}")
        number = int(code)
        if self._code is not None and number != self._code:
            raise ProtocolViolation(f"reply code changed within a reply: {line[:80]!r}")
        self._code = number
        self._lines.append(line[4:].decode("utf-8", "replace"))
        if len(self._lines) > self._maxLines:
            raise ProtocolViolation("reply has too many lines")
        if separator == b"-":
            return None
        lines, self._lines, self._code = self._lines, [], None
        enhanced = ""
        match = _ENHANCED.match(lines[0])
        if match and match.group(1)[0] == str(number)[0]:
            enhanced = match.group(1)
            lines = [_stripPrefix(line, enhanced) for line in lines]
        return Reply(number, enhanced, "\n".join(lines))


def _stripPrefix(line: str, enhanced: str) -> str:
    if line == enhanced:
        return ""
    if line.startswith(enhanced + " "):
        return line[len(enhanced) + 1 :]
    return line


def describeReply(reply: Reply) -> str:
    """One line for logs and for ``send``'s result: ``250 2.0.0 Ok: queued as X``."""
    parts = [str(reply.code), reply.enhanced, " ".join(reply.text.split("\n"))]
    return " ".join(p for p in parts if p)


def parseExtensions(reply: Reply) -> dict[str, str]:
    """EHLO keywords (upper case) and their parameters (RFC 5321 4.1.1.1)."""
    extensions: dict[str, str] = {}
    for line in reply.text.split("\n")[1:]:
        keyword, _, parameters = line.strip().partition(" ")
        if keyword:
            extensions[keyword.upper()] = parameters.strip()
    return extensions


class DataEncoder:
    """
    Message chunks in, DATA content out: every line end made CRLF and a
    leading dot doubled (RFC 5321 4.5.2), with the state carried across
    chunk boundaries, so a chunk may end anywhere.

    Bare LF and bare CR are both made CRLF: RFC 5321 2.3.8 allows neither
    in SMTP data, and a target that reads a bare CR or LF as a line end
    would otherwise see a different end-of-data than we mean (SMTP
    smuggling).  Only bytes methods over whole chunks, no per-line calls.
    """

    def __init__(self) -> None:
        self._pendingCR = False
        self._atLineStart = True

    def feed(self, data: bytes) -> bytes:
        if self._pendingCR:
            data = b"\r" + data
            self._pendingCR = False
        if data.endswith(b"\r"):
            self._pendingCR = True
            data = data[:-1]
        if not data:
            return b""
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        data = data.replace(b"\n", b"\r\n").replace(b"\r\n.", b"\r\n..")
        if self._atLineStart and data.startswith(b"."):
            data = b"." + data
        self._atLineStart = data.endswith(b"\r\n")
        return data

    def finish(self) -> bytes:
        """The rest: a final CRLF when the message lacks one, then ``.`` CRLF."""
        out = b""
        if self._pendingCR:
            self._pendingCR = False
            out = b"\r\n"
            self._atLineStart = True
        if not self._atLineStart:
            out += b"\r\n"
        self._atLineStart = True
        return out + b".\r\n"


def _replyOf(result: tuple[bool, Any]) -> Reply:
    """The reply from a ``DeferredList`` result, or its failure raised."""
    ok, value = result
    if not ok:
        value.raiseException()
    return value


def _temporary(kind: str, reply: Reply, what: str) -> RelayError:
    return RelayError(kind, f"{what}: {describeReply(reply)}", permanent=False, reply=reply)


def _judged(kind: str, reply: Reply, what: str) -> RelayError:
    """A failed reply to RCPT or to the data: permanent only when 5xx."""
    return RelayError(kind, f"{what}: {describeReply(reply)}", permanent=reply.permanent, reply=reply)


@implementer(IHandshakeListener, IPushProducer)
class _ClientProtocol(Protocol):
    """
    The Twisted side of one relay connection: writes, reply matching,
    the watchdog, STARTTLS and the message stream.  What to say and what
    the replies mean lives in ``SMTPRelay._greet`` and ``_transaction``.
    """

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
        # the connection cache (see SMTPRelay)
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
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
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


def _opportunisticOptions(clientCertificate: str) -> ssl.CertificateOptions:
    """
    TLS without verifying the server, for ``relay_require_tls = false``:
    encryption when offered, like an MTA's opportunistic TLS (RFC 7435),
    still presenting the client certificate.
    """
    kwargs: dict = {}
    if clientCertificate:
        private, chain = tls.loadPrivateCertificate(clientCertificate)
        kwargs = dict(
            privateKey=private.privateKey.original,
            certificate=private.original,
            extraCertChain=[c.original for c in chain],
        )
    return ssl.CertificateOptions(verify=False, raiseMinimumTo=ssl.TLSVersion.TLSv1_2, **kwargs)


def _endpointFor(reactor: Any, host: str, port: int, timeout: float) -> Any:
    """
    An IP literal needs no name resolution: a plain TCP endpoint skips
    ``HostnameEndpoint``'s resolver round trip and connection racing.
    """
    if isIPAddress(host):
        return TCP4ClientEndpoint(reactor, host, port, timeout=timeout)
    if isIPv6Address(host):
        return TCP6ClientEndpoint(reactor, host, port, timeout=timeout)
    return HostnameEndpoint(reactor, host, port, timeout=timeout)


def _relayError(e: Exception) -> Exception:
    """What a send fails with: a ``RelayError``, or the cancellation."""
    if isinstance(e, (RelayError, defer.CancelledError)):
        return e
    return RelayError("protocol", f"relay client failed: {e!r}")


def _targetGaveUp(proto: _ClientProtocol, error: RelayError) -> bool:
    """
    Whether a send on a cached connection failed because the target had
    dropped the connection (closed, or 421, RFC 5321 3.8) before it
    accepted MAIL: then nothing of the message was taken and it may go
    again on a new connection.  Never after a 2xx to MAIL, so a message
    is never delivered twice; never after a timeout, which took long
    enough already.
    """
    if proto.mailAccepted:
        return False
    if error.reply is not None:
        return error.reply.code == 421
    return proto.lost and error.kind != "timeout" and error.kind != "protocol"


@implementer(IRelay)
class SMTPRelay:
    """
    ESMTP client to one target.  With ``requireTLS`` (the default)
    STARTTLS is mandatory and the server certificate is verified for
    ``host`` against ``caFile`` or the system trust; without it TLS is
    used when offered, unverified.  ``clientCertificate`` (PEM with key)
    is presented either way: it is how Exchange Online's inbound
    connector recognises the tenant.

    Connections are cached (see the module docstring): at most
    ``maxIdle`` idle ones, each for ``maxIdleTime`` seconds, each used
    for at most ``maxMessages`` transactions.  ``maxIdle = 0`` turns the
    cache off: one connection per message.
    """

    def __init__(
        self,
        reactor: Any,
        host: str,
        port: int,
        heloName: str,
        requireTLS: bool = True,
        caFile: str = "",
        clientCertificate: str = "",
        timeouts: Timeouts = Timeouts(),
        maxIdle: int = DEFAULT_MAX_IDLE,
        maxIdleTime: float = DEFAULT_MAX_IDLE_TIME,
        maxMessages: int = DEFAULT_MAX_MESSAGES,
    ) -> None:
        self._reactor = reactor
        self.host = host
        self.port = port
        self.heloName = heloName
        self.requireTLS = requireTLS
        self.caFile = caFile
        self.clientCertificate = clientCertificate
        self.timeouts = timeouts
        self.maxIdle = maxIdle
        self.maxIdleTime = maxIdleTime
        self.maxMessages = maxMessages
        self.endpoint = _endpointFor(reactor, host, port, timeouts.connect)
        self._factory = Factory.forProtocol(lambda: _ClientProtocol(self._reactor, self.timeouts))
        self._tlsOptions: Any = None
        self._open: set[_ClientProtocol] = set()
        self._idle: list[_ClientProtocol] = []  # a stack: the last one in is the first out
        self._resetting: set[_ClientProtocol] = set()
        self._closed = False

    @property
    def idleConnections(self) -> int:
        """How many connections wait in the cache."""
        return len(self._idle)

    def whenIdle(self) -> Deferred:
        """Fires when every connection this relay opened, busy or cached, has closed."""
        return defer.DeferredList([p.closed for p in self._open]).addCallback(lambda _: None)

    def closeIdle(self) -> Deferred:
        """
        QUIT every cached connection (and abandon any still in its RSET);
        fires when they have closed.  Caching goes on afterwards.
        """
        closing = list(self._idle) + list(self._resetting)
        for proto in closing:
            self._unpool(proto)
            proto.quit()
        return defer.DeferredList([p.closed for p in closing]).addCallback(lambda _: None)

    def close(self) -> Deferred:
        """
        For shutdown: cache no more (connections busy now QUIT after
        their transaction, later sends use one connection each) and
        ``closeIdle``.  Does not wait for transactions in flight.
        """
        self._closed = True
        return self.closeIdle()

    def _options(self) -> Any:
        """TLS options, built once: loading trust roots is not free."""
        if self._tlsOptions is None:
            try:
                if self.requireTLS:
                    self._tlsOptions = tls.clientOptions(self.host, self.caFile, self.clientCertificate)
                else:
                    self._tlsOptions = _opportunisticOptions(self.clientCertificate)
            except Exception as e:
                raise RelayError("tls", f"cannot load TLS settings: {e}")
        return self._tlsOptions

    def send(self, envelope: Any, message: IMessageSource) -> Deferred:
        return Deferred.fromCoroutine(self._send(envelope, message))

    async def _send(self, envelope: Any, message: IMessageSource) -> str:
        proto = self._takeIdle()
        if proto is not None:
            try:
                return await self._transact(proto, envelope, message)
            except RelayError as e:
                if not _targetGaveUp(proto, e):
                    raise
        proto = await self._dial()
        try:
            proto.extensions = await self._greet(proto)
        except Exception as e:
            proto.quit()
            raise _relayError(e)
        return await self._transact(proto, envelope, message)

    # the connection cache

    async def _dial(self) -> _ClientProtocol:
        try:
            proto = await self.endpoint.connect(self._factory)
        except defer.CancelledError:
            raise
        except Exception as e:
            raise RelayError("connect", f"cannot connect to {self.host}:{self.port}: {e}")
        self._open.add(proto)
        proto.closed.addBoth(lambda _: self._forget(proto))
        return proto

    def _takeIdle(self) -> Optional[_ClientProtocol]:
        while self._idle:
            proto = self._idle.pop()
            self._unpool(proto)
            if proto.reusable():
                return proto
            proto.quit()
        return None

    def _release(self, proto: _ClientProtocol) -> None:
        """A transaction ended cleanly: cache the connection, or QUIT it."""
        if (
            self._closed
            or not proto.reusable()
            or proto.transactions >= self.maxMessages
            or self.maxIdle <= 0
            or self.maxIdleTime <= 0
        ):
            proto.quit()
            return
        while len(self._idle) >= self.maxIdle:
            oldest = self._idle[0]
            self._unpool(oldest)
            oldest.quit()
        proto.pooled = True
        proto.idleTimer = self._reactor.callLater(self.maxIdleTime, self._expire, proto)
        self._idle.append(proto)

    def _expire(self, proto: _ClientProtocol) -> None:
        proto.idleTimer = None
        self._unpool(proto)
        proto.quit()

    def _unpool(self, proto: _ClientProtocol) -> None:
        proto.pooled = False
        self._resetting.discard(proto)
        if proto in self._idle:
            self._idle.remove(proto)
        if proto.idleTimer is not None:
            if proto.idleTimer.active():
                proto.idleTimer.cancel()
            proto.idleTimer = None

    def _forget(self, proto: _ClientProtocol) -> None:
        self._unpool(proto)
        self._open.discard(proto)

    def _afterRefusal(self, proto: _ClientProtocol, error: RelayError) -> None:
        """
        The target refused the message but the connection is sound:
        RSET (RFC 5321 4.1.1.5), then cache it.  Done in the background:
        the refusal is reported without waiting for the 250.
        """
        if not proto.reusable() or (error.reply is not None and error.reply.code == 421):
            proto.quit()
            return
        if not proto.mailSent:
            self._release(proto)
            return
        self._resetting.add(proto)
        d = proto.command(b"RSET", "rset", self.timeouts.command)

        def reset(result: Any) -> None:
            resetting = proto in self._resetting
            self._resetting.discard(proto)
            if resetting and isinstance(result, Reply) and result.code == 250:
                self._release(proto)
            else:
                proto.quit()

        d.addBoth(reset)

    # the conversation

    async def _hello(self, proto: _ClientProtocol) -> dict[str, str]:
        """EHLO; HELO only when EHLO is refused and TLS is optional (RFC 5321 4.1.4)."""
        helo = self.heloName.encode("ascii")
        reply = await proto.command(b"EHLO " + helo, "ehlo", self.timeouts.command)
        if reply.code == 250:
            return parseExtensions(reply)
        if reply.permanent and not self.requireTLS:
            reply = await proto.command(b"HELO " + helo, "ehlo", self.timeouts.command)
            if reply.code == 250:
                return {}
        raise _temporary("ehlo", reply, "EHLO refused")

    async def _greet(self, proto: _ClientProtocol) -> dict[str, str]:
        """Greeting, EHLO, STARTTLS and EHLO again: once per connection."""
        t = self.timeouts
        greeting = await proto.expect("greeting", t.greeting)
        if greeting.code != 220:
            raise _temporary("greeting", greeting, "refused at greeting")
        extensions = await self._hello(proto)
        if "STARTTLS" in extensions:
            reply = await proto.command(b"STARTTLS", "tls", t.command)
            if reply.code == 220:
                await proto.startTLS(self._options())
                extensions = await self._hello(proto)
            elif self.requireTLS:
                raise _temporary("tls", reply, "STARTTLS refused")
        elif self.requireTLS:
            raise RelayError("tls", f"{self.host} does not offer STARTTLS and TLS is required")
        return extensions

    async def _transact(self, proto: _ClientProtocol, envelope: Any, message: IMessageSource) -> str:
        """One transaction on a greeted connection, which is then cached or closed."""
        proto.transactions += 1
        proto.mailSent = proto.mailAccepted = False
        try:
            result = await self._transaction(proto, envelope, message)
        except RelayError as e:
            self._afterRefusal(proto, e)
            raise
        except Exception as e:
            proto.quit()
            raise _relayError(e)
        self._release(proto)
        return result

    async def _transaction(self, proto: _ClientProtocol, envelope: Any, message: IMessageSource) -> str:
        t = self.timeouts
        extensions = proto.extensions
        mail, rcpts = self._transactionCommands(envelope, message, extensions)
        pipelining = "PIPELINING" in extensions
        chunking = "CHUNKING" in extensions
        proto.mailSent = True
        if pipelining:
            proto.sendLines([mail, *rcpts] + ([] if chunking else [b"DATA"]))
            waiting = [proto.expect("mail", t.command)]
            waiting += [proto.expect("rcpt", t.command) for _ in rcpts]
            if not chunking:
                waiting.append(proto.expect("data", t.dataInitiation))
            # Every pipelined reply is collected before any is judged, so
            # none is left failing unobserved when the connection goes;
            # a reply that came is judged before a failure after it (a
            # 421 to RCPT, then the connection closing).
            results = await defer.DeferredList(waiting, consumeErrors=True)
            if not chunking and results[-1][0] and results[-1][1].code == 354:
                proto.inData = True
            mailResult, rcptResults = results[0], results[1 : 1 + len(rcpts)]
            self._checkMail(proto, _replyOf(mailResult))
            self._checkRecipients([value for ok, value in rcptResults if ok])
            for ok, value in results:
                if not ok:
                    value.raiseException()
            if not chunking:
                self._checkData(results[-1][1])
        else:
            self._checkMail(proto, await proto.command(mail, "mail", t.command))
            for line in rcpts:
                self._checkRecipients([await proto.command(line, "rcpt", t.command)])
            if not chunking:
                reply = await proto.command(b"DATA", "data", t.dataInitiation)
                proto.inData = reply.code == 354
                self._checkData(reply)

        proto.inData = True
        final = await proto.streamMessage(message.chunks(), chunking, pipelining)
        proto.inData = False
        if final.code // 100 != 2:
            raise _judged("data", final, "message refused")
        return describeReply(final)

    def _transactionCommands(
        self, envelope: Any, message: IMessageSource, extensions: dict[str, str]
    ) -> tuple[bytes, list[bytes]]:
        """MAIL with its RFC 1870 / 6152 / 6531 parameters, and the RCPTs."""
        addresses = [envelope.sender, *envelope.recipients]
        for address in addresses:
            if any(c in address for c in "\r\n<>\0"):
                raise RelayError("mail", f"unusable address {address!r}")
        ascii = all(a.isascii() for a in addresses)
        params = []
        if "SIZE" in extensions:
            params.append(f"SIZE={message.size}")
        if envelope.body == "8BITMIME" and "8BITMIME" in extensions:
            params.append("BODY=8BITMIME")
        if envelope.smtputf8 and "SMTPUTF8" in extensions:
            params.append("SMTPUTF8")
        elif not ascii:
            # RFC 6531 3.4: a non-ASCII address cannot go to a server
            # that does not offer SMTPUTF8.
            raise RelayError("mail", f"{self.host} does not offer SMTPUTF8, needed for the addresses")
        mail = "MAIL FROM:<%s>%s" % (envelope.sender, "".join(" " + p for p in params))
        rcpts = ["RCPT TO:<%s>" % r for r in envelope.recipients]
        return mail.encode("utf-8"), [r.encode("utf-8") for r in rcpts]

    @staticmethod
    def _checkMail(proto: _ClientProtocol, reply: Reply) -> None:
        if reply.code // 100 != 2:
            raise _temporary("mail", reply, "MAIL refused")
        proto.mailAccepted = True

    @staticmethod
    def _checkRecipients(replies: list[Reply]) -> None:
        """All or nothing: one refused recipient fails the message."""
        refused = [r for r in replies if r.code // 100 != 2]
        if refused:
            worst = next((r for r in refused if r.permanent), refused[0])
            raise _judged("rcpt", worst, "recipient refused")

    @staticmethod
    def _checkData(reply: Reply) -> None:
        if reply.code != 354:
            raise _judged("data", reply, "DATA refused")


@implementer(IRelay)
class MaildirRelay:
    """
    Writes each message into a Maildir (tmp, fsync, rename into new),
    after the envelope as header lines (SPEC section 3).  The envelope
    lines end like the message's first line (CRLF or LF; LF when the
    message has no line end), so the file keeps one line-end style.
    Writes are blocking: this target is for the demo and tests.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._host = socket.gethostname().replace("/", "\\057").replace(":", "\\072")

    def _uniqueName(self) -> str:
        now = time.time()
        seconds = int(now)
        micros = int((now - seconds) * 1_000_000)
        return f"{seconds}.M{micros}P{os.getpid()}R{secrets.token_hex(8)}.{self._host}"

    def close(self) -> Deferred:
        """Nothing to close; here so the gateway can close any relay alike."""
        return defer.succeed(None)

    closeIdle = close

    def send(self, envelope: Any, message: IMessageSource) -> Deferred:
        try:
            return defer.succeed(self._deliver(envelope, message))
        except RelayError as e:
            return defer.fail(e)

    def _deliver(self, envelope: Any, message: IMessageSource) -> str:
        addresses = [envelope.sender, *envelope.recipients]
        if any(c in a for a in addresses for c in "\r\n"):
            raise RelayError("maildir", "line break in an envelope address")
        name = self._uniqueName()
        tmp = os.path.join(self.path, "tmp", name)
        new = os.path.join(self.path, "new", name)
        try:
            for sub in ("tmp", "new", "cur"):
                os.makedirs(os.path.join(self.path, sub), exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as e:
            raise RelayError("maildir", f"cannot create {tmp}: {e}")
        envelopeLines = [f"Return-Path: <{envelope.sender}>"] + [
            f"X-Envelope-To: {r}" for r in envelope.recipients
        ]
        try:
            with os.fdopen(fd, "wb") as f:
                # Hold the start of the message until its first line end
                # shows the style (bounded: a first line is short).
                start: Optional[list[bytes]] = []
                held = 0
                for chunk in message.chunks():
                    if start is None:
                        f.write(chunk)
                        continue
                    start.append(chunk)
                    held += len(chunk)
                    if b"\n" in chunk or held >= _LINE_END_WINDOW:
                        head = b"".join(start)
                        f.write(_envelopeLines(envelopeLines, _lineEnd(head)) + head)
                        start = None
                if start is not None:
                    head = b"".join(start)
                    f.write(_envelopeLines(envelopeLines, _lineEnd(head)) + head)
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, new)
        except Exception as e:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise RelayError("maildir", f"cannot write {tmp}: {e}")
        return f"maildir {name}"


_LINE_END_WINDOW = 65536


def _lineEnd(chunk: bytes) -> bytes:
    at = chunk.find(b"\n")
    return b"\r\n" if at > 0 and chunk[at - 1 : at] == b"\r" else b"\n"


def _envelopeLines(lines: list[str], end: bytes) -> bytes:
    return b"".join(line.encode("utf-8") + end for line in lines)


def parseRelayTarget(url: str) -> tuple:
    """
    ``("maildir", path)`` or ``("smtp", host, port)``; ``ValueError``
    for anything else.  The port defaults to 25.
    """
    if url.startswith("maildir:"):
        path = url[len("maildir:") :]
        if not path:
            raise ValueError(f"maildir relay needs a path: {url!r}")
        return ("maildir", path)
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "smtp" or not parts.hostname:
        raise ValueError(f'relay must be "maildir:PATH" or "smtp://HOST:PORT", not {url!r}')
    if parts.username is not None or parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f'relay must be "maildir:PATH" or "smtp://HOST:PORT", not {url!r}')
    port = parts.port  # raises ValueError when out of range
    return ("smtp", parts.hostname, port if port is not None else DEFAULT_SMTP_PORT)


def relayFor(tenant: Any, hostname: str, reactor: Any, timeouts: Timeouts = Timeouts()) -> IRelay:
    """The relay target a tenant's config names; ``hostname`` is our EHLO name."""
    target = parseRelayTarget(tenant.relay)
    if target[0] == "maildir":
        return MaildirRelay(target[1])
    _, host, port = target
    return SMTPRelay(
        reactor,
        host,
        port,
        hostname,
        requireTLS=bool(tenant.relay_require_tls),
        caFile=tenant.relay_ca_file or "",
        clientCertificate=tenant.relay_tls_certificate or "",
        timeouts=timeouts,
    )


__all__ = [
    "DataEncoder",
    "MaildirRelay",
    "ReplyReader",
    "SMTPRelay",
    "Timeouts",
    "describeReply",
    "parseExtensions",
    "parseRelayTarget",
    "relayFor",
]
