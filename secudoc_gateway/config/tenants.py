"""
The tenant files: one TOML file per tenant, each read into a ``Tenant``,
and the folder of them checked as a whole (ids, domains and Microsoft
tenant ids claimed once).  Read at start with the main file and again
on SIGHUP.
"""

from __future__ import annotations

import glob
import ipaddress
import os
import re
import tomllib
import urllib.parse
from typing import Any, Mapping, Optional, Sequence

from secudoc_gateway.addresses import IPNetwork, configDomain
from secudoc_gateway.config.reader import CONTROL, Table, checkPEM, httpURL, readTOML, resolve
from secudoc_gateway.config.values import (
    EXCHANGE_ONLINE,
    EXCHANGE_ONLINE_NETWORKS,
    LOGO_TYPES,
    AutoCreateUsers,
    Config,
    ContentMode,
    Language,
    Mode,
    OnError,
    OnMalware,
    OnScanError,
    PortalLogin,
    RecipientVerification,
    Tenant,
    UnknownSender,
)
from secudoc_gateway.errors import ConfigError
from secudoc_gateway.targets import MAILDIR_PREFIX, MaildirTarget, parseRelayTarget

# RFC 5322 3.6.8: field-name = 1*ftext; ftext = %d33-57 / %d59-126
_FIELD_NAME = re.compile(r"[!-9;-~]+\Z")
_GUID = re.compile(r"[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}\Z")
_TENANT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
# Characters no unquoted RFC 5321 local part holds (4.1.2), plus
# whitespace and controls; quoted local parts are not supported here.
_BAD_LOCAL = re.compile(r'[\x00-\x20\x7f()<>\[\]\\,;:"@]')


def _pattern(value: str, allowWildcards: bool) -> Optional[str]:
    """
    An address or pattern (``name@*``, ``*@domain``, ``name@domain``)
    with its domain in normalised form, or ``None`` if it has no such
    shape.
    """
    local, at, domain = value.rpartition("@")
    if not at or not local or not domain:
        return None
    if local == "*" and domain == "*":
        return None
    if local == "*" or domain == "*":
        if not allowWildcards:
            return None
    if local != "*" and ("*" in local or _BAD_LOCAL.search(local)):
        return None
    if domain == "*":
        return value
    try:
        domain = configDomain(domain)
    except ValueError:
        return None
    return f"{local}@{domain}"


def _patterns(table: Table, key: str, default: Sequence[str] = ()) -> tuple[str, ...]:
    out = []
    for value in table.strings(key, default):
        normal = _pattern(value, allowWildcards=True)
        if normal is None:
            table.problem(key, f'"{value}" is not an address, "name@*" or "*@domain"')
        else:
            out.append(normal)
    return tuple(out)


def _domains(table: Table) -> tuple[str, ...]:
    out: list[str] = []
    for value in table.strings("domains", required=True, nonEmpty=True):
        try:
            domain = configDomain(value)
        except ValueError as e:
            table.problem("domains", f'"{value}" is not a valid domain: {e}')
            continue
        if domain not in out:
            out.append(domain)
    return tuple(out)


def _sources(table: Table) -> tuple[tuple[str, ...], tuple[IPNetwork, ...], bool]:
    sources = table.strings("allowed_sources", ("127.0.0.0/8",))
    networks: list[IPNetwork] = []
    exchangeOnline = False
    for value in sources:
        if value == EXCHANGE_ONLINE:
            exchangeOnline = True
            networks.extend(EXCHANGE_ONLINE_NETWORKS)
            continue
        try:
            networks.append(ipaddress.ip_network(value))
        except ValueError as e:
            table.problem("allowed_sources", f'"{value}" is not a CIDR or "{EXCHANGE_ONLINE}": {e}')
    return sources, tuple(dict.fromkeys(networks)), exchangeOnline


