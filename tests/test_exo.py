"""
The Exchange Online set-up script (SPEC section 11): its quoting, each
cmdlet's parameters against Microsoft's reference pages, the opt-out
and opt-in rules, what it cannot express said in comments, a reviewed
golden script, and the real ``exo-setup`` command.

PowerShell is not installed here, so the script is read back by a small
reader of the two PowerShell rules it relies on: a single-quoted string
(any of the five single-quote characters ends it, a doubled one stands
for itself) and a ``#`` comment up to the end of the line.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import sys

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from secudoc_gateway import devcert, exo
from secudoc_gateway.config.values import Tenant
from secudoc_gateway.testing import DEMO_TENANT, writeConfig
from secudoc_gateway.testing.gateway import run

GOLDEN = os.path.join(os.path.dirname(__file__), "golden", "exo_optin.ps1")

# The parameters of each cmdlet the script calls, as listed (one "### -Name"
# heading each) on Microsoft's cmdlet reference page named above it; the
# pages' source is github.com/MicrosoftDocs/office-docs-powershell,
# exchange/exchange-ps/ExchangePowerShell/<cmdlet>.md (read 2026-08).
PARAMETERS: dict[str, frozenset[str]] = {
    # https://learn.microsoft.com/powershell/module/exchangepowershell/get-distributiongroup
    "Get-DistributionGroup": frozenset("""
        Identity Anr Credential DomainController Filter IgnoreDefaultScope
        IncludeAcceptMessagesOnlyFromDLMembersWithDisplayNames
        IncludeAcceptMessagesOnlyFromSendersOrMembersWithDisplayNames
        IncludeAcceptMessagesOnlyFromWithDisplayNames
        IncludeBypassModerationFromSendersOrMembersWithDisplayNames
        IncludeGrantSendOnBehalfToWithDisplayNames IncludeManagedByWithDisplayNames
        IncludeModeratedByWithDisplayNames ManagedBy OrganizationalUnit ReadFromDomainController
        RecipientTypeDetails ResultSize SortBy
    """.split()),
    # https://learn.microsoft.com/powershell/module/exchangepowershell/get-inboundconnector
    "Get-InboundConnector": frozenset("""
        Identity ResultSize
    """.split()),
    # https://learn.microsoft.com/powershell/module/exchangepowershell/new-inboundconnector
    "New-InboundConnector": frozenset("""
        Name SenderDomains AssociatedAcceptedDomains ClientHostNames CloudServicesMailEnabled Comment
        Confirm ConnectorSource ConnectorType EFSkipIPs EFSkipLastIP EFSkipMailGateway EFTestMode EFUsers
        Enabled RequireTls RestrictDomainsToCertificate RestrictDomainsToIPAddresses ScanAndDropRecipients
        SenderIPAddresses TlsSenderCertificateName TreatMessagesAsInternal TrustedOrganizations WhatIf
    """.split()),
    # https://learn.microsoft.com/powershell/module/exchangepowershell/set-inboundconnector
    "Set-InboundConnector": frozenset("""
        Identity AssociatedAcceptedDomains CloudServicesMailEnabled Comment Confirm ConnectorSource
        ConnectorType EFSkipIPs EFSkipLastIP EFSkipMailGateway EFTestMode EFUsers Enabled Name RequireTls
        RestrictDomainsToCertificate RestrictDomainsToIPAddresses ScanAndDropRecipients SenderDomains
        SenderIPAddresses TlsSenderCertificateName TreatMessagesAsInternal TrustedOrganizations WhatIf
    """.split()),
    # https://learn.microsoft.com/powershell/module/exchangepowershell/get-outboundconnector
    "Get-OutboundConnector": frozenset("""
        Identity IncludeTestModeConnectors IsTransportRuleScoped ResultSize
    """.split()),
    # https://learn.microsoft.com/powershell/module/exchangepowershell/new-outboundconnector
    "New-OutboundConnector": frozenset("""
        Name AllAcceptedDomains CloudServicesMailEnabled Comment Confirm ConnectorSource ConnectorType
        Enabled IsTransportRuleScoped LinkForModifiedConnector MtaStsMode RecipientDomains
        RouteAllMessagesViaOnPremises SenderRewritingEnabled SmartHosts SmtpDaneMode TestMode TlsDomain
        TlsSettings UseMXRecord WhatIf
    """.split()),
    # https://learn.microsoft.com/powershell/module/exchangepowershell/set-outboundconnector
    "Set-OutboundConnector": frozenset("""
        Identity AllAcceptedDomains CloudServicesMailEnabled Comment Confirm ConnectorSource ConnectorType
        Enabled IsTransportRuleScoped IsValidated LastValidationTimestamp MtaStsMode Name RecipientDomains
        RouteAllMessagesViaOnPremises SenderRewritingEnabled SmartHosts SmtpDaneMode TestMode TlsDomain
        TlsSettings UseMXRecord ValidationRecipients WhatIf
    """.split()),
    # https://learn.microsoft.com/powershell/module/exchangepowershell/get-transportrule
    "Get-TransportRule": frozenset("""
        Identity DomainController State DlpPolicy ExcludeConditionActionDetails Filter ResultSize
    """.split()),
    # https://learn.microsoft.com/powershell/module/exchangepowershell/new-transportrule
    "New-TransportRule": frozenset("""
        Name ActivationDate ADComparisonAttribute ADComparisonOperator AddManagerAsRecipientType
        AddToRecipients AnyOfCcHeader AnyOfCcHeaderMemberOf AnyOfRecipientAddressContainsWords
        AnyOfRecipientAddressMatchesPatterns AnyOfToCcHeader AnyOfToCcHeaderMemberOf AnyOfToHeader
        AnyOfToHeaderMemberOf ApplyClassification ApplyHtmlDisclaimerFallbackAction
        ApplyHtmlDisclaimerLocation ApplyHtmlDisclaimerText ApplyOME
        ApplyRightsProtectionCustomizationTemplate ApplyRightsProtectionTemplate AttachmentContainsWords
        AttachmentExtensionMatchesWords AttachmentHasExecutableContent AttachmentIsPasswordProtected
        AttachmentIsUnsupported AttachmentMatchesPatterns AttachmentNameMatchesPatterns
        AttachmentProcessingLimitExceeded AttachmentPropertyContainsWords AttachmentSizeOver
        BetweenMemberOf1 BetweenMemberOf2 BlindCopyTo Comments Confirm ContentCharacterSetContainsWords
        CopyTo DeleteMessage Disconnect DlpPolicy DomainController Enabled ExceptIfADComparisonAttribute
        ExceptIfADComparisonOperator ExceptIfAnyOfCcHeader ExceptIfAnyOfCcHeaderMemberOf
        ExceptIfAnyOfRecipientAddressContainsWords ExceptIfAnyOfRecipientAddressMatchesPatterns
        ExceptIfAnyOfToCcHeader ExceptIfAnyOfToCcHeaderMemberOf ExceptIfAnyOfToHeader
        ExceptIfAnyOfToHeaderMemberOf ExceptIfAttachmentContainsWords
        ExceptIfAttachmentExtensionMatchesWords ExceptIfAttachmentHasExecutableContent
        ExceptIfAttachmentIsPasswordProtected ExceptIfAttachmentIsUnsupported
        ExceptIfAttachmentMatchesPatterns ExceptIfAttachmentNameMatchesPatterns
        ExceptIfAttachmentProcessingLimitExceeded ExceptIfAttachmentPropertyContainsWords
        ExceptIfAttachmentSizeOver ExceptIfBetweenMemberOf1 ExceptIfBetweenMemberOf2
        ExceptIfContentCharacterSetContainsWords ExceptIfFrom ExceptIfFromAddressContainsWords
        ExceptIfFromAddressMatchesPatterns ExceptIfFromMemberOf ExceptIfFromScope ExceptIfHasClassification
        ExceptIfHasNoClassification ExceptIfHasSenderOverride ExceptIfHeaderContainsMessageHeader
        ExceptIfHeaderContainsWords ExceptIfHeaderMatchesMessageHeader ExceptIfHeaderMatchesPatterns
        ExceptIfManagerAddresses ExceptIfManagerForEvaluatedUser ExceptIfMessageContainsDataClassifications
        ExceptIfMessageSizeOver ExceptIfMessageTypeMatches ExceptIfRecipientADAttributeContainsWords
        ExceptIfRecipientADAttributeMatchesPatterns ExceptIfRecipientAddressContainsWords
        ExceptIfRecipientAddressMatchesPatterns ExceptIfRecipientDomainIs ExceptIfRecipientInSenderList
        ExceptIfSCLOver ExceptIfSenderADAttributeContainsWords ExceptIfSenderADAttributeMatchesPatterns
        ExceptIfSenderDomainIs ExceptIfSenderInRecipientList ExceptIfSenderIpRanges
        ExceptIfSenderManagementRelationship ExceptIfSentTo ExceptIfSentToMemberOf ExceptIfSentToScope
        ExceptIfSubjectContainsWords ExceptIfSubjectMatchesPatterns ExceptIfSubjectOrBodyContainsWords
        ExceptIfSubjectOrBodyMatchesPatterns ExceptIfWithImportance ExpiryDate From FromAddressContainsWords
        FromAddressMatchesPatterns FromMemberOf FromScope GenerateIncidentReport GenerateNotification
        HasClassification HasNoClassification HasSenderOverride HeaderContainsMessageHeader
        HeaderContainsWords HeaderMatchesMessageHeader HeaderMatchesPatterns IncidentReportContent
        IncidentReportOriginalMail LogEventText ManagerAddresses ManagerForEvaluatedUser
        MessageContainsDataClassifications MessageSizeOver MessageTypeMatches Mode ModerateMessageByManager
        ModerateMessageByUser NotifySender PrependSubject Priority Quarantine
        RecipientADAttributeContainsWords RecipientADAttributeMatchesPatterns RecipientAddressContainsWords
        RecipientAddressMatchesPatterns RecipientAddressType RecipientDomainIs RecipientInSenderList
        RedirectMessageTo RejectMessageEnhancedStatusCode RejectMessageReasonText RemoveHeader RemoveOME
        RemoveOMEv2 RemoveRMSAttachmentEncryption RouteMessageOutboundConnector
        RouteMessageOutboundRequireTls RuleErrorAction RuleSubType SCLOver SenderADAttributeContainsWords
        SenderADAttributeMatchesPatterns SenderAddressLocation SenderDomainIs SenderInRecipientList
        SenderIpRanges SenderManagementRelationship SentTo SentToMemberOf SentToScope SetAuditSeverity
        SetHeaderName SetHeaderValue SetSCL SmtpRejectMessageRejectStatusCode SmtpRejectMessageRejectText
        StopRuleProcessing SubjectContainsWords SubjectMatchesPatterns SubjectOrBodyContainsWords
        SubjectOrBodyMatchesPatterns UseLegacyRegex WhatIf WithImportance
    """.split()),
    # https://learn.microsoft.com/powershell/module/exchangepowershell/set-transportrule
    "Set-TransportRule": frozenset("""
        Identity ActivationDate ADComparisonAttribute ADComparisonOperator AddManagerAsRecipientType
        AddToRecipients AnyOfCcHeader AnyOfCcHeaderMemberOf AnyOfRecipientAddressContainsWords
        AnyOfRecipientAddressMatchesPatterns AnyOfToCcHeader AnyOfToCcHeaderMemberOf AnyOfToHeader
        AnyOfToHeaderMemberOf ApplyClassification ApplyHtmlDisclaimerFallbackAction
        ApplyHtmlDisclaimerLocation ApplyHtmlDisclaimerText ApplyOME
        ApplyRightsProtectionCustomizationTemplate ApplyRightsProtectionTemplate AttachmentContainsWords
        AttachmentExtensionMatchesWords AttachmentHasExecutableContent AttachmentIsPasswordProtected
        AttachmentIsUnsupported AttachmentMatchesPatterns AttachmentNameMatchesPatterns
        AttachmentProcessingLimitExceeded AttachmentPropertyContainsWords AttachmentSizeOver
        BetweenMemberOf1 BetweenMemberOf2 BlindCopyTo Comments Confirm ContentCharacterSetContainsWords
        CopyTo DeleteMessage Disconnect DlpPolicy DomainController ExceptIfADComparisonAttribute
        ExceptIfADComparisonOperator ExceptIfAnyOfCcHeader ExceptIfAnyOfCcHeaderMemberOf
        ExceptIfAnyOfRecipientAddressContainsWords ExceptIfAnyOfRecipientAddressMatchesPatterns
        ExceptIfAnyOfToCcHeader ExceptIfAnyOfToCcHeaderMemberOf ExceptIfAnyOfToHeader
        ExceptIfAnyOfToHeaderMemberOf ExceptIfAttachmentContainsWords
        ExceptIfAttachmentExtensionMatchesWords ExceptIfAttachmentHasExecutableContent
        ExceptIfAttachmentIsPasswordProtected ExceptIfAttachmentIsUnsupported
        ExceptIfAttachmentMatchesPatterns ExceptIfAttachmentNameMatchesPatterns
        ExceptIfAttachmentProcessingLimitExceeded ExceptIfAttachmentPropertyContainsWords
        ExceptIfAttachmentSizeOver ExceptIfBetweenMemberOf1 ExceptIfBetweenMemberOf2
        ExceptIfContentCharacterSetContainsWords ExceptIfFrom ExceptIfFromAddressContainsWords
        ExceptIfFromAddressMatchesPatterns ExceptIfFromMemberOf ExceptIfFromScope ExceptIfHasClassification
        ExceptIfHasNoClassification ExceptIfHasSenderOverride ExceptIfHeaderContainsMessageHeader
        ExceptIfHeaderContainsWords ExceptIfHeaderMatchesMessageHeader ExceptIfHeaderMatchesPatterns
        ExceptIfManagerAddresses ExceptIfManagerForEvaluatedUser ExceptIfMessageContainsDataClassifications
        ExceptIfMessageSizeOver ExceptIfMessageTypeMatches ExceptIfRecipientADAttributeContainsWords
        ExceptIfRecipientADAttributeMatchesPatterns ExceptIfRecipientAddressContainsWords
        ExceptIfRecipientAddressMatchesPatterns ExceptIfRecipientDomainIs ExceptIfRecipientInSenderList
        ExceptIfSCLOver ExceptIfSenderADAttributeContainsWords ExceptIfSenderADAttributeMatchesPatterns
        ExceptIfSenderDomainIs ExceptIfSenderInRecipientList ExceptIfSenderIpRanges
        ExceptIfSenderManagementRelationship ExceptIfSentTo ExceptIfSentToMemberOf ExceptIfSentToScope
        ExceptIfSubjectContainsWords ExceptIfSubjectMatchesPatterns ExceptIfSubjectOrBodyContainsWords
        ExceptIfSubjectOrBodyMatchesPatterns ExceptIfWithImportance ExpiryDate From FromAddressContainsWords
        FromAddressMatchesPatterns FromMemberOf FromScope GenerateIncidentReport GenerateNotification
        HasClassification HasNoClassification HasSenderOverride HeaderContainsMessageHeader
        HeaderContainsWords HeaderMatchesMessageHeader HeaderMatchesPatterns IncidentReportContent
        IncidentReportOriginalMail LogEventText ManagerAddresses ManagerForEvaluatedUser
        MessageContainsDataClassifications MessageSizeOver MessageTypeMatches Mode ModerateMessageByManager
        ModerateMessageByUser Name NotifySender PrependSubject Priority Quarantine
        RecipientADAttributeContainsWords RecipientADAttributeMatchesPatterns RecipientAddressContainsWords
        RecipientAddressMatchesPatterns RecipientAddressType RecipientDomainIs RecipientInSenderList
        RedirectMessageTo RejectMessageEnhancedStatusCode RejectMessageReasonText RemoveHeader RemoveOME
        RemoveOMEv2 RemoveRMSAttachmentEncryption RouteMessageOutboundConnector
        RouteMessageOutboundRequireTls RuleErrorAction RuleSubType SCLOver SenderADAttributeContainsWords
        SenderADAttributeMatchesPatterns SenderAddressLocation SenderDomainIs SenderInRecipientList
        SenderIpRanges SenderManagementRelationship SentTo SentToMemberOf SentToScope SetAuditSeverity
        SetHeaderName SetHeaderValue SetSCL SmtpRejectMessageRejectStatusCode SmtpRejectMessageRejectText
        StopRuleProcessing SubjectContainsWords SubjectMatchesPatterns SubjectOrBodyContainsWords
        SubjectOrBodyMatchesPatterns WhatIf WithImportance
    """.split()),
}

# Each page's "CommonParameters" section: every cmdlet takes these too.
COMMON = frozenset("""
    Debug ErrorAction ErrorVariable InformationAction InformationVariable OutVariable OutBuffer
    PipelineVariable Verbose WarningAction WarningVariable
