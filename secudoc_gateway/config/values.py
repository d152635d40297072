"""
The configuration's frozen values: what the main file and the tenant
files (SPEC section 3) are read into, and the choices their keys allow.
"""

from __future__ import annotations

import enum
import ipaddress

import attrs

from secudoc_gateway.addresses import IPNetwork, parseIP


EXCHANGE_ONLINE = "exchange-online"

# Exchange Online's published outbound ranges ("Exchange Online Protection"
# in Microsoft's "Office 365 URLs and IP address ranges", ID 10), which
# the alias "exchange-online" in allowed_sources stands for.
EXCHANGE_ONLINE_NETWORKS: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "40.92.0.0/15",
        "40.107.0.0/16",
        "52.100.0.0/14",
        "104.47.0.0/17",
        "2a01:111:f400::/48",
        "2a01:111:f403::/48",
    )
)

DEFAULT_CONFIG_PATH = "etc/secudoc-gateway.toml"



# The choices of a tenant's keys (SPEC section 3): each key's values as
# one enum, read wherever the setting is used; a member is its key's
# string, so a log line or a JSON answer shows the file's own word.


class Language(enum.StrEnum):
    """The languages of the banner, the mails and the pages."""

    NL = "nl"
    EN = "en"


LANGUAGES: tuple[str, ...] = tuple(Language)


class Mode(enum.StrEnum):
    OPT_OUT = "opt-out"
    OPT_IN = "opt-in"


class ContentMode(enum.StrEnum):
    LINK = "link"
    TRANSFER = "transfer"
    SEPARATE = "separate"


class AutoCreateUsers(enum.StrEnum):
    NO = "no"
    WELCOME = "welcome"
    SILENT = "silent"


class UnknownSender(enum.StrEnum):
    PASS = "pass"
    REJECT = "reject"


class OnError(enum.StrEnum):
    TEMPFAIL = "tempfail"
    PASS = "pass"


class RecipientVerification(enum.StrEnum):
    NONE = "none"
    EMAIL_CODE = "email-code"


class PortalLogin(enum.StrEnum):
    """How a tenant's people sign in to the portal (SPEC 9)."""

    EMAIL_LINK = "email-link"
    SAML = "saml"
    BOTH = "both"


class OnMalware(enum.StrEnum):
    """What an infected file does to its message (SPEC 10)."""

    REJECT = "reject"
    STRIP = "strip"


class OnScanError(enum.StrEnum):
    """What a file clamd could not judge does to its message (SPEC 10)."""

    TEMPFAIL = "tempfail"
    PASS = "pass"

LOGO_TYPES = {".png": "image/png", ".svg": "image/svg+xml"}
STORAGE_BACKENDS = ("fs", "s3")
S3_ADDRESSING = ("path", "virtual")
MIN_PART_SIZE = 5 * 1024 * 1024  # S3: every part of a multipart upload but the last
LOG_FORMATS = ("text", "json")

DATA_RATE_WINDOW = 60.0
"""
Seconds over which ``min_data_rate`` is measured: a client must send
``min_data_rate * DATA_RATE_WINDOW`` bytes of a message in every such
window while we read (Postfix's smtpd_min_data_rate, per window).
"""


@attrs.frozen
class SMTPConfig:
    listen: tuple[str, ...] = ("tcp:2525:interface=127.0.0.1",)
    hostname: str = "mailproxy.localhost"
    tls_certificate: str = ""
    require_tls: bool = False
    max_message_size: int = 157286400
    max_recipients: int = 500
    max_connections: int = 2000
    max_connections_per_ip: int = 200
    memory_budget: int = 268435456
    max_mime_depth: int = 100
    max_mime_parts: int = 5000
    max_header_bytes: int = 1048576
    command_timeout: float = 300
    data_timeout: float = 600
    min_data_rate: int = 4096

    @property
    def longestTransaction(self) -> float:
        """
        Seconds a message's data can be on its way in at most: the
        largest message at the minimum rate, one window more, and an
        hour for the store's own work.  A temporary object older than
        that is a crash's leftover.
        """
        return self.max_message_size / self.min_data_rate + DATA_RATE_WINDOW + 3600


@attrs.frozen
class WebConfig:
    listen: tuple[str, ...] = ("tcp:8080:interface=127.0.0.1",)
    public_url: str = "http://127.0.0.1:8080"
    language: Language = attrs.field(default=Language.NL, converter=Language)


@attrs.frozen
class MetricsConfig:
    """The operators' listener: ``/metrics`` and ``/healthz``, never public."""

    listen: tuple[str, ...] = ("tcp:9101:interface=127.0.0.1",)


