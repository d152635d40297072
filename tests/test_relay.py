"""
Tests for secudoc_gateway.relay.smtp: the ESMTP relay client against the
sink server over real sockets and real TLS (the connection cache
included), the Maildir target, and the plain helpers (reply reader,
DATA encoder, target parsing).
"""

from __future__ import annotations

import os
import socket
from typing import Any, Callable, Iterator, Optional, Sequence

import attrs
from twisted.internet import defer, reactor
from twisted.internet.defer import CancelledError, gatherResults
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from secudoc_gateway import devcert, tls
from secudoc_gateway.envelope import Envelope
from secudoc_gateway.errors import RelayError
from secudoc_gateway.interfaces import IMessageSource, IRelay
from secudoc_gateway.targets import MaildirTarget, SMTPTarget, parseRelayTarget
from secudoc_gateway.relay.smtp import (
    DataEncoder,
    MaildirRelay,
    ProtocolViolation,
    ReplyReader,
    SMTPRelay,
    Timeouts,
    describeReply,
    parseExtensions,
    relayFor,
)
from secudoc_gateway.replies import Reply
from secudoc_gateway.testing.polling import until
from secudoc_gateway.testing.smtp import DISCONNECT, SILENT, SinkServerFactory, SinkServerProtocol


@implementer(IMessageSource)
class Message:
    """A message as an ``IMessageSource``: bytes handed out in chunks."""

    def __init__(self, data: bytes, chunkSize: int = 65536) -> None:
        self.data = data
        self.size = len(data)
        self._chunkSize = chunkSize

    def chunks(self) -> Iterator[bytes]:
        for at in range(0, len(self.data), self._chunkSize):
            yield self.data[at : at + self._chunkSize]


@implementer(IMessageSource)
class WatchedMessage:
    """
    A large message made on the fly.  Each time a chunk is pulled it
    records how many bytes were written out but not yet received by the
    sink, to show flow control.
    """

    def __init__(self, received: Callable[[], int], chunks: int, chunkSize: int = 65536) -> None:
        self._received = received
        self._count = chunks
        self._chunk = b"x" * (chunkSize - 2) + b"\r\n"
        self.size = chunks * chunkSize
        self.inFlight: list[int] = []

    def chunks(self) -> Iterator[bytes]:
        for i in range(self._count):
            self.inFlight.append(i * len(self._chunk) - self._received())
            yield self._chunk


@implementer(IMessageSource)
class BrokenMessage:
    size = 100

    def chunks(self) -> Iterator[bytes]:
        yield b"Subject: x\r\n"
        raise OSError("spool vanished")


@attrs.frozen
class Certificates:
    ca: str  # CA certificate only
    server: str  # localhost, issued by ca
    client: str  # secudoc.example.nl, client usage, issued by ca
    otherCA: str  # a CA that issued none of them
    selfSigned: str  # a server certificate nobody vouches for


def makeCertificates(folder: str) -> Certificates:
    os.makedirs(folder, exist_ok=True)
    ca = devcert.makeCA()
    other = devcert.makeCA("another CA")

    def write(name: str, pem: bytes) -> str:
        path = os.path.join(folder, name)
        with open(path, "wb") as f:
            f.write(pem)
        return path

    return Certificates(
        ca=write("ca.pem", ca.certificatePEM()),
        server=devcert.issue(ca, "localhost", ["localhost", "127.0.0.1"]).writeTo(
            os.path.join(folder, "server.pem")
        ),
        client=devcert.issue(ca, "secudoc.example.nl", client=True).writeTo(
            os.path.join(folder, "client.pem")
        ),
        otherCA=write("other.pem", other.certificatePEM()),
        selfSigned=devcert.issue(None, "localhost", ["localhost", "127.0.0.1"]).writeTo(
            os.path.join(folder, "self.pem")
        ),
    )


ENVELOPE = Envelope(sender="alice@example.test", recipients=("bob@external.test", "eve@other.test"))
MESSAGE = (
    b"From: alice@example.test\r\n"
    b"To: bob@external.test\r\n"
    b"Subject: test\r\n"
    b"X-SecuDoc: 1.0\r\n"
    b"\r\n"
    b"Hello Bob.\r\n"
)
FAST = Timeouts(connect=5, greeting=5, command=5, tls=5, dataInitiation=5, dataBlock=5, dataTermination=5)


class RelayTestCase(TestCase):
    """Starts sinks and relays, and leaves no connection behind."""

    def setUp(self) -> None:
        self.certs = makeCertificates(self.mktemp())

    def sink(self, **kwargs: Any) -> tuple[SinkServerFactory, int]:
        factory = SinkServerFactory(**kwargs)
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(factory.whenIdle)
        self.addCleanup(port.stopListening)
        return factory, port.getHost().port

    def tlsSink(self, requireClientCertificate: bool = True, pem: str = "", **kwargs: Any):
        options = tls.serverOptions(
            pem or self.certs.server, clientCA=self.certs.ca if requireClientCertificate else None
        )
        return self.sink(offerStartTLS=True, tlsOptions=options, **kwargs)

    def relay(self, port: int, host: str = "localhost", **kwargs: Any) -> SMTPRelay:
        kwargs.setdefault("timeouts", FAST)
        relay = SMTPRelay(reactor, host, port, "gateway.test", **kwargs)
        self.addCleanup(relay.whenIdle)
        self.addCleanup(relay.closeIdle)  # runs first: cached connections QUIT now
        return relay

    def tlsRelay(self, port: int, **kwargs: Any) -> SMTPRelay:
        kwargs.setdefault("caFile", self.certs.ca)
        kwargs.setdefault("clientCertificate", self.certs.client)
        return self.relay(port, **kwargs)

    async def failure(self, relay: SMTPRelay, envelope: Envelope = ENVELOPE, message: Any = None) -> RelayError:
        d = relay.send(envelope, message or Message(MESSAGE))
        error = await self.assertFailure(d, RelayError)
        return error


class InjectingSink(SinkServerProtocol):
    """Sends a forged EHLO reply, in the clear, right behind its 220 to STARTTLS."""

    def _send(self, reply: Optional[Reply]) -> None:
        if reply is not None and reply.code == 220 and reply.enhanced == "2.0.0":
            self.transport.write(reply.toBytes() + b"250 forged\r\n")
            return
        super()._send(reply)