""".split())

# The parameters those pages mark "Required: True".
REQUIRED: dict[str, frozenset[str]] = {
    "New-InboundConnector": frozenset({"Name", "SenderDomains"}),
    "New-OutboundConnector": frozenset({"Name"}),
    "New-TransportRule": frozenset({"Name"}),
    "Set-InboundConnector": frozenset({"Identity"}),
    "Set-OutboundConnector": frozenset({"Identity"}),
    "Set-TransportRule": frozenset({"Identity"}),
}

QUOTES = "'\u2018\u2019\u201a\u201b"


def readQuoted(text: str, start: int) -> tuple[str, int]:
    """
    The single-quoted string at ``text[start]`` as PowerShell's tokenizer
    reads it: its value and the index just past its closing quote.
    """
    assert text[start] in QUOTES, text[start:]
    out = []
    i = start + 1
    while True:
        if i >= len(text):
            raise ValueError("unterminated string")
        c = text[i]
        if c in QUOTES:
            if i + 1 < len(text) and text[i + 1] in QUOTES:
                out.append(text[i + 1])
                i += 2
                continue
            return "".join(out), i + 1
        out.append(c)
        i += 1


def code(script: str) -> tuple[str, list[str], list[str]]:
    """
    ``script`` read the PowerShell way: its code with every string
    replaced by ``'S<n>'`` and every comment removed, the strings' values,
    and the comments' texts.
    """
    out: list[str] = []
    strings: list[str] = []
    comments: list[str] = []
    i = 0
    while i < len(script):
        c = script[i]
        if c in QUOTES:
            value, i = readQuoted(script, i)
            out.append(f"'S{len(strings)}'")
            strings.append(value)
        elif c == "#":
            end = min((j for j in (script.find("\r", i), script.find("\n", i)) if j >= 0), default=len(script))
            comments.append(script[i + 1:end])
            i = end
        else:
            out.append(c)
            i += 1
    return "".join(out), strings, comments


@attrs.frozen
class Call:
    cmdlet: str
    parameters: frozenset[str]
    values: dict[str, str]


def calls(script: str) -> list[Call]:
    """Every Get-/Set-/New- call of the script, with its named and splatted parameters."""
    text, strings, _ = code(script)
    tables: dict[str, dict[str, str]] = {}
    for name, body in re.findall(r"\$(\w+) = @\{\n(.*?)\n\}", text, re.S):
        entries = [line.split("=", 1) for line in body.splitlines()]
        tables[name] = {k.strip(): v.strip() for k, v in entries}
    found = []
    for m in re.finditer(r"\b((?:Get|Set|New)-\w+)([^\n)]*)", text):
        cmdlet, rest = m.groups()
        values = dict(re.findall(r"-(\w+) ('S\d+'|\S+)", rest))
        for splat in re.findall(r"@(\w+)", rest):
            values.update(tables[splat])
        values = {k: re.sub(r"'S(\d+)'", lambda s: repr(strings[int(s.group(1))]), v) for k, v in values.items()}
        found.append(Call(cmdlet, frozenset(values), values))
    return found


def certificate(commonName: str = "", dnsNames: tuple[str, ...] = ()) -> bytes:
    """A PEM certificate with that subject CN (none if empty) and those DNS names."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, commonName)] if commonName else [
        x509.NameAttribute(x509.oid.NameOID.ORGANIZATION_NAME, "Contoso")])
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
               .serial_number(1).not_valid_before(datetime.datetime(2026, 1, 1))
               .not_valid_after(datetime.datetime(2027, 1, 1)))
    if dnsNames:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in dnsNames]), False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def contoso(**changes) -> Tenant:
    """The README's tenant, opt-in, with plain and pattern exclusions."""
    values = dict(
        id="contoso", domains=("contoso.nl", "contoso.com"), facility_sender="noreply@contoso.nl",
        relay="smtp://contoso-nl.mail.protection.outlook.com:25",
        relay_tls_certificate="/etc/secudoc/certs/secudoc.contoso.nl.pem", mode="opt-in",
        exclude_senders=("facturen@contoso.nl", "facturen@*", "*@billing.contoso.nl"),
        exclude_recipients=("inbox@scan.accountant.example",),
    )
    values.update(changes)
    return Tenant(**values)