@attrs.frozen
class PortalConfig:
    """``[portal]``: the tenant's half on the web listener (SPEC 9) and the message trace's keeping."""

    enabled: bool = True
    session_hours: int = 8
    idle_minutes: int = 60
    max_upload_size: int = 2147483648
    trace_days: int = 30


@attrs.frozen
class ScanConfig:
    """``[scan]``: malware scanning by clamd (SPEC 10); ``clamd = ""`` is off."""

    clamd: str = ""
    timeout: float = 60
    max_file_size: int = 104857600


@attrs.frozen
class StorageConfig:
    backend: str = "fs"
    path: str = ""
    endpoint: str = ""
    bucket: str = ""
    region: str = ""
    access_key_id_env: str = ""
    secret_access_key_env: str = ""
    prefix: str = ""
    addressing: str = "path"
    ca_file: str = ""
    part_size: int = 8388608


@attrs.frozen
class DatabaseConfig:
    """
    ``url`` is ``sqlite:/absolute/path`` or a PostgreSQL URL;
    ``password_env`` names the environment variable holding the
    PostgreSQL password ("" = none, or in the URL); ``pool_size`` is
    PostgreSQL connections per process.
    """

    url: str
    password_env: str = ""
    pool_size: int = 10

    @property
    def kind(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return "sqlite" if self.url.startswith("sqlite:") else "postgresql"


@attrs.frozen
class LogConfig:
    format: str = "text"
    path: str = "-"


@attrs.frozen
class Tenant:
    """
    One tenant file.  Attribute names are the file's keys; ``networks``,
    ``exchange_online``, ``source`` and ``document`` are derived.
    """

    id: str
    domains: tuple[str, ...]
    relay: str
    facility_sender: str
    microsoft_tenant_id: str = ""
    allowed_sources: tuple[str, ...] = ("127.0.0.0/8",)
    relay_tls_certificate: str = ""
    relay_require_tls: bool = True
    relay_ca_file: str = ""
    mode: Mode = attrs.field(default=Mode.OPT_OUT, converter=Mode)
    min_attachment_size: int = 1024
    exclude_senders: tuple[str, ...] = ()
    exclude_recipients: tuple[str, ...] = ()
    required_header: str = ""
    content_mode: ContentMode = attrs.field(default=ContentMode.LINK, converter=ContentMode)
    confirmation_mail: bool = False
    users: tuple[str, ...] = ()
    auto_create_users: AutoCreateUsers = attrs.field(default=AutoCreateUsers.NO, converter=AutoCreateUsers)
    unknown_sender: UnknownSender = attrs.field(default=UnknownSender.PASS, converter=UnknownSender)
    disclaimer: str = ""
    link_expiry_days: int = 14
    language: Language = attrs.field(default=Language.NL, converter=Language)
    on_error: OnError = attrs.field(default=OnError.TEMPFAIL, converter=OnError)
    organisation: str = ""
    help_contact: str = ""
    logo: str = ""
    recipient_verification: RecipientVerification = attrs.field(default=RecipientVerification.NONE, converter=RecipientVerification)
    download_notification: bool = False
    admins: tuple[str, ...] = ()
    portal_login: PortalLogin = attrs.field(default=PortalLogin.EMAIL_LINK, converter=PortalLogin)
    saml_metadata_url: str = ""
    saml_metadata_file: str = ""
    saml_user_groups: tuple[str, ...] = ()
    saml_admin_groups: tuple[str, ...] = ()
    on_malware: OnMalware = attrs.field(default=OnMalware.REJECT, converter=OnMalware)
    on_scan_error: OnScanError = attrs.field(default=OnScanError.TEMPFAIL, converter=OnScanError)
    networks: tuple[IPNetwork, ...] = ()
    exchange_online: bool = False
    source: str = ""
    # The tenant file's text, read again with the portal's overrides
    # (config.tenants.withOverrides); not part of the value's identity.
    document: str = attrs.field(default="", eq=False, repr=False)

    def allowsSource(self, ip: str) -> bool:
        """Whether a client at ``ip`` may submit this tenant's mail."""
        address = parseIP(ip)
        if address is None:
            return False
        return any(address in network for network in self.networks)


@attrs.frozen
class Config:
    path: str
    smtp: SMTPConfig
    web: WebConfig
    storage: StorageConfig
    database: DatabaseConfig
    tenants: tuple[Tenant, ...]
    tenants_path: str
    log: LogConfig
    metrics: MetricsConfig = MetricsConfig()
    portal: PortalConfig = PortalConfig()
    scan: ScanConfig = ScanConfig()