class TLSTests(RelayTestCase):
    async def test_clientCertificate(self) -> None:
        """
        Through STARTTLS to a target that requires a client certificate:
        the server certificate is verified, ours is presented, and the
        result is the target's final reply.
        """
        sink, port = self.tlsSink()
        result = await self.tlsRelay(port).send(ENVELOPE, Message(MESSAGE))
        self.assertEqual(result, "250 2.0.0 Ok: queued as S1")
        [m] = sink.messages
        self.assertTrue(m.tls)
        self.assertEqual(m.clientSubject, "secudoc.example.nl")
        self.assertEqual(m.data, MESSAGE)
        self.assertEqual(m.sender, "alice@example.test")
        self.assertEqual(m.recipients, ENVELOPE.recipients)
        self.assertEqual(m.helo, "gateway.test")

    async def test_noClientCertificate(self) -> None:
        """A refused (here: missing) client certificate is temporary."""
        sink, port = self.tlsSink()
        error = await self.failure(self.tlsRelay(port, clientCertificate=""))
        self.assertFalse(error.permanent)
        self.assertEqual(error.kind, "tls")
        self.assertEqual(sink.messages, [])

    async def test_clientCertificateFromOtherCA(self) -> None:
        sink, port = self.tlsSink()
        stranger = devcert.issue(devcert.makeCA("stranger"), "x.test", client=True)
        path = stranger.writeTo(os.path.join(self.mktemp(), "stranger.pem"))
        error = await self.failure(self.tlsRelay(port, clientCertificate=path))
        self.assertFalse(error.permanent)
        self.assertEqual(error.kind, "tls")
        self.assertEqual(sink.messages, [])

    async def test_wrongCA(self) -> None:
        """A server certificate our CA file does not vouch for: temporary "tls"."""
        sink, port = self.tlsSink()
        error = await self.failure(self.tlsRelay(port, caFile=self.certs.otherCA))
        self.assertEqual(error.kind, "tls")
        self.assertFalse(error.permanent)
        self.assertEqual(sink.messages, [])

    async def test_wrongName(self) -> None:
        """A certificate for another name than the one we connect to: temporary "tls"."""
        ca = devcert.makeCA()
        caPath = os.path.join(self.mktemp(), "ca.pem")
        os.makedirs(os.path.dirname(caPath))
        with open(caPath, "wb") as f:
            f.write(ca.certificatePEM())
        pem = devcert.issue(ca, "localhost", ["localhost"]).writeTo(os.path.join(os.path.dirname(caPath), "s.pem"))
        sink, port = self.tlsSink(requireClientCertificate=False, pem=pem)
        error = await self.failure(self.tlsRelay(port, host="127.0.0.1", caFile=caPath))
        self.assertEqual((error.kind, error.permanent), ("tls", False))
        self.assertEqual(sink.messages, [])

    async def test_requiredButNotOffered(self) -> None:
        sink, port = self.sink()
        error = await self.failure(self.tlsRelay(port))
        self.assertEqual(error.kind, "tls")
        self.assertFalse(error.permanent)
        self.assertNotIn("MAIL", " ".join(c for b in sink.batches for c in b))

    async def test_starttlsRefused(self) -> None:
        sink, port = self.tlsSink(replies={"starttls": Reply(454, "4.7.0", "TLS not available")})
        error = await self.failure(self.tlsRelay(port))
        self.assertEqual(error.kind, "tls")
        self.assertFalse(error.permanent)
        self.assertEqual(error.reply, Reply(454, "4.7.0", "TLS not available"))

    async def test_notRequiredPlain(self) -> None:
        """relay_require_tls = false: a target without STARTTLS is fine."""
        sink, port = self.sink()
        result = await self.relay(port, requireTLS=False).send(ENVELOPE, Message(MESSAGE))
        self.assertTrue(result.startswith("250 "))
        [m] = sink.messages
        self.assertFalse(m.tls)
        self.assertEqual(m.data, MESSAGE)

    async def test_notRequiredOpportunistic(self) -> None:
        """
        Without require_tls, TLS is used when offered and the server
        certificate is not verified (opportunistic TLS); the client
        certificate is still presented.
        """
        sink, port = self.tlsSink(pem=self.certs.selfSigned)
        relay = self.relay(port, requireTLS=False, clientCertificate=self.certs.client)
        await relay.send(ENVELOPE, Message(MESSAGE))
        [m] = sink.messages
        self.assertTrue(m.tls)
        self.assertEqual(m.clientSubject, "secudoc.example.nl")

    async def test_responseInjection(self) -> None:
        """
        Replies sent in the clear right after the 220 to STARTTLS are
        dropped, not taken as answers inside TLS (RFC 3207 4.2).
        """
        sink, port = self.tlsSink()
        sink.protocol = InjectingSink
        await self.tlsRelay(port).send(ENVELOPE, Message(MESSAGE))
        [m] = sink.messages
        self.assertTrue(m.tls)
        self.assertEqual(m.data, MESSAGE)

    async def test_unreadableCertificate(self) -> None:
        sink, port = self.tlsSink()
        error = await self.failure(self.tlsRelay(port, clientCertificate=os.path.join(self.mktemp(), "none.pem")))
        self.assertEqual(error.kind, "tls")
        self.assertFalse(error.permanent)


class DataTests(RelayTestCase):
    TRICKY = (
        b"Subject: dots\n"
        b"\n"
        b".leading dot\r\n"
        b"..two dots\n"
        b".\n"
        b"middle . dot\r\n"
        b"bare\rcr\r\n"
        b"\r\n.\r\n"
        b"no final line end"
    )
    # What the target must store after DATA: line ends made CRLF, the
    # dots restored by its unstuffing, a final CRLF added.
    TRICKY_OVER_DATA = (
        b"Subject: dots\r\n"
        b"\r\n"
        b".leading dot\r\n"
        b"..two dots\r\n"
        b".\r\n"
        b"middle . dot\r\n"
        b"bare\r\ncr\r\n"
        b"\r\n.\r\n"
        b"no final line end\r\n"
    )

    async def test_bdatByteExact(self) -> None:
        """BDAT carries the message as it is: no stuffing, no line-end changes."""
        sink, port = self.sink()
        for chunkSize in (1, 7, 65536):
            await self.relay(port, requireTLS=False).send(ENVELOPE, Message(self.TRICKY, chunkSize))
        self.assertEqual([m.data for m in sink.messages], [self.TRICKY] * 3)
        self.assertEqual({m.method for m in sink.messages}, {"BDAT"})

    async def test_bdatEmpty(self) -> None:
        sink, port = self.sink()
        await self.relay(port, requireTLS=False).send(ENVELOPE, Message(b""))
        [m] = sink.messages
        self.assertEqual(m.data, b"")
        self.assertIn("BDAT 0 LAST", [c for b in sink.batches for c in b])

    async def test_bdatWithoutPipelining(self) -> None:
        """Without PIPELINING each BDAT waits for its reply: one command per read."""
        sink, port = self.sink(offerPipelining=False)
        data = b"".join(b"line %d\r\n" % i for i in range(20000))
        await self.relay(port, requireTLS=False).send(ENVELOPE, Message(data, 10000))
        self.assertEqual(sink.messages[0].data, data)
        bdats = [c for b in sink.batches for c in b if c.startswith("BDAT")]
        self.assertEqual(len(bdats), len(range(0, len(data), 10000)))
        self.assertTrue(bdats[-1].endswith(" LAST"))
        for batch in sink.batches:
            self.assertEqual(len(batch), 1, batch)

    async def test_dataStuffing(self) -> None:
        """DATA: bare LF and CR made CRLF, dots stuffed, at any chunk split."""
        sink, port = self.sink(offerChunking=False)
        for chunkSize in (1, 2, 3, 5, 65536):
            await self.relay(port, requireTLS=False).send(ENVELOPE, Message(self.TRICKY, chunkSize))
        self.assertEqual([m.data for m in sink.messages], [self.TRICKY_OVER_DATA] * 5)
        self.assertEqual({m.method for m in sink.messages}, {"DATA"})

    async def test_dataExact(self) -> None:
        """A well-formed message arrives byte for byte through DATA."""
        sink, port = self.sink(offerChunking=False, offerPipelining=False)
        await self.relay(port, requireTLS=False).send(ENVELOPE, Message(MESSAGE))
        self.assertEqual(sink.messages[0].data, MESSAGE)

    async def test_dataEmpty(self) -> None:
        sink, port = self.sink(offerChunking=False)
        await self.relay(port, requireTLS=False).send(ENVELOPE, Message(b""))
        self.assertEqual(sink.messages[0].data, b"")

    async def test_flowControl(self) -> None:
        """
        A 48 MiB message: the relay pulls the next chunk only when the
        transport wants more, so what is in flight stays far below the
        message size (it would be the whole message if the relay wrote
        everything at once).
        """
        for chunking in (True, False):
            sink, port = self.sink(store=False, offerChunking=chunking)
            message = WatchedMessage(lambda sink=sink: sink.dataBytes, chunks=768)
            await self.relay(port, requireTLS=False).send(ENVELOPE, message)
            self.assertEqual(sink.byteCount, message.size)
            self.assertLess(max(message.inFlight), 16 << 20)

    async def test_sourceFails(self) -> None:
        """The spool failing mid-message is temporary, and nothing is delivered."""
        for chunking in (True, False):
            sink, port = self.sink(offerChunking=chunking)
            error = await self.failure(self.relay(port, requireTLS=False), message=BrokenMessage())
            self.assertEqual(error.kind, "data")
            self.assertFalse(error.permanent)
            await sink.whenIdle()
            self.assertEqual(sink.messages, [])


