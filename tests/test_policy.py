"""
Tests for secudoc_gateway.policy: every row of SPEC section 5's table
and the order between rows, the null sender's tenant and From address,
the recipient split, and address patterns (with hypothesis).
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any, Optional

import attrs
import idna
from hypothesis import assume, given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from secudoc_gateway import fields, policy
from secudoc_gateway.policy import (
    Decision,
    contentDecision,
    earlyDecision,
    effectiveSender,
    finalDecision,
    isConfiguredUser,
    matchesAny,
    matchesPattern,
    parseRequiredHeader,
    requiredHeaderPresent,
    splitRecipients,
    tenantForNullSender,
    userAction,
)
from secudoc_gateway import replies
from secudoc_gateway.config import Tenant
from tests.support import facts

GUID = "0B5C1E2A-3D4F-4A6B-8C7D-9E0F1A2B3C4D"
OTHER_GUID = "11111111-2222-3333-4444-555555555555"


def tenant(**kw: Any) -> Tenant:
    """The demo tenant, as policy reads it, with ``kw`` for its keys."""
    base: dict[str, Any] = dict(
        id="example", domains=("example.test", "xn--bcher-kva.example"), relay="maildir:/nonexistent",
        facility_sender="noreply@example.test", users=("*@example.test",))
    return Tenant(**{**base, **kw})


BASE_HEADERS = (
    ("From", "Alice <alice@example.test>"),
    ("To", "bob@external.test"),
    ("Subject", "Report"),
    ("Content-Type", 'multipart/mixed; boundary="b"'),
)

SENDER = "alice@example.test"
EXTERNAL = ("bob@external.test", "eve@other.test")


def early(
    t: Tenant,
    extra: tuple[tuple[str, str], ...] = (),
    sender: str = SENDER,
    recipients: tuple[str, ...] = EXTERNAL,
    knownUser: bool = True,
    base: tuple[tuple[str, str], ...] = BASE_HEADERS,
) -> Optional[Decision]:
    return earlyDecision(t, sender, recipients, facts(*base, *extra), knownUser)


class RuleTableTests(SynchronousTestCase):
    """One test per row of the table, then the order between rows."""

    def assertPassed(self, decision: Optional[Decision], reason: str) -> None:
        self.assertIsNotNone(decision)
        assert decision is not None
        self.assertEqual(decision.action, policy.PASS)
        self.assertEqual(decision.reason, reason)
        self.assertEqual(decision.status, f"passed; reason={reason}")
        self.assertIsNone(decision.reply)
        self.assertEqual(decision.protectedRecipients, ())

    def assertRejected(self, decision: Optional[Decision], reply: replies.Reply) -> None:
        self.assertIsNotNone(decision)
        assert decision is not None
        self.assertEqual(decision.action, policy.REJECT)
        self.assertEqual(decision.reply, reply)
        self.assertEqual((decision.reply.code, decision.reply.enhanced), (550, "5.7.1"))
        self.assertEqual(decision.originalRecipients, ())
        self.assertEqual(decision.protectedRecipients, ())

    # Rule 1

    def test_tenantIdMissing(self) -> None:
        self.assertRejected(
            early(tenant(microsoft_tenant_id=GUID)), replies.TENANT_MISMATCH
        )

    def test_tenantIdRepeated(self) -> None:
        extra = ((fields.CROSS_TENANT_ID, GUID), (fields.CROSS_TENANT_ID, GUID))
        self.assertRejected(
            early(tenant(microsoft_tenant_id=GUID), extra), replies.TENANT_MISMATCH
        )

    def test_tenantIdDifferent(self) -> None:
        extra = ((fields.CROSS_TENANT_ID, OTHER_GUID),)
        decision = early(tenant(microsoft_tenant_id=GUID), extra)
        self.assertRejected(decision, replies.TENANT_MISMATCH)
        assert decision is not None
        self.assertEqual(decision.status, "rejected; reason=tenant-mismatch")

    def test_tenantIdMatchesAnyCase(self) -> None:
        """GUIDs compare case-insensitively; the header name too."""
        extra = (("x-ms-exchange-crosstenant-id", " " + GUID.lower() + " "),)
        self.assertIsNone(early(tenant(microsoft_tenant_id=GUID), extra))

    def test_tenantIdUnsetIgnoresHeader(self) -> None:
        extra = ((fields.CROSS_TENANT_ID, GUID), (fields.CROSS_TENANT_ID, OTHER_GUID))
        self.assertIsNone(early(tenant(), extra))

    # Rule 2

    def test_loop(self) -> None:
        decision = early(tenant(), ((fields.SECUDOC, "1.0"),))
        self.assertPassed(decision, policy.LOOP)
        assert decision is not None
        self.assertEqual(decision.originalRecipients, EXTERNAL)

    def test_loopAnyValueAnyCase(self) -> None:
        self.assertPassed(early(tenant(), (("x-secudoc", "0.9"),)), policy.LOOP)

    def test_statusHeaderIsNoLoop(self) -> None:
        """Only ``X-SecuDoc`` itself marks a relayed message."""
        extra = ((fields.SECUDOC_STATUS, "protected"), (fields.SECUDOC_TRANSFER, "t1"))
        self.assertIsNone(early(tenant(), extra))

    # Rule 3

    def test_excludedSender(self) -> None:
        t = tenant(exclude_senders=("facturen@*",))
        self.assertPassed(
            early(t, sender="Facturen@Example.test"), policy.EXCLUDED_SENDER
        )
        self.assertIsNone(early(t))

    def test_excludedSenderDomainPattern(self) -> None:
        t = tenant(exclude_senders=("*@billing.example.test",))
        self.assertPassed(
            early(t, sender="x@billing.example.test"), policy.EXCLUDED_SENDER
        )

    # Rule 4

    def test_optOutHeader(self) -> None:
        self.assertPassed(
            early(tenant(), ((fields.SECUDOC_ENABLED, "0"),)), policy.NOT_ENABLED
        )

    def test_optOutModeProtectsWithoutHeader(self) -> None:
        self.assertIsNone(early(tenant()))
        self.assertIsNone(early(tenant(), ((fields.SECUDOC_ENABLED, "1"),)))

    def test_optInWithoutHeader(self) -> None:
        self.assertPassed(early(tenant(mode="opt-in")), policy.NOT_ENABLED)

    def test_optInWithOtherValue(self) -> None:
        extra = ((fields.SECUDOC_ENABLED, "yes"),)
        self.assertPassed(early(tenant(mode="opt-in"), extra), policy.NOT_ENABLED)

    def test_optInEnabled(self) -> None:
        extra = (("x-secudoc-enabled", " 1 "),)
        self.assertIsNone(early(tenant(mode="opt-in"), extra))

    def test_optOutWinsOverOptIn(self) -> None:
        """One ``0`` among several values is the user's opt-out."""
        extra = ((fields.SECUDOC_ENABLED, "1"), (fields.SECUDOC_ENABLED, "0"))
        self.assertPassed(early(tenant(mode="opt-in"), extra), policy.NOT_ENABLED)
        self.assertPassed(early(tenant(), extra), policy.NOT_ENABLED)

    # Rule 5

    def test_requiredHeaderNameAbsent(self) -> None:
        t = tenant(required_header="X-Protect")
        self.assertPassed(early(t), policy.REQUIRED_HEADER)

    def test_requiredHeaderNamePresent(self) -> None:
        t = tenant(required_header="X-Protect")
        self.assertIsNone(early(t, (("x-PROTECT", ""),)))
        self.assertIsNone(early(t, (("X-Protect", "anything"),)))

    def test_requiredHeaderValue(self) -> None:
        t = tenant(required_header="X-Classification: Confidential  Data")
        self.assertPassed(early(t), policy.REQUIRED_HEADER)
        self.assertPassed(
            early(t, (("X-Classification", "Public"),)), policy.REQUIRED_HEADER
        )
        self.assertIsNone(
            early(t, (("x-classification", "  confidential data "),))
        )
        self.assertIsNone(
            early(
                t,
                (
                    ("X-Classification", "Public"),
                    ("X-Classification", "CONFIDENTIAL\tDATA"),
                ),
            )
        )

    def test_requiredHeaderUnset(self) -> None:
        self.assertTrue(requiredHeaderPresent("", facts()))
        self.assertTrue(requiredHeaderPresent("  ", facts()))

    def test_parseRequiredHeader(self) -> None:
        self.assertEqual(parseRequiredHeader("X-Protect"), ("x-protect", None))
        self.assertEqual(parseRequiredHeader(" X-Protect : "), ("x-protect", None))
        self.assertEqual(parseRequiredHeader("X-A: B: c"), ("x-a", "b: c"))

    # Rule 6

    def test_signedTypes(self) -> None:
        for value in (
            'multipart/signed; protocol="application/pkcs7-signature"; boundary=x',
            "Multipart/Encrypted; boundary=y",
            "application/pkcs7-mime; smime-type=enveloped-data",
            "application/x-pkcs7-mime; name=smime.p7m",
            "multipart/signed (S/MIME; detached); boundary=z",
            " multipart / signed ;boundary=z",
        ):
            decision = early(tenant(), base=((fields.CONTENT_TYPE, value),))
            self.assertPassed(decision, policy.SIGNED)

    def test_rightsProtected(self) -> None:
        """A Purview / IRM part is rule 6 too, before an unknown sender (rule 7)."""
        base = facts(*BASE_HEADERS)
        decision = earlyDecision(tenant(unknown_sender="reject"), SENDER, EXTERNAL, base, False, True)
        self.assertPassed(decision, policy.SIGNED)
        decision = earlyDecision(tenant(exclude_senders=("*@example.test",)), SENDER, EXTERNAL, base, True, True)
        self.assertPassed(decision, policy.EXCLUDED_SENDER)

    def test_rightsProtectionPart(self) -> None:
        self.assertTrue(policy.isRightsProtection("application/x-microsoft-rpmsg-message", None))
        self.assertTrue(policy.isRightsProtection("application/octet-stream", " Message.RPMSG"))
        self.assertFalse(policy.isRightsProtection("application/octet-stream", "message.rpmsg.pdf"))
        self.assertFalse(policy.isRightsProtection("application/pdf", None))

    def test_notSigned(self) -> None:
        for value in ("multipart/mixed; boundary=x", "application/pkcs7-signature", ""):
            self.assertIsNone(early(tenant(), base=((fields.CONTENT_TYPE, value),)))
        self.assertIsNone(early(tenant(), base=()))

    # Rule 7

    def test_unknownSenderPass(self) -> None:
        decision = early(tenant(), knownUser=False)
        self.assertPassed(decision, policy.UNKNOWN_SENDER)
        assert decision is not None
        self.assertEqual(decision.originalRecipients, EXTERNAL)

    def test_unknownSenderReject(self) -> None:
        decision = early(tenant(unknown_sender="reject"), knownUser=False)
        self.assertRejected(decision, replies.UNKNOWN_SENDER)
        assert decision is not None
        self.assertEqual(decision.reason, policy.UNKNOWN_SENDER)

    def test_knownSender(self) -> None:
        t = tenant(unknown_sender="reject")
        self.assertIsNone(early(t, knownUser=True))
        self.assertIsNone(userAction(t, SENDER, True))

    def test_autoCreate(self) -> None:
        for how in ("welcome", "silent"):
            t = tenant(auto_create_users=how, unknown_sender="reject")
            self.assertIsNone(early(t, knownUser=False))
            self.assertEqual(userAction(t, SENDER, False), how)
            self.assertIsNone(userAction(t, SENDER, True))

    def test_autoCreateNo(self) -> None:
        self.assertIsNone(userAction(tenant(), SENDER, False))

    def test_autoCreateOnlyOwnDomains(self) -> None:
        """A null sender's From may name someone outside the tenant."""
        t = tenant(auto_create_users="welcome")
        self.assertIsNone(userAction(t, "x@external.test", False))
        self.assertIsNone(userAction(t, "", False))
        self.assertEqual(userAction(t, "x@BÜCHER.example", False), "welcome")

    def test_configuredUser(self) -> None:
        t = tenant(users=("*@example.test", "boss@partner.test"))
        self.assertTrue(isConfiguredUser(t, "Alice@EXAMPLE.test"))
        self.assertTrue(isConfiguredUser(t, "boss@partner.test"))
        self.assertFalse(isConfiguredUser(t, "other@partner.test"))
        self.assertFalse(isConfiguredUser(tenant(users=()), SENDER))

    # Rules 8 and 9

    def test_noAttachment(self) -> None:
        decision = finalDecision(tenant(), SENDER, EXTERNAL, facts(), 0, 0)
        self.assertPassed(decision, policy.NO_ATTACHMENT)
        assert decision is not None
        self.assertEqual(decision.originalRecipients, EXTERNAL)

    def test_attachmentTooSmall(self) -> None:
        decision = finalDecision(tenant(), SENDER, EXTERNAL, facts(), 1023, 3)
        self.assertPassed(decision, policy.NO_ATTACHMENT)

    def test_attachmentAtMinimum(self) -> None:
        decision = finalDecision(tenant(), SENDER, EXTERNAL, facts(), 1024, 1)
        self.assertEqual(decision.action, policy.PROTECT)
        self.assertIsNone(decision.reason)
        self.assertEqual(decision.status, "protected")
        self.assertEqual(decision.protectedRecipients, EXTERNAL)
        self.assertEqual(decision.originalRecipients, ())
        self.assertIsNone(decision.reply)

    def test_minimumZero(self) -> None:
        """An empty attachment counts when the minimum is 0; none does not."""
        t = tenant(min_attachment_size=0)
        self.assertEqual(finalDecision(t, SENDER, EXTERNAL, facts(), 0, 1).action, policy.PROTECT)
        self.assertPassed(
            finalDecision(t, SENDER, EXTERNAL, facts(), 0, 0), policy.NO_ATTACHMENT
        )

    def test_protectedSplit(self) -> None:
        t = tenant(exclude_recipients=("*@partner.test",))
        recipients = ("bob@external.test", "carol@Example.Test", "dan@partner.test", "eve@other.test")
        decision = finalDecision(t, SENDER, recipients, facts(), 5000, 1)
        self.assertEqual(decision.action, policy.PROTECT)
        self.assertEqual(decision.protectedRecipients, ("bob@external.test", "eve@other.test"))
        self.assertEqual(decision.originalRecipients, ("carol@Example.Test", "dan@partner.test"))

    def test_allInternalFinal(self) -> None:
        recipients = ("carol@example.test",)
        decision = finalDecision(tenant(), SENDER, recipients, facts(), 5000, 1)
        self.assertPassed(decision, policy.INTERNAL_RECIPIENT)
        self.assertEqual(decision.originalRecipients, recipients)

    def test_allInternalEarly(self) -> None:
        """Known at the headers, so no attachment need be stored."""
        t = tenant(exclude_recipients=("bob@external.test",))
        recipients = ("carol@example.test", "bob@EXTERNAL.test")
        decision = early(t, recipients=recipients)
        self.assertPassed(decision, policy.INTERNAL_RECIPIENT)
        assert decision is not None
        self.assertEqual(decision.originalRecipients, recipients)

    def test_mixedRecipientsGoOn(self) -> None:
        self.assertIsNone(early(tenant(), recipients=("carol@example.test",) + EXTERNAL))

    # Order: first match wins

    def test_tenantMismatchBeatsLoop(self) -> None:
        extra = ((fields.SECUDOC, "1.0"),)
        self.assertRejected(
            early(tenant(microsoft_tenant_id=GUID), extra), replies.TENANT_MISMATCH
        )

    def test_loopBeatsExcludedSender(self) -> None:
        t = tenant(exclude_senders=(SENDER,))
        self.assertPassed(early(t, ((fields.SECUDOC, "1.0"),)), policy.LOOP)

    def test_excludedSenderBeatsNotEnabled(self) -> None:
        t = tenant(exclude_senders=(SENDER,), mode="opt-in")
        self.assertPassed(early(t), policy.EXCLUDED_SENDER)

    def test_notEnabledBeatsRequiredHeader(self) -> None:
        t = tenant(mode="opt-in", required_header="X-Protect")
        self.assertPassed(early(t), policy.NOT_ENABLED)

    def test_requiredHeaderBeatsSigned(self) -> None:
        t = tenant(required_header="X-Protect")
        base = ((fields.CONTENT_TYPE, "multipart/signed; boundary=x"),)
        self.assertPassed(early(t, base=base), policy.REQUIRED_HEADER)

    def test_signedBeatsUnknownSender(self) -> None:
        t = tenant(unknown_sender="reject")
        base = ((fields.CONTENT_TYPE, "application/pkcs7-mime"),)
        self.assertPassed(early(t, base=base, knownUser=False), policy.SIGNED)

    def test_unknownSenderBeatsInternalRecipient(self) -> None:
        t = tenant(unknown_sender="reject")
        decision = early(t, recipients=("carol@example.test",), knownUser=False)
        self.assertRejected(decision, replies.UNKNOWN_SENDER)

    def test_internalRecipientBeatsNoAttachment(self) -> None:
        decision = finalDecision(tenant(), SENDER, ("carol@example.test",), facts(), 0, 0)
        self.assertPassed(decision, policy.INTERNAL_RECIPIENT)

    def test_everythingPassesInOrder(self) -> None:
        """
        A message that every rule would catch: each rule decides until
        its condition is removed, then the next one does.
        """
        t = tenant(
            microsoft_tenant_id=GUID,
            exclude_senders=(SENDER,),
            mode="opt-in",
            required_header="X-Protect",
            unknown_sender="reject",
        )
        signed = (fields.CONTENT_TYPE, "multipart/signed; boundary=x")
        headers = [(fields.CROSS_TENANT_ID, OTHER_GUID), (fields.SECUDOC, "1.0"), signed]
        steps: list[tuple[str, str, Any]] = [
            (policy.REJECT, policy.TENANT_MISMATCH,
             lambda: headers.__setitem__(0, (fields.CROSS_TENANT_ID, GUID))),
            (policy.PASS, policy.LOOP,
             lambda: headers.remove((fields.SECUDOC, "1.0"))),
            (policy.PASS, policy.EXCLUDED_SENDER,
             lambda: attrs.evolve(t, exclude_senders=())),
            (policy.PASS, policy.NOT_ENABLED,
             lambda: headers.append((fields.SECUDOC_ENABLED, "1"))),
            (policy.PASS, policy.REQUIRED_HEADER,
             lambda: headers.append(("X-Protect", ""))),
            (policy.PASS, policy.SIGNED, lambda: headers.remove(signed)),
            (policy.REJECT, policy.UNKNOWN_SENDER, lambda: None),
        ]
        for action, reason, remove in steps:
            decision = earlyDecision(t, SENDER, EXTERNAL, facts(*headers), False)
            assert decision is not None
            self.assertEqual((decision.action, decision.reason), (action, reason))
            changed = remove()
            if changed is not None:
                t = changed
        self.assertIsNone(earlyDecision(t, SENDER, EXTERNAL, facts(*headers), True))