def setup(tenant: Tenant = None, **changes) -> exo.Setup:
    values = dict(tenant=tenant or contoso(), smartHost="mailproxy.secudoc.example",
                  certificate=exo.CertificateName("secudoc.contoso.nl", "subject CN"),
                  gatewayIPs=exo.gatewayNetworks(["203.0.113.7", "198.51.100.0/28"]))
    values.update(changes)
    return exo.Setup(**values)


def byCmdlet(script: str) -> dict[str, list[Call]]:
    out: dict[str, list[Call]] = {}
    for call in calls(script):
        out.setdefault(call.cmdlet, []).append(call)
    return out


class QuoteTests(SynchronousTestCase):
    @given(st.text())
    @settings(max_examples=500, deadline=None)
    def test_roundTrip(self, value: str) -> None:
        """Any text is read back whole, and the string ends where the literal does."""
        quoted = exo.quote(value)
        self.assertEqual(readQuoted(quoted + " -Next 'x'", 0), (value, len(quoted)))

    @given(st.text(alphabet=st.sampled_from(QUOTES + "$`\"x;\n")))
    def test_quotesAndSigils(self, value: str) -> None:
        """The characters that matter, densely: every one comes back as itself."""
        self.assertEqual(readQuoted(exo.quote(value), 0), (value, len(exo.quote(value))))

    def test_readerCatchesTypographicQuotes(self) -> None:
        """A quoting that doubles only the apostrophe is caught: the reader knows all five."""
        naive = "'" + "O\u2019Brien".replace("'", "''") + "'"
        self.assertNotEqual(readQuoted(naive + "'", 0), ("O\u2019Brien", len(naive)))
        self.assertEqual(exo.quote("O\u2019Brien $x"), "'O\u2019\u2019Brien $x'")
        self.assertEqual(exo.quote("it's"), "'it''s'")

    @given(st.text())
    def test_commentText(self, value: str) -> None:
        """Nothing in a comment's text can end the line."""
        text = exo.commentText(value)
        self.assertTrue(text.isprintable())
        self.assertFalse(set(text) & set("\r\n\x85\u2028\u2029"))

    def test_literals(self) -> None:
        self.assertEqual([exo.literal(v) for v in (True, False, None, -1, ("a", "b'"), "x")],
                         ["$true", "$false", "$null", "-1", "@('a', 'b''')", "'x'"])