class ParameterTests(RelayTestCase):
    async def test_pipelining(self) -> None:
        """With PIPELINING, MAIL, the RCPTs and DATA go in one write."""
        sink, port = self.sink(offerChunking=False)
        await self.relay(port, requireTLS=False).send(ENVELOPE, Message(MESSAGE))
        self.assertIn(
            (
                "MAIL FROM:<alice@example.test> SIZE=%d" % len(MESSAGE),
                "RCPT TO:<bob@external.test>",
                "RCPT TO:<eve@other.test>",
                "DATA",
            ),
            sink.batches,
        )

    async def test_pipeliningChunking(self) -> None:
        sink, port = self.sink()
        await self.relay(port, requireTLS=False).send(ENVELOPE, Message(MESSAGE))
        self.assertIn(
            (
                "MAIL FROM:<alice@example.test> SIZE=%d" % len(MESSAGE),
                "RCPT TO:<bob@external.test>",
                "RCPT TO:<eve@other.test>",
            ),
            sink.batches,
        )

    async def test_noPipelining(self) -> None:
        sink, port = self.sink(offerPipelining=False, offerChunking=False)
        relay = self.relay(port, requireTLS=False)
        await relay.send(ENVELOPE, Message(MESSAGE))
        await relay.closeIdle()
        await sink.whenIdle()
        commands = [c for b in sink.batches for c in b]
        self.assertEqual(
            commands,
            [
                "EHLO gateway.test",
                "MAIL FROM:<alice@example.test> SIZE=%d" % len(MESSAGE),
                "RCPT TO:<bob@external.test>",
                "RCPT TO:<eve@other.test>",
                "DATA",
                "QUIT",
            ],
        )
        self.assertEqual(sink.messages[0].data, MESSAGE)

    async def test_bodyAndSmtputf8(self) -> None:
        sink, port = self.sink()
        envelope = Envelope(
            sender="jürgen@example.test", recipients=("zoë@external.test",), body="8BITMIME", smtputf8=True
        )
        await self.relay(port, requireTLS=False).send(envelope, Message(MESSAGE))
        [m] = sink.messages
        self.assertEqual(m.parameters, ("SIZE=%d" % len(MESSAGE), "BODY=8BITMIME", "SMTPUTF8"))
        self.assertEqual(m.sender, "jürgen@example.test")
        self.assertEqual(m.recipients, ("zoë@external.test",))

    async def test_notOffered(self) -> None:
        """BODY=8BITMIME is sent only when the target offers 8BITMIME."""
        sink, port = self.sink(offer8BitMime=False, offerSmtpUtf8=False)
        envelope = Envelope(sender="a@example.test", recipients=("b@x.test",), body="8BITMIME", smtputf8=True)
        await self.relay(port, requireTLS=False).send(envelope, Message(MESSAGE))
        self.assertEqual(sink.messages[0].parameters, ("SIZE=%d" % len(MESSAGE),))

    async def test_utf8AddressWithoutSmtputf8(self) -> None:
        sink, port = self.sink(offerSmtpUtf8=False)
        envelope = Envelope(sender="jürgen@example.test", recipients=("b@x.test",), smtputf8=True)
        error = await self.failure(self.relay(port, requireTLS=False), envelope)
        self.assertEqual(error.kind, "mail")
        self.assertFalse(error.permanent)

    async def test_nullSender(self) -> None:
        sink, port = self.sink()
        await self.relay(port, requireTLS=False).send(Envelope(sender="", recipients=("b@x.test",)), Message(MESSAGE))
        self.assertEqual(sink.messages[0].sender, "")

    async def test_heloFallback(self) -> None:
        """EHLO refused with 5xx: HELO, when TLS is not required."""
        sink, port = self.sink(replies={"ehlo": Reply(502, "5.5.1", "No EHLO here")})
        await self.relay(port, requireTLS=False).send(ENVELOPE, Message(b"a\nb"))
        [m] = sink.messages
        self.assertEqual((m.method, m.parameters, m.data), ("DATA", (), b"a\r\nb\r\n"))


