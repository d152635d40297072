"""
The sans-I/O ESMTP session: every reply of SPEC section 4 it gives, fed
whole, byte by byte and at random splits (hypothesis), and the SMTP
smuggling cases of DATA.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Callable, Optional

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

import secudoc_gateway

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
    MailFrom,
    RcptTo,
    Refused,
    SendReply,
    StartTLS,
)
from secudoc_gateway.smtp.session import Session, SessionLimits, State

FINAL = Reply(250, "2.0.0", "Ok q1")


class Driver:
    """Feeds a session and answers it the way the protocol adapter does."""

    def __init__(self, session: Optional[Session] = None, **kwargs) -> None:
        """``kwargs``: ``SessionLimits`` fields and the session's other arguments."""
        limits = {"maxMessageSize": 10000, "maxRecipients": 3}
        limits.update((name, kwargs.pop(name)) for name in list(kwargs) if name in attrs.fields_dict(SessionLimits))
        options: dict = {"hostname": "mx.test", "tlsAvailable": True}
        options.update(kwargs)
        self.session = session or Session(limits=SessionLimits(**limits), **options)
        self.events: list = []
        self.replies: list[bytes] = []
        self.data = bytearray()
        self.decide: Callable[[str], Optional[Reply]] = lambda sender: None
        self.final: Optional[Reply] = FINAL
        self.last: object = None
        self.pump()

    def feed(self, data: bytes, step: Optional[int] = None) -> "Driver":
        if step is None:
            pieces = [data]
        else:
            pieces = [data[i : i + step] for i in range(0, len(data), step)]
        for piece in pieces:
            self.session.receiveData(piece)
            self.pump()
        return self

    def feedSplit(self, data: bytes, cuts: list[int]) -> "Driver":
        at = 0
        for cut in sorted(set(cuts)) + [len(data)]:
            self.session.receiveData(data[at:cut])
            self.pump()
            at = cut
        return self

    def pump(self) -> object:
        while True:
            e = self.session.nextEvent()
            if e is NEED_DATA or e is PAUSED:
                self.last = e
                return e
            self.events.append(e)
            if isinstance(e, SendReply):
                self.replies.append(e.data)
            elif isinstance(e, MailFrom):
                refusal = self.decide(e.sender)
                if refusal is None:
                    self.session.acceptMail()
                else:
                    self.session.refuseMail(refusal)
            elif isinstance(e, DataChunk):
                self.data += e.data
            elif isinstance(e, DataEnd) and self.final is not None:
                self.session.finalReply(self.final)

    @property
    def codes(self) -> list[int]:
        return [int(r[:3]) for r in self.replies]

    @property
    def wire(self) -> bytes:
        return b"".join(self.replies)

    def kinds(self) -> list[type]:
        return [type(e) for e in self.events]

    def lastReply(self) -> bytes:
        return self.replies[-1]


def transaction(body: bytes = b"Subject: x\r\n\r\nhello\r\n.\r\n") -> bytes:
    return b"EHLO client.test\r\nMAIL FROM:<a@example.test>\r\nRCPT TO:<b@external.test>\r\nDATA\r\n" + body


SCRIPT = (
    b"EHLO client.test\r\n"
    b"MAIL FROM:<alice@example.test> SIZE=300 BODY=8BITMIME\r\n"
    b"RCPT TO:<bob@external.test>\r\n"
    b"RCPT TO:<eve@other.test>\r\n"
    b"DATA\r\n"
    b"Subject: hi\r\n\r\n..leading dot\r\nbare\nline\n.dot after LF\r\n\r\n.\r\n"
    b"NOOP\r\n"
    b"MAIL FROM:<>\r\n"
    b"RCPT TO:<bob@external.test>\r\n"
    b"BDAT 14\r\nab\r\n.\r\ncd\n..\r\n"
    b"BDAT 4 LAST\r\nxyz\n"
    b"VRFY bob\r\nEXPN list\r\nHELP\r\nRSET\r\nQUIT\r\n"
)


class GreetingTests(SynchronousTestCase):
    def test_greeting(self) -> None:
        d = Driver()
        self.assertEqual(d.replies, [b"220 mx.test ESMTP\r\n"])

    def test_ehloKeywords(self) -> None:
        d = Driver().feed(b"EHLO client.test\r\n")
        self.assertEqual(
            d.lastReply(),
            b"250-mx.test\r\n250-PIPELINING\r\n250-SIZE 10000\r\n250-8BITMIME\r\n"
            b"250-ENHANCEDSTATUSCODES\r\n250-SMTPUTF8\r\n250-CHUNKING\r\n250 STARTTLS\r\n",
        )
        self.assertNotIn(b"BINARYMIME", d.wire)

    def test_noStartTLSWithoutTLS(self) -> None:
        d = Driver(tlsAvailable=False).feed(b"EHLO client.test\r\n")
        self.assertNotIn(b"STARTTLS", d.lastReply())
        d.feed(b"STARTTLS\r\n")
        self.assertEqual(d.lastReply(), b"454 4.7.0 TLS not available\r\n")

    def test_helo(self) -> None:
        d = Driver().feed(b"HELO client.test\r\nMAIL FROM:<a@example.test>\r\nRCPT TO:<b@x.test>\r\nMAIL FROM:<c@x.test>\r\n")
        self.assertEqual(d.replies[1], b"250 mx.test\r\n")
        # RFC 2034: no enhanced codes without EHLO
        self.assertEqual(d.replies[2:], [b"250 Sender ok\r\n", b"250 Recipient ok\r\n", b"503 Bad sequence of commands\r\n"])

    def test_heloNeedsArgument(self) -> None:
        d = Driver().feed(b"EHLO\r\nHELO \r\n")
        self.assertEqual(d.codes[1:], [501, 501])

    def test_mailBeforeHello(self) -> None:
        d = Driver().feed(b"MAIL FROM:<a@example.test>\r\nRCPT TO:<b@x.test>\r\nDATA\r\n")
        self.assertEqual(d.codes[1:], [503, 503, 503])