class NullSenderTests(SynchronousTestCase):
    """``MAIL FROM:<>``: the From address is the sender (SPEC section 5)."""

    def test_effectiveSender(self) -> None:
        f = facts(("From", '"Postmaster" <Postmaster@example.test>'))
        self.assertEqual(effectiveSender("", f), "Postmaster@example.test")
        self.assertEqual(effectiveSender(SENDER, f), SENDER)
        self.assertEqual(effectiveSender("", facts()), "")

    def test_fromExcluded(self) -> None:
        t = tenant(exclude_senders=("postmaster@*",))
        base = (("From", "Mail Delivery <postmaster@example.test>"),)
        self.assertPassed(early(t, sender="", base=base), policy.EXCLUDED_SENDER)

    def test_noFromIsNeverExcluded(self) -> None:
        t = tenant(exclude_senders=("*@*",))
        self.assertIsNone(early(t, sender="", base=()))

    def assertPassed(self, decision: Optional[Decision], reason: str) -> None:
        assert decision is not None
        self.assertEqual((decision.action, decision.reason), (policy.PASS, reason))

    def registry(self, *tenants: Tenant) -> Any:
        byId = {t.microsoft_tenant_id.lower(): t for t in tenants}
        return byId.get

    def test_tenantMissing(self) -> None:
        lookup = self.registry(tenant(microsoft_tenant_id=GUID))
        self.assertIsNone(tenantForNullSender(facts(), lookup))

    def test_tenantRepeated(self) -> None:
        lookup = self.registry(tenant(microsoft_tenant_id=GUID))
        f = facts((fields.CROSS_TENANT_ID, GUID), (fields.CROSS_TENANT_ID, GUID))
        self.assertIsNone(tenantForNullSender(f, lookup))

    def test_tenantMismatched(self) -> None:
        lookup = self.registry(tenant(microsoft_tenant_id=GUID))
        f = facts((fields.CROSS_TENANT_ID, OTHER_GUID))
        self.assertIsNone(tenantForNullSender(f, lookup))

    def test_tenantEmpty(self) -> None:
        lookup = self.registry(tenant(microsoft_tenant_id=""))
        self.assertIsNone(tenantForNullSender(facts((fields.CROSS_TENANT_ID, " ")), lookup))

    def test_tenantMatching(self) -> None:
        t = tenant(microsoft_tenant_id=GUID)
        lookup = self.registry(tenant(id="other", microsoft_tenant_id=OTHER_GUID), t)
        f = facts(("x-ms-exchange-crosstenant-id", GUID.lower()))
        self.assertIs(tenantForNullSender(f, lookup), t)

    def test_lookupResultChecked(self) -> None:
        """A lookup that hands back the wrong tenant is not believed."""
        wrong = tenant(microsoft_tenant_id=OTHER_GUID)
        f = facts((fields.CROSS_TENANT_ID, GUID))
        self.assertIsNone(tenantForNullSender(f, lambda guid: wrong))

    def test_realRegistryAndTenant(self) -> None:
        """The config's Tenant and the registry's lookup fit."""
        from secudoc_gateway.config import Tenant
        from secudoc_gateway.tenants import TenantRegistry

        t = Tenant(
            id="example",
            domains=("example.test",),
            relay="maildir:/nonexistent",
            facility_sender="noreply@example.test",
            microsoft_tenant_id=GUID,
            users=("*@example.test",),
        )
        registry = TenantRegistry([t])
        f = facts((fields.CROSS_TENANT_ID, GUID.lower()), ("From", "a@example.test"))
        self.assertIs(tenantForNullSender(f, registry.forMicrosoftTenantId), t)
        self.assertTrue(isConfiguredUser(t, "a@example.test"))
        self.assertIsNone(earlyDecision(t, "", EXTERNAL, f, True))
        self.assertEqual(
            finalDecision(t, "", EXTERNAL, f, 2048, 1).protectedRecipients, EXTERNAL
        )


