"""The facts policy reads from the top header block, as the parser parsed it."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from secudoc_gateway import fields
from secudoc_gateway.mime.facts import _SIMPLE_MAILBOX, fullParse, parseFromAddress, parseFromMailbox
from tests.support import facts

GUID = "0B5C1E2A-3D4F-4A6B-8C7D-9E0F1A2B3C4D"


class HeaderFactsTests(SynchronousTestCase):
    def test_fromForms(self) -> None:
        for value, expected in [
            ("Alice <alice@example.test>", "alice@example.test"),
            ('"Doe, John" <j@x.test>, b@y.test', "j@x.test"),
            ("=?utf-8?q?J=C3=B6rg?= <jorg@x.test>", "jorg@x.test"),
            ("Team: a@x.test, b@y.test;", "a@x.test"),
            ("alice@example.test (Alice)", "alice@example.test"),
            ("(c) <weird@x.test> (d)", "weird@x.test"),
            ('"a@b.test" <c@d.test>', "c@d.test"),
            ("Alice <alice@example.test", "alice@example.test"),
            ("jörg@bücher.example", "jörg@bücher.example"),
            ("garbage", ""),
            ("<>", ""),
            ("Undisclosed:;", ""),
            ("", ""),
            ("x\udcff <y@z.test>", "y@z.test"),
        ]:
            self.assertEqual(parseFromAddress(value), expected, value)

    @settings(max_examples=500)
    @given(st.data())
    def test_simpleFormsAsTheFullParser(self, data: st.DataObject) -> None:
        """
        The common From forms are read without the full RFC 5322 parser;
        on every value the short way takes, it agrees with the full one.
        """
        atext = st.text("abcXYZ019!#$%&'*+/=^_`{|}~-", min_size=1, max_size=6)
        dotAtom = st.lists(atext, min_size=1, max_size=3).map(".".join)
        address = st.builds(lambda l, d: f"{l}@{d}", dotAtom, dotAtom)
        name = st.one_of(st.just(""), st.lists(atext, min_size=1, max_size=3).map(" ".join),
                         st.text("ab ,.@<>;:()\t", max_size=12).map(lambda t: f'"{t}"'))
        space = st.sampled_from(["", " ", "  ", "\t"])
        value = data.draw(st.one_of(
            st.builds(lambda s1, a, s2: f"{s1}{a}{s2}", space, address, space),
            st.builds(lambda s1, n, s2, a, s3: f"{s1}{n}{s2}<{a}>{s3}", space, name, space, address, space)))
        self.assertIsNotNone(_SIMPLE_MAILBOX.fullmatch(value), value)
        self.assertEqual(parseFromMailbox(value), fullParse(value), value)

    def test_firstFrom(self) -> None:
        f = facts(("From", "a@one.test"), ("from", "b@two.test"))
        self.assertEqual(f.fromAddress, "a@one.test")

    def test_contentType(self) -> None:
        self.assertEqual(facts().topContentType, "text/plain")
        for value, expected in [
            ("Text/HTML; charset=utf-8", "text/html"),
            ("garbage", "text/plain"),
            ("a/b/c", "text/plain"),
            ("multipart/mixed (with (nested) comment); boundary=x", "multipart/mixed"),
            ("(lead) application/octet-stream", "application/octet-stream"),
        ]:
            self.assertEqual(facts(("Content-Type", value)).topContentType, expected, value)
        f = facts(("Content-Type", "multipart/signed"), ("Content-Type", "text/plain"))
        self.assertEqual(f.topContentType, "multipart/signed")

    def test_ids(self) -> None:
        f = facts(
            ("Message-ID", " <m1@example.test> "),
            (fields.NETWORK_MESSAGE_ID, "abc-123"),
            (fields.CROSS_TENANT_ID, GUID),
        )
        self.assertEqual(f.messageId, "<m1@example.test>")
        self.assertEqual(f.networkMessageId, "abc-123")
        self.assertEqual(f.dedupId, "abc-123")
        self.assertEqual(f.crossTenantIds, (GUID,))
        self.assertEqual(facts(("message-id", "<m2@x>")).dedupId, "<m2@x>")
        self.assertIsNone(facts().dedupId)
        self.assertIsNone(facts(("Message-ID", "  ")).dedupId)

    def test_secudocEnabled(self) -> None:
        self.assertEqual(facts().secudocEnabledValues, ())
        f = facts((fields.SECUDOC_ENABLED, " 1"), (fields.SECUDOC_ENABLED, "0"))
        self.assertEqual(f.secudocEnabledValues, ("1", "0"))

    def test_lookup(self) -> None:
        f = facts(("X-A", "1"), ("Subject", "s"), ("x-a", "2"))
        self.assertTrue(f.has("x-A"))
        self.assertFalse(f.has("X-B"))
        self.assertEqual(f.values("X-A"), ("1", "2"))

    def test_gatewayHeaders(self) -> None:
        self.assertEqual(
            fields.GATEWAY_HEADERS, {"x-secudoc", "x-secudoc-status", "x-secudoc-transfer"}
        )