class ParameterTests(SynchronousTestCase):
    """Every generated call names only parameters its Microsoft page lists."""

    def check(self, script: str) -> dict[str, list[Call]]:
        found = byCmdlet(script)
        for cmdlet, cmdletCalls in found.items():
            self.assertIn(cmdlet, PARAMETERS, "a cmdlet without its page in the table")
            for call in cmdletCalls:
                self.assertEqual(sorted(call.parameters - PARAMETERS[cmdlet] - COMMON), [], cmdlet)
                self.assertEqual(sorted(REQUIRED.get(cmdlet, frozenset()) - call.parameters), [], cmdlet)
        return found

    def test_everyVariant(self) -> None:
        for tenant in (contoso(), contoso(mode="opt-out", exclude_senders=(), exclude_recipients=())):
            for ips in ((), exo.gatewayNetworks(["203.0.113.7"])):
                found = self.check(exo.render(setup(tenant, gatewayIPs=ips)))
                self.assertEqual(sorted(found), [
                    "Get-DistributionGroup", "Get-InboundConnector", "Get-OutboundConnector", "Get-TransportRule",
                    "New-InboundConnector", "New-OutboundConnector", "New-TransportRule",
                    "Set-InboundConnector", "Set-OutboundConnector", "Set-TransportRule"])
                self.assertEqual(len(found["New-TransportRule"]), 2 if ips else 1)

    def test_tableCatchesAWrongName(self) -> None:
        """The check fails on a name no page lists (Set-TransportRule has no -Enabled)."""
        script = "$r = @{\n    Enabled = $true\n}\nSet-TransportRule -Identity 'x' @r\n"
        self.assertRaises(self.failureException, self.check, script)

    def test_newAndSetAgree(self) -> None:
        """Set- gets what New- gets (plus the clearing of leftovers): one state, however reached."""
        found = byCmdlet(exo.render(setup(contoso(mode="opt-out"))))
        for noun in ("InboundConnector", "OutboundConnector", "TransportRule"):
            for new, change in zip(found[f"New-{noun}"], found[f"Set-{noun}"]):
                kept = {k: v for k, v in change.values.items() if v != "$null"}
                self.assertEqual(kept | {"Name": new.values["Name"]},
                                 new.values | {"Identity": change.values["Identity"]})


