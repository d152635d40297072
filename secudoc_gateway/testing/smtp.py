"""
A sink ESMTP server for tests and benches: it stands in for Exchange
Online's inbound connector.  It is written on plain Twisted, apart from
the gateway's own SMTP code, so a test of the relay does not test our
server against itself.

It offers PIPELINING, CHUNKING, STARTTLS (optionally requiring a client
certificate), 8BITMIME, SMTPUTF8 and SIZE as configured, answers any
stage with a programmed reply, and either keeps every message (tests)
or only counts messages and bytes (benches: no message is held in
memory).  DATA is unstuffed and its end found with bytes methods over
whole buffers.
"""

from __future__ import annotations

import itertools
from typing import Any, Optional, Union, cast

import attrs
from OpenSSL.crypto import X509
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure

from secudoc_gateway.interfaces import IConnection
from secudoc_gateway.replies import Reply


class _Silent:
    def __repr__(self) -> str:
        return "SILENT"


class _Disconnect:
    def __repr__(self) -> str:
        return "DISCONNECT"


SILENT: Any = _Silent()
"""A programmed "reply" that is never sent: the stage hangs (timeout tests)."""

DISCONNECT: Any = _Disconnect()
"""A programmed "reply" that closes the connection instead of answering."""

MAX_COMMAND_LINE = 4096

ProgrammedReply = Union[Reply, _Silent, _Disconnect]


@attrs.frozen
class SinkMessage:
    """One message the sink accepted."""

    sender: str
    recipients: tuple[str, ...]
    data: bytes
    parameters: tuple[str, ...]  # MAIL parameters as sent, e.g. "SIZE=123"
    method: str  # "DATA" or "BDAT"
    tls: bool
    clientSubject: Optional[str]  # CN of the client certificate presented
    helo: str


class _Received:
    """One message's bytes: kept, or only counted."""

    def __init__(self, factory: "SinkServerFactory") -> None:
        self._factory = factory
        self._pieces: Optional[list[bytes]] = [] if factory.store else None
        self.size = 0

    def write(self, data: bytes) -> None:
        self.size += len(data)
        self._factory.dataBytes += len(data)
        if self._pieces is not None and data:
            self._pieces.append(data)

    def data(self) -> bytes:
        return b"".join(self._pieces) if self._pieces is not None else b""


