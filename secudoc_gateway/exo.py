"""
The Exchange Online set-up script (SPEC section 11): a tenant and the
main config's values in, one PowerShell script for the
ExchangeOnlineManagement module out.

Theory of operation: the seed's steps 4-8 are clicks in the Exchange
admin center; each becomes a ``Block``, a plain value naming the seed's
step, the object's ``Get-``/``Set-``/``New-`` cmdlets, its identity and
its parameters.  ``render`` writes every block the same way (look the
object up, ``Set-`` it when present, ``New-`` it otherwise), so running
the script twice leaves the tenant as the file says.  A parameter
value is a ``str``, ``bool``, ``int``, a tuple of strings or ``None``
(clears the setting on ``Set-``); every string reaches PowerShell
single-quoted by ``quote``, where nothing expands, and every text in a
comment passes ``commentText``, so no value from a file can end a
string or a comment early.  What the cmdlets cannot express (wildcard
exclusions, a missing certificate, a rule that would be unsafe without
the gateway's addresses) is said in a comment, never dropped silently.

Parameter names are those of Microsoft's cmdlet reference pages
(learn.microsoft.com/powershell/module/exchangepowershell/), held
against a table of them in tests/test_exo.py.
"""

from __future__ import annotations

import ipaddress
from typing import Iterable, Optional, Sequence, Union

import attrs
from cryptography import x509
from cryptography.x509.oid import NameOID

from secudoc_gateway.addresses import IPNetwork
from secudoc_gateway.config.values import Mode, Tenant
from secudoc_gateway.fields import SECUDOC, SECUDOC_ENABLED, SECUDOC_VERSION


INBOUND = "SecuDoc In"
OUTBOUND = "SecuDoc Out"
RULE = "SecuDoc Mail Integration"
BYPASS = "SecuDoc Skip Spam Filtering"
DEFAULT_GROUP = "SecuDoc Users"

# The characters PowerShell's tokenizer takes as a single quote: the
# apostrophe and the four typographic ones (its SpecialCharacters).
SINGLE_QUOTES = frozenset("'\u2018\u2019\u201a\u201b")

Value = Union[str, bool, int, tuple[str, ...], None]


def quote(value: str) -> str:
    """
    ``value`` as a PowerShell single-quoted string: inside one, only a
    quote character is special, and a doubled one stands for itself.
    Every kind of quote is doubled, since any of them would end it.
    """
    return "'" + "".join(c + c if c in SINGLE_QUOTES else c for c in value) + "'"


def commentText(text: str) -> str:
    """
    ``text`` safe on a ``#`` comment line: a line break (or any
    character that is not printable) would end the comment and let the
    rest run as code, so each is written as its ``\\uXXXX`` escape.
    """
    return "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in text)


def literal(value: Value) -> str:
    """A parameter value as PowerShell source."""
    if value is None:
        return "$null"
    if isinstance(value, bool):
        return "$true" if value else "$false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, tuple):
        return "@(" + ", ".join(quote(v) for v in value) + ")"
    return quote(value)


@attrs.frozen
class CertificateName:
    """The name the inbound connector checks, and how it was chosen."""

    name: str
    source: str  # "subject CN" or "subjectAltName DNS name"


def certificateName(pem: bytes) -> Optional[CertificateName]:
    """
    The name of the first certificate in ``pem`` (the leaf of the
    chain the gateway presents): the subject's common name, which is
    what the guide's step 4 asks for ("the subject name on the
    certificate"); failing that its first DNS subject alternative name;
    ``None`` when it has neither.  ``ValueError`` if there is no
    certificate at all.
    """
    certificate = x509.load_pem_x509_certificates(pem)[0]
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if names and isinstance(names[0].value, str) and names[0].value:
        return CertificateName(names[0].value, "subject CN")
    try:
        extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return None
    dns = extension.value.get_values_for_type(x509.DNSName)
    return CertificateName(dns[0], "subjectAltName DNS name") if dns else None


def gatewayNetworks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """``--gateway-ip`` values (addresses or CIDRs); ``ValueError`` naming a bad one."""
    out: list[IPNetwork] = []
    for value in values:
        try:
            network = ipaddress.ip_network(value.strip(), strict=False)
        except ValueError:
            raise ValueError(f"--gateway-ip: {value!r} is not an IP address or CIDR") from None
        if network not in out:
            out.append(network)
    return tuple(out)