class ContentDecisionTests(SynchronousTestCase):
    """
    The transaction runs `earlyDecision` at the header block (sender
    known, no part seen) and only `contentDecision` at the end: together
    they must decide as the whole table does.
    """

    def test_rules(self) -> None:
        self.assertEqual(contentDecision(tenant(), EXTERNAL, True, True), policy.passed(policy.SIGNED, EXTERNAL))
        self.assertEqual(contentDecision(tenant(), EXTERNAL, False, False),
                         policy.passed(policy.UNKNOWN_SENDER, EXTERNAL))
        self.assertEqual(contentDecision(tenant(unknown_sender="reject"), EXTERNAL, False, False),
                         policy.rejected(policy.UNKNOWN_SENDER, replies.UNKNOWN_SENDER))
        self.assertIsNone(contentDecision(tenant(auto_create_users="welcome"), EXTERNAL, False, False))
        self.assertIsNone(contentDecision(tenant(), EXTERNAL, True, False))

    @given(
        st.sampled_from(["no", "welcome", "silent"]),
        st.sampled_from(["pass", "reject"]),
        st.sampled_from([(), ("*@example.test",)]),
        st.sampled_from([BASE_HEADERS[3][1], "multipart/signed; boundary=z", "text/plain"]),
        st.lists(st.sampled_from(["bob@external.test", "carol@example.test", "eve@other.test"]), min_size=1,
                 max_size=3),
        st.booleans(),
        st.booleans(),
    )
    def test_sameAsTheWholeTable(self, create: str, unknown: str, excluded: tuple[str, ...], contentType: str,
                                 recipients: list[str], known: bool, rightsProtected: bool) -> None:
        t = tenant(auto_create_users=create, unknown_sender=unknown, exclude_senders=excluded)
        headers = facts(*BASE_HEADERS[:3], (fields.CONTENT_TYPE, contentType))
        assume(earlyDecision(t, SENDER, recipients, headers, True) is None)
        self.assertEqual(contentDecision(t, recipients, known, rightsProtected),
                         earlyDecision(t, SENDER, recipients, headers, known, rightsProtected))