class SinkServerProtocol(Protocol):
    factory: SinkServerFactory
    transport: IConnection

    def __init__(self) -> None:
        self._buffer = b""
        self._mode = "command"  # "command" | "data" | "bdat" | "refused"
        self._tls = False
        self._helo: Optional[str] = None
        self._reset()
        # DATA: the pending content always starts at a line start that
        # follows a CRLF, virtual for the first line (see _dataMode).
        self._dataBuffer = b""
        self._dataFirst = True
        self._bdatRemaining = 0
        self._bdatLast = False
        self._bdatOk = False
        self._batch: list[str] = []

    def _reset(self) -> None:
        self._sender: Optional[str] = None
        self._recipients: list[str] = []
        self._parameters: tuple[str, ...] = ()
        self._received: Optional[_Received] = None

    # plumbing

    def _programmed(self, stage: str, default: Reply) -> Optional[Reply]:
        """
        The reply for ``stage``; ``None`` when programmed SILENT or
        DISCONNECT (then the connection is closing).
        """
        reply = self.factory.replies.get(stage, default)
        if isinstance(reply, Reply):
            return reply
        if reply is DISCONNECT:
            self.transport.loseConnection()
        return None

    def _send(self, reply: Optional[Reply]) -> None:
        """Send ``reply``; a 421 closes the connection (RFC 5321 3.8)."""
        if reply is not None:
            self.transport.write(reply.toBytes())
            if reply.code == 421:
                self.transport.loseConnection()

    def connectionMade(self) -> None:
        self.factory._opened(self)
        greeting = self._programmed("greeting", Reply(220, "", f"{self.factory.hostname} ESMTP sink"))
        self._send(greeting)
        if greeting is None or greeting.code != 220:
            self._mode = "refused"
            if greeting is not None and greeting.code == 421:
                self.transport.loseConnection()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.factory._closed(self)

    def dataReceived(self, data: bytes) -> None:
        self._buffer += data
        self._batch = []
        self._process()
        if self._batch and self.factory.store:
            self.factory.batches.append(tuple(self._batch))

    def _process(self) -> None:
        while self._buffer and getattr(self.transport, "connected", False) and not getattr(self.transport, "disconnecting", False):
            if self._mode == "data":
                if not self._dataMode():
                    return
            elif self._mode == "bdat":
                self._bdatMode()
            else:
                end = self._buffer.find(b"\r\n")
                if end < 0:
                    if len(self._buffer) > MAX_COMMAND_LINE:
                        self._send(Reply(500, "5.5.6", "Line too long"))
                        self.transport.loseConnection()
                    return
                line, self._buffer = self._buffer[:end], self._buffer[end + 2 :]
                text = line.decode("utf-8", "replace")
                self._batch.append(text)
                self._command(text)

    # commands

    def _command(self, line: str) -> None:
        verb, _, argument = line.partition(" ")
        verb = verb.upper()
        if verb == "QUIT":
            self._send(Reply(221, "2.0.0", "Bye"))
            self.transport.loseConnection()
            return
        if self._mode == "refused":
            self._send(Reply(503, "5.5.1", "Bad sequence of commands"))
            return
        handler = getattr(self, "_smtp_" + verb, None)
        if handler is None:
            self._send(Reply(500, "5.5.2", "Command unrecognized"))
        else:
            handler(argument.strip())

    def _extensions(self) -> list[str]:
        f = self.factory
        lines = []
        if f.offerPipelining:
            lines.append("PIPELINING")
        lines.append(f"SIZE {f.maxSize}" if f.maxSize else "SIZE")
        if f.offer8BitMime:
            lines.append("8BITMIME")
        lines.append("ENHANCEDSTATUSCODES")
        if f.offerSmtpUtf8:
            lines.append("SMTPUTF8")
        if f.offerChunking:
            lines.append("CHUNKING")
        if f.offerStartTLS and not self._tls:
            lines.append("STARTTLS")
        return lines

    def _smtp_EHLO(self, argument: str) -> None:
        text = "\n".join([self.factory.hostname] + self._extensions())
        reply = self._programmed("ehlo", Reply(250, "", text))
        if reply is not None and reply.code == 250:
            self._helo = argument
            self._reset()
        self._send(reply)

    def _smtp_HELO(self, argument: str) -> None:
        reply = self._programmed("helo", Reply(250, "", self.factory.hostname))
        if reply is not None and reply.code == 250:
            self._helo = argument
            self._reset()
        self._send(reply)

    def _smtp_STARTTLS(self, argument: str) -> None:
        if not self.factory.offerStartTLS or self._tls:
            self._send(Reply(503, "5.5.1", "STARTTLS not available"))
            return
        reply = self._programmed("starttls", Reply(220, "2.0.0", "Ready to start TLS"))
        self._send(reply)
        if reply is not None and reply.code == 220:
            # RFC 3207 4.2: forget everything, including pipelined input.
            self._buffer = b""
            self._helo = None
            self._reset()
            self._tls = True
            self.transport.startTLS(self.factory.tlsOptions)

    def _smtp_NOOP(self, argument: str) -> None:
        self._send(Reply(250, "2.0.0", "Ok"))

    def _smtp_RSET(self, argument: str) -> None:
        self._reset()
        self._send(Reply(250, "2.0.0", "Ok"))

    def _smtp_MAIL(self, argument: str) -> None:
        if self._helo is None or self._sender is not None:
            self._send(Reply(503, "5.5.1", "Bad sequence of commands"))
            return
        if not argument.upper().startswith("FROM:<") or ">" not in argument:
            self._send(Reply(501, "5.5.4", "Syntax: MAIL FROM:<address>"))
            return
        address, _, rest = argument[6:].partition(">")
        reply = self._programmed("mail", Reply(250, "2.1.0", "Sender ok"))
        if reply is not None and reply.code == 250:
            self._sender = address
            self._parameters = tuple(rest.split())
        self._send(reply)

    def _smtp_RCPT(self, argument: str) -> None:
        if self._sender is None:
            self._send(Reply(503, "5.5.1", "Bad sequence of commands"))
            return
        if not argument.upper().startswith("TO:<") or ">" not in argument:
            self._send(Reply(501, "5.5.4", "Syntax: RCPT TO:<address>"))
            return
        address = argument[4:].partition(">")[0]
        default = self.factory.replies.get("rcpt", Reply(250, "2.1.5", "Recipient ok"))
        reply = self._programmed(f"rcpt:{address}", default)  # type: ignore[arg-type]
        if reply is not None and reply.code == 250:
            self._recipients.append(address)
        self._send(reply)

    def _smtp_DATA(self, argument: str) -> None:
        if self._sender is None:
            self._send(Reply(503, "5.5.1", "Bad sequence of commands"))
            return
        if not self._recipients:
            self._send(Reply(554, "5.5.1", "No valid recipients"))
            return
        reply = self._programmed("data", Reply(354, "", "End data with <CR><LF>.<CR><LF>"))
        self._send(reply)
        if reply is not None and reply.code == 354:
            self._mode = "data"
            self._received = _Received(self.factory)
            self._dataBuffer = b"\r\n"
            self._dataFirst = True

    def _smtp_BDAT(self, argument: str) -> None:
        words = argument.split()
        if not words or not words[0].isdigit() or len(words) > 2 or (
            len(words) == 2 and words[1].upper() != "LAST"
        ):
            self._send(Reply(501, "5.5.4", "Syntax: BDAT size [LAST]"))
            return
        # RFC 3030 2: the chunk is read even when the command fails.
        self._bdatRemaining = int(words[0])
        self._bdatLast = len(words) == 2
        self._bdatOk = self._sender is not None and bool(self._recipients)
        if self._bdatOk and self._received is None:
            self._received = _Received(self.factory)
        self._mode = "bdat"
        if self._bdatRemaining == 0:
            self._bdatChunkDone()

    # message data

    def _dataMode(self) -> bool:
        """
        Consume DATA content.  ``_dataBuffer`` starts right after a CRLF
        (the first one is the DATA command's), so both the end marker and
        a stuffed dot are ``CRLF .`` inside it; it is emitted up to its
        last CRLF, which keeps every line start next to its CRLF.
        """
        self._dataBuffer += self._buffer
        self._buffer = b""
        end = self._dataBuffer.find(b"\r\n.\r\n")
        if end >= 0:
            self._emitData(self._dataBuffer[: end + 2])
            self._buffer = self._dataBuffer[end + 5 :]
            self._dataBuffer = b""
            self._mode = "command"
            self._endOfMessage("DATA")
            return True
        cut = self._dataBuffer.rfind(b"\r\n")
        if cut > 0:
            self._emitData(self._dataBuffer[:cut])
            self._dataBuffer = self._dataBuffer[cut:]
        return False

    def _emitData(self, segment: bytes) -> None:
        data = segment.replace(b"\r\n.", b"\r\n")
        if self._dataFirst:
            data = data[2:]
            self._dataFirst = False
        assert self._received is not None
        self._received.write(data)

    def _bdatMode(self) -> None:
        take = min(self._bdatRemaining, len(self._buffer))
        piece, self._buffer = self._buffer[:take], self._buffer[take:]
        self._bdatRemaining -= take
        if self._bdatOk and self._received is not None:
            self._received.write(piece)
        if self._bdatRemaining == 0:
            self._bdatChunkDone()

    def _bdatChunkDone(self) -> None:
        self._mode = "command"
        if not self._bdatOk:
            self._send(Reply(503, "5.5.1", "Bad sequence of commands"))
            return
        if self._bdatLast:
            self._endOfMessage("BDAT")
        else:
            reply = self._programmed("bdat", Reply(250, "2.0.0", "Chunk received"))
            if reply is not None and reply.code != 250:
                # RFC 3030 2: a refused chunk fails the transaction.
                self._reset()
            self._send(reply)

    def _endOfMessage(self, method: str) -> None:
        f = self.factory
        received = self._received
        assert received is not None and self._sender is not None
        reply = self._programmed("message", Reply(250, "2.0.0", f"Ok: queued as {f.nextQueueId()}"))
        if reply is not None and reply.code == 250:
            f.messageCount += 1
            f.byteCount += received.size
            if f.store:
                f.messages.append(
                    SinkMessage(
                        sender=self._sender,
                        recipients=tuple(self._recipients),
                        data=received.data(),
                        parameters=self._parameters,
                        method=method,
                        tls=self._tls,
                        clientSubject=self._clientSubject(),
                        helo=self._helo or "",
                    )
                )
        self._reset()
        self._send(reply)

    def _clientSubject(self) -> Optional[str]:
        if not self._tls:
            return None
        certificate = cast(Optional[X509], cast(ISSLTransport, self.transport).getPeerCertificate())
        if certificate is None:
            return None
        name = certificate.get_subject().commonName
        return str(name) if name is not None else None