def _relay(table: Table, base: str) -> str:
    relay = table.string("relay", required=True, nonEmpty=True)
    if not relay:
        return relay
    try:
        target = parseRelayTarget(relay)
    except ValueError as e:
        table.problem("relay", str(e))
        return relay
    if isinstance(target, MaildirTarget):
        return MAILDIR_PREFIX + resolve(base, target.path)
    return relay


def _requiredHeader(table: Table) -> str:
    value = table.string("required_header")
    if not value:
        return value
    name, colon, rest = value.partition(":")
    if not _FIELD_NAME.match(name) or CONTROL.search(rest.replace("\t", " ")):
        table.problem("required_header", f'must be "Name" or "Name: value", not "{value}"')
    return value


def _line(table: Table, key: str) -> str:
    """A text shown to recipients (banner, pages): one line, no control characters."""
    value = table.string(key)
    if CONTROL.search(value.replace("\t", " ")):
        table.problem(key, "must be one line without control characters")
    return value


def _file(table: Table, key: str, base: str, needKey: bool) -> str:
    value = table.string(key)
    if not value:
        return value
    path = resolve(base, value)
    checkPEM(table, key, path, needKey=needKey)
    return path


def _logo(table: Table, base: str) -> str:
    """A PNG or SVG file the tenant's pages show, checked now so a page never breaks."""
    value = table.string("logo")
    if not value:
        return value
    path = resolve(base, value)
    if os.path.splitext(path)[1].lower() not in LOGO_TYPES:
        table.problem("logo", f"must be a .png or .svg file, not {path}")
    elif not os.path.isfile(path) or not os.access(path, os.R_OK):
        table.problem("logo", f"cannot read {path}")
    return path


def _admins(table: Table) -> tuple[str, ...]:
    out = []
    for value in table.strings("admins"):
        normal = _pattern(value, allowWildcards=False)
        if normal is None:
            table.problem("admins", f'"{value}" is not an address')
        elif normal not in out:
            out.append(normal)
    return tuple(out)


def _groups(table: Table, key: str) -> tuple[str, ...]:
    """Entra group object ids, compared case-insensitively: kept lowercased."""
    out = []
    for value in table.strings(key):
        if not _GUID.match(value.strip()):
            table.problem(key, f'"{value}" is not a group object id (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)')
        elif value.strip().lower() not in out:
            out.append(value.strip().lower())
    return tuple(out)


def _samlMetadata(table: Table, base: str) -> tuple[str, str]:
    """The IdP's metadata: an https URL (Entra's "App Federation Metadata Url") or a file."""
    url = table.string("saml_metadata_url")
    if url and urllib.parse.urlsplit(url).scheme != "https":
        table.problem("saml_metadata_url", f'must be an https:// URL, not "{url}"')
    elif url:
        httpURL(table, "saml_metadata_url", url)
    path = table.string("saml_metadata_file")
    if path:
        path = resolve(base, path)
        if not os.path.isfile(path) or not os.access(path, os.R_OK):
            table.problem("saml_metadata_file", f"cannot read {path}")
    if url and path:
        table.problem("saml_metadata_file", "set saml_metadata_url or saml_metadata_file, not both")
    return url, path


def loadTenant(file: str, problems: list[str]) -> Optional[Tenant]:
    """
    One tenant file; problems are appended, ``None`` if unreadable.  Its
    relative paths are relative to its own folder, so a tenant file
    means the same wherever the main file that names its folder lives.
    The file's text is kept on the tenant (``document``): the portal's
    overrides are checked on it merged with them (``withOverrides``).
    """
    try:
        with open(file, "rb") as f:
            text = f.read().decode("utf-8")
    except (OSError, UnicodeDecodeError):
        text = ""
    data = readTOML(file, problems)
    if data is None:
        return None
    return readTenant(file, data, problems, text)