class ErrorTests(RelayTestCase):
    """SPEC section 4: only a 5xx to RCPT or to the data is permanent."""

    async def check(
        self,
        replies: dict,
        kind: str,
        permanent: bool,
        reply: Optional[Reply] = None,
        **sinkOptions: Any,
    ) -> RelayError:
        sink, port = self.sink(replies=replies, **sinkOptions)
        relay = self.relay(port, requireTLS=False)
        error = await self.failure(relay)
        self.assertEqual((error.kind, error.permanent), (kind, permanent))
        if reply is not None:
            self.assertEqual(error.reply, reply)
        await relay.closeIdle()
        await sink.whenIdle()
        self.assertEqual(sink.messages, [])
        return error

    async def test_greeting5xx(self) -> None:
        await self.check({"greeting": Reply(554, "5.7.1", "Go away")}, "greeting", False, Reply(554, "5.7.1", "Go away"))

    async def test_greeting4xx(self) -> None:
        await self.check({"greeting": Reply(421, "4.3.2", "Busy")}, "greeting", False)

    async def test_ehlo5xxTLSRequired(self) -> None:
        """With TLS required there is no HELO fallback: temporary."""
        sink, port = self.sink(replies={"ehlo": Reply(550, "5.7.1", "No")})
        error = await self.failure(self.tlsRelay(port))
        self.assertEqual((error.kind, error.permanent), ("ehlo", False))

    async def test_ehloAndHelo5xx(self) -> None:
        await self.check(
            {"ehlo": Reply(550, "5.7.1", "No"), "helo": Reply(550, "5.7.1", "Nor that")},
            "ehlo", False, Reply(550, "5.7.1", "Nor that"),
        )

    async def test_mail4xx(self) -> None:
        for pipelining in (True, False):
            await self.check(
                {"mail": Reply(451, "4.3.0", "Try later")}, "mail", False, Reply(451, "4.3.0", "Try later"),
                offerPipelining=pipelining,
            )

    async def test_mail5xx(self) -> None:
        """5xx before the transaction is temporary: a bad connector setting must not bounce."""
        for pipelining in (True, False):
            await self.check(
                {"mail": Reply(550, "5.7.1", "Not for you")}, "mail", False, offerPipelining=pipelining
            )

    async def test_rcpt5xx(self) -> None:
        for pipelining in (True, False):
            for chunking in (True, False):
                error = await self.check(
                    {"rcpt": Reply(550, "5.1.1", "User unknown")}, "rcpt", True,
                    Reply(550, "5.1.1", "User unknown"),
                    offerPipelining=pipelining, offerChunking=chunking,
                )
                self.assertIn("User unknown", error.message)

    async def test_oneRecipient5xx(self) -> None:
        """
        All or nothing: one refused recipient fails the message even when
        the target already said 354 to a pipelined DATA (the relay then
        aborts instead of sending the data).
        """
        for pipelining in (True, False):
            for chunking in (True, False):
                await self.check(
                    {"rcpt:eve@other.test": Reply(550, "5.1.1", "Eve unknown")}, "rcpt", True,
                    Reply(550, "5.1.1", "Eve unknown"),
                    offerPipelining=pipelining, offerChunking=chunking,
                )

    async def test_rcpt4xx(self) -> None:
        await self.check({"rcpt": Reply(452, "4.2.2", "Mailbox full")}, "rcpt", False, Reply(452, "4.2.2", "Mailbox full"))

    async def test_rcpt4xxAnd5xx(self) -> None:
        """One temporary and one permanent refusal: the permanent one decides."""
        await self.check(
            {"rcpt:bob@external.test": Reply(452, "4.2.2", "Full"), "rcpt:eve@other.test": Reply(550, "5.1.1", "Gone")},
            "rcpt", True, Reply(550, "5.1.1", "Gone"),
        )

    async def test_dataCommand5xx(self) -> None:
        await self.check(
            {"data": Reply(554, "5.6.0", "No data for you")}, "data", True, offerChunking=False
        )

    async def test_data5xx(self) -> None:
        for chunking in (True, False):
            for pipelining in (True, False):
                await self.check(
                    {"message": Reply(550, "5.7.1", "Content rejected")}, "data", True,
                    Reply(550, "5.7.1", "Content rejected"),
                    offerChunking=chunking, offerPipelining=pipelining,
                )

    async def test_data4xx(self) -> None:
        for chunking in (True, False):
            await self.check(
                {"message": Reply(451, "4.3.0", "Later")}, "data", False, offerChunking=chunking
            )

    async def test_bdatChunk5xx(self) -> None:
        """A refused intermediate BDAT chunk is a refusal of the data."""
        for pipelining in (True, False):
            sink, port = self.sink(replies={"bdat": Reply(552, "5.3.4", "Too big")}, offerPipelining=pipelining)
            error = await self.failure(self.relay(port, requireTLS=False), message=Message(MESSAGE * 100, 100))
            self.assertEqual((error.kind, error.permanent, error.reply), ("data", True, Reply(552, "5.3.4", "Too big")))
            await sink.whenIdle()
            self.assertEqual(sink.messages, [])

    async def test_connectionRefused(self) -> None:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        error = await self.failure(self.relay(port, host="127.0.0.1", requireTLS=False))
        self.assertEqual((error.kind, error.permanent), ("connect", False))

    async def test_timeout(self) -> None:
        """No reply within the (RFC 5321 4.5.3.2, here shortened) timeout: temporary."""
        sink, port = self.sink(replies={"mail": SILENT}, offerPipelining=False)
        relay = self.relay(port, requireTLS=False, timeouts=attrs.evolve(FAST, command=0.3))
        error = await self.failure(relay)
        self.assertEqual((error.kind, error.permanent), ("timeout", False))
        self.assertIn("mail", error.message)

    async def test_greetingTimeout(self) -> None:
        sink, port = self.sink(replies={"greeting": SILENT})
        relay = self.relay(port, requireTLS=False, timeouts=attrs.evolve(FAST, greeting=0.3))
        error = await self.failure(relay)
        self.assertEqual((error.kind, error.permanent), ("timeout", False))

    async def test_dataTimeout(self) -> None:
        sink, port = self.sink(replies={"message": SILENT})
        relay = self.relay(port, requireTLS=False, timeouts=attrs.evolve(FAST, dataTermination=0.3))
        error = await self.failure(relay)
        self.assertEqual((error.kind, error.permanent), ("timeout", False))

    async def test_connectionLost(self) -> None:
        """The target hanging up mid-dialogue is temporary, at any stage."""
        for stage in ("greeting", "ehlo", "mail", "rcpt", "message"):
            sink, port = self.sink(replies={stage: DISCONNECT})
            error = await self.failure(self.relay(port, requireTLS=False))
            self.assertFalse(error.permanent)
            self.assertIn("connection lost", error.message)

    async def test_421(self) -> None:
        """421 closes the connection (RFC 5321 3.8): temporary, with the reply."""
        await self.check({"rcpt": Reply(421, "4.3.2", "Shutting down")}, "rcpt", False, Reply(421, "4.3.2", "Shutting down"))

    async def test_cancel(self) -> None:
        """Cancelling a send closes the connection."""
        sink, port = self.sink(replies={"mail": SILENT}, offerPipelining=False)
        relay = self.relay(port, requireTLS=False)
        d = relay.send(ENVELOPE, Message(MESSAGE))
        # Cancelled while the sink holds its MAIL unanswered, on an open connection.
        await until(lambda: any(c.upper().startswith("MAIL") for batch in sink.batches for c in batch), "the sink to see MAIL", 5)
        d.cancel()
        await self.assertFailure(d, CancelledError)
        self.assertEqual(sink.connectionCount, 1)
        await relay.whenIdle()
        await sink.whenIdle()


class TiredSink(SinkServerProtocol):
    """
    Takes one transaction per connection, then gives up on the next
    MAIL as ``factory.tired`` says: a 421 (like a server's messages per
    connection limit) or closing without a word.
    """

    def __init__(self) -> None:
        super().__init__()
        self._mails = 0

    def _smtp_MAIL(self, argument: str) -> None:
        self._mails += 1
        if self._mails > 1:
            tired = getattr(self.factory, "tired", DISCONNECT)
            if tired is DISCONNECT:
                self.transport.loseConnection()
            else:
                self._send(tired)
            return
        super()._smtp_MAIL(argument)


