"""
The SMTP listener: over real sockets with the standard library's
``smtplib`` and raw sockets (plain, STARTTLS with a verified test CA,
BDAT, limits, timeouts, STARTTLS command injection), and on a
``StringTransport`` with a ``task.Clock`` for what needs a clock or a
transaction that answers later (flow control, drain, failures).
"""

from __future__ import annotations

import smtplib
import socket
import ssl
import time
from typing import Any

import attrs
from prometheus_client import CollectorRegistry
from twisted.internet import reactor as globalReactor
from twisted.internet import task, threads
from twisted.internet.address import IPv4Address
from twisted.internet.defer import inlineCallbacks
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase, TestCase

from secudoc_gateway import devcert, tls
from secudoc_gateway.envelope import Envelope
from secudoc_gateway.metrics import Metrics
from secudoc_gateway.smtp.factory import SMTPFactory
from secudoc_gateway.smtp.pacing import PAUSE_PENDING
from secudoc_gateway.smtp.protocol import SMTPProtocol
from secudoc_gateway.replies import Reply
from secudoc_gateway.testing.fakes import OK_REPLY, FakeIngress


def makeFactory(ingress: FakeIngress, reactor: Any, **kwargs: Any) -> SMTPFactory:
    options: dict[str, Any] = dict(
        ingress=ingress,
        hostname="mx.test",
        tlsOptions=None,
        requireTLS=False,
        maxMessageSize=100000,
        maxRecipients=10,
        maxConnections=20,
        maxConnectionsPerIP=5,
        commandTimeout=300.0,
        dataTimeout=600.0,
        reactor=reactor,
        metrics=None,
    )
    options.update(kwargs)
    return SMTPFactory(**options)


# --- over real sockets -----------------------------------------------------