def readTenant(file: str, data: dict[str, Any], problems: list[str], document: str = "") -> Tenant:
    """A tenant from a tenant file's parsed ``data``: every check of ``check-config``."""
    base = os.path.dirname(os.path.abspath(file))
    t = Table(file, "", data, problems)
    tenantId = t.string("id", required=True, nonEmpty=True)
    if tenantId and not _TENANT_ID.match(tenantId):
        t.problem("id", f'must be letters, digits, ".", "_" or "-", not "{tenantId}"')
    domains = _domains(t)
    microsoftId = t.string("microsoft_tenant_id")
    if microsoftId and not _GUID.match(microsoftId):
        t.problem("microsoft_tenant_id", f'must be a GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx), not "{microsoftId}"')
    sources, networks, exchangeOnline = _sources(t)
    if exchangeOnline and not microsoftId:
        t.problem("microsoft_tenant_id", f'required when allowed_sources has "{EXCHANGE_ONLINE}"')
    relay = _relay(t, base)
    facilitySender = t.string("facility_sender", required=True, nonEmpty=True)
    if facilitySender and _pattern(facilitySender, allowWildcards=False) is None:
        t.problem("facility_sender", f'must be an address, not "{facilitySender}"')
    disclaimer, organisation, helpContact = (_line(t, key) for key in ("disclaimer", "organisation", "help_contact"))
    samlURL, samlFile = _samlMetadata(t, base)
    tenant = Tenant(
        id=tenantId,
        domains=domains,
        relay=relay,
        facility_sender=facilitySender,
        microsoft_tenant_id=microsoftId,
        allowed_sources=sources,
        relay_tls_certificate=_file(t, "relay_tls_certificate", base, needKey=True),
        relay_require_tls=t.boolean("relay_require_tls", True),
        relay_ca_file=_file(t, "relay_ca_file", base, needKey=False),
        mode=t.enum("mode", Mode.OPT_OUT),
        min_attachment_size=t.integer("min_attachment_size", 1024, minimum=0),
        exclude_senders=_patterns(t, "exclude_senders"),
        exclude_recipients=_patterns(t, "exclude_recipients"),
        required_header=_requiredHeader(t),
        content_mode=t.enum("content_mode", ContentMode.LINK),
        confirmation_mail=t.boolean("confirmation_mail", False),
        users=_patterns(t, "users"),
        auto_create_users=t.enum("auto_create_users", AutoCreateUsers.NO),
        unknown_sender=t.enum("unknown_sender", UnknownSender.PASS),
        disclaimer=disclaimer,
        link_expiry_days=t.integer("link_expiry_days", 14, minimum=1),
        language=t.enum("language", Language.NL),
        on_error=t.enum("on_error", OnError.TEMPFAIL),
        organisation=organisation,
        help_contact=helpContact,
        logo=_logo(t, base),
        recipient_verification=t.enum("recipient_verification", RecipientVerification.NONE),
        download_notification=t.boolean("download_notification", False),
        admins=_admins(t),
        portal_login=t.enum("portal_login", PortalLogin.EMAIL_LINK),
        saml_metadata_url=samlURL,
        saml_metadata_file=samlFile,
        saml_user_groups=_groups(t, "saml_user_groups"),
        saml_admin_groups=_groups(t, "saml_admin_groups"),
        on_malware=t.enum("on_malware", OnMalware.REJECT),
        on_scan_error=t.enum("on_scan_error", OnScanError.TEMPFAIL),
        networks=networks,
        exchange_online=exchangeOnline,
        source=file,
        document=document,
    )
    t.finish()
    return tenant


OPERATOR_KEYS = frozenset({
    "id", "domains", "microsoft_tenant_id", "allowed_sources", "relay", "relay_tls_certificate",
    "relay_require_tls", "relay_ca_file", "facility_sender", "on_error",
})
"""Keys only the operator sets, in the file (SPEC 3): the portal never overrides them."""

PATH_KEYS = frozenset({"logo", "saml_metadata_file"})
"""Keys naming files on the server: the operator's too."""

