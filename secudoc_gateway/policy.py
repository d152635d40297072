"""
The per-tenant policy: SPEC section 5's rule table as pure functions.

Theory of operation
-------------------

The transaction asks twice.  When the top-level header block is complete
it reads the parsed block as `mime.facts.HeaderFacts` and calls `earlyDecision`,
which walks rules 1-7 in table order and returns the first rule that
decides, or ``None`` when the message goes on to its content.  At the
header block the sender counts as known; at the end of the message
`contentDecision` runs the two early rules that needed more (rule 6 for
a Purview / IRM part, rule 7 once the database said whether the sender
is known).  Only then, when the sender is unknown and the tenant
creates users, does `userAction` say which user to create (rule 7's
"otherwise": the user is created and processing goes on), and
`finalDecision` applies rules 8 and 9.

Recipients inside the tenant's domains or matching
``exclude_recipients`` always get the original message
(`splitRecipients`).  The table decides what happens to the message;
the split decides who gets which copy: a protected message carries both
lists, and when no recipient is left to protect the whole message
passes with ``reason=internal-recipient``.  That check follows rules
1-7 and comes before rule 8, so the transaction knows at the headers
already that it need not store any attachment.

Address patterns (``exclude_senders``, ``exclude_recipients``,
``users``) are ``name@*``, ``*@domain`` or an exact address, compared
case-insensitively throughout: RFC 5321 section 2.4 lets a server treat
local parts as case-sensitive, but an operator writing
``Facturen@*`` means every spelling of it, and Exchange itself ignores
case.  Domains are compared in their IDNA A-label form (RFC 5890), so a
U-label and its A-label match.  ``*@domain`` names that domain only,
not its subdomains.  Anything else (no ``@``) matches nothing: a policy
that excludes from protection must not match more than it says.

Nothing here does I/O or imports Twisted.
"""

from __future__ import annotations

from typing import Callable, Iterable, Optional

import attrs

from secudoc_gateway.addresses import domainKey, splitAddress
from secudoc_gateway import replies
from secudoc_gateway.config.values import AutoCreateUsers, Mode, Tenant, UnknownSender
from secudoc_gateway.mime.facts import HeaderFacts
from secudoc_gateway.replies import Reply


# --- Actions and reasons -----------------------------------------------------

# The action values double as the ``status`` label of
# ``secudoc_messages_total``.
PROTECT = "protected"
PASS = "passed"
REJECT = "rejected"

LOOP = "loop"
EXCLUDED_SENDER = "excluded-sender"
NOT_ENABLED = "not-enabled"
REQUIRED_HEADER = "required-header"
SIGNED = "signed"
UNKNOWN_SENDER = "unknown-sender"
NO_ATTACHMENT = "no-attachment"
INTERNAL_RECIPIENT = "internal-recipient"
TENANT_MISMATCH = "tenant-mismatch"

SIGNED_TYPES = frozenset(
    {
        "multipart/signed",
        "multipart/encrypted",
        "application/pkcs7-mime",
        "application/x-pkcs7-mime",
    }
)
"""Top-level types of a signed or encrypted message (RFC 1847, RFC 8551)."""

RPMSG_TYPE = "application/x-microsoft-rpmsg-message"
RPMSG_NAME = "message.rpmsg"


def isRightsProtection(contentType: str, filename: Optional[str]) -> bool:
    """
    Rule 6's other half: the part that makes a message rights-protected
    by Microsoft Purview / IRM (its content encrypted in ``message.rpmsg``,
    readable only through Microsoft's rights service).  Taking it out
    would leave the recipient a link to a file only Outlook can open.
    """
    return contentType == RPMSG_TYPE or (filename or "").strip().lower() == RPMSG_NAME

# --- Addresses and patterns --------------------------------------------------


def matchesPattern(address: str, pattern: str) -> bool:
    """
    Whether ``address`` matches ``name@*``, ``*@domain`` or an exact
    address; case-insensitive, domains compared as A-labels.
    """
    pLocal, at, pDomain = pattern.strip().rpartition("@")
    if not at or not pLocal or not pDomain:
        return False
    aLocal, aAt, aDomain = address.strip().rpartition("@")
    if not aAt or not aLocal or not aDomain:
        return False
    if pLocal != "*" and pLocal.lower() != aLocal.lower():
        return False
    if pDomain != "*" and domainKey(pDomain) != domainKey(aDomain):
        return False
    return True


def matchesAny(address: str, patterns: Iterable[str]) -> bool:
    """Whether ``address`` matches at least one of ``patterns``."""
    return any(matchesPattern(address, pattern) for pattern in patterns)