class CarrierSink(SinkServerProtocol):
    """Notes, per accepted message, the connection that carried it."""

    def _endOfMessage(self, method: str) -> None:
        before = len(self.factory.messages)
        super()._endOfMessage(method)
        if len(self.factory.messages) > before:
            self.factory.carriers.append(self)


OTHER = b"From: carol@example.test\r\nSubject: second\r\n\r\nA different body.\r\n"
BOB = Envelope(sender="alice@example.test", recipients=("bob@external.test",))
EVE = Envelope(sender="alice@example.test", recipients=("eve@other.test",))


def commands(sink: SinkServerFactory) -> list[str]:
    return [c for b in sink.batches for c in b]


class CacheTests(RelayTestCase):
    """The connection cache (Postfix-style): reuse, limits, a target that gave up."""

    timeout = 30

    async def test_reuseAfterLargeMessage(self) -> None:
        """
        A message large enough for the transport to pause the stream,
        then more on the same connection: the stream state starts afresh.
        """
        for chunking in (True, False):
            sink, port = self.sink(store=False, offerChunking=chunking)
            relay = self.relay(port, requireTLS=False)
            for _ in range(3):
                message = WatchedMessage(lambda sink=sink: sink.dataBytes, chunks=128)
                await relay.send(BOB, message)
            self.assertEqual(sink.byteCount, 3 * message.size)
            self.assertEqual(sink.connectionCount, 1)

    async def test_sequentialReuse(self) -> None:
        """
        Two messages one after the other share a connection: one
        greeting and EHLO, the second transaction pipelined as the first,
        both messages intact.
        """
        for chunking in (True, False):
            sink, port = self.sink(offerChunking=chunking)
            relay = self.relay(port, requireTLS=False)
            first = await relay.send(ENVELOPE, Message(MESSAGE))
            self.assertEqual(relay.idleConnections, 1)
            second = await relay.send(BOB, Message(OTHER, 7))
            self.assertEqual((first, second), ("250 2.0.0 Ok: queued as S1", "250 2.0.0 Ok: queued as S2"))
            self.assertEqual(sink.connectionCount, 1)
            self.assertEqual(
                [(m.sender, m.recipients, m.data) for m in sink.messages],
                [(ENVELOPE.sender, ENVELOPE.recipients, MESSAGE), (BOB.sender, BOB.recipients, OTHER)],
            )
            self.assertEqual([c for c in commands(sink) if c.startswith("EHLO")], ["EHLO gateway.test"])
            pipelined = ("MAIL FROM:<alice@example.test> SIZE=%d" % len(OTHER), "RCPT TO:<bob@external.test>")
            self.assertIn(pipelined if chunking else pipelined + ("DATA",), sink.batches)
            self.assertNotIn("QUIT", commands(sink))

    async def test_concurrent(self) -> None:
        """Sends at the same time take a connection each; later ones reuse them."""
        sink, port = self.sink()
        relay = self.relay(port, requireTLS=False)
        results = await gatherResults([relay.send(BOB, Message(b"m%d\r\n" % i)) for i in range(3)])
        self.assertEqual(len(set(results)), 3)
        self.assertEqual(sink.connectionCount, 3)
        self.assertEqual(relay.idleConnections, 3)
        await relay.send(BOB, Message(b"m3\r\n"))
        self.assertEqual(sink.connectionCount, 3)
        self.assertEqual(sorted(m.data for m in sink.messages), [b"m%d\r\n" % i for i in range(4)])

    async def test_lastInFirstOut(self) -> None:
        """The connection cached last is reused first (the others may time out)."""
        sink, port = self.sink()
        sink.protocol = CarrierSink
        sink.carriers = []
        relay = self.relay(port, requireTLS=False)
        finished: list[str] = []
        sends = [relay.send(BOB, Message(b"m%d\r\n" % i)).addCallback(finished.append) for i in range(3)]
        await gatherResults(sends)
        last = int(finished[-1].rpartition("S")[2]) - 1
        await relay.send(BOB, Message(b"m3\r\n"))
        self.assertEqual(sink.connectionCount, 3)
        self.assertIs(sink.carriers[3], sink.carriers[last])

    async def test_idleTimeout(self) -> None:
        """An idle connection QUITs when its idle time is up."""
        sink, port = self.sink()
        relay = self.relay(port, requireTLS=False, maxIdleTime=0.2)
        await relay.send(ENVELOPE, Message(MESSAGE))
        cached = reactor.seconds()
        self.assertEqual(relay.idleConnections, 1)
        await sink.whenIdle().addTimeout(5, reactor)
        self.assertGreaterEqual(reactor.seconds() - cached, 0.19)
        self.assertEqual(relay.idleConnections, 0)
        self.assertEqual(commands(sink)[-1], "QUIT")
        await relay.whenIdle()
        await relay.send(ENVELOPE, Message(MESSAGE))
        self.assertEqual(sink.connectionCount, 2)

    async def test_maxMessages(self) -> None:
        """A connection carries at most ``maxMessages`` transactions, then QUITs."""
        sink, port = self.sink()
        relay = self.relay(port, requireTLS=False, maxMessages=2)
        for i in range(5):
            await relay.send(BOB, Message(b"m%d\r\n" % i))
        self.assertEqual(sink.connectionCount, 3)
        self.assertEqual([m.data for m in sink.messages], [b"m%d\r\n" % i for i in range(5)])
        await until(lambda: commands(sink).count("QUIT") == 2, "two QUITs", 5)
        self.assertEqual(relay.idleConnections, 1)

    async def test_poolFull(self) -> None:
        """Beyond ``maxIdle`` the oldest idle connection QUITs."""
        sink, port = self.sink()
        relay = self.relay(port, requireTLS=False, maxIdle=2)
        await gatherResults([relay.send(BOB, Message(b"m%d\r\n" % i)) for i in range(3)])
        self.assertEqual(relay.idleConnections, 2)
        await until(lambda: commands(sink).count("QUIT") == 1, "one QUIT", 5)
        self.assertEqual(len(sink.messages), 3)

    async def test_noCache(self) -> None:
        """``maxIdle = 0``: one connection per message, as without a cache."""
        sink, port = self.sink()
        relay = self.relay(port, requireTLS=False, maxIdle=0)
        for i in range(2):
            await relay.send(BOB, Message(MESSAGE))
            await relay.whenIdle()
            await sink.whenIdle()
        self.assertEqual(sink.connectionCount, 2)
        self.assertEqual(commands(sink).count("QUIT"), 2)

    async def test_closedWhileIdle(self) -> None:
        """
        The target closing an idle connection, silently or after a 421,
        takes it out of the cache at once; the next send dials anew.
        """
        for reply in (None, Reply(421, "4.4.2", "Idle too long")):
            sink, port = self.sink()
            relay = self.relay(port, requireTLS=False, maxIdleTime=60)
            await relay.send(ENVELOPE, Message(MESSAGE))
            sink.disconnectAll(reply)
            await relay.whenIdle().addTimeout(5, reactor)
            self.assertEqual(relay.idleConnections, 0)
            result = await relay.send(BOB, Message(OTHER))
            self.assertEqual(result, "250 2.0.0 Ok: queued as S2")
            self.assertEqual(sink.connectionCount, 2)
            self.assertEqual([m.data for m in sink.messages], [MESSAGE, OTHER])

    async def test_spokeWhileIdle(self) -> None:
        """An unasked-for reply on an idle connection: it is dropped, not reused."""
        sink, port = self.sink()
        relay = self.relay(port, requireTLS=False, maxIdleTime=60)
        await relay.send(ENVELOPE, Message(MESSAGE))
        sink.sayToAll(Reply(250, "2.0.0", "Unasked"))
        await relay.whenIdle().addTimeout(5, reactor)
        self.assertEqual(relay.idleConnections, 0)
        await relay.send(BOB, Message(OTHER))
        self.assertEqual(sink.connectionCount, 2)
        self.assertEqual([m.data for m in sink.messages], [MESSAGE, OTHER])

    async def test_goneAtMailRetried(self) -> None:
        """
        A cached connection the target gives up on at MAIL (421, or
        closing) before accepting anything: the send goes again, once,
        on a new connection, and the message arrives once.
        """
        for tired in (Reply(421, "4.3.2", "Too many messages"), DISCONNECT):
            for pipelining in (True, False):
                sink, port = self.sink(offerPipelining=pipelining)
                sink.protocol = TiredSink
                sink.tired = tired
                relay = self.relay(port, requireTLS=False)
                await relay.send(ENVELOPE, Message(MESSAGE))
                result = await relay.send(BOB, Message(OTHER))
                self.assertEqual(result, "250 2.0.0 Ok: queued as S2")
                self.assertEqual(sink.connectionCount, 2)
                self.assertEqual([m.data for m in sink.messages], [MESSAGE, OTHER])

    async def test_retriedOnce(self) -> None:
        """The retry is on a new connection and happens once: its failure is the answer."""
        sink, port = self.sink()
        sink.protocol = TiredSink
        relay = self.relay(port, requireTLS=False)
        await relay.send(ENVELOPE, Message(MESSAGE))
        sink.replies["greeting"] = Reply(421, "4.3.2", "Not now")
        error = await self.failure(relay, BOB, Message(OTHER))
        self.assertEqual((error.kind, error.permanent, error.reply), ("greeting", False, Reply(421, "4.3.2", "Not now")))
        self.assertEqual(sink.connectionCount, 2)
        self.assertEqual([m.data for m in sink.messages], [MESSAGE])

    async def test_notRetriedAfterMail(self) -> None:
        """
        Once the target accepted MAIL on a cached connection, losing it
        (or a 421) fails the send: a retry could deliver the message twice.
        """
        for stage in ("rcpt", "message"):
            for refusal in (DISCONNECT, Reply(421, "4.3.2", "Going down")):
                sink, port = self.sink()
                relay = self.relay(port, requireTLS=False)
                await relay.send(ENVELOPE, Message(MESSAGE))
                sink.replies[stage] = refusal
                error = await self.failure(relay, BOB, Message(OTHER))
                self.assertFalse(error.permanent)
                self.assertEqual(error.kind, "rcpt" if stage == "rcpt" else "data")
                self.assertEqual(sink.connectionCount, 1)
                self.assertEqual([m.data for m in sink.messages], [MESSAGE])
                await relay.whenIdle()
                self.assertEqual(relay.idleConnections, 0)

    async def test_notRetriedWhenFresh(self) -> None:
        """A new connection lost at MAIL is not retried: only a cached one may be stale."""
        sink, port = self.sink(replies={"mail": DISCONNECT})
        error = await self.failure(self.relay(port, requireTLS=False))
        self.assertEqual((error.kind, error.permanent), ("mail", False))
        self.assertEqual(sink.connectionCount, 1)

    async def test_refusedThenReused(self) -> None:
        """
        A refused recipient or message leaves the connection usable:
        RSET, back to the cache, and the refusal is still permanent.
        """
        for pipelining in (True, False):
            for chunking in (True, False):
                sink, port = self.sink(
                    replies={"rcpt:eve@other.test": Reply(550, "5.1.1", "Eve unknown")},
                    offerPipelining=pipelining, offerChunking=chunking,
                )
                relay = self.relay(port, requireTLS=False)
                error = await self.failure(relay, EVE)
                self.assertEqual((error.kind, error.permanent, error.reply), ("rcpt", True, Reply(550, "5.1.1", "Eve unknown")))
                await until(lambda: relay.idleConnections == 1, "one idle connection", 5)
                self.assertIn("RSET", commands(sink))
                sink.replies["message"] = Reply(554, "5.6.0", "Content rejected")
                error = await self.failure(relay, BOB)
                self.assertEqual((error.kind, error.permanent), ("data", True))
                await until(lambda: relay.idleConnections == 1, "one idle connection", 5)
                del sink.replies["message"]
                await relay.send(BOB, Message(OTHER))
                self.assertEqual(sink.connectionCount, 1)
                self.assertEqual(commands(sink).count("RSET"), 2)
                self.assertEqual([(m.recipients, m.data) for m in sink.messages], [(BOB.recipients, OTHER)])

    async def test_refusedAfterPipelinedData(self) -> None:
        """
        One recipient refused after the pipelined DATA got its 354: the
        connection is aborted (an empty message would be delivered to
        the others otherwise), so it is not reused.
        """
        sink, port = self.sink(
            replies={"rcpt:eve@other.test": Reply(550, "5.1.1", "Eve unknown")}, offerChunking=False
        )
        relay = self.relay(port, requireTLS=False)
        error = await self.failure(relay)
        self.assertEqual((error.kind, error.permanent), ("rcpt", True))
        await relay.whenIdle()
        await relay.send(BOB, Message(OTHER))
        self.assertEqual(sink.connectionCount, 2)
        self.assertEqual([m.data for m in sink.messages], [OTHER])

    async def test_tlsReuse(self) -> None:
        """A cached STARTTLS connection with the client certificate: one handshake, two messages."""
        sink, port = self.tlsSink()
        relay = self.tlsRelay(port)
        await relay.send(ENVELOPE, Message(MESSAGE))
        await relay.send(BOB, Message(OTHER))
        self.assertEqual(sink.connectionCount, 1)
        self.assertEqual(commands(sink).count("STARTTLS"), 1)
        self.assertEqual([c for c in commands(sink) if c.startswith("EHLO")], ["EHLO gateway.test"] * 2)
        self.assertEqual(
            [(m.tls, m.clientSubject, m.data) for m in sink.messages],
            [(True, "secudoc.example.nl", MESSAGE), (True, "secudoc.example.nl", OTHER)],
        )

    async def test_closeIdle(self) -> None:
        """``closeIdle`` QUITs the cached connections; caching goes on."""
        sink, port = self.sink()
        relay = self.relay(port, requireTLS=False)
        await relay.send(ENVELOPE, Message(MESSAGE))
        await relay.closeIdle()
        self.assertEqual(relay.idleConnections, 0)
        await relay.whenIdle()
        await sink.whenIdle()
        self.assertEqual(commands(sink)[-1], "QUIT")
        await relay.send(ENVELOPE, Message(MESSAGE))
        self.assertEqual(relay.idleConnections, 1)

    async def test_close(self) -> None:
        """
        ``close`` (shutdown): cached connections QUIT, one busy now QUITs
        when its transaction ends, later sends still work, uncached.
        """
        sink, port = self.sink(replies={"message": SILENT})
        relay = self.relay(port, requireTLS=False)
        busy = relay.send(ENVELOPE, Message(MESSAGE))
        await until(lambda: sink.dataBytes == len(MESSAGE), "the whole message at the sink", 5)
        del sink.replies["message"]
        await relay.close()
        # The sink answers the end of the data only now.
        sink.sayToAll(Reply(250, "2.0.0", "Ok: late"))
        self.assertEqual(await busy, "250 2.0.0 Ok: late")
        self.assertEqual(relay.idleConnections, 0)
        await relay.whenIdle()
        await relay.send(BOB, Message(OTHER))
        self.assertEqual(relay.idleConnections, 0)
        await relay.whenIdle()
        await sink.whenIdle()
        self.assertEqual(commands(sink).count("QUIT"), 2)

    async def test_whenIdleCountsCached(self) -> None:
        """``whenIdle`` waits for cached connections too."""
        sink, port = self.sink()
        relay = self.relay(port, requireTLS=False)
        await relay.send(ENVELOPE, Message(MESSAGE))
        idle = relay.whenIdle()
        self.assertNoResult(idle)
        await relay.closeIdle()
        await idle

    async def test_ipLiterals(self) -> None:
        """IP literals connect without name resolution; names still resolve."""
        self.assertIsInstance(SMTPRelay(reactor, "127.0.0.1", 25, "gw.test").endpoint, TCP4ClientEndpoint)
        self.assertIsInstance(SMTPRelay(reactor, "::1", 25, "gw.test").endpoint, TCP6ClientEndpoint)
        self.assertIsInstance(SMTPRelay(reactor, "localhost", 25, "gw.test").endpoint, HostnameEndpoint)
        sink = SinkServerFactory()
        listening = reactor.listenTCP(0, sink, interface="::1")
        self.addCleanup(sink.whenIdle)
        self.addCleanup(listening.stopListening)
        for host, port in (("::1", listening.getHost().port), ("127.0.0.1", self.sink()[1])):
            relay = self.relay(port, host=host, requireTLS=False)
            self.assertTrue((await relay.send(ENVELOPE, Message(MESSAGE))).startswith("250 "))
        self.assertEqual([m.data for m in sink.messages], [MESSAGE])