def isPattern(address: str) -> bool:
    """``name@*`` and ``*@domain``: a rule can only name whole addresses."""
    return "*" in address


@attrs.frozen
class Setup:
    """Everything the script is made of, read from the tenant, the main config and the command line."""

    tenant: Tenant
    smartHost: str
    certificate: Optional[CertificateName]
    group: str = DEFAULT_GROUP
    gatewayIPs: tuple[IPNetwork, ...] = ()


@attrs.frozen
class Block:
    """
    One object made idempotently: ``Get-<noun> -Identity`` first, then
    ``Set-<noun> -Identity`` with ``parameters`` and ``clear`` (settings
    a previous run may have left, set to ``None``), or ``New-<noun>
    -Name`` with ``parameters`` alone.
    """

    noun: str
    identity: str
    variable: str
    comments: tuple[str, ...]
    parameters: tuple[tuple[str, Value], ...]
    clear: tuple[str, ...] = ()


def inboundBlock(setup: Setup) -> Union[Block, tuple[str, ...]]:
    step = "Step 4 of the guide (Instellen van Inbound connector):"
    tenant = setup.tenant
    if not tenant.relay_tls_certificate or setup.certificate is None:
        why = ("relay_tls_certificate is empty in the tenant file" if not tenant.relay_tls_certificate
               else "the certificate in relay_tls_certificate has neither a subject CN nor a DNS name")
        return (
            step,
            f"NOT MADE: {why}, so the gateway presents no name this connector could",
            "accept it by. Set relay_tls_certificate to the gateway's client certificate and",
            "run exo-setup again.",
        )
    return Block(
        noun="InboundConnector",
        identity=INBOUND,
        variable="inbound",
        comments=(
            step,
            "the gateway gives protected mail back to Exchange Online through this connector,",
            "which recognises it by its TLS certificate",
            f"({setup.certificate.source} of relay_tls_certificate). The seed's \"Your organization's email",
            "server\" is ConnectorType OnPremises, the one type Microsoft allows to relay to",
            "internet destinations, which the gateway's mail to external recipients needs.",
            "SenderDomains '*' is what that choice in the admin center sets. RequireTls as SPEC",
            "section 11 asks (Microsoft documents it for Partner connectors; the certificate check",
            "needs TLS on any type).",
        ),
        parameters=(
            ("ConnectorType", "OnPremises"),
            ("SenderDomains", ("*",)),
            ("TlsSenderCertificateName", setup.certificate.name),
            ("RequireTls", True),
            ("Comment", f"secudoc-gateway: tenant {tenant.id}, made by exo-setup"),
        ),
    )


def outboundBlock(setup: Setup) -> Block:
    return Block(
        noun="OutboundConnector",
        identity=OUTBOUND,
        variable="outbound",
        comments=(
            "Step 6 of the guide (Instellen van Outbound connector): mail the rule below selects",
            "goes to the gateway's smart host, over TLS that checks the host's certificate is",
            "for that name. Only the rule uses this connector (IsTransportRuleScoped).",
            "The seed's validation (6.7) is the admin center's, or after this script:",
            f"  Validate-OutboundConnector -Identity {quote(OUTBOUND)} -Recipients 'someone@external.example'",
        ),
        parameters=(
            ("ConnectorType", "Partner"),
            ("UseMXRecord", False),
            ("SmartHosts", (setup.smartHost,)),
            ("TlsSettings", "DomainValidation"),
            ("TlsDomain", setup.smartHost),
            ("IsTransportRuleScoped", True),
            ("Enabled", True),
            ("Comment", f"secudoc-gateway: tenant {setup.tenant.id}, made by exo-setup"),
        ),
    )


def size(octets: int) -> str:
    """``min_attachment_size`` in the units AttachmentSizeOver takes."""
    return f"{octets // 1024}KB" if octets and octets % 1024 == 0 else f"{octets}B"


