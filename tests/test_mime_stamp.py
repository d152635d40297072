"""The gateway's own header fields and the removal of incoming ones."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from secudoc_gateway.envelope import Envelope
from secudoc_gateway.mime.headers import Headers, lineEnding, splitFields
from secudoc_gateway.mime.stamp import received, stampFields, stamped, withoutGatewayFields

BLOCK = (
    b"From: a@example.test\r\n"
    b"X-SecuDoc: 1.0\r\n"
    b"Subject: folded\r\n  over two lines\r\n"
    b"x-secudoc-status: passed\r\n"
    b"X-SecuDoc-Transfer: abc\r\n"
    b"X-SecuDoc-Enabled: 1\r\n"
)


def without(block: bytes) -> bytes:
    """The block as the parser hands it over, stripped of gateway fields."""
    return withoutGatewayFields(Headers.fromBlock(block))


class StampTests(SynchronousTestCase):
    def test_rawFieldsRoundTrip(self) -> None:
        fields = splitFields(BLOCK)
        self.assertEqual(b"".join(fields), BLOCK)
        self.assertEqual(fields[2], b"Subject: folded\r\n  over two lines\r\n")
        self.assertEqual(Headers.fromBlock(BLOCK).raw, fields)

    def test_gatewayFieldsRemovedOthersKept(self) -> None:
        self.assertEqual(
            without(BLOCK),
            b"From: a@example.test\r\nSubject: folded\r\n  over two lines\r\nX-SecuDoc-Enabled: 1\r\n",
        )

    def test_junkLinesKept(self) -> None:
        """Lines that are no field go through as received: the stamp changes nothing but its own fields."""
        block = b"From sender@example.test Mon Jan  1 00:00:00 2024\n  stray\nA: 1\rjunk\nX-SecuDoc: 1\n"
        self.assertEqual(without(block), block[: block.index(b"X-SecuDoc")])
        self.assertEqual(without(b" first\r\nA: 1\r\n"), b" first\r\nA: 1\r\n")

    def test_lineEnding(self) -> None:
        self.assertEqual(lineEnding(BLOCK), b"\r\n")
        self.assertEqual(lineEnding(BLOCK.replace(b"\r\n", b"\n")), b"\n")
        self.assertEqual(lineEnding(b""), b"\r\n")

    def test_received(self) -> None:
        envelope = Envelope("a@example.test", ("b@x.test",), peer="2001:db8::1", helo="mx.test", tls=True)
        text = received(envelope, "gw.test", "Q1", date=0)
        self.assertEqual(
            text,
            "Received: from mx.test ([IPv6:2001:db8::1])\r\n"
            "\tby gw.test (secudoc-gateway) with ESMTPS id Q1\r\n"
            "\tfor <b@x.test>;\r\n"
            "\tThu, 01 Jan 1970 00:00:00 GMT",
        )

    def test_stampInTheMessagesStyle(self) -> None:
        envelope = Envelope("a@example.test", ("b@x.test", "c@x.test"), peer="127.0.0.1", helo="h")
        stamp = stampFields(envelope, "gw", "Q", "protected", "T1", eol=b"\n", date=0)
        self.assertNotIn(b"\r", stamp)
        self.assertNotIn(b"for <", stamp)
        self.assertTrue(stamp.endswith(b"X-SecuDoc: 1.0\nX-SecuDoc-Status: protected\nX-SecuDoc-Transfer: T1\n"))

    def test_foldedGatewayFieldRemovedWhole(self) -> None:
        block = b"X-SecuDoc: 1.0\r\n continued\r\nSubject: s\r\n"
        self.assertEqual(without(block), b"Subject: s\r\n")
        self.assertEqual(without(block.replace(b"\r\n", b"\n")), b"Subject: s\n")

    def test_stampOnTop(self) -> None:
        self.assertEqual(stamped(b"A: 1\r\n", b"S: x\r\n"), [b"S: x\r\n", b"A: 1\r\n"])

    def test_strayContinuationFirst(self) -> None:
        """
        A block that starts with folding whitespace: Received stays first
        and takes the stray line, the other gateway fields go last.
        """
        stamp = b"Received: from a\r\n\tby b; date\r\nX-SecuDoc: 1.0\r\nS: x\r\n"
        self.assertEqual(b"".join(stamped(b" junk\r\nA: 1\r\n", stamp)),
                         b"Received: from a\r\n\tby b; date\r\n junk\r\nA: 1\r\nX-SecuDoc: 1.0\r\nS: x\r\n")
        self.assertEqual(b"".join(stamped(b"\tjunk", b"Received: r\nS: x\n")), b"Received: r\n\tjunk\nS: x\n")

    def test_blanksBeforeTheColon(self) -> None:
        self.assertEqual(without(b"X-SecuDoc : 1.0\r\nA: b\r\n"), b"A: b\r\n")
