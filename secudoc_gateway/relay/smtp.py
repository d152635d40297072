"""
Relay targets: ESMTP to a tenant's Exchange Online inbound connector
(``SMTPRelay``), or a Maildir for the demo and tests (``MaildirRelay``,
in ``maildir.py``); ``relayFor`` picks one from a tenant's config.

Theory of operation (ESMTP).  ``client.py`` does the byte work without
I/O (replies in, DATA content out); ``connection.py`` is the thin
Twisted adapter for one connection; ``pool.py`` caches greeted
connections between messages.  ``SMTPRelay._greet`` and
``SMTPRelay._transaction`` here read top to bottom as the SMTP
conversation.

Failures map to ``RelayError``: only a 5xx to RCPT or to the message
data is permanent, because only then has the target judged the message
itself; everything else (connect, TLS, certificates, greeting, EHLO,
MAIL, 4xx, timeouts, lost connections) is temporary, so Exchange Online
keeps the message and retries (SPEC section 4).
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, ssl
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.protocol import Factory
from zope.interface import implementer

from secudoc_gateway import tls
from secudoc_gateway.config.values import Tenant
from secudoc_gateway.errors import RelayError
from secudoc_gateway.interfaces import IMessageSource, IRelay
from secudoc_gateway.relay.client import (
    DataEncoder,
    ProtocolViolation,
    ReplyReader,
    Timeouts,
    _judged,
    _temporary,
    describeReply,
    parseExtensions,
)
from secudoc_gateway.relay.connection import _ClientProtocol
from secudoc_gateway.relay.maildir import MaildirRelay
from secudoc_gateway.relay.pool import (
    DEFAULT_MAX_IDLE,
    DEFAULT_MAX_IDLE_TIME,
    DEFAULT_MAX_MESSAGES,
    ConnectionPool,
)
from secudoc_gateway.replies import Reply
from secudoc_gateway.targets import MaildirTarget, parseRelayTarget



def _replyOf(result: tuple[bool, Any]) -> Reply:
    """The reply from a ``DeferredList`` result, or its failure raised."""
    ok, value = result
    if not ok:
        value.raiseException()
    return value


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

    Connections are cached in ``pool`` (see ``pool.py``): at most
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
        self.endpoint = _endpointFor(reactor, host, port, timeouts.connect)
        self._factory = Factory.forProtocol(lambda: _ClientProtocol(self._reactor, self.timeouts))
        self._tlsOptions: Any = None
        self.pool = ConnectionPool(reactor, maxIdle, maxIdleTime, maxMessages)

    @property
    def idleConnections(self) -> int:
        """How many connections wait in the cache."""
        return self.pool.idleConnections

    def whenIdle(self) -> Deferred:
        """Fires when every connection this relay opened, busy or cached, has closed."""
        return self.pool.whenIdle()

    def closeIdle(self) -> Deferred:
        """QUIT the cached connections: ``ConnectionPool.closeIdle``."""
        return self.pool.closeIdle()

    def close(self) -> Deferred:
        """For shutdown: ``ConnectionPool.close``."""
        return self.pool.close()

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
        proto = self.pool.take()
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

    async def _dial(self) -> _ClientProtocol:
        try:
            proto = await self.endpoint.connect(self._factory)
        except defer.CancelledError:
            raise
        except Exception as e:
            raise RelayError("connect", f"cannot connect to {self.host}:{self.port}: {e}")
        self.pool.add(proto)
        return proto

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
            self.pool.afterRefusal(proto, e, self.timeouts.command)
            raise
        except Exception as e:
            proto.quit()
            raise _relayError(e)
        self.pool.release(proto)
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


def relayFor(tenant: Tenant, hostname: str, reactor: Any, timeouts: Timeouts = Timeouts()) -> IRelay:
    """The relay target a tenant's config names; ``hostname`` is our EHLO name."""
    target = parseRelayTarget(tenant.relay)
    if isinstance(target, MaildirTarget):
        return MaildirRelay(target.path, reactor)
    return SMTPRelay(
        reactor,
        target.host,
        target.port,
        hostname,
        requireTLS=tenant.relay_require_tls,
        caFile=tenant.relay_ca_file,
        clientCertificate=tenant.relay_tls_certificate,
        timeouts=timeouts,
    )


__all__ = [
    "DataEncoder",
    "MaildirRelay",
    "ProtocolViolation",
    "ReplyReader",
    "SMTPRelay",
    "Timeouts",
    "describeReply",
    "parseExtensions",
    "relayFor",
]