def ruleBlock(setup: Setup) -> Block:
    tenant = setup.tenant
    senders = tuple(a for a in tenant.exclude_senders if not isPattern(a))
    recipients = tuple(a for a in tenant.exclude_recipients if not isPattern(a))
    patterns = [("exclude_senders", a) for a in tenant.exclude_senders if isPattern(a)] + [
        ("exclude_recipients", a) for a in tenant.exclude_recipients if isPattern(a)]
    optIn = tenant.mode is Mode.OPT_IN
    comments = [
        "Step 7 of the guide (Instellen van Mail flow rules): a sender in the organisation and",
        f"in the group {setup.group}, a recipient outside it, an attachment of at least",
        f"{tenant.min_attachment_size} bytes (min_attachment_size): the message goes through {OUTBOUND},",
        f"except when it carries {SECUDOC}: {SECUDOC_VERSION} (it has been through the gateway).",
        "(AttachmentSizeOver is the guide's \"greater than or equal to\"; Exchange sizes attachments",
        "its own way, and the gateway checks the decoded size again.)",
    ]
    if optIn:
        comments += [
            f"Step 7.4 (opt-in): only when the Outlook add-in set {SECUDOC_ENABLED}: 1.",
        ]
    else:
        comments += [
            f"Opt-out: the add-in's {SECUDOC_ENABLED}: 0 is honoured by the gateway itself.",
        ]
    if senders or recipients:
        comments += [
            "Step 8 of the guide (E-mailadressen uitsluiten): the tenant's exclude_senders and",
            "exclude_recipients that are whole addresses are exceptions of this rule.",
        ]
    if recipients:
        comments += [
            "CAUTION: an excepted recipient takes the whole message out of this rule, so the",
            "message's other external recipients get it unprotected too; the gateway alone would",
            "exclude per recipient. Drop ExceptIfSentTo below if that matters more.",
        ]
    elif not patterns:
        comments.append("Step 8 of the guide (E-mailadressen uitsluiten): the tenant file excludes no address.")
    if patterns:
        comments.append("NOT EXPRESSED (step 8): patterns, which a rule cannot name as senders or recipients:")
        comments += [f"  {key} = {pattern!r}" for key, pattern in patterns]
        comments += [
            "  Put those senders or recipients in a group and add it to this rule as an exception",
            "  (ExceptIfFromMemberOf / ExceptIfSentToMemberOf), or make a rule of their own.",
            "  The gateway itself still passes their mail unprotected; only the routing differs.",
        ]
    parameters: list[tuple[str, Value]] = [
        ("FromScope", "InOrganization"),
        ("FromMemberOf", (setup.group,)),
        ("SentToScope", "NotInOrganization"),
        ("AttachmentSizeOver", size(tenant.min_attachment_size)),
    ]
    clear: list[str] = []
    if optIn:
        parameters += [("HeaderContainsMessageHeader", SECUDOC_ENABLED), ("HeaderContainsWords", ("1",))]
    else:
        clear += ["HeaderContainsMessageHeader", "HeaderContainsWords"]
    parameters += [
        ("ExceptIfHeaderContainsMessageHeader", SECUDOC),
        ("ExceptIfHeaderContainsWords", (SECUDOC_VERSION,)),
    ]
    if senders:
        parameters.append(("ExceptIfFrom", senders))
    else:
        clear.append("ExceptIfFrom")
    if recipients:
        parameters.append(("ExceptIfSentTo", recipients))
    else:
        clear.append("ExceptIfSentTo")
    parameters += [
        ("RouteMessageOutboundConnector", OUTBOUND),
        ("Mode", "Enforce"),
        ("Comments", f"secudoc-gateway: tenant {tenant.id} ({tenant.mode}), made by exo-setup"),
    ]
    return Block("TransportRule", RULE, "rule", tuple(comments), tuple(parameters), tuple(clear))


def bypassBlock(setup: Setup) -> Union[Block, tuple[str, ...]]:
    step = "After step 8 of the guide (its advice against spam detection of SecuDoc mail):"
    if not setup.gatewayIPs:
        return (
            step,
            "NOT MADE: no --gateway-ip.",
            f"Marking mail with {SECUDOC}: {SECUDOC_VERSION} as SCL -1 (no spam filtering) is safe only for",
            "mail from the gateway's own addresses: anyone on the internet can send that header.",
            "Run exo-setup again with --gateway-ip for each public address of the gateway.",
        )
    return Block(
        noun="TransportRule",
        identity=BYPASS,
        variable="bypass",
        comments=(
            step,
            f"the gateway's mail ({SECUDOC}: {SECUDOC_VERSION}) skips spam filtering (SCL -1), but only",
            "from the gateway's public addresses (--gateway-ip): anyone can send the header.",
            "Exchange Online compares the last hop's address: list the addresses it sees the gateway at.",
        ),
        parameters=(
            ("SenderIpRanges", tuple(ipRange(n) for n in setup.gatewayIPs)),
            ("HeaderContainsMessageHeader", SECUDOC),
            ("HeaderContainsWords", (SECUDOC_VERSION,)),
            ("SetSCL", -1),
            ("Mode", "Enforce"),
            ("Comments", f"secudoc-gateway: tenant {setup.tenant.id}, made by exo-setup"),
        ),
    )