def isConfiguredUser(tenant: Tenant, address: str) -> bool:
    """
    Whether the tenant file's ``users`` names ``address``; the caller
    adds the users the database knows to make rule 7's "known user".
    """
    return matchesAny(address, tenant.users)


def isInternal(tenant: Tenant, address: str) -> bool:
    """Whether ``address`` is in one of the tenant's own domains."""
    _, domain = splitAddress(address)
    if not domain:
        return False
    return domain in {domainKey(d) for d in tenant.domains}


def splitRecipients(
    tenant: Tenant, recipients: Iterable[str]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """
    ``(internal or excluded, others)``, each in envelope order: the
    first always get the original message (SPEC section 5).
    """
    original: list[str] = []
    others: list[str] = []
    for recipient in recipients:
        if isInternal(tenant, recipient) or matchesAny(
            recipient, tenant.exclude_recipients
        ):
            original.append(recipient)
        else:
            others.append(recipient)
    return tuple(original), tuple(others)


# --- Header facts ------------------------------------------------------------


def _normaliseValue(value: str) -> str:
    """Whitespace runs as one space, trimmed, lowercased."""
    return " ".join(value.split()).lower()


def effectiveSender(envelopeSender: str, facts: HeaderFacts) -> str:
    """
    The table's "sender": the envelope sender, or for the null
    reverse-path (RFC 5321 section 4.5.5) the From address.
    """
    return envelopeSender or facts.fromAddress


# --- Tenant identity (SPEC section 4, rule 1) --------------------------------


def _guid(value: str) -> str:
    return value.strip().lower()


def tenantForNullSender(
    facts: HeaderFacts, lookup: Callable[[str], Optional[Tenant]]
) -> Optional[Tenant]:
    """
    The tenant of a ``MAIL FROM:<>`` message: only one named by exactly
    one ``X-MS-Exchange-CrossTenant-Id``.

    ``lookup`` (e.g. ``TenantRegistry.forMicrosoftTenantId``) is called
    with the lowercased GUID; what it returns is checked again, so a
    lookup that ignores the id cannot hand over another tenant.
    """
    if len(facts.crossTenantIds) != 1:
        return None
    wanted = _guid(facts.crossTenantIds[0])
    if not wanted:
        return None
    tenant = lookup(wanted)
    if tenant is None or _guid(tenant.microsoft_tenant_id) != wanted:
        return None
    return tenant


def tenantIdMatches(tenant: Tenant, facts: HeaderFacts) -> bool:
    """
    Rule 1: with ``microsoft_tenant_id`` set, the message must carry
    ``X-MS-Exchange-CrossTenant-Id`` exactly once with that GUID (any
    case).
    """
    expected = _guid(tenant.microsoft_tenant_id)
    if not expected:
        return True
    return len(facts.crossTenantIds) == 1 and _guid(facts.crossTenantIds[0]) == expected


# --- Decisions ---------------------------------------------------------------


@attrs.frozen
class Decision:
    """
    What happens to one message.

    ``originalRecipients`` get the message unprotected,
    ``protectedRecipients`` the protected one; a rejected message goes
    to nobody and carries the final SMTP ``reply``.
    """

    action: str
    reason: Optional[str] = None
    reply: Optional[Reply] = None
    protectedRecipients: tuple[str, ...] = ()
    originalRecipients: tuple[str, ...] = ()

    @property
    def status(self) -> str:
        """The ``X-SecuDoc-Status`` value (for a rejection: the log's)."""
        if self.reason is None:
            return self.action
        return f"{self.action}; reason={self.reason}"


def passed(reason: str, recipients: Iterable[str]) -> Decision:
    """Everyone gets the original message."""
    return Decision(PASS, reason, originalRecipients=tuple(recipients))


def rejected(reason: str, reply: Reply) -> Decision:
    return Decision(REJECT, reason, reply=reply)


def parseRequiredHeader(spec: str) -> tuple[str, Optional[str]]:
    """
    ``required_header`` as ``(lowercased name, normalised value or
    None)``; ``"Name"`` and ``"Name:"`` ask for presence only.
    """
    name, colon, value = spec.partition(":")
    normalised = _normaliseValue(value) if colon else ""
    return name.strip().lower(), (normalised or None)


def requiredHeaderPresent(spec: str, facts: HeaderFacts) -> bool:
    """
    Rule 5.  ``"Name: value"`` asks for a field with that value,
    compared trimmed, whitespace runs as one space and case-insensitive
    (flags like ``Yes``/``yes`` are set by hand in Outlook rules and
    add-ins); ``"Name"`` for the field with any value.  An unset
    ``required_header`` requires nothing.
    """
    if not spec.strip():
        return True
    name, value = parseRequiredHeader(spec)
    if value is None:
        return facts.has(name)
    return any(_normaliseValue(v) == value for v in facts.values(name))


def _notEnabled(tenant: Tenant, facts: HeaderFacts) -> bool:
    """Rule 4: the add-in's opt-out, or opt-in mode without its opt-in."""
    values = {value.strip() for value in facts.secudocEnabledValues}
    if "0" in values:
        return True
    return tenant.mode is Mode.OPT_IN and "1" not in values


def earlyDecision(
    tenant: Tenant,
    envelopeSender: str,
    recipients: Iterable[str],
    facts: HeaderFacts,
    knownUser: bool,
    rightsProtected: bool = False,
) -> Optional[Decision]:
    """
    Rules 1-7 in table order, then the recipient split; ``None`` when
    the message goes on to its content (call `userAction` then).

    ``knownUser``: the effective sender is in ``users``
    (`isConfiguredUser`) or in the database.  ``rightsProtected``: a
    part of the message is a Purview / IRM one (`isRightsProtection`).
    """
    recipients = tuple(recipients)
    sender = effectiveSender(envelopeSender, facts)
    if not tenantIdMatches(tenant, facts):
        return rejected(TENANT_MISMATCH, replies.TENANT_MISMATCH)
    if facts.hasSecuDoc:
        return passed(LOOP, recipients)
    if sender and matchesAny(sender, tenant.exclude_senders):
        return passed(EXCLUDED_SENDER, recipients)
    if _notEnabled(tenant, facts):
        return passed(NOT_ENABLED, recipients)
    if not requiredHeaderPresent(tenant.required_header, facts):
        return passed(REQUIRED_HEADER, recipients)
    if facts.topContentType in SIGNED_TYPES:
        return passed(SIGNED, recipients)
    decision = contentDecision(tenant, recipients, knownUser, rightsProtected)
    if decision is not None:
        return decision
    _, others = splitRecipients(tenant, recipients)
    if not others:
        return passed(INTERNAL_RECIPIENT, recipients)
    return None


def contentDecision(
    tenant: Tenant, recipients: Iterable[str], knownUser: bool, rightsProtected: bool,
) -> Optional[Decision]:
    """
    The early rules that need more than the header block: rule 6 for a
    Purview / IRM part, rule 7 for a sender not known yet.  The
    transaction runs `earlyDecision` once at the header block (the
    sender taken as known) and, when it returned ``None``, only these
    at the end of the message: the rest would decide the same again.
    """
    recipients = tuple(recipients)
    if rightsProtected:
        return passed(SIGNED, recipients)
    if not knownUser and tenant.auto_create_users is AutoCreateUsers.NO:
        if tenant.unknown_sender is UnknownSender.REJECT:
            return rejected(UNKNOWN_SENDER, replies.UNKNOWN_SENDER)
        return passed(UNKNOWN_SENDER, recipients)
    return None


def userAction(tenant: Tenant, sender: str, knownUser: bool) -> Optional[AutoCreateUsers]:
    """
    Rule 7's "otherwise": ``"welcome"`` or ``"silent"`` when an unknown
    sender is to be created before processing goes on, else ``None``.

    Only an address in the tenant's own domains becomes a user: a null
    sender's From may name anyone.
    """
    if knownUser or tenant.auto_create_users is AutoCreateUsers.NO:
        return None
    if not sender or not isInternal(tenant, sender):
        return None
    return tenant.auto_create_users


def finalDecision(
    tenant: Tenant,
    envelopeSender: str,
    recipients: Iterable[str],
    facts: HeaderFacts,
    largestAttachment: int,
    attachmentCount: int,
) -> Decision:
    """
    Rules 8 and 9, once the whole message was parsed: protected when
    an attachment of at least ``min_attachment_size`` decoded bytes was
    found, for the recipients that are neither internal nor excluded.

    Call it only after `earlyDecision` returned ``None``; the sender and
    facts are taken so both calls read alike, rules 8-9 need neither.
    """
    recipients = tuple(recipients)
    original, others = splitRecipients(tenant, recipients)
    if not others:
        return passed(INTERNAL_RECIPIENT, recipients)
    if attachmentCount == 0 or largestAttachment < tenant.min_attachment_size:
        return passed(NO_ATTACHMENT, recipients)
    return Decision(
        PROTECT, None, protectedRecipients=others, originalRecipients=original
    )