class TransactionTests(SynchronousTestCase):
    def test_wholeScript(self) -> None:
        d = Driver().feed(SCRIPT)
        self.assertEqual(
            d.codes, [220, 250, 250, 250, 250, 354, 250, 250, 250, 250, 250, 250, 252, 502, 214, 250, 221]
        )
        self.assertEqual(
            bytes(d.data),
            b"Subject: hi\r\n\r\n.leading dot\r\nbare\nline\ndot after LF\r\n\r\n" + b"ab\r\n.\r\ncd\n..\r\nxyz\n",
        )
        self.assertIn(b"250 2.0.0 14 octets received\r\n", d.replies)
        self.assertEqual(d.replies.count(b"250 2.0.0 Ok q1\r\n"), 2)
        self.assertIsInstance(d.events[-1], Close)
        self.assertIs(d.session.state, State.CLOSED)
        starts = [e for e in d.events if isinstance(e, DataStart)]
        self.assertEqual(
            starts[0],
            DataStart("DATA", "alice@example.test", ("bob@external.test", "eve@other.test"), "8BITMIME", False, 300, "client.test", False),
        )
        self.assertEqual(starts[1].kind, "BDAT")
        self.assertEqual(starts[1].sender, "")

    def test_byteByByteSameAsWhole(self) -> None:
        whole = Driver().feed(SCRIPT)
        for step in (1, 2, 3, 5, 7, 64):
            pieces = Driver().feed(SCRIPT, step=step)
            self.assertEqual(pieces.replies, whole.replies)
            self.assertEqual(pieces.data, whole.data)
            self.assertEqual(
                [type(e) for e in pieces.events if not isinstance(e, DataChunk)],
                [type(e) for e in whole.events if not isinstance(e, DataChunk)],
            )

    def test_everySplitPoint(self) -> None:
        whole = Driver().feed(SCRIPT)
        for cut in range(len(SCRIPT)):
            d = Driver().feedSplit(SCRIPT, [cut])
            self.assertEqual((d.replies, d.data), (whole.replies, whole.data), cut)

    def test_pipelinedRepliesInOrder(self) -> None:
        d = Driver().feed(b"EHLO c.test\r\nMAIL FROM:<a@example.test>\r\nRCPT TO:<b@x.test>\r\nRCPT TO:<c@x.test>\r\nDATA\r\n")
        self.assertEqual(d.codes, [220, 250, 250, 250, 250, 354])
        self.assertEqual([e.address for e in d.events if isinstance(e, RcptTo)], ["b@x.test", "c@x.test"])

    def test_waitsForMailDecision(self) -> None:
        d = Driver()
        d.decide = lambda sender: replies.RELAY_DENIED
        d.feed(b"EHLO c.test\r\nMAIL FROM:<a@nowhere.test>\r\nRCPT TO:<b@x.test>\r\n")
        self.assertEqual(d.replies[2:], [b"550 5.7.1 Relaying denied\r\n", b"503 5.5.1 Bad sequence of commands\r\n"])

    def test_mailDecisionPauses(self) -> None:
        s = Session("mx.test", SessionLimits(1000, 5))
        s.receiveData(b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\n")
        seen = []
        while True:
            e = s.nextEvent()
            seen.append(e)
            if isinstance(e, MailFrom) or e is NEED_DATA:
                break
        self.assertEqual(seen[-1], MailFrom("a@b.test", None, False, None))
        self.assertIs(s.nextEvent(), PAUSED)
        self.assertIs(s.nextEvent(), PAUSED)
        s.acceptMail()
        rest = []
        while (e := s.nextEvent()) is not NEED_DATA:
            rest.append(e)
        self.assertEqual([r.reply.code for r in rest if isinstance(r, SendReply)], [250, 250])

    def test_finalReplyWaits(self) -> None:
        d = Driver()
        d.final = None
        d.feed(transaction() + b"NOOP\r\n")
        self.assertIs(d.last, PAUSED)
        self.assertEqual(d.codes[-1], 354)
        self.assertIs(d.session.state, State.FINISHING)
        self.assertEqual(d.session.pendingBytes, len(b"NOOP\r\n"))
        d.session.finalReply(replies.LOCAL_TEMPFAIL)
        d.pump()
        self.assertEqual(d.replies[-2:], [b"451 4.3.0 Temporary local problem, try again later\r\n", b"250 2.0.0 Ok\r\n"])

    def test_tooMuchPendingInput(self) -> None:
        d = Driver(maxPending=100)
        d.final = None
        d.feed(transaction() + b"NOOP\r\n" * 30)
        self.assertEqual(d.lastReply(), b"421 4.7.0 Too much pipelined input, closing connection\r\n")
        self.assertIsInstance(d.events[-1], Close)

    def test_closeAbortsTransaction(self) -> None:
        d = Driver().feed(transaction(b"partial"))
        d.session.close(replies.TIMEOUT)
        d.pump()
        self.assertEqual(d.kinds()[-3:], [SendReply, DataAbort, Close])
        self.assertEqual(d.lastReply(), b"421 4.4.2 Timeout, closing connection\r\n")
        d.feed(b"QUIT\r\n")
        self.assertIs(d.last, PAUSED)

    def test_closeBeforeEhloHasEnhancedCode(self) -> None:
        d = Driver()
        d.session.close(replies.SHUTTING_DOWN)
        d.pump()
        self.assertEqual(d.lastReply(), b"421 4.3.2 Service shutting down\r\n")


class DataTests(SynchronousTestCase):
    def message(self, body: bytes, step: Optional[int] = None) -> Driver:
        return Driver().feed(transaction(body), step=step)

    def test_emptyMessage(self) -> None:
        d = self.message(b".\r\nNOOP\r\n")
        self.assertEqual(d.data, b"")
        self.assertEqual(d.codes[-2:], [250, 250])
        self.assertIn(DataEnd(), d.events)

    def test_dotUnstuffing(self) -> None:
        d = self.message(b"..a\r\n...\r\nx.\r\n.\r\n")
        self.assertEqual(d.data, b".a\r\n..\r\nx.\r\n")

    def test_dotAfterBareLF(self) -> None:
        d = self.message(b"a\n..b\n.c\r\n.\r\n")
        self.assertEqual(d.data, b"a\n.b\nc\r\n")

    def test_dotAfterBareCRKept(self) -> None:
        d = self.message(b"a\r.b\r\n.\r\n")
        self.assertEqual(d.data, b"a\r.b\r\n")

    def test_smuggling(self) -> None:
        """
        A lone LF or CR around the dot never ends the message: what
        follows stays data and is never executed as commands.
        """
        injected = b"MAIL FROM:<evil@example.test>\r\nRCPT TO:<victim@x.test>\r\nDATA\r\nforged\r\n"
        for ending, kept in [
            (b"\n.\n", b"\n\n"),
            (b"\r\n.\n", b"\r\n\n"),
            (b"\n.\r\n", b"\n\r\n"),
            (b"\r.\r", b"\r.\r"),
            (b"\r.\r\n", b"\r.\r\n"),
            (b"\r\n.\r", b"\r\n\r"),
        ]:
            for step in (None, 1):
                d = self.message(b"Subject: x\r\n\r\nbody" + ending + injected + b".\r\n", step=step)
                self.assertEqual(bytes(d.data), b"Subject: x\r\n\r\nbody" + kept + injected, ending)
                self.assertEqual(d.codes, [220, 250, 250, 250, 354, 250], ending)
                self.assertEqual(sum(isinstance(e, MailFrom) for e in d.events), 1)

    def test_endMarkerAcrossChunks(self) -> None:
        body = b"line one\r\n..two\r\n.\r\nQUIT\r\n"
        stream = transaction(body)
        whole = Driver().feed(stream)
        for cut in range(len(stream) - len(body), len(stream)):
            for cut2 in range(cut, len(stream)):
                d = Driver().feedSplit(stream, [cut, cut2])
                self.assertEqual((d.data, d.codes), (whole.data, whole.codes))
        self.assertEqual(whole.data, b"line one\r\n.two\r\n")
        self.assertEqual(whole.codes[-1], 221)

    def test_dataArgumentRefused(self) -> None:
        d = Driver().feed(b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA x\r\n")
        self.assertEqual(d.codes[-1], 501)

    def test_overSizeDrainsWithoutBuffering(self) -> None:
        d = Driver(maxMessageSize=100).feed(transaction(b""))
        d.feed(b"x" * 60 + b"\r\n")
        self.assertNotIn(DataAbort(), d.events)
        for _ in range(100):
            d.feed(b"y" * 1000 + b"\r\n")
            self.assertLessEqual(d.session.pendingBytes, 4)
        self.assertEqual(d.events.count(DataAbort()), 1)
        self.assertLessEqual(len(d.data), 100)
        d.feed(b".\r\nNOOP\r\n")
        self.assertEqual(d.replies[-2:], [b"552 5.3.4 Message size exceeds fixed maximum message size\r\n", b"250 2.0.0 Ok\r\n"])
        self.assertNotIn(DataEnd(), d.events)
        self.assertIs(d.session.state, State.READY)

    def test_exactlyMaxSize(self) -> None:
        d = Driver(maxMessageSize=10).feed(transaction(b"12345678\r\n.\r\n"))
        self.assertEqual(d.data, b"12345678\r\n")
        self.assertEqual(d.codes[-1], 250)

    def test_chunksAreLarge(self) -> None:
        """Raw mode: one event for a whole chunk, not one per line."""
        d = Driver(maxMessageSize=10**7).feed(transaction(b""))
        before = len(d.events)
        d.feed(b"line\r\n..dot\r\n" * 5000)
        self.assertEqual(len(d.events) - before, 1)


def referenceData(stream: bytes) -> Optional[tuple[bytes, bytes]]:
    """
    RFC 5321 4.5.2 the slow way, one byte at a time: the message and
    what follows the end marker, or ``None`` without one.
    """
    out = bytearray()
    afterCRLF = lineStart = True
    i = 0
    while i < len(stream):
        if afterCRLF and stream.startswith(b".\r\n", i):
            return bytes(out), stream[i + 3 :]
        c = stream[i : i + 1]
        if lineStart and c == b".":
            lineStart = afterCRLF = False
            i += 1
            continue
        out += c
        lineStart = c == b"\n"
        afterCRLF = lineStart and stream[i - 1 : i] == b"\r" and i > 0
        i += 1
    return None


TOKENS = st.sampled_from([b"a", b"Hi there", b".", b"..", b"\r", b"\n", b"\r\n", b"\r\n.", b"\n.", b"\r\n.\r"])


class DataPropertyTests(SynchronousTestCase):
    @settings(max_examples=300, deadline=None)
    @given(st.lists(TOKENS, max_size=40), st.booleans(), st.lists(st.integers(0, 400), max_size=6))
    def test_matchesReference(self, tokens: list[bytes], terminate: bool, cuts: list[int]) -> None:
        body = b"".join(tokens) + (b"\r\n.\r\nNOOP\r\n" if terminate else b"")
        stream = transaction(body)
        start = len(stream) - len(body)
        d = Driver(maxMessageSize=10**6).feedSplit(stream, [start + c for c in cuts if c <= len(body)])
        expected = referenceData(body)
        if expected is None:
            self.assertNotIn(DataEnd(), d.events)
            self.assertLessEqual(d.session.pendingBytes, 4)
            self.assertEqual(d.codes[-1], 354)
            # everything but the held-back tail was emitted, unstuffed
            more = Driver(maxMessageSize=10**6).feed(stream + b"\r\n.\r\n")
            self.assertTrue(bytes(more.data).startswith(bytes(d.data)))
        else:
            message, rest = expected
            self.assertEqual(bytes(d.data), message)
            self.assertIn(DataEnd(), d.events)
            whole = Driver(maxMessageSize=10**6).feed(stream)
            self.assertEqual(d.replies, whole.replies)

    @settings(max_examples=200, deadline=None)
    @given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=5))
    def test_bdatTakenAsSent(self, payload: bytes, cuts: list[int]) -> None:
        stream = (
            b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\n"
            + b"BDAT %d\r\n" % len(payload)
            + payload
            + b"BDAT 0 LAST\r\nNOOP\r\n"
        )
        d = Driver().feedSplit(stream, cuts)
        self.assertEqual(bytes(d.data), payload)
        self.assertEqual(d.codes[-3:], [250, 250, 250])