class ScriptTests(SynchronousTestCase):
    def test_values(self) -> None:
        found = byCmdlet(exo.render(setup()))
        [inbound] = found["New-InboundConnector"]
        self.assertEqual((inbound.values["Name"], inbound.values["TlsSenderCertificateName"],
                          inbound.values["RequireTls"], inbound.values["ConnectorType"]),
                         ("'SecuDoc In'", "'secudoc.contoso.nl'", "$true", "'OnPremises'"))
        [outbound] = found["New-OutboundConnector"]
        self.assertEqual({k: outbound.values[k] for k in ("SmartHosts", "TlsDomain", "TlsSettings",
                                                           "IsTransportRuleScoped", "UseMXRecord")},
                         {"SmartHosts": "@('mailproxy.secudoc.example')", "TlsDomain": "'mailproxy.secudoc.example'",
                          "TlsSettings": "'DomainValidation'", "IsTransportRuleScoped": "$true",
                          "UseMXRecord": "$false"})
        rule, bypass = found["New-TransportRule"]
        self.assertEqual(rule.values["RouteMessageOutboundConnector"], "'SecuDoc Out'")
        self.assertEqual(rule.values["FromMemberOf"], "@('SecuDoc Users')")
        self.assertEqual(rule.values["AttachmentSizeOver"], "'1KB'")
        self.assertEqual(bypass.values["SenderIpRanges"], "@('203.0.113.7', '198.51.100.0/28')")
        self.assertEqual(bypass.values["SetSCL"], "-1")

    def test_optInAndOptOut(self) -> None:
        optIn = byCmdlet(exo.render(setup()))["New-TransportRule"][0].values
        self.assertEqual((optIn["HeaderContainsMessageHeader"], optIn["HeaderContainsWords"]),
                         ("'X-SecuDoc-Enabled'", "@('1')"))
        found = byCmdlet(exo.render(setup(contoso(mode="opt-out"))))
        optOut = found["New-TransportRule"][0].values
        self.assertNotIn("HeaderContainsMessageHeader", optOut)
        for values in (optIn, optOut):
            self.assertEqual((values["ExceptIfHeaderContainsMessageHeader"], values["ExceptIfHeaderContainsWords"]),
                             ("'X-SecuDoc'", "@('1.0')"))
        # A rule that was opt-in loses its header condition when the tenant is now opt-out.
        self.assertEqual((found["Set-TransportRule"][0].values["HeaderContainsMessageHeader"],
                          found["Set-TransportRule"][0].values["HeaderContainsWords"]), ("$null", "$null"))

    def test_exclusions(self) -> None:
        """Plain addresses are exceptions; each pattern is named in a comment, in no parameter."""
        script = exo.render(setup())
        rule = byCmdlet(script)["New-TransportRule"][0].values
        self.assertEqual(rule["ExceptIfFrom"], "@('facturen@contoso.nl')")
        self.assertEqual(rule["ExceptIfSentTo"], "@('inbox@scan.accountant.example')")
        _, strings, comments = code(script)
        for pattern in ("facturen@*", "*@billing.contoso.nl"):
            self.assertNotIn(pattern, strings)
            self.assertIn(f"   exclude_senders = {pattern!r}", comments)
        self.assertIn(" NOT EXPRESSED (step 8): patterns, which a rule cannot name as senders or recipients:", comments)
        self.assertIn("   Put those senders or recipients in a group and add it to this rule as an exception", comments)
        none = byCmdlet(exo.render(setup(contoso(exclude_senders=(), exclude_recipients=()))))
        self.assertNotIn("ExceptIfFrom", none["New-TransportRule"][0].values)
        self.assertEqual(none["Set-TransportRule"][0].values["ExceptIfFrom"], "$null")

    def test_noGatewayIP(self) -> None:
        """No SCL -1 on the header alone: the rule is left out, and the comment says why."""
        script = exo.render(setup(gatewayIPs=()))
        self.assertEqual(len(byCmdlet(script)["New-TransportRule"]), 1)
        self.assertNotIn("SetSCL", script)
        _, _, comments = code(script)
        self.assertIn(" NOT MADE: no --gateway-ip.", comments)
        self.assertIn(" mail from the gateway's own addresses: anyone on the internet can send that header.", comments)

    def test_noCertificate(self) -> None:
        script = exo.render(setup(contoso(relay_tls_certificate=""), certificate=None))
        self.assertNotIn("New-InboundConnector", byCmdlet(script))
        self.assertIn("NOT MADE: relay_tls_certificate is empty in the tenant file", script)

    def test_stepComments(self) -> None:
        """Each block opens with the comment naming the seed's step it replaces."""
        lines = exo.render(setup()).splitlines()
        heads = {}
        for i, line in enumerate(lines):
            if re.match(r"\$\w+ = @\{$", line) and not line.startswith("$ruleClear"):
                j = i
                while lines[j - 1].startswith("#"):
                    j -= 1
                heads[line.split()[0]] = lines[j]
        self.assertEqual(heads, {
            "$inbound": "# Step 4 of the guide (Instellen van Inbound connector):",
            "$outbound": "# Step 6 of the guide (Instellen van Outbound connector): mail the rule below selects",
            "$rule": "# Step 7 of the guide (Instellen van Mail flow rules): a sender in the organisation and",
            "$bypass": "# After step 8 of the guide (its advice against spam detection of SecuDoc mail):",
        })

    def test_idempotent(self) -> None:
        """Every New- is behind a Get- of the same identity whose Set- is the other branch."""
        text, strings, _ = code(exo.render(setup()))
        blocks = re.findall(r"if \(Get-(\w+) -Identity ('S\d+') -ErrorAction SilentlyContinue\) \{\n"
                            r"    Set-(\w+) -Identity ('S\d+') [^\n]*\n\} else \{\n    New-(\w+) -Name ('S\d+') ", text)
        self.assertEqual(len(blocks), 4)
        for get, a, change, b, new, c in blocks:
            self.assertEqual(len({get, change, new}), 1)
            self.assertEqual(len({strings[int(x[2:-1])] for x in (a, b, c)}), 1)

    def test_hostileValues(self) -> None:
        """Quotes, `$` and line breaks in every value stay inside strings and comments."""
        evil = "x'; Remove-Item -Recurse C:\\ #\u2019$(Stop-Computer)\nInvoke-Evil \u2028"
        tenant = contoso(id=evil, exclude_senders=(evil + "@*",), relay="maildir:" + evil)
        script = exo.render(setup(tenant, smartHost=evil, group=evil,
                                  certificate=exo.CertificateName(evil, "subject CN")))
        text, strings, _ = code(script)
        for word in ("Remove-Item", "Stop-Computer", "Invoke-Evil"):
            self.assertNotIn(word, text)
        self.assertIn(evil, strings)
        self.assertEqual(len(calls(script)), len(calls(exo.render(setup()))))

    def test_size(self) -> None:
        self.assertEqual([exo.size(n) for n in (1024, 2048, 1000, 0)], ["1KB", "2KB", "1000B", "0B"])

    def test_readme(self) -> None:
        """The README's trimmed output is the script's, line for line, for the README's tenant."""
        with open(os.path.join(os.path.dirname(GOLDEN), "..", "..", "README.md"), encoding="utf-8") as f:
            readme = f.read()
        shown = readme.split("```powershell\n", 1)[1].split("```", 1)[0].splitlines()
        script = exo.render(setup(contoso(mode="opt-out"),
                                  gatewayIPs=exo.gatewayNetworks(["203.0.113.7", "203.0.113.8"]))).splitlines()
        kept = [line for line in shown if not line.lstrip().startswith("# ...")]
        self.assertGreater(len(kept), 20)
        self.assertEqual([line for line in kept if line not in script], [])

    def test_golden(self) -> None:
        """The reviewed script for an opt-in tenant with plain and pattern exclusions."""
        with open(GOLDEN, encoding="utf-8") as f:
            self.assertEqual(exo.render(setup()), f.read())