class SinkServerFactory(Factory):
    """
    ``replies`` maps a stage to the reply the sink gives there instead
    of its usual one: ``greeting``, ``ehlo``, ``helo``, ``starttls``,
    ``mail``, ``rcpt`` (or ``rcpt:<address>`` for one recipient),
    ``data`` (the DATA command), ``bdat`` (a BDAT chunk that is not the
    last) and ``message`` (the reply to the end of the data).  ``SILENT``
    means no reply at all, ``DISCONNECT`` closing the connection instead;
    a 421 reply closes it too.

    With ``store`` false only ``messageCount`` and ``byteCount`` (bytes
    of accepted messages) grow.  ``dataBytes`` counts message bytes as
    they arrive, accepted or not, finished or not.
    ``batches`` records, per read from the network, the commands that
    read carried (so a test can see pipelining); kept only with
    ``store``.
    """

    # A test may put a subclass here.  (Twisted types a protocol's factory
    # as a bare Factory; ours reads the sink's settings off it.)
    protocol = SinkServerProtocol  # type: ignore[assignment]

    def __init__(
        self,
        hostname: str = "sink.test",
        offerChunking: bool = True,
        offerPipelining: bool = True,
        offerStartTLS: bool = False,
        tlsOptions: Any = None,
        offer8BitMime: bool = True,
        offerSmtpUtf8: bool = True,
        maxSize: int = 0,
        replies: Optional[dict[str, ProgrammedReply]] = None,
        store: bool = True,
    ) -> None:
        if offerStartTLS and tlsOptions is None:
            raise ValueError("offerStartTLS needs tlsOptions")
        self.hostname = hostname
        self.offerChunking = offerChunking
        self.offerPipelining = offerPipelining
        self.offerStartTLS = offerStartTLS
        self.tlsOptions = tlsOptions
        self.offer8BitMime = offer8BitMime
        self.offerSmtpUtf8 = offerSmtpUtf8
        self.maxSize = maxSize
        self.replies: dict[str, ProgrammedReply] = dict(replies or {})
        self.store = store
        self.messages: list[SinkMessage] = []
        self.messageCount = 0
        self.byteCount = 0
        self.dataBytes = 0
        self.batches: list[tuple[str, ...]] = []
        self.connectionCount = 0
        self._queueIds = itertools.count(1)
        self._connections: set[SinkServerProtocol] = set()
        self._idleWaiters: list[Deferred] = []

    def buildProtocol(self, addr: Any) -> "SinkServerProtocol":  # type: ignore[override]
        p = self.protocol()
        p.factory = self
        return p

    def whenIdle(self) -> Deferred:
        """Fires when no connection to the sink is open."""
        if not self._connections:
            return defer.succeed(None)
        d: Deferred = Deferred()
        self._idleWaiters.append(d)
        return d

    def disconnectAll(self, reply: Optional[Reply] = None) -> None:
        """
        Close every open connection, saying ``reply`` first (say a 421,
        RFC 5321 3.8) or nothing: a server ending idle sessions.
        """
        for p in list(self._connections):
            if reply is not None:
                p.transport.write(reply.toBytes())
            p.transport.loseConnection()

    def sayToAll(self, reply: Reply) -> None:
        """Send ``reply`` on every open connection, unasked, and keep them open."""
        for p in list(self._connections):
            p.transport.write(reply.toBytes())

    def nextQueueId(self) -> str:
        return f"S{next(self._queueIds)}"

    def _opened(self, p: "SinkServerProtocol") -> None:
        self.connectionCount += 1
        self._connections.add(p)

    def _closed(self, p: "SinkServerProtocol") -> None:
        self._connections.discard(p)
        if not self._connections:
            waiters, self._idleWaiters = self._idleWaiters, []
            for d in waiters:
                d.callback(None)