class BdatTests(SynchronousTestCase):
    prelude = b"EHLO c.test\r\nMAIL FROM:<a@example.test>\r\nRCPT TO:<b@x.test>\r\n"

    def test_rawChunks(self) -> None:
        d = Driver().feed(self.prelude + b"BDAT 8\r\n.x\n\r\n.\r\nBDAT 6 LAST\r\nQUIT\r\n")
        self.assertEqual(d.data, b".x\n\r\n.\r\nQUIT\r\n")
        self.assertEqual(d.replies[-2:], [b"250 2.0.0 8 octets received\r\n", FINAL.toBytes()])

    def test_lastCaseInsensitiveAndZero(self) -> None:
        d = Driver().feed(self.prelude + b"BDAT 0 last\r\n")
        self.assertEqual(d.data, b"")
        self.assertEqual(d.codes[-1], 250)
        self.assertEqual(d.kinds()[-3:], [DataStart, DataEnd, SendReply])

    def test_bdatWithoutTransactionDrained(self) -> None:
        d = Driver().feed(b"EHLO c.test\r\nBDAT 10 LAST\r\nQUIT\r\nQUITNOOP\r\n")
        self.assertEqual(d.codes[-2:], [503, 250])
        self.assertNotIn(DataStart, d.kinds())

    def test_dataAfterBdat(self) -> None:
        d = Driver().feed(self.prelude + b"BDAT 2\r\nabDATA\r\nBDAT 1 LAST\r\nc")
        self.assertEqual(d.codes[-3:], [250, 503, 250])
        self.assertEqual(d.data, b"abc")

    def test_mailDuringBdat(self) -> None:
        d = Driver().feed(self.prelude + b"BDAT 2\r\nabMAIL FROM:<x@y.test>\r\n")
        self.assertEqual(d.codes[-1], 503)

    def test_rsetMidBdatAborts(self) -> None:
        d = Driver().feed(self.prelude + b"BDAT 2\r\nabRSET\r\nBDAT 1 LAST\r\nc")
        self.assertEqual(d.kinds().count(DataAbort), 1)
        self.assertEqual(d.codes[-2:], [250, 503])
        self.assertNotIn(DataEnd(), d.events)

    def test_ehloMidBdatAborts(self) -> None:
        d = Driver().feed(self.prelude + b"BDAT 2\r\nabEHLO c.test\r\n")
        self.assertIn(DataAbort(), d.events)
        self.assertIs(d.session.state, State.READY)

    def test_badSizeCloses(self) -> None:
        d = Driver().feed(self.prelude + b"BDAT x\r\nNOOP\r\n")
        self.assertEqual(d.lastReply(), b"501 5.5.4 Syntax error in BDAT size, closing connection\r\n")
        self.assertIsInstance(d.events[-1], Close)

    def test_overSize(self) -> None:
        d = Driver(maxMessageSize=10).feed(self.prelude + b"BDAT 8\r\n12345678BDAT 8\r\n12345678BDAT 3 LAST\r\nabcNOOP\r\n")
        self.assertEqual(d.data, b"12345678")
        self.assertEqual(d.kinds().count(DataAbort), 1)
        self.assertEqual(
            d.replies[-3:],
            [
                b"552 5.3.4 Message size exceeds fixed maximum message size\r\n",
                b"503 5.5.1 Bad sequence of commands\r\n",
                b"250 2.0.0 Ok\r\n",
            ],
        )