class CertificateTests(SynchronousTestCase):
    def test_commonName(self) -> None:
        name = exo.certificateName(certificate("secudoc.contoso.nl", ("other.contoso.nl",)))
        self.assertEqual(name, exo.CertificateName("secudoc.contoso.nl", "subject CN"))

    def test_chainAndKey(self) -> None:
        """The config's PEM (leaf, chain, key): the leaf's name."""
        ca = devcert.makeCA()
        issued = devcert.issue(ca, "secudoc.contoso.nl", client=True)
        self.assertEqual(exo.certificateName(issued.pem()).name, "secudoc.contoso.nl")

    def test_altName(self) -> None:
        name = exo.certificateName(certificate("", ("secudoc.contoso.nl",)))
        self.assertEqual(name, exo.CertificateName("secudoc.contoso.nl", "subjectAltName DNS name"))
        self.assertIsNone(exo.certificateName(certificate("")))

    def test_notACertificate(self) -> None:
        self.assertRaises(ValueError, exo.certificateName, b"-----BEGIN PRIVATE KEY-----\n")


class NetworkTests(SynchronousTestCase):
    def test_parsed(self) -> None:
        self.assertEqual(exo.gatewayNetworks(["203.0.113.7", "2001:db8::/64", "203.0.113.7/32"]),
                         (ipaddress.ip_network("203.0.113.7/32"), ipaddress.ip_network("2001:db8::/64")))

    def test_bad(self) -> None:
        e = self.assertRaises(ValueError, exo.gatewayNetworks, ["203.0.113.0/33"])
        self.assertEqual(str(e), "--gateway-ip: '203.0.113.0/33' is not an IP address or CIDR")