class Client:
    """A blocking raw-socket client, run in a thread."""

    def __init__(self, port: int) -> None:
        self.sock: Any = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> bytes:
        """One (possibly multi-line) reply."""
        out = b""
        while True:
            while b"\r\n" not in self.buffer:
                more = self.sock.recv(65536)
                if not more:
                    raise EOFError(out + self.buffer)
                self.buffer += more
            line, _, self.buffer = self.buffer.partition(b"\r\n")
            out += line + b"\r\n"
            if line[3:4] != b"-":
                return out

    def eof(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except (ConnectionResetError, ssl.SSLEOFError):
            return True

    def close(self) -> None:
        self.sock.close()


class SocketTests(TestCase):
    def setUp(self) -> None:
        self.ingress = FakeIngress()
        self.registry = CollectorRegistry()
        self.metrics = Metrics(self.registry)

    def listen(self, **kwargs: Any) -> int:
        self.factory = makeFactory(self.ingress, globalReactor, metrics=self.metrics, **kwargs)
        port = globalReactor.listenTCP(0, self.factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return port.getHost().port

    def certificate(self) -> tuple[Any, ssl.SSLContext]:
        ca = devcert.makeCA()
        issued = devcert.issue(ca, "mx.test", ["mx.test", "127.0.0.1"])
        path = issued.writeTo(self.mktemp() + "/gateway.pem")
        context = ssl.create_default_context(cadata=ca.certificatePEM().decode())
        context.check_hostname = False  # the test connects to 127.0.0.1 under another name
        return tls.serverOptions(path), context

    @inlineCallbacks
    def whenClosed(self) -> Any:
        """Let the reactor see every client socket close before the test ends."""
        for _ in range(100):
            if not self.factory.connections:
                return
            yield task.deferLater(globalReactor, 0.01, lambda: None)

    @inlineCallbacks
    def test_plain(self) -> Any:
        port = self.listen()

        def client() -> tuple[Any, Any]:
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
                code, _ = smtp.ehlo("client.test")
                features = dict(smtp.esmtp_features)
                refused = smtp.sendmail(
                    "alice@example.test",
                    ["bob@external.test", "eve@other.test"],
                    b"Subject: hi\r\n\r\n.leading dot\r\nline\r\n",
                    mail_options=["BODY=8BITMIME"],
                )
                return features, refused

        features, refused = yield threads.deferToThread(client)
        yield self.whenClosed()
        self.assertEqual(refused, {})
        self.assertEqual(features["size"], "100000")
        for keyword in ("pipelining", "8bitmime", "enhancedstatuscodes", "smtputf8", "chunking"):
            self.assertIn(keyword, features)
        self.assertNotIn("starttls", features)
        [tx] = self.ingress.transactions
        self.assertEqual(tx.data, b"Subject: hi\r\n\r\n.leading dot\r\nline\r\n")
        self.assertEqual(
            tx.envelope,
            Envelope(
                sender="alice@example.test",
                recipients=("bob@external.test", "eve@other.test"),
                body="8BITMIME",
                size=len(b"Subject: hi\r\n\r\n.leading dot\r\nline\r\n"),
                peer="127.0.0.1",
                helo="client.test",
                tls=False,
                tenant=("tenant", "example.test"),
            ),
        )
        self.assertEqual(self.registry.get_sample_value("secudoc_smtp_connections_total"), 1)
        self.assertEqual(self.registry.get_sample_value("secudoc_smtp_sessions_active"), 0)

    @inlineCallbacks
    def test_senderRefused(self) -> Any:
        port = self.listen()
        self.ingress.refusedSenders.add("mallory@nowhere.test")

        def client() -> Any:
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
                smtp.ehlo("client.test")
                return smtp.mail("mallory@nowhere.test")

        code, text = yield threads.deferToThread(client)
        yield self.whenClosed()
        self.assertEqual((code, text), (550, b"5.7.1 Relaying denied"))
        self.assertEqual(self.ingress.transactions, [])

    @inlineCallbacks
    def test_startTLS(self) -> Any:
        options, context = self.certificate()
        port = self.listen(tlsOptions=options, requireTLS=True)

        def client() -> tuple[Any, ...]:
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
                smtp.ehlo("client.test")
                before = smtp.has_extn("starttls")
                refused = smtp.mail("alice@example.test")
                smtp.starttls(context=context)
                version = smtp.sock.version()
                smtp.ehlo("client.test")
                after = smtp.has_extn("starttls")
                smtp.sendmail("alice@example.test", ["bob@external.test"], b"Subject: tls\r\n\r\nsecret\r\n")
                return before, refused, version, after

        before, refused, version, after = yield threads.deferToThread(client)
        yield self.whenClosed()
        self.assertTrue(before)
        self.assertEqual(refused, (530, b"5.7.0 Must issue a STARTTLS command first"))
        self.assertIn(version, ("TLSv1.2", "TLSv1.3"))
        self.assertFalse(after)
        [tx] = self.ingress.transactions
        self.assertTrue(tx.envelope.tls)
        self.assertEqual(tx.data, b"Subject: tls\r\n\r\nsecret\r\n")

    @inlineCallbacks
    def test_startTLSInjection(self) -> Any:
        """Commands sent with STARTTLS in one packet are not executed after the handshake."""
        options, context = self.certificate()
        port = self.listen(tlsOptions=options)

        def client() -> list[bytes]:
            c = Client(port)
            out = [c.reply()]
            c.send(b"EHLO client.test\r\n")
            out.append(c.reply())
            c.send(b"STARTTLS\r\nMAIL FROM:<evil@example.test>\r\nRCPT TO:<victim@external.test>\r\n")
            out.append(c.reply())
            self.assertEqual(c.buffer, b"")
            c.sock = context.wrap_socket(c.sock)
            c.send(b"EHLO client.test\r\n")
            out.append(c.reply())
            c.send(b"RCPT TO:<victim@external.test>\r\nQUIT\r\n")
            out.append(c.reply())
            out.append(c.reply())
            c.close()
            return out

        out = yield threads.deferToThread(client)
        yield self.whenClosed()
        self.assertEqual(out[2], b"220 2.0.0 Ready to start TLS\r\n")
        self.assertEqual(out[4], b"503 5.5.1 Bad sequence of commands\r\n")
        self.assertEqual(out[5], b"221 2.0.0 Bye\r\n")
        self.assertEqual(self.ingress.senders, [])

    @inlineCallbacks
    def test_bdat(self) -> Any:
        port = self.listen()

        def client() -> list[bytes]:
            c = Client(port)
            c.reply()
            c.send(b"EHLO client.test\r\nMAIL FROM:<alice@example.test>\r\nRCPT TO:<bob@external.test>\r\n")
            out = [c.reply() for _ in range(3)]
            c.send(b"BDAT 13\r\nSubject: x\n\r\n")
            out.append(c.reply())
            c.send(b"BDAT 11 LAST\r\n.\r\nQUIT\r\nx\n")
            out.append(c.reply())
            c.send(b"QUIT\r\n")
            out.append(c.reply())
            out.append(b"eof" if c.eof() else b"open")
            c.close()
            return out

        out = yield threads.deferToThread(client)
        yield self.whenClosed()
        self.assertEqual(out[3:], [b"250 2.0.0 13 octets received\r\n", b"250 2.0.0 Ok q1\r\n", b"221 2.0.0 Bye\r\n", b"eof"])
        [tx] = self.ingress.transactions
        self.assertEqual(tx.data, b"Subject: x\n\r\n.\r\nQUIT\r\nx\n")

    @inlineCallbacks
    def test_perIPLimit(self) -> Any:
        port = self.listen(maxConnectionsPerIP=1)

        def client() -> list[bytes]:
            first = Client(port)
            out = [first.reply()]
            second = Client(port)
            out.append(second.reply())
            out.append(b"eof" if second.eof() else b"open")
            second.close()
            first.send(b"QUIT\r\n")
            out.append(first.reply())
            first.close()
            return out

        out = yield threads.deferToThread(client)
        yield self.whenClosed()
        self.assertEqual(
            out,
            [b"220 mx.test ESMTP\r\n", b"421 4.7.0 Too many connections from your address\r\n", b"eof", b"221 Bye\r\n"],
        )
        self.assertEqual(self.registry.get_sample_value("secudoc_smtp_connections_total"), 1)

    @inlineCallbacks
    def test_connectionRefusedByIngress(self) -> Any:
        port = self.listen()
        self.ingress.refusedPeers.add("127.0.0.1")

        def client() -> tuple[bytes, bool]:
            c = Client(port)
            out = c.reply(), c.eof()
            c.close()
            return out

        out = yield threads.deferToThread(client)
        yield self.whenClosed()
        self.assertEqual(out, (b"554 5.7.1 Access denied\r\n", True))

    @inlineCallbacks
    def test_timeout(self) -> Any:
        port = self.listen(commandTimeout=0.2)

        def client() -> tuple[bytes, bytes, bool, float]:
            c = Client(port)
            started = time.monotonic()
            greeting = c.reply()
            closing = c.reply()
            out = greeting, closing, c.eof(), time.monotonic() - started
            c.close()
            return out

        greeting, closing, eof, elapsed = yield threads.deferToThread(client)
        yield self.whenClosed()
        self.assertEqual(closing, b"421 4.4.2 Timeout, closing connection\r\n")
        self.assertTrue(eof)
        self.assertGreaterEqual(elapsed, 0.15)


# --- on a StringTransport with a clock -------------------------------------


class ClockTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = task.Clock()
        self.ingress = FakeIngress()
        self.registry = CollectorRegistry()
        self.factory = makeFactory(
            self.ingress, self.clock, metrics=Metrics(self.registry), commandTimeout=300.0, dataTimeout=600.0
        )

    def connect(self, host: str = "192.0.2.1", port: int = 40000) -> tuple[SMTPProtocol, StringTransport]:
        addr = IPv4Address("TCP", host, port)
        protocol = self.factory.buildProtocol(addr)
        transport = StringTransport(peerAddress=addr)
        protocol.makeConnection(transport)
        return protocol, transport

    def lose(self, protocol: SMTPProtocol) -> None:
        protocol.connectionLost()

    def lines(self, transport: StringTransport) -> list[bytes]:
        return transport.value().splitlines()

    def toData(self, protocol: SMTPProtocol) -> None:
        protocol.dataReceived(b"EHLO c.test\r\nMAIL FROM:<a@example.test>\r\nRCPT TO:<b@x.test>\r\nDATA\r\n")

    def test_metricsAndMaxConnections(self) -> None:
        self.registry = CollectorRegistry()
        factory = makeFactory(self.ingress, self.clock, metrics=Metrics(self.registry), maxConnections=2)
        self.factory = factory
        p1, _ = self.connect(port=1)
        p2, _ = self.connect("192.0.2.2", 2)
        p3, t3 = self.connect("192.0.2.3", 3)
        self.assertEqual(t3.value(), b"421 4.7.0 Too many connections, try again later\r\n")
        self.assertTrue(t3.disconnecting)
        self.assertEqual(self.registry.get_sample_value("secudoc_smtp_sessions_active"), 2)
        self.lose(p3)
        self.lose(p1)
        self.assertEqual(self.registry.get_sample_value("secudoc_smtp_sessions_active"), 1)
        self.assertEqual(self.registry.get_sample_value("secudoc_smtp_connections_total"), 2)
        p4, t4 = self.connect("192.0.2.4", 4)
        self.assertEqual(t4.value(), b"220 mx.test ESMTP\r\n")

    def test_finishFailureGives451(self) -> None:
        self.ingress.reply = None
        protocol, transport = self.connect()
        self.toData(protocol)
        protocol.dataReceived(b"hello\r\n.\r\n")
        [tx] = self.ingress.transactions
        assert tx.finished is not None
        tx.finished.errback(RuntimeError("storage gone"))
        self.assertEqual(self.lines(transport)[-1], b"451 4.3.0 Temporary local problem, try again later")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertFalse(tx.aborted)

    def test_waitsForFinalReply(self) -> None:
        """Pipelined input is held (and reading paused) until the relay answers."""
        self.ingress.reply = None
        protocol, transport = self.connect()
        self.toData(protocol)
        protocol.dataReceived(b"hello\r\n.\r\nNOOP\r\n")
        self.assertEqual(self.lines(transport)[-1][:3], b"354")
        protocol.dataReceived(b"NOOP\r\n" * (PAUSE_PENDING // 6 + 1))
        self.assertEqual(transport.producerState, "paused")
        self.assertEqual(self.clock.getDelayedCalls(), [])  # no timeout while the relay works
        [tx] = self.ingress.transactions
        self.assertEqual(tx.data, b"hello\r\n")
        assert tx.finished is not None
        tx.finished.callback(Reply(250, "2.0.0", "Ok 42"))
        lines = self.lines(transport)
        self.assertEqual(lines[-(PAUSE_PENDING // 6 + 3)], b"250 2.0.0 Ok 42")
        self.assertEqual(set(lines[-(PAUSE_PENDING // 6 + 2) :]), {b"250 2.0.0 Ok"})
        self.assertEqual(transport.producerState, "producing")
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)

    def test_transactionPauseIsItsOwn(self) -> None:
        self.ingress.reply = None
        protocol, transport = self.connect()
        self.toData(protocol)
        [tx] = self.ingress.transactions
        tx.producer.pauseProducing()
        self.assertEqual(transport.producerState, "paused")
        self.assertEqual(self.clock.getDelayedCalls(), [])  # we stopped reading: not a client timeout
        protocol.dataReceived(b"hello\r\n.\r\n" + b"NOOP\r\n" * (PAUSE_PENDING // 6 + 1))
        assert tx.finished is not None
        tx.finished.callback(OK_REPLY)
        # the transaction is over: its pause goes with it, and ours too
        self.assertEqual(transport.producerState, "producing")
        tx.producer.pauseProducing()  # a late call from a finished transaction does nothing
        self.assertEqual(transport.producerState, "producing")

    def test_ourResumeLeavesTransactionPause(self) -> None:
        self.ingress.reply = None
        protocol, transport = self.connect()
        self.toData(protocol)
        [tx] = self.ingress.transactions
        protocol.dataReceived(b"x\r\n.\r\n" + b"NOOP\r\n" * (PAUSE_PENDING // 6 + 1))
        self.assertEqual(transport.producerState, "paused")
        tx.producer.pauseProducing()
        tx.producer.resumeProducing()
        self.assertEqual(transport.producerState, "paused")  # still ours

    def test_commandTimeout(self) -> None:
        protocol, transport = self.connect()
        protocol.dataReceived(b"EHLO c.test\r\n")
        self.clock.advance(299)
        protocol.dataReceived(b"NOOP\r\n")
        self.clock.advance(299)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(2)
        self.assertEqual(self.lines(transport)[-1], b"421 4.4.2 Timeout, closing connection")
        self.assertTrue(transport.disconnecting)

    def test_dataTimeoutAborts(self) -> None:
        protocol, transport = self.connect()
        self.toData(protocol)
        protocol.dataReceived(b"partial")
        self.clock.advance(599)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(2)
        self.assertEqual(self.lines(transport)[-1], b"421 4.4.2 Timeout, closing connection")
        [tx] = self.ingress.transactions
        self.assertTrue(tx.aborted)
        self.lose(protocol)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def slowClient(self, bdat: bool = False) -> tuple[SMTPProtocol, StringTransport]:
        """A message's data at 50 bytes/s, one byte at a time (every step within the data timeout)."""
        self.factory = makeFactory(self.ingress, self.clock, dataTimeout=600.0, minDataRate=100, rateWindow=60.0)
        protocol, transport = self.connect()
        if bdat:
            protocol.dataReceived(b"EHLO c.test\r\nMAIL FROM:<a@example.test>\r\nRCPT TO:<b@x.test>\r\n"
                                  b"BDAT 100000 LAST\r\n")
        else:
            self.toData(protocol)
        for _ in range(59 * 50):
            protocol.dataReceived(b"x")
            self.clock.advance(0.02)
        return protocol, transport

    def test_slowDataCut(self) -> None:
        """Under min_data_rate over a window: 421 4.4.2, the message aborted (one byte every 2 s held forever)."""
        for bdat in (False, True):
            self.ingress.transactions.clear()
            protocol, transport = self.slowClient(bdat)
            self.assertFalse(transport.disconnecting)
            self.clock.advance(1.5)
            self.assertEqual(self.lines(transport)[-1], b"421 4.4.2 Message data too slow, closing connection")
            self.assertTrue(transport.disconnecting)
            [tx] = self.ingress.transactions
            self.assertTrue(tx.aborted)
            self.lose(protocol)

    def test_dataRateMeasuredPerWindow(self) -> None:
        """A client that keeps up in every window passes however long the message takes."""
        self.factory = makeFactory(self.ingress, self.clock, minDataRate=100, rateWindow=60.0,
                                   maxMessageSize=1_000_000)
        protocol, transport = self.connect()
        self.toData(protocol)
        for _ in range(30):  # half an hour at 200 bytes/s
            for _ in range(60):
                protocol.dataReceived(b"y" * 200)
                self.clock.advance(1)
        self.assertFalse(transport.disconnecting)
        protocol.dataReceived(b"\r\n.\r\n")
        [tx] = self.ingress.transactions
        self.assertIsNotNone(tx.finished)
        self.assertEqual(tx.data, b"y" * (30 * 60 * 200) + b"\r\n")

    def test_dataRateNotWhileWePause(self) -> None:
        """Time the gateway keeps the client paused (a lagging store) does not count against it."""
        self.factory = makeFactory(self.ingress, self.clock, minDataRate=100, rateWindow=60.0)
        protocol, transport = self.connect()
        self.toData(protocol)
        protocol.dataReceived(b"z" * 3000)
        [tx] = self.ingress.transactions
        tx.producer.pauseProducing()
        self.clock.advance(3600)
        self.assertFalse(transport.disconnecting)
        tx.producer.resumeProducing()
        protocol.dataReceived(b"z" * 6000)
        self.clock.advance(60)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(60)
        self.assertEqual(self.lines(transport)[-1], b"421 4.4.2 Message data too slow, closing connection")

    def test_unreadClosingReplyAborts(self) -> None:
        protocol, transport = self.connect()
        protocol.dataReceived(b"QUIT\r\n")
        self.assertTrue(transport.disconnecting)
        self.clock.advance(60)
        self.assertTrue(transport.disconnected)

    def test_connectionLostAborts(self) -> None:
        protocol, transport = self.connect()
        self.toData(protocol)
        protocol.dataReceived(b"some data\r\n")
        self.lose(protocol)
        [tx] = self.ingress.transactions
        self.assertTrue(tx.aborted)
        self.assertEqual(tx.data, b"some da")  # the last four bytes wait: they may start the end marker

    def test_overSizeAborts(self) -> None:
        self.factory.limits = attrs.evolve(self.factory.limits, maxMessageSize=10)
        protocol, transport = self.connect()
        self.toData(protocol)
        protocol.dataReceived(b"x" * 100 + b"\r\n.\r\n")
        [tx] = self.ingress.transactions
        self.assertTrue(tx.aborted)
        self.assertIsNone(tx.finished)
        self.assertEqual(self.lines(transport)[-1], b"552 5.3.4 Message size exceeds fixed maximum message size")
        # Refused at its end with no transaction left to answer: the ingress is told, for the trace.
        [(envelope, reply, reason)] = self.ingress.refusedMessages
        self.assertEqual((envelope.sender, envelope.recipients, envelope.tenant, reply.code, reason),
                         (tx.envelope.sender, tx.envelope.recipients, tx.envelope.tenant, 552,
                          "over max_message_size 10"))

    def test_rsetMidBdatAborts(self) -> None:
        protocol, transport = self.connect()
        protocol.dataReceived(b"EHLO c.test\r\nMAIL FROM:<a@example.test>\r\nRCPT TO:<b@x.test>\r\nBDAT 3\r\nabcRSET\r\n")
        [tx] = self.ingress.transactions
        self.assertEqual(tx.data, b"abc")
        self.assertTrue(tx.aborted)
        self.assertEqual(self.lines(transport)[-1], b"250 2.0.0 Reset ok")

    def test_startTLSUnavailable(self) -> None:
        protocol, transport = self.connect()
        protocol.dataReceived(b"EHLO c.test\r\nSTARTTLS\r\n")
        self.assertEqual(self.lines(transport)[-1], b"454 4.7.0 TLS not available")

    def test_drain(self) -> None:
        self.ingress.reply = None
        idle, idleTransport = self.connect(port=1)
        busy, busyTransport = self.connect(port=2)
        self.toData(busy)
        busy.dataReceived(b"hi\r\n.\r\nNOOP\r\n")
        drained = self.factory.drain()
        self.assertNoResult(drained)
        self.assertEqual(self.lines(idleTransport)[-1], b"421 4.3.2 Service shutting down")
        self.assertTrue(idleTransport.disconnecting)
        self.lose(idle)
        self.assertFalse(busyTransport.disconnecting)
        late, lateTransport = self.connect(port=3)
        self.assertEqual(lateTransport.value(), b"421 4.3.2 Service shutting down\r\n")
        [tx] = self.ingress.transactions
        assert tx.finished is not None
        tx.finished.callback(OK_REPLY)
        self.assertEqual(self.lines(busyTransport)[-2:], [b"250 2.0.0 Ok q1", b"421 4.3.2 Service shutting down"])
        self.assertTrue(busyTransport.disconnecting)
        # Drained once the last replies are out and their connections closed.
        # Written is not yet sent: the drain ends when the connection has closed.
        self.assertNoResult(drained)
        self.lose(busy)
        self.successResultOf(drained)

    def test_drainWithNothingInFlight(self) -> None:
        self.successResultOf(self.factory.drain())

    def test_expire(self) -> None:
        """Past the grace period a message in flight gets 421 too, and its late result is dropped."""
        self.ingress.reply = None
        busy, busyTransport = self.connect(port=2)
        self.toData(busy)
        busy.dataReceived(b"hi\r\n.\r\n")
        drained = self.factory.drain()
        self.assertNoResult(drained)
        expired = self.factory.expire()
        [tx] = self.ingress.transactions
        self.assertTrue(tx.aborted)
        self.assertEqual(self.lines(busyTransport)[-1], b"421 4.3.2 Service shutting down")
        self.assertTrue(busyTransport.disconnecting)
        assert tx.finished is not None
        tx.finished.callback(OK_REPLY)
        self.assertEqual(self.lines(busyTransport)[-1], b"421 4.3.2 Service shutting down")
        self.assertNoResult(expired)
        self.lose(busy)
        self.successResultOf(expired)
        self.successResultOf(drained)

    def test_beginFailureGives451(self) -> None:
        def broken(envelope: Envelope, producer: Any) -> Any:
            raise RuntimeError("no spool")

        self.ingress.begin = broken  # type: ignore[method-assign]
        protocol, transport = self.connect()
        self.toData(protocol)
        protocol.dataReceived(b"hi\r\n.\r\nNOOP\r\n")
        self.assertEqual(self.lines(transport)[-2:], [b"451 4.3.0 Temporary local problem, try again later", b"250 2.0.0 Ok"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