class MailRcptTests(SynchronousTestCase):
    def mail(self, line: bytes, **kwargs) -> Driver:
        return Driver(**kwargs).feed(b"EHLO c.test\r\n" + line + b"\r\n")

    def test_nullSender(self) -> None:
        d = self.mail(b"MAIL FROM:<>")
        self.assertEqual(d.lastReply(), b"250 2.1.0 Sender ok\r\n")
        self.assertIn(MailFrom("", None, False, None), d.events)

    def test_params(self) -> None:
        d = self.mail(b"mail from: <a@b.test> size=10 body=7bit SMTPUTF8")
        self.assertIn(MailFrom("a@b.test", "7BIT", True, 10), d.events)

    def test_sourceRouteIgnored(self) -> None:
        d = self.mail(b"MAIL FROM:<@relay.test,@r2.test:a@b.test>")
        self.assertIn(MailFrom("a@b.test", None, False, None), d.events)

    def test_quotedLocalPart(self) -> None:
        d = self.mail(b'MAIL FROM:<"a >b"@b.test> SIZE=1')
        self.assertIn(MailFrom('"a >b"@b.test', None, False, 1), d.events)

    def test_sizeOverLimit(self) -> None:
        d = self.mail(b"MAIL FROM:<a@b.test> SIZE=10001")
        self.assertEqual(d.lastReply(), b"552 5.3.4 Message size exceeds fixed maximum message size\r\n")
        self.assertNotIn(MailFrom, d.kinds())

    def test_refusals(self) -> None:
        for line, code in [
            (b"MAIL FROM:<a@b.test> FOO=1", 555),
            (b"MAIL FROM:<a@b.test> BODY=BINARYMIME", 555),
            (b"MAIL FROM:<a@b.test> BODY=9BIT", 501),
            (b"MAIL FROM:<a@b.test> SIZE=ten", 501),
            (b"MAIL FROM:<a@b.test> SIZE=1 SIZE=2", 501),
            (b"MAIL FROM:<a@b.test> SMTPUTF8=yes", 501),
            (b"MAIL FROM:a@b.test", 501),
            (b"MAIL FROM:<a@b.test", 501),
            (b"MAIL FROM:<a b@b.test>", 501),
            (b"MAIL FROM:<ab.test>", 501),
            (b"MAIL TO:<a@b.test>", 501),
            (b"MAIL FROM:<a@b.test>x", 501),
            ("MAIL FROM:<jörg@b.test>".encode(), 553),
            (b"MAIL FROM:<a@b.test>\xff", 501),
        ]:
            d = self.mail(line)
            self.assertEqual(d.codes[-1], code, line)
            self.assertNotIn(MailFrom, d.kinds())

    def test_smtputf8(self) -> None:
        d = self.mail("MAIL FROM:<jörg@bücher.test> SMTPUTF8".encode())
        self.assertIn(MailFrom("jörg@bücher.test", None, True, None), d.events)
        d.feed("RCPT TO:<zoë@x.test>\r\n".encode())
        self.assertEqual(d.codes[-1], 250)

    def test_utf8RecipientNeedsSmtputf8(self) -> None:
        d = self.mail(b"MAIL FROM:<a@b.test>")
        d.feed("RCPT TO:<zoë@x.test>\r\n".encode())
        self.assertEqual(d.lastReply(), b"553 5.6.7 Non-ASCII address requires SMTPUTF8\r\n")

    def test_paramsAfterHelo(self) -> None:
        d = Driver().feed(b"HELO c.test\r\nMAIL FROM:<a@b.test> SIZE=10\r\n")
        self.assertEqual(d.codes[-1], 555)

    def test_requireTLS(self) -> None:
        d = self.mail(b"MAIL FROM:<a@b.test>", requireTLS=True)
        self.assertEqual(d.lastReply(), b"530 5.7.0 Must issue a STARTTLS command first\r\n")
        d = Driver(requireTLS=True, tlsActive=True).feed(b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\n")
        self.assertEqual(d.codes[-1], 250)

    def test_nestedMail(self) -> None:
        d = self.mail(b"MAIL FROM:<a@b.test>\r\nMAIL FROM:<a@b.test>")
        self.assertEqual(d.codes[-1], 503)

    def test_recipients(self) -> None:
        d = self.mail(
            b"MAIL FROM:<a@b.test>\r\nRCPT TO:<1@x.test>\r\nRCPT TO:<Postmaster>\r\n"
            b"RCPT TO:<3@x.test>\r\nRCPT TO:<4@x.test>\r\nDATA\r\n."
        )
        self.assertEqual(d.codes[-6:], [250, 250, 250, 452, 354, 250])
        self.assertEqual(d.replies[-3], b"452 4.5.3 Too many recipients\r\n")
        start = [e for e in d.events if isinstance(e, DataStart)][0]
        self.assertEqual(start.recipients, ("1@x.test", "Postmaster", "3@x.test"))

    def test_recipientRefusals(self) -> None:
        for line, code in [
            (b"RCPT TO:<b@x.test> NOTIFY=NEVER", 555),
            (b"RCPT TO:<>", 501),
            (b"RCPT TO:b@x.test", 501),
            (b"RCPT FROM:<b@x.test>", 501),
        ]:
            d = self.mail(b"MAIL FROM:<a@b.test>\r\n" + line)
            self.assertEqual(d.codes[-1], code, line)

    def test_refusedForTheLog(self) -> None:
        """
        Each refusal of a sender, a recipient or a message comes with its
        facts (``Refused``) just before its reply; syntax errors do not.
        """
        d = Driver(maxRecipients=1, maxMessageSize=10)
        d.decide = lambda sender: replies.RELAY_DENIED if sender == "m@no.test" else None
        d.feed(b"EHLO c.test\r\nMAIL FROM:<m@no.test>\r\nMAIL FROM:<a@b.test> SIZE=11\r\n"
               b"MAIL FROM:<a@b.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<1@x.test>\r\nRCPT TO:<2@x.test>\r\n"
               b"DATA\r\n0123456789ab\r\n.\r\nHELO h.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<1@x.test>\r\n"
               b"BDAT 11 LAST\r\n0123456789a")
        refused = [e for e in d.events if isinstance(e, Refused)]
        self.assertEqual(refused, [
            Refused("MAIL", replies.RELAY_DENIED, "", "m@no.test", (), "c.test", True),
            Refused("MAIL", replies.MESSAGE_TOO_BIG, "SIZE=11 over max_message_size 10", "a@b.test", (), "c.test",
                    True),
            Refused("RCPT", replies.TOO_MANY_RECIPIENTS, "max_recipients 1 reached", "a@b.test", ("2@x.test",),
                    "c.test", True),
            Refused("DATA", replies.MESSAGE_TOO_BIG, "over max_message_size 10", "a@b.test", ("1@x.test",),
                    "c.test", True),
            Refused("BDAT", replies.MESSAGE_TOO_BIG, "over max_message_size 10", "a@b.test", ("1@x.test",),
                    "h.test", False),
        ])
        for event in refused:
            after = d.events[d.events.index(event) + 1]
            self.assertEqual(after.reply, event.reply)

    def test_refusedWithoutTLS(self) -> None:
        """MAIL before a required STARTTLS: the sender it named is in ``Refused``."""
        d = Driver(requireTLS=True).feed(b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\n")
        [refused] = [e for e in d.events if isinstance(e, Refused)]
        self.assertEqual((refused.reply, refused.sender), (replies.TLS_REQUIRED, "a@b.test"))

    def test_rcptBeforeMail(self) -> None:
        d = Driver().feed(b"EHLO c\r\nRCPT TO:<b@x.test>\r\nDATA\r\n")
        self.assertEqual(d.codes[-2:], [503, 503])

    def test_dataBeforeRcpt(self) -> None:
        d = self.mail(b"MAIL FROM:<a@b.test>\r\nDATA")
        self.assertEqual(d.codes[-1], 503)

    def test_rsetEndsTransaction(self) -> None:
        d = self.mail(b"MAIL FROM:<a@b.test>\r\nRCPT TO:<b@x.test>\r\nRSET\r\nDATA\r\nMAIL FROM:<c@d.test>")
        self.assertEqual(d.codes[-3:], [250, 503, 250])
        self.assertEqual(d.replies[-3], b"250 2.0.0 Reset ok\r\n")


class CommandTests(SynchronousTestCase):
    def test_simpleCommands(self) -> None:
        d = Driver().feed(b"EHLO c\r\nNOOP\r\nnoop anything\r\nVRFY bob\r\nVRFY\r\nEXPN all\r\nHELP\r\nRSET\r\nQUIT\r\n")
        self.assertEqual(d.codes[2:], [250, 250, 252, 501, 502, 214, 250, 221])
        self.assertIsInstance(d.events[-1], Close)

    def test_quitStopsProcessing(self) -> None:
        d = Driver().feed(b"QUIT\r\nNOOP\r\n")
        self.assertEqual(d.codes, [220, 221])
        self.assertIs(d.last, PAUSED)

    def test_crossProtocolRequestCloses(self) -> None:
        """
        A browser made to POST to the SMTP port (a text/plain form, no CORS
        preflight) carries SMTP commands in its body: the request line, or
        a header line, closes the connection before any of them runs.
        """
        smtp = b"EHLO x\r\nMAIL FROM:<a@example.test>\r\nRCPT TO:<b@external.test>\r\nDATA\r\nhi\r\n.\r\n"
        for first in [b"POST / HTTP/1.1\r\n", b"get /x HTTP/1.0\r\n", b"CONNECT a:25 HTTP/1.1\r\n", b"Host: a\r\n"]:
            d = Driver().feed(first + b"Host: gateway:2525\r\nContent-Type: text/plain\r\n\r\n" + smtp)
            self.assertEqual(d.codes, [220, 421], first)
            self.assertEqual(d.lastReply(), b"421 4.7.0 This is an SMTP service, closing connection\r\n")
            self.assertIsInstance(d.events[-1], Close)
            self.assertNotIn(MailFrom, d.kinds())

    def test_unknownCommand(self) -> None:
        d = Driver().feed(b"EHLO c\r\nBREW / HTCPCP/1.0\r\n")
        self.assertEqual(d.lastReply(), b"500 5.5.2 Syntax error, command unrecognized\r\n")

    def test_knownVerbsNotOffered(self) -> None:
        """RFC 5321 4.2.4: a verb SMTP defines that we do not offer is a 502, in any state, and changes nothing."""
        for verb in [b"AUTH PLAIN AGEAYg==", b"auth login", b"ETRN example.test", b"TURN", b"ATRN", b"BURL imap://x LAST"]:
            d = Driver().feed(b"EHLO c\r\nMAIL FROM:<a@b.test>\r\n" + verb + b"\r\nRCPT TO:<b@c.test>\r\n")
            self.assertEqual(d.codes[2:], [250, 502, 250], verb)
            self.assertIn(b"502 5.5.1 Command not implemented\r\n", d.replies, verb)

    def test_controlCharacters(self) -> None:
        for line in [b"NOOP\rQUIT", b"NOOP\nQUIT", b"NO\x00OP", b"NOOP\tx", b"NOOP\x7f", b"EHLO c\nMAIL FROM:<a@b.test>"]:
            d = Driver().feed(b"EHLO c\r\n" + line + b"\r\n")
            self.assertEqual(d.lastReply(), b"501 5.5.2 Control characters not allowed in commands\r\n", line)
            self.assertNotIn(Close, d.kinds())

    def test_bareLFDoesNotEndCommand(self) -> None:
        d = Driver().feed(b"EHLO c\r\nNOOP\n")
        self.assertEqual(d.codes, [220, 250])
        self.assertIs(d.last, NEED_DATA)

    def test_overlongLine(self) -> None:
        d = Driver(maxLineLength=100).feed(b"EHLO c\r\n")
        d.feed(b"NOOP " + b"x" * 200)
        self.assertEqual(d.lastReply(), b"500 5.5.6 Line too long\r\n")
        d.feed(b"y" * 1000)
        self.assertLessEqual(d.session.pendingBytes, 1)
        d.feed(b"\r\nNOOP\r\n")
        self.assertEqual(d.codes[-2:], [500, 250])

    def test_overlongLineInOnePiece(self) -> None:
        d = Driver(maxLineLength=100).feed(b"EHLO c\r\nNOOP " + b"x" * 120 + b"\r\nNOOP\r\n")
        self.assertEqual(d.codes[-2:], [500, 250])

    def test_overlongLineWithCRAtCut(self) -> None:
        d = Driver(maxLineLength=10).feed(b"EHLO c\r\n" + b"x" * 20 + b"\r")
        d.feed(b"\nNOOP\r\n")
        self.assertEqual(d.codes[-2:], [500, 250])

    def test_tooManyErrors(self) -> None:
        d = Driver(maxErrors=3).feed(b"EHLO c\r\nFOO\r\nBAR\r\nBAZ\r\nNOOP\r\n")
        self.assertEqual(d.codes, [220, 250, 500, 500, 500, 421])
        self.assertEqual(d.lastReply(), b"421 4.7.0 Too many errors, closing connection\r\n")
        self.assertIsInstance(d.events[-1], Close)


class StartTLSTests(SynchronousTestCase):
    def test_pipelinedInputDiscarded(self) -> None:
        d = Driver().feed(b"EHLO c\r\nSTARTTLS\r\nMAIL FROM:<evil@x.test>\r\nRCPT TO:<v@x.test>\r\n")
        self.assertEqual(d.lastReply(), b"220 2.0.0 Ready to start TLS\r\n")
        self.assertEqual(d.kinds()[-1], StartTLS)
        self.assertEqual(d.session.pendingBytes, 0)
        self.assertNotIn(MailFrom, d.kinds())
        self.assertTrue(d.session.tlsActive)

    def test_resetAfterTLS(self) -> None:
        d = Driver().feed(b"EHLO c\r\nSTARTTLS\r\n")
        d.feed(b"MAIL FROM:<a@b.test>\r\n")
        self.assertEqual(d.lastReply(), b"503 Bad sequence of commands\r\n")
        d.feed(b"EHLO c\r\n")
        self.assertNotIn(b"STARTTLS", d.lastReply())
        d.feed(b"STARTTLS\r\n")
        self.assertEqual(d.lastReply(), b"503 5.5.1 TLS already active\r\n")

    def test_requireTLSAfterStartTLS(self) -> None:
        d = Driver(requireTLS=True).feed(b"EHLO c\r\nSTARTTLS\r\n")
        d.feed(b"EHLO c\r\nMAIL FROM:<a@b.test>\r\n")
        self.assertEqual(d.codes[-1], 250)
        start = Driver(requireTLS=True).feed(b"EHLO c\r\nSTARTTLS\r\n")
        start.feed(b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<b@x.test>\r\nDATA\r\n.\r\n")
        self.assertTrue([e for e in start.events if isinstance(e, DataStart)][0].tls)

    def test_notInTransaction(self) -> None:
        d = Driver().feed(b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nSTARTTLS\r\n")
        self.assertEqual(d.codes[-1], 503)
        self.assertNotIn(StartTLS, d.kinds())

    def test_argumentRefused(self) -> None:
        d = Driver().feed(b"EHLO c\r\nSTARTTLS now\r\n")
        self.assertEqual(d.codes[-1], 501)


class ShapeTests(SynchronousTestCase):
    """
    The session is made of collaborators under one frozen limits value,
    and its table names every state it can be in, the draining ones too.
    """

    def states(self, data: bytes, **kwargs) -> list[State]:
        """The session's state after each byte of ``data``."""
        d = Driver(**kwargs)
        seen = []
        for byte in range(len(data)):
            d.feed(data[byte:byte + 1])
            seen.append(d.session.state)
        return seen

    def test_refusedChunkDrainedInItsState(self) -> None:
        """A BDAT refused before MAIL: its chunk is drained in SKIP_READY, then 503, back to READY."""
        seen = self.states(b"EHLO c\r\nBDAT 4\r\nMAIL\r\n")  # "MAIL" is the chunk, never a command
        self.assertEqual(seen[-7:], [State.SKIP_READY] * 4 + [State.READY] * 3)
        seen = self.states(b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nBDAT 2 LAST\r\nxy")
        self.assertEqual(seen[-3:], [State.SKIP_MAIL, State.SKIP_MAIL, State.MAIL])
        self.assertEqual(self.states(b"BDAT 1\r\nx")[-2:], [State.SKIP_CONNECTED, State.CONNECTED])

    def test_oversizeDrainedInItsState(self) -> None:
        """A message past the limit is drained in DATA_OVERSIZE / BDAT_OVERSIZE, then 552 and READY."""
        seen = self.states(transaction(b"0123456789abcdef\r\n.\r\n"), maxMessageSize=10)
        self.assertIn(State.DATA_OVERSIZE, seen)
        self.assertEqual(seen[-1], State.READY)
        prelude = b"EHLO c.test\r\nMAIL FROM:<a@example.test>\r\nRCPT TO:<b@x.test>\r\n"
        seen = self.states(prelude + b"BDAT 16 LAST\r\n0123456789abcdef", maxMessageSize=10)
        self.assertEqual(seen[-6:], [State.BDAT_OVERSIZE] * 5 + [State.READY])

    def test_tableNamesEveryState(self) -> None:
        """Every state has its row, every transition leads to a state, and every state but the first is reached."""
        from secudoc_gateway.smtp.states import TRANSITIONS

        self.assertEqual(set(TRANSITIONS), set(State))
        targets = {new for row in TRANSITIONS.values() for new in row.values()}
        self.assertEqual(targets | {State.CONNECTED}, set(State))

    def test_composition(self) -> None:
        """No layers of base classes: the session holds its machine, commands and data, each on its own."""
        from secudoc_gateway.smtp.commands import Commands
        from secudoc_gateway.smtp.data import MessageData
        from secudoc_gateway.smtp.states import Machine

        for cls in (Session, Machine, Commands, MessageData):
            self.assertEqual(cls.__bases__, (object,), cls)

    def test_oneFrozenLimits(self) -> None:
        """The limits are one frozen value, the session's as given."""
        limits = SessionLimits(maxMessageSize=100, maxRecipients=2, maxLineLength=80)
        session = Session("mx.test", limits)
        self.assertIs(session.limits, limits)
        self.assertRaises(attrs.exceptions.FrozenInstanceError, setattr, limits, "maxRecipients", 3)
        self.assertEqual((limits.maxErrors, limits.maxPending), (10, 1 << 20))


class PurityTests(SynchronousTestCase):
    def test_noTwistedInternet(self) -> None:
        """The session is sans-I/O: importing it loads no reactor code."""
        code = (
            "import sys, secudoc_gateway.smtp.session\n"
            "bad = [m for m in sys.modules if m.startswith('twisted')]\n"
            "sys.exit(3 if bad else 0)\n"
        )
        root = os.path.dirname(os.path.dirname(os.path.abspath(secudoc_gateway.__file__)))
        env = dict(os.environ, PYTHONPATH=root)
        self.assertEqual(subprocess.run([sys.executable, "-c", code], cwd=root, env=env).returncode, 0)
        # the same check does see the adapter's Twisted imports
        adapter = code.replace("smtp.session", "smtp.protocol")
        self.assertEqual(subprocess.run([sys.executable, "-c", adapter], cwd=root, env=env).returncode, 3)