class MaildirTests(TestCase):
    @defer.inlineCallbacks
    def test_format(self) -> Any:
        """The envelope as header lines, then the message; CRLF like the message."""
        path = os.path.join(self.mktemp(), "outbox")
        relay = MaildirRelay(path, reactor)
        verifyObject(IRelay, relay)
        result = yield relay.send(ENVELOPE, Message(MESSAGE, 10))
        self.assertEqual(sorted(os.listdir(path)), ["cur", "new", "tmp"])
        self.assertEqual(os.listdir(os.path.join(path, "tmp")), [])
        [name] = os.listdir(os.path.join(path, "new"))
        self.assertEqual(result, f"maildir {name}")
        with open(os.path.join(path, "new", name), "rb") as f:
            self.assertEqual(
                f.read(),
                b"Return-Path: <alice@example.test>\r\n"
                b"X-Envelope-To: bob@external.test\r\n"
                b"X-Envelope-To: eve@other.test\r\n" + MESSAGE,
            )

    @defer.inlineCallbacks
    def test_lfMessage(self) -> Any:
        path = self.mktemp()
        relay = MaildirRelay(path, reactor)
        yield relay.send(Envelope(sender="", recipients=("b@x.test",)), Message(b"Subject: x\n\nhi\n"))
        [name] = os.listdir(os.path.join(path, "new"))
        with open(os.path.join(path, "new", name), "rb") as f:
            self.assertEqual(f.read(), b"Return-Path: <>\nX-Envelope-To: b@x.test\nSubject: x\n\nhi\n")

    @defer.inlineCallbacks
    def test_unique(self) -> Any:
        path = self.mktemp()
        relay = MaildirRelay(path, reactor)
        results = yield defer.gatherResults([relay.send(ENVELOPE, Message(MESSAGE)) for _ in range(50)])
        self.assertEqual(len(set(results)), 50)
        self.assertEqual(len(os.listdir(os.path.join(path, "new"))), 50)

    @defer.inlineCallbacks
    def test_offTheReactorThreadInOrder(self) -> Any:
        """
        The copy and fsync run in the thread pool, never in the reactor
        thread, one at a time and in the order asked for: the names
        sort as the sends were made, each send fires in its turn.
        """
        from twisted.python.threadable import isInIOThread

        path = self.mktemp()
        relay = MaildirRelay(path, reactor)
        where: list[bool] = []
        running: list[int] = []
        atOnce: list[int] = []

        @implementer(IMessageSource)
        class Observed(Message):
            def chunks(self) -> Iterator[bytes]:
                running.append(1)
                where.append(isInIOThread())
                atOnce.append(len(running))
                yield from super().chunks()
                running.pop()

        fired: list[int] = []
        sends = []
        for n in range(20):
            d = relay.send(ENVELOPE, Observed(MESSAGE.replace(b"Subject:", b"Subject: %d" % n), 1000))
            sends.append(d.addCallback(lambda result, n=n: fired.append(n) or result))
        results = yield defer.gatherResults(sends)
        self.assertEqual(where, [False] * 20)
        self.assertEqual(max(atOnce), 1)
        self.assertEqual(fired, list(range(20)))
        names = sorted(os.listdir(os.path.join(path, "new")))
        self.assertEqual([f"maildir {name}" for name in names], results)
        for n, name in enumerate(names):
            with open(os.path.join(path, "new", name), "rb") as f:
                self.assertIn(b"Subject: %d " % n, f.read())

    @defer.inlineCallbacks
    def test_unwritable(self) -> Any:
        """A path that cannot be a Maildir: temporary "maildir" error."""
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("a file, not a folder")
        error = yield self.assertFailure(MaildirRelay(path, reactor).send(ENVELOPE, Message(MESSAGE)), RelayError)
        self.assertEqual((error.kind, error.permanent), ("maildir", False))

    @defer.inlineCallbacks
    def test_sourceFails(self) -> Any:
        path = self.mktemp()
        error = yield self.assertFailure(MaildirRelay(path, reactor).send(ENVELOPE, BrokenMessage()), RelayError)
        self.assertEqual((error.kind, error.permanent), ("maildir", False))
        self.assertEqual(os.listdir(os.path.join(path, "tmp")), [])
        self.assertEqual(os.listdir(os.path.join(path, "new")), [])