def ipRange(network: IPNetwork) -> str:
    """A single address as itself, a wider network in CIDR form."""
    if network.prefixlen == network.max_prefixlen:
        return str(network.network_address)
    return str(network)


def _comment(lines: Sequence[str]) -> list[str]:
    return [f"# {commentText(line)}".rstrip() for line in lines]


def renderBlock(block: Block) -> list[str]:
    width = max(len(name) for name, _ in block.parameters + tuple((n, None) for n in block.clear))
    lines = _comment(block.comments)
    lines.append(f"${block.variable} = @{{")
    lines += [f"    {name.ljust(width)} = {literal(value)}" for name, value in block.parameters]
    lines.append("}")
    splat = f"@{block.variable}"
    if block.clear:
        lines.append(f"${block.variable}Clear = @{{")
        lines += [f"    {name.ljust(width)} = $null" for name in block.clear]
        lines.append("}")
        splat += f" @{block.variable}Clear"
    identity = quote(block.identity)
    lines += [
        f"if (Get-{block.noun} -Identity {identity} -ErrorAction SilentlyContinue) {{",
        f"    Set-{block.noun} -Identity {identity} {splat}",
        "} else {",
        f"    New-{block.noun} -Name {identity} @{block.variable}",
        "}",
    ]
    return lines


def render(setup: Setup) -> str:
    """The whole script, for ``exo-setup`` to print."""
    tenant = setup.tenant
    lines = _comment([
        f"Exchange Online set-up for the secudoc-gateway tenant {tenant.id} ({tenant.mode}),",
        "made by `secudoc-gateway exo-setup`: steps 4-8 of the installation guide",
        "(\"Mail Integration 365 installeren\", here \"the guide\") as cmdlets.",
        "Run it in PowerShell after Connect-ExchangeOnline (ExchangeOnlineManagement module).",
        "It can run again: each object is looked up first, changed when present, made otherwise.",
        "Steps 1-3 of the guide stay manual; the rule needs step 3's group to exist.",
    ])
    if not tenant.relay.startswith("smtp://"):
        lines += _comment([
            f"NOTE: the tenant's relay is {tenant.relay}, not its inbound connector: the gateway",
            "gives no mail back to Exchange Online until relay = \"smtp://<tenant>.mail.protection.outlook.com:25\".",
        ])
    lines += [
        "#Requires -Modules ExchangeOnlineManagement",
        "$ErrorActionPreference = 'Stop'",
        "",
    ]
    lines += _comment([f"Step 3 of the guide made the mail-enabled security group {setup.group}; the rule needs it."])
    group = quote(setup.group)
    lines += [
        f"if (-not (Get-DistributionGroup -Identity {group} -ErrorAction SilentlyContinue)) {{",
        f"    throw {quote(f'No group {setup.group!r}: make it first (step 3 of the guide), or pass --group.')}",
        "}",
        "",
    ]
    inbound = inboundBlock(setup)
    lines += renderBlock(inbound) if isinstance(inbound, Block) else _comment(inbound)
    lines.append("")
    lines += _comment([
        "Step 5 of the guide (Mailserver configureren in SecuDoc) is the tenant file's relay key;",
        f"check it with: secudoc-gateway test-relay --config PATH {tenant.id}",
    ])
    lines.append("")
    lines += renderBlock(outboundBlock(setup))
    lines.append("")
    lines += renderBlock(ruleBlock(setup))
    lines.append("")
    bypass = bypassBlock(setup)
    lines += renderBlock(bypass) if isinstance(bypass, Block) else _comment(bypass)
    return "\n".join(lines) + "\n"
