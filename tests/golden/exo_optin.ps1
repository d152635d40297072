# Exchange Online set-up for the secudoc-gateway tenant contoso (opt-in),
# made by `secudoc-gateway exo-setup`: steps 4-8 of the installation guide
# ("Mail Integration 365 installeren", here "the guide") as cmdlets.
# Run it in PowerShell after Connect-ExchangeOnline (ExchangeOnlineManagement module).
# It can run again: each object is looked up first, changed when present, made otherwise.
# Steps 1-3 of the guide stay manual; the rule needs step 3's group to exist.
#Requires -Modules ExchangeOnlineManagement
$ErrorActionPreference = 'Stop'

# Step 3 of the guide made the mail-enabled security group SecuDoc Users; the rule needs it.
if (-not (Get-DistributionGroup -Identity 'SecuDoc Users' -ErrorAction SilentlyContinue)) {
    throw 'No group ''SecuDoc Users'': make it first (step 3 of the guide), or pass --group.'
}

# Step 4 of the guide (Instellen van Inbound connector):
# the gateway gives protected mail back to Exchange Online through this connector,
# which recognises it by its TLS certificate
# (subject CN of relay_tls_certificate). The seed's "Your organization's email
# server" is ConnectorType OnPremises, the one type Microsoft allows to relay to
# internet destinations, which the gateway's mail to external recipients needs.
# SenderDomains '*' is what that choice in the admin center sets. RequireTls as SPEC
# section 11 asks (Microsoft documents it for Partner connectors; the certificate check
# needs TLS on any type).
$inbound = @{
    ConnectorType            = 'OnPremises'
    SenderDomains            = @('*')
    TlsSenderCertificateName = 'secudoc.contoso.nl'
    RequireTls               = $true
    Comment                  = 'secudoc-gateway: tenant contoso, made by exo-setup'
}
if (Get-InboundConnector -Identity 'SecuDoc In' -ErrorAction SilentlyContinue) {
    Set-InboundConnector -Identity 'SecuDoc In' @inbound
} else {
    New-InboundConnector -Name 'SecuDoc In' @inbound
}

# Step 5 of the guide (Mailserver configureren in SecuDoc) is the tenant file's relay key;
# check it with: secudoc-gateway test-relay --config PATH contoso

# Step 6 of the guide (Instellen van Outbound connector): mail the rule below selects
# goes to the gateway's smart host, over TLS that checks the host's certificate is
# for that name. Only the rule uses this connector (IsTransportRuleScoped).
# The seed's validation (6.7) is the admin center's, or after this script:
#   Validate-OutboundConnector -Identity 'SecuDoc Out' -Recipients 'someone@external.example'
$outbound = @{
    ConnectorType         = 'Partner'
    UseMXRecord           = $false
    SmartHosts            = @('mailproxy.secudoc.example')
    TlsSettings           = 'DomainValidation'
    TlsDomain             = 'mailproxy.secudoc.example'
    IsTransportRuleScoped = $true
    Enabled               = $true
    Comment               = 'secudoc-gateway: tenant contoso, made by exo-setup'
}
if (Get-OutboundConnector -Identity 'SecuDoc Out' -ErrorAction SilentlyContinue) {
    Set-OutboundConnector -Identity 'SecuDoc Out' @outbound
} else {
    New-OutboundConnector -Name 'SecuDoc Out' @outbound
}

# Step 7 of the guide (Instellen van Mail flow rules): a sender in the organisation and
# in the group SecuDoc Users, a recipient outside it, an attachment of at least
# 1024 bytes (min_attachment_size): the message goes through SecuDoc Out,
# except when it carries X-SecuDoc: 1.0 (it has been through the gateway).
# (AttachmentSizeOver is the guide's "greater than or equal to"; Exchange sizes attachments
# its own way, and the gateway checks the decoded size again.)
# Step 7.4 (opt-in): only when the Outlook add-in set X-SecuDoc-Enabled: 1.
# Step 8 of the guide (E-mailadressen uitsluiten): the tenant's exclude_senders and
# exclude_recipients that are whole addresses are exceptions of this rule.
# CAUTION: an excepted recipient takes the whole message out of this rule, so the
# message's other external recipients get it unprotected too; the gateway alone would
# exclude per recipient. Drop ExceptIfSentTo below if that matters more.
# NOT EXPRESSED (step 8): patterns, which a rule cannot name as senders or recipients:
#   exclude_senders = 'facturen@*'
#   exclude_senders = '*@billing.contoso.nl'
#   Put those senders or recipients in a group and add it to this rule as an exception
#   (ExceptIfFromMemberOf / ExceptIfSentToMemberOf), or make a rule of their own.
#   The gateway itself still passes their mail unprotected; only the routing differs.
$rule = @{
    FromScope                           = 'InOrganization'
    FromMemberOf                        = @('SecuDoc Users')
    SentToScope                         = 'NotInOrganization'
    AttachmentSizeOver                  = '1KB'
    HeaderContainsMessageHeader         = 'X-SecuDoc-Enabled'
    HeaderContainsWords                 = @('1')
    ExceptIfHeaderContainsMessageHeader = 'X-SecuDoc'
    ExceptIfHeaderContainsWords         = @('1.0')
    ExceptIfFrom                        = @('facturen@contoso.nl')
    ExceptIfSentTo                      = @('inbox@scan.accountant.example')
    RouteMessageOutboundConnector       = 'SecuDoc Out'
    Mode                                = 'Enforce'
    Comments                            = 'secudoc-gateway: tenant contoso (opt-in), made by exo-setup'
}
if (Get-TransportRule -Identity 'SecuDoc Mail Integration' -ErrorAction SilentlyContinue) {
    Set-TransportRule -Identity 'SecuDoc Mail Integration' @rule
} else {
    New-TransportRule -Name 'SecuDoc Mail Integration' @rule
}

# After step 8 of the guide (its advice against spam detection of SecuDoc mail):
# the gateway's mail (X-SecuDoc: 1.0) skips spam filtering (SCL -1), but only
# from the gateway's public addresses (--gateway-ip): anyone can send the header.
# Exchange Online compares the last hop's address: list the addresses it sees the gateway at.
$bypass = @{
    SenderIpRanges              = @('203.0.113.7', '198.51.100.0/28')
    HeaderContainsMessageHeader = 'X-SecuDoc'
    HeaderContainsWords         = @('1.0')
    SetSCL                      = -1
    Mode                        = 'Enforce'
    Comments                    = 'secudoc-gateway: tenant contoso, made by exo-setup'
}
if (Get-TransportRule -Identity 'SecuDoc Skip Spam Filtering' -ErrorAction SilentlyContinue) {
    Set-TransportRule -Identity 'SecuDoc Skip Spam Filtering' @bypass
} else {
    New-TransportRule -Name 'SecuDoc Skip Spam Filtering' @bypass
}