class CommandTests(SynchronousTestCase):
    """``secudoc-gateway exo-setup``, the real command in its own process."""

    def setUp(self) -> None:
        folder = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(folder, "tenants"))
        issued = devcert.issue(devcert.makeCA(), "secudoc.contoso.nl", client=True)
        issued.writeTo(os.path.join(folder, "contoso.pem"))
        tenant = dict(DEMO_TENANT, id="contoso", domains=["contoso.nl"], users=[],
                      facility_sender="noreply@contoso.nl",
                      relay="smtp://contoso-nl.mail.protection.outlook.com:25", relay_tls_certificate="../contoso.pem",
                      mode="opt-in", exclude_senders=["facturen@contoso.nl", "facturen@*"])
        self.path = writeConfig(folder, [DEMO_TENANT, tenant], smtp={"hostname": "mailproxy.secudoc.example"},
                                database={"url": "sqlite:gateway.sqlite3"})

    def exoSetup(self, *args: str):
        return run([sys.executable, "-m", "secudoc_gateway.cli", "exo-setup", *args])

    def test_script(self) -> None:
        """Values from the tenant file, its certificate and [smtp] hostname; --config after the tenant too."""
        for args in (["--config", self.path, "contoso"], ["contoso", "--config", self.path]):
            done = self.exoSetup(*args, "--gateway-ip", "203.0.113.7", "--group", "Mail Integratie")
            self.assertEqual((done.returncode, done.stderr), (0, ""))
            found = byCmdlet(done.stdout)
            inbound = found["New-InboundConnector"][0].values
            self.assertEqual(inbound["TlsSenderCertificateName"], "'secudoc.contoso.nl'")
            self.assertEqual(found["New-OutboundConnector"][0].values["SmartHosts"], "@('mailproxy.secudoc.example')")
            rule, bypass = found["New-TransportRule"]
            self.assertEqual(rule.values["FromMemberOf"], "@('Mail Integratie')")
            self.assertEqual(rule.values["ExceptIfFrom"], "@('facturen@contoso.nl')")
            self.assertEqual(bypass.values["SenderIpRanges"], "@('203.0.113.7')")
        done = self.exoSetup("--config", self.path, "contoso", "--smart-host", "smtp.secudoc.example")
        outbound = byCmdlet(done.stdout)["New-OutboundConnector"][0].values
        self.assertEqual(outbound["TlsDomain"], "'smtp.secudoc.example'")

    def test_errors(self) -> None:
        done = self.exoSetup("--config", self.path, "nobody")
        self.assertEqual((done.returncode, done.stdout), (2, ""))
        self.assertIn(f"{self.path}: no tenant 'nobody' (tenants: contoso, example)", done.stderr)
        done = self.exoSetup("--config", self.path, "contoso", "--gateway-ip", "203.0.113.300")
        self.assertEqual((done.returncode, done.stdout), (2, ""))
        self.assertIn("--gateway-ip: '203.0.113.300' is not an IP address or CIDR", done.stderr)

    def test_help(self) -> None:
        done = self.exoSetup("--help")
        self.assertEqual(done.returncode, 0)
        for option in ("--config PATH", "--smart-host NAME", "--group NAME", "--gateway-ip CIDR", "tenant"):
            self.assertIn(option, done.stdout)