PORTAL_KEYS = (
    # the seed's section 11 first, then the rest in the tenant file's order
    "confirmation_mail", "required_header", "content_mode", "auto_create_users",
    "mode", "min_attachment_size", "exclude_senders", "exclude_recipients", "users", "unknown_sender",
    "disclaimer", "link_expiry_days", "language", "organisation", "help_contact", "recipient_verification",
    "download_notification", "admins", "portal_login", "saml_metadata_url", "saml_user_groups",
    "saml_admin_groups", "on_malware", "on_scan_error",
)
"""The keys a tenant's admins may set in the portal (SPEC 3 and 9), in the settings page's order."""


def portalKeyProblem(key: str) -> Optional[str]:
    """Why ``key`` cannot be set in the portal, or ``None`` if it can."""
    if key in OPERATOR_KEYS:
        return "only the operator sets this key, in the tenant file"
    if key in PATH_KEYS:
        return "names a file on the server: only the operator sets it, in the tenant file"
    if key not in PORTAL_KEYS:
        return "unknown key"
    return None


def withOverrides(tenant: Tenant, overrides: Mapping[str, Any]) -> tuple[Tenant, list[str]]:
    """
    ``tenant`` (as read from its file) with the portal's ``overrides``
    (key to TOML value) applied: the file's own document merged with
    them and read again by ``readTenant``, so a value is checked exactly
    as ``check-config`` checks it, messages included
    (``FILE: key: what is wrong``).  With problems, the tenant returned
    is not to be used.
    """
    problems: list[str] = []
    for key in overrides:
        why = portalKeyProblem(key)
        if why is not None:
            problems.append(f"{tenant.source}: {key}: {why}")
    if problems:
        return tenant, problems
    if not overrides:
        return tenant, problems
    try:
        data = tomllib.loads(tenant.document)
    except tomllib.TOMLDecodeError as e:  # the file was read once: only a document that is not its own
        return tenant, [f"{tenant.source}: (syntax): {e}"]
    data.update(overrides)
    merged = readTenant(tenant.source, data, problems, tenant.document)
    return merged, problems


def loadTenants(folder: str) -> tuple[tuple[Tenant, ...], list[str]]:
    """
    Every ``*.toml`` in ``folder`` (sorted by name), relative paths in
    them against ``folder``, checked against each
    other: unique ids, no domain or Microsoft tenant id claimed twice.
    Returns the tenants and the problems; use the tenants only when
    there are no problems.  SIGHUP reloads call this (or
    ``reloadTenants``) and replace the registry as a whole.
    """
    problems: list[str] = []
    files = sorted(glob.glob(os.path.join(glob.escape(folder), "*.toml")))
    tenants: list[Tenant] = []
    ids: dict[str, str] = {}
    domains: dict[str, str] = {}
    microsoftIds: dict[str, str] = {}
    for file in files:
        tenant = loadTenant(file, problems)
        if tenant is None:
            continue
        if tenant.id:
            if tenant.id in ids:
                problems.append(f"{file}: id: \"{tenant.id}\" is already the id of {ids[tenant.id]}")
            else:
                ids[tenant.id] = file
        for domain in tenant.domains:
            if domain in domains:
                problems.append(f"{file}: domains: \"{domain}\" is already claimed by {domains[domain]}")
            else:
                domains[domain] = file
        guid = tenant.microsoft_tenant_id.lower()
        if guid:
            if guid in microsoftIds:
                problems.append(
                    f"{file}: microsoft_tenant_id: \"{tenant.microsoft_tenant_id}\" is already "
                    f"used by {microsoftIds[guid]}"
                )
            else:
                microsoftIds[guid] = file
        tenants.append(tenant)
    return tuple(tenants), problems


def reloadTenants(config: Config) -> tuple[Tenant, ...]:
    """Read the tenant files of a loaded ``config`` again (SIGHUP)."""
    problems: list[str] = []
    if not os.path.isdir(config.tenants_path):
        problems.append(f"{config.path}: tenants.path: {config.tenants_path} is not a folder")
        raise ConfigError(problems)
    tenants, problems = loadTenants(config.tenants_path)
    if problems:
        raise ConfigError(problems)
    return tenants