class SplitTests(SynchronousTestCase):
    def test_order(self) -> None:
        t = tenant(exclude_recipients=("boss@*",))
        recipients = ("a@x.test", "b@example.test", "boss@y.test", "c@z.test", "d@EXAMPLE.TEST")
        self.assertEqual(
            splitRecipients(t, recipients),
            (("b@example.test", "boss@y.test", "d@EXAMPLE.TEST"), ("a@x.test", "c@z.test")),
        )

    def test_idna(self) -> None:
        """The tenant's A-label domain matches the U-label, any case."""
        self.assertEqual(
            splitRecipients(tenant(), ("x@Bücher.example", "y@xn--bcher-kva.EXAMPLE")),
            (("x@Bücher.example", "y@xn--bcher-kva.EXAMPLE"), ()),
        )
        t = tenant(domains=("bücher.example",))
        self.assertEqual(
            splitRecipients(t, ("y@xn--bcher-kva.example",)),
            (("y@xn--bcher-kva.example",), ()),
        )

    def test_subdomainIsExternal(self) -> None:
        recipients = ("a@sub.example.test", "b@example.test.evil", "c@notexample.test")
        self.assertEqual(splitRecipients(tenant(), recipients), ((), recipients))

    def test_trailingDot(self) -> None:
        self.assertEqual(
            splitRecipients(tenant(), ("a@example.test.",)), (("a@example.test.",), ())
        )

    def test_empty(self) -> None:
        self.assertEqual(splitRecipients(tenant(), ()), ((), ()))