@attrs.frozen
class Tenant:
    relay: str
    relay_tls_certificate: str = ""
    relay_require_tls: bool = True
    relay_ca_file: str = ""


class TargetTests(SynchronousTestCase):
    def test_parse(self) -> None:
        self.assertEqual(parseRelayTarget("maildir:/var/outbox/x"), MaildirTarget("/var/outbox/x"))
        self.assertEqual(
            parseRelayTarget("smtp://contoso.mail.protection.outlook.com:25"),
            SMTPTarget("contoso.mail.protection.outlook.com", 25),
        )
        self.assertEqual(parseRelayTarget("smtp://[::1]:2525"), SMTPTarget("::1", 2525))
        # The port is part of the name (SPEC 3): config and relay agree.
        for bad in (
            "maildir:", "http://x:25", "smtp://", "smtp://relay.test", "smtp://u@x:25",
            "smtp://x:25/path", "smtp://x:99999", "x",
        ):
            self.assertRaises(ValueError, parseRelayTarget, bad)

    def test_relayFor(self) -> None:
        maildir = relayFor(Tenant("maildir:/tmp/outbox"), "gw.test", reactor)
        self.assertIsInstance(maildir, MaildirRelay)
        self.assertEqual(maildir.path, "/tmp/outbox")
        smtp = relayFor(
            Tenant("smtp://t.mail.protection.outlook.com:25", "/c.pem", False, "/ca.pem"), "gw.test", reactor
        )
        verifyObject(IRelay, smtp)
        assert isinstance(smtp, SMTPRelay)
        self.assertEqual(
            (smtp.host, smtp.port, smtp.heloName, smtp.requireTLS, smtp.caFile, smtp.clientCertificate),
            ("t.mail.protection.outlook.com", 25, "gw.test", False, "/ca.pem", "/c.pem"),
        )