class PatternTests(SynchronousTestCase):
    def test_forms(self) -> None:
        self.assertTrue(matchesPattern("facturen@a.test", "facturen@*"))
        self.assertTrue(matchesPattern("FACTUREN@a.test", "Facturen@*"))
        self.assertFalse(matchesPattern("facturen2@a.test", "facturen@*"))
        self.assertTrue(matchesPattern("x@billing.example.test", "*@billing.example.test"))
        self.assertFalse(matchesPattern("x@example.test", "*@billing.example.test"))
        self.assertFalse(matchesPattern("x@sub.billing.example.test", "*@billing.example.test"))
        self.assertTrue(matchesPattern("Bob@Example.Test", "bob@example.test"))
        self.assertFalse(matchesPattern("bob@example.test", "bo@example.test"))
        self.assertTrue(matchesPattern("anyone@anywhere.test", "*@*"))

    def test_idna(self) -> None:
        self.assertTrue(matchesPattern("x@xn--bcher-kva.example", "*@BÜCHER.example"))
        self.assertTrue(matchesPattern("x@Bücher.Example", "x@xn--bcher-kva.example"))
        self.assertTrue(matchesPattern("x@ＥＸＡＭＰＬＥ.test", "*@example.test"))

    def test_noMatch(self) -> None:
        """Malformed patterns and addresses match nothing."""
        for address, pattern in [
            ("a@b.test", "*"),
            ("a@b.test", "b.test"),
            ("a@b.test", ""),
            ("a@b.test", "@b.test"),
            ("a@b.test", "a@"),
            ("", "*@*"),
            ("nodomain", "*@*"),
            ("nodomain", "nodomain"),
            ("@b.test", "*@b.test"),
        ]:
            self.assertFalse(matchesPattern(address, pattern), (address, pattern))

    def test_quotedLocalPart(self) -> None:
        self.assertTrue(matchesPattern('"a@b"@c.test', "*@c.test"))
        self.assertTrue(matchesPattern('"a@b"@c.test', '"A@B"@*'))

    def test_matchesAny(self) -> None:
        self.assertTrue(matchesAny("a@b.test", ["x@*", "*@b.test"]))
        self.assertFalse(matchesAny("a@b.test", []))


labels = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
domains = st.lists(labels, min_size=1, max_size=4).map(".".join)
locals_ = st.from_regex(r"[A-Za-z0-9._+=-]{1,16}", fullmatch=True)
unicodeDomains = st.sampled_from(
    ["bücher.example", "münchen.de", "пример.испытание", "例え.テスト", "ÉCOLE.fr"]
)


@st.composite
def caseVariant(draw: st.DrawFn, text: str) -> str:
    flips = draw(st.lists(st.booleans(), min_size=len(text), max_size=len(text)))
    return "".join(ch.swapcase() if flip else ch for ch, flip in zip(text, flips))


class PatternPropertyTests(SynchronousTestCase):
    @given(st.data(), locals_, domains)
    def test_domainCaseAlwaysMatches(self, data: st.DataObject, local: str, domain: str) -> None:
        variant = data.draw(caseVariant(domain))
        address = f"{local}@{variant}"
        self.assertTrue(matchesPattern(address, f"*@{domain}"))
        self.assertTrue(matchesPattern(address, f"{local}@{domain}"))
        self.assertTrue(matchesPattern(address, f"{local}@*"))

    @given(locals_, domains, domains)
    def test_domainPatternOnlyItsDomain(self, local: str, domain: str, other: str) -> None:
        assume(domain.lower() != other.lower())
        self.assertFalse(matchesPattern(f"{local}@{other}", f"*@{domain}"))
        self.assertFalse(matchesPattern(f"{local}@{other}", f"{local}@{domain}"))

    @given(st.data(), locals_, locals_, domains)
    def test_localPatternAnyDomain(
        self, data: st.DataObject, local: str, other: str, domain: str
    ) -> None:
        variant = data.draw(caseVariant(local))
        self.assertTrue(matchesPattern(f"{variant}@{domain}", f"{local}@*"))
        self.assertEqual(
            matchesPattern(f"{other}@{domain}", f"{local}@*"),
            other.lower() == local.lower(),
        )

    @given(locals_, domains, locals_, domains)
    def test_exactMatchesOnlyItself(
        self, local: str, domain: str, otherLocal: str, otherDomain: str
    ) -> None:
        self.assertEqual(
            matchesPattern(f"{otherLocal}@{otherDomain}", f"{local}@{domain}"),
            (otherLocal.lower(), otherDomain.lower()) == (local.lower(), domain.lower()),
        )

    @given(locals_, unicodeDomains, st.booleans())
    def test_uLabelMatchesALabel(self, local: str, domain: str, upper: bool) -> None:
        aLabel = idna.encode(domain, uts46=True).decode("ascii")
        uLabel = domain.upper() if upper else domain
        self.assertTrue(matchesPattern(f"{local}@{aLabel}", f"*@{uLabel}"))
        self.assertTrue(matchesPattern(f"{local}@{uLabel}", f"*@{aLabel.upper()}"))
        self.assertTrue(matchesPattern(f"{local}@{uLabel}", f"{local.upper()}@{domain}"))


class PurityTests(SynchronousTestCase):
    def test_noTwisted(self) -> None:
        """The policy is plain Python: importing it loads no Twisted."""
        code = (
            "import sys, secudoc_gateway.policy\n"
            "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'twisted')\n"
            "print(loaded)\n"
        )
        root = os.path.dirname(os.path.dirname(os.path.abspath(policy.__file__)))
        env = dict(os.environ, PYTHONPATH=root)
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
        )
        self.assertEqual(result.stdout.strip(), "[]")