class ReplyReaderTests(SynchronousTestCase):
    WIRE = (
        b"220 mx.test ESMTP\r\n"
        b"250-mx.test greets you\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 CHUNKING\r\n"
        b"550 5.1.1 User unknown\r\n"
        b"451-4.3.0 Line one\r\n451-4.3.0 Line two\r\n451 4.3.0\r\n"
        b"250\n"
    )
    EXPECTED = [
        Reply(220, "", "mx.test ESMTP"),
        Reply(250, "", "mx.test greets you\nPIPELINING\nSIZE 1000\nCHUNKING"),
        Reply(550, "5.1.1", "User unknown"),
        Reply(451, "4.3.0", "Line one\nLine two\n"),
        Reply(250, "", ""),
    ]

    def test_whole(self) -> None:
        self.assertEqual(ReplyReader().feed(self.WIRE), self.EXPECTED)

    def test_everySplit(self) -> None:
        for at in range(len(self.WIRE) + 1):
            reader = ReplyReader()
            self.assertEqual(reader.feed(self.WIRE[:at]) + reader.feed(self.WIRE[at:]), self.EXPECTED)

    def test_byteByByte(self) -> None:
        reader = ReplyReader()
        out = []
        for i in range(len(self.WIRE)):
            out += reader.feed(self.WIRE[i : i + 1])
        self.assertEqual(out, self.EXPECTED)

    def test_enhancedOnlyMatchingClass(self) -> None:
        self.assertEqual(ReplyReader().feed(b"250 5.0.0 odd\r\n"), [Reply(250, "", "5.0.0 odd")])

    def test_malformed(self) -> None:
        for wire in (b"hello\r\n", b"25 x\r\n", b"250x\r\n", b"650 x\r\n", b"250-a\r\n251 b\r\n", b"2" * 5000):
            self.assertRaises(ProtocolViolation, ReplyReader().feed, wire)

    def test_tooManyLines(self) -> None:
        self.assertRaises(ProtocolViolation, ReplyReader(maxLines=3).feed, b"250-a\r\n" * 4)

    def test_extensions(self) -> None:
        self.assertEqual(
            parseExtensions(self.EXPECTED[1]), {"PIPELINING": "", "SIZE": "1000", "CHUNKING": ""}
        )

    def test_describe(self) -> None:
        self.assertEqual(describeReply(Reply(250, "2.0.0", "Ok: queued as X")), "250 2.0.0 Ok: queued as X")
        self.assertEqual(describeReply(Reply(451, "", "a\nb")), "451 a b")


class DataEncoderTests(SynchronousTestCase):
    def encode(self, pieces: Sequence[bytes]) -> bytes:
        encoder = DataEncoder()
        return b"".join(encoder.feed(p) for p in pieces) + encoder.finish()

    def test_cases(self) -> None:
        cases = {
            b"": b".\r\n",
            b"a": b"a\r\n.\r\n",
            b"a\r\n": b"a\r\n.\r\n",
            b".": b"..\r\n.\r\n",
            b"a\n.b\n": b"a\r\n..b\r\n.\r\n",
            b"a\r.b\r": b"a\r\n..b\r\n.\r\n",
            b"\r\n.\r\n": b"\r\n..\r\n.\r\n",
            b"x.y\r\n..z": b"x.y\r\n...z\r\n.\r\n",
        }
        for raw, wire in cases.items():
            self.assertEqual(self.encode([raw]), wire, raw)

    def test_everySplit(self) -> None:
        """Any split of the input gives the same output."""
        raw = DataTests.TRICKY + b"\r\r\n\n\r.\r\n.."
        whole = self.encode([raw])
        for a in range(len(raw) + 1):
            for b in range(a, len(raw) + 1):
                self.assertEqual(self.encode([raw[:a], raw[a:b], raw[b:]]), whole, (a, b))

    def test_unstuffsBack(self) -> None:
        """What a receiver unstuffs is the input with CRLF line ends (round trip)."""
        raw = DataTests.TRICKY
        wire = self.encode([raw])
        self.assertTrue(wire.endswith(b"\r\n.\r\n"))
        self.assertEqual(wire.count(b"\r\n.\r\n"), 1)
        content = (b"\r\n" + wire[: -3]).replace(b"\r\n.", b"\r\n")[2:]
        self.assertEqual(content, DataTests.TRICKY_OVER_DATA)


class SinkTests(SynchronousTestCase):
    """The sink's own receiving, fed over an in-memory transport at every split."""

    DATA_SESSION = (
        b"EHLO c.test\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\n"
        b"..one\r\n.\r\r\n...\r\nx.\r\n.\r\n"
        b"MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nBDAT 5\r\n\r\n.\r\nBDAT 0 LAST\r\n"
        b"QUIT\r\n"
    )

    def session(self, pieces: Sequence[bytes], store: bool = True) -> SinkServerFactory:
        from twisted.internet.testing import StringTransport

        factory = SinkServerFactory(store=store)
        protocol = factory.buildProtocol(None)
        protocol.makeConnection(StringTransport())
        for piece in pieces:
            protocol.dataReceived(piece)
        return factory

    def test_everySplit(self) -> None:
        for at in range(len(self.DATA_SESSION) + 1):
            factory = self.session([self.DATA_SESSION[:at], self.DATA_SESSION[at:]])
            self.assertEqual(
                [(m.method, m.data) for m in factory.messages],
                [("DATA", b".one\r\n\r\r\n..\r\nx.\r\n"), ("BDAT", b"\r\n.\r\n")],
                at,
            )

    def test_counting(self) -> None:
        factory = self.session([self.DATA_SESSION], store=False)
        self.assertEqual((factory.messages, factory.messageCount, factory.byteCount), ([], 2, 22))
