"""
The configuration: the main TOML file and one TOML file per tenant
(SPEC section 3), read into frozen attrs values.

Theory of operation: each file is read by a ``_Table`` reader that takes
keys out of a parsed TOML table one at a time, checks type and range,
and records a problem ``FILE: key: what is wrong`` instead of raising,
so an operator sees every mistake of every file in one run.  Whatever
is left in a table when the reader is done is an unknown key.  Only when
no file had a problem is the ``Config`` returned; otherwise
``ConfigError(problems)`` carries them all.

Relative paths, in the main file or in a tenant file, are relative to
the main file's folder and are made absolute here, so nothing later
depends on the working directory.
"""

from __future__ import annotations

import difflib
import glob
import ipaddress
import os
import re
import tomllib
import urllib.parse
from typing import Any, Optional, Sequence, TypeVar

import attrs
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from secudoc_gateway.addresses import IPNetwork, configDomain, parseIP
from secudoc_gateway.errors import ConfigError
from secudoc_gateway.notices.texts import LANGUAGES
from secudoc_gateway.targets import MAILDIR_PREFIX, MaildirTarget, parseRelayTarget


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

MODES = ("opt-out", "opt-in")
CONTENT_MODES = ("link", "transfer", "separate")
AUTO_CREATE_USERS = ("no", "welcome", "silent")
UNKNOWN_SENDER = ("pass", "reject")
ON_ERROR = ("tempfail", "pass")
RECIPIENT_VERIFICATION = ("none", "email-code")
LOGO_TYPES = {".png": "image/png", ".svg": "image/svg+xml"}
STORAGE_BACKENDS = ("fs", "s3")
S3_ADDRESSING = ("path", "virtual")
MIN_PART_SIZE = 5 * 1024 * 1024  # S3: every part of a multipart upload but the last
LOG_FORMATS = ("text", "json")

# RFC 5322 3.6.8: field-name = 1*ftext; ftext = %d33-57 / %d59-126
_FIELD_NAME = re.compile(r"[!-9;-~]+\Z")
_GUID = re.compile(r"[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}\Z")
_TENANT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Characters no unquoted RFC 5321 local part holds (4.1.2), plus
# whitespace and controls; quoted local parts are not supported here.
_BAD_LOCAL = re.compile(r'[\x00-\x20\x7f()<>\[\]\\,;:"@]')


# --- the values --------------------------------------------------------------


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
    language: str = "nl"


@attrs.frozen
class MetricsConfig:
    """The operators' listener: ``/metrics`` and ``/healthz``, never public."""

    listen: tuple[str, ...] = ("tcp:9101:interface=127.0.0.1",)


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
    ``exchange_online`` and ``source`` are derived.
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
    mode: str = "opt-out"
    min_attachment_size: int = 1024
    exclude_senders: tuple[str, ...] = ()
    exclude_recipients: tuple[str, ...] = ()
    required_header: str = ""
    content_mode: str = "link"
    confirmation_mail: bool = False
    users: tuple[str, ...] = ()
    auto_create_users: str = "no"
    unknown_sender: str = "pass"
    disclaimer: str = ""
    link_expiry_days: int = 14
    language: str = "nl"
    on_error: str = "tempfail"
    organisation: str = ""
    help_contact: str = ""
    logo: str = ""
    recipient_verification: str = "none"
    download_notification: bool = False
    networks: tuple[IPNetwork, ...] = ()
    exchange_online: bool = False
    source: str = ""

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


# --- small shared helpers ----------------------------------------------------


def _typeName(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__


T = TypeVar("T")


class _Table:
    """
    Takes keys out of one TOML table, recording a problem for each bad
    value and returning the default in its place.
    """

    def __init__(self, file: str, prefix: str, data: dict[str, Any], problems: list[str]) -> None:
        self.file = file
        self.prefix = prefix
        self.data = dict(data)
        self.problems = problems
        self.known: set[str] = set()

    def key(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def problem(self, key: str, what: str) -> None:
        self.problems.append(f"{self.file}: {self.key(key)}: {what}")

    def _take(self, key: str, default: T, required: bool) -> tuple[bool, Any]:
        self.known.add(key)
        if key not in self.data:
            if required:
                self.problem(key, "missing (required)")
            return False, default
        return True, self.data.pop(key)

    def string(self, key: str, default: str = "", required: bool = False, nonEmpty: bool = False) -> str:
        present, value = self._take(key, default, required)
        if not present:
            return default
        if not isinstance(value, str):
            self.problem(key, f"must be a string, not {_typeName(value)}")
            return default
        if nonEmpty and not value:
            self.problem(key, "must not be empty")
            return default
        return value

    def boolean(self, key: str, default: bool) -> bool:
        present, value = self._take(key, default, False)
        if present and not isinstance(value, bool):
            self.problem(key, f"must be true or false, not {_typeName(value)}")
            return default
        return value

    def integer(self, key: str, default: int, minimum: int = 1) -> int:
        present, value = self._take(key, default, False)
        if not present:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.problem(key, f"must be an integer, not {_typeName(value)}")
            return default
        if value < minimum:
            self.problem(key, f"must be at least {minimum}, not {value}")
            return default
        return value

    def seconds(self, key: str, default: float) -> float:
        present, value = self._take(key, default, False)
        if not present:
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.problem(key, f"must be a number of seconds, not {_typeName(value)}")
            return default
        if not value > 0 or value == float("inf"):
            self.problem(key, f"must be a positive number of seconds, not {value}")
            return default
        return value

    def choice(self, key: str, default: str, choices: Sequence[str]) -> str:
        value = self.string(key, default)
        if value not in choices:
            allowed = ", ".join(f'"{c}"' for c in choices)
            self.problem(key, f'must be one of {allowed}, not "{value}"')
            return default
        return value

    def strings(
        self,
        key: str,
        default: Sequence[str] = (),
        required: bool = False,
        nonEmpty: bool = False,
    ) -> tuple[str, ...]:
        present, value = self._take(key, tuple(default), required)
        if not present:
            return tuple(default)
        if not isinstance(value, list):
            self.problem(key, f"must be an array of strings, not {_typeName(value)}")
            return tuple(default)
        bad = [v for v in value if not isinstance(v, str)]
        if bad:
            self.problem(key, f"must be an array of strings, has {_typeName(bad[0])}")
            return tuple(default)
        if nonEmpty and not value:
            self.problem(key, "must not be empty")
        return tuple(value)

    def table(self, key: str) -> "_Table":
        present, value = self._take(key, {}, False)
        if present and not isinstance(value, dict):
            self.problem(key, f"must be a table, not {_typeName(value)}")
            value = {}
        return _Table(self.file, f"{self.key(key)}.", value, self.problems)

    def finish(self) -> None:
        for key in sorted(self.data):
            near = difflib.get_close_matches(key, sorted(self.known), n=1)
            self.problem(key, f'unknown key; did you mean "{near[0]}"?' if near else "unknown key")


def _readTOML(file: str, problems: list[str]) -> Optional[dict[str, Any]]:
    try:
        with open(file, "rb") as f:
            return tomllib.load(f)
    except OSError as e:
        problems.append(f"{file}: (file): cannot read: {e.strerror or e}")
    except tomllib.TOMLDecodeError as e:
        problems.append(f"{file}: (syntax): {e}")
    except UnicodeDecodeError as e:
        problems.append(f"{file}: (syntax): not UTF-8: {e}")
    return None


def _resolve(base: str, path: str) -> str:
    """``path`` made absolute against ``base``, the main file's folder."""
    return os.path.abspath(os.path.join(base, os.path.expanduser(path)))


def _checkPEM(table: _Table, key: str, path: str, needKey: bool) -> None:
    """
    Check that ``path`` is readable PEM with at least one certificate
    and, when ``needKey``, a private key matching the first certificate.
    Certificates are checked now so a bad file is a start-up error, not
    a failed handshake (and a tempfailed message) later.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        table.problem(key, f"cannot read {path}: {e.strerror or e}")
        return
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        table.problem(key, f"{path} has no PEM certificate")
        return
    if not needKey:
        return
    try:
        privateKey = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        table.problem(key, f"{path}: the private key is encrypted")
        return
    except (ValueError, UnsupportedAlgorithm):
        table.problem(key, f"{path} has no PEM private key")
        return
    publicBytes = serialization.PublicFormat.SubjectPublicKeyInfo
    if certificates[0].public_key().public_bytes(
        serialization.Encoding.DER, publicBytes
    ) != privateKey.public_key().public_bytes(serialization.Encoding.DER, publicBytes):
        table.problem(key, f"{path}: the private key does not match the first certificate")


def _httpURL(table: _Table, key: str, value: str) -> bool:
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        table.problem(key, f'must be an http:// or https:// URL, not "{value}"')
        return False
    if parts.query or parts.fragment:
        table.problem(key, f'must have no query or fragment: "{value}"')
        return False
    try:
        parts.port
    except ValueError:
        table.problem(key, f'has a bad port: "{value}"')
        return False
    return True


# --- the main file -----------------------------------------------------------


def _listen(table: _Table, default: tuple[str, ...]) -> tuple[str, ...]:
    value = table.strings("listen", default, nonEmpty=True)
    if any(not s.strip() for s in value):
        table.problem("listen", "has an empty endpoint string")
        return default
    return value


def _smtp(table: _Table, base: str) -> SMTPConfig:
    d = SMTPConfig()
    listen = _listen(table, d.listen)
    hostname = table.string("hostname", d.hostname, nonEmpty=True)
    if hostname and (_CONTROL.search(hostname) or " " in hostname):
        table.problem("hostname", f'must be a host name, not "{hostname}"')
    certificate = table.string("tls_certificate", "../var/tls/gateway.pem", nonEmpty=True)
    certificate = _resolve(base, certificate)
    _checkPEM(table, "tls_certificate", certificate, needKey=True)
    return SMTPConfig(
        listen=listen,
        hostname=hostname,
        tls_certificate=certificate,
        require_tls=table.boolean("require_tls", d.require_tls),
        max_message_size=table.integer("max_message_size", d.max_message_size),
        max_recipients=table.integer("max_recipients", d.max_recipients),
        max_connections=table.integer("max_connections", d.max_connections),
        max_connections_per_ip=table.integer("max_connections_per_ip", d.max_connections_per_ip),
        memory_budget=table.integer("memory_budget", d.memory_budget),
        max_mime_depth=table.integer("max_mime_depth", d.max_mime_depth),
        max_mime_parts=table.integer("max_mime_parts", d.max_mime_parts),
        max_header_bytes=table.integer("max_header_bytes", d.max_header_bytes),
        command_timeout=table.seconds("command_timeout", d.command_timeout),
        data_timeout=table.seconds("data_timeout", d.data_timeout),
        min_data_rate=table.integer("min_data_rate", d.min_data_rate),
    )


def _web(table: _Table) -> WebConfig:
    d = WebConfig()
    listen = _listen(table, d.listen)
    url = table.string("public_url", d.public_url, nonEmpty=True)
    if not _httpURL(table, "public_url", url):
        url = d.public_url
    language = table.choice("language", d.language, LANGUAGES)
    return WebConfig(listen=listen, public_url=url.rstrip("/"), language=language)


def _storage(table: _Table, base: str) -> StorageConfig:
    backend = table.choice("backend", "fs", STORAGE_BACKENDS)
    path = _resolve(base, table.string("path", "../var/objects", nonEmpty=True))
    s3 = backend == "s3"
    endpoint = table.string("endpoint", "", required=s3, nonEmpty=s3)
    if endpoint:
        _httpURL(table, "endpoint", endpoint)
    s3Keys = {
        key: table.string(key, "", required=s3, nonEmpty=s3)
        for key in ("bucket", "region", "access_key_id_env", "secret_access_key_env")
    }
    d = StorageConfig()
    caFile = table.string("ca_file", "")
    if caFile:
        caFile = _resolve(base, caFile)
        _checkPEM(table, "ca_file", caFile, needKey=False)
    return StorageConfig(
        backend=backend, path=path, endpoint=endpoint.rstrip("/"), **s3Keys,
        prefix=table.string("prefix", ""),
        addressing=table.choice("addressing", d.addressing, S3_ADDRESSING),
        ca_file=caFile,
        part_size=table.integer("part_size", d.part_size, minimum=MIN_PART_SIZE),
    )


def _database(table: _Table, base: str) -> DatabaseConfig:
    d = DatabaseConfig("")
    url = table.string("url", "sqlite:../var/gateway.sqlite3", nonEmpty=True)
    more = dict(password_env=table.string("password_env", d.password_env),
                pool_size=table.integer("pool_size", d.pool_size))
    if url.startswith("sqlite:"):
        path = url[len("sqlite:"):]
        if path.startswith("//"):
            table.problem("url", f'must be "sqlite:PATH" (no "//"), not "{url}"')
        elif not path:
            table.problem("url", "sqlite: needs a path")
        elif path != ":memory:":
            url = "sqlite:" + _resolve(base, path)
        return DatabaseConfig(url, **more)
    parts = urllib.parse.urlsplit(url)
    if parts.scheme in ("postgresql", "postgres") and url.startswith(parts.scheme + "://"):
        try:
            parts.port
        except ValueError:
            table.problem("url", f'has a bad port: "{url}"')
        return DatabaseConfig(url, **more)
    table.problem("url", f'must be "sqlite:PATH" or a postgresql:// URL, not "{url}"')
    return DatabaseConfig("sqlite:" + _resolve(base, "../var/gateway.sqlite3"))


def _log(table: _Table, base: str) -> LogConfig:
    fmt = table.choice("format", "text", LOG_FORMATS)
    path = table.string("path", "-", nonEmpty=True)
    if path != "-":
        path = _resolve(base, path)
    return LogConfig(format=fmt, path=path)


def loadConfig(path: str) -> Config:
    """
    Read the main file at ``path`` and every ``*.toml`` in its tenants
    folder.  Raises ``ConfigError`` with every problem found.
    """
    problems: list[str] = []
    absolute = os.path.abspath(path)
    base = os.path.dirname(absolute)
    data = _readTOML(path, problems)
    if data is None:
        raise ConfigError(problems)
    root = _Table(path, "", data, problems)
    tables = {name: root.table(name)
              for name in ("smtp", "web", "metrics", "storage", "database", "tenants", "log")}
    root.finish()
    smtp = _smtp(tables["smtp"], base)
    web = _web(tables["web"])
    metrics = MetricsConfig(listen=_listen(tables["metrics"], MetricsConfig().listen))
    storage = _storage(tables["storage"], base)
    database = _database(tables["database"], base)
    tenantsTable = tables["tenants"]
    tenantsRaw = tenantsTable.string("path", "tenants", nonEmpty=True)
    log = _log(tables["log"], base)
    for table in tables.values():
        table.finish()

    tenantsPath = _resolve(base, tenantsRaw)
    # Tenant files are named in problems the way the main file was given.
    shownFolder = os.path.join(os.path.dirname(path), os.path.expanduser(tenantsRaw))
    tenants: tuple[Tenant, ...] = ()
    if not os.path.isdir(tenantsPath):
        tenantsTable.problem("path", f"{tenantsPath} is not a folder")
    else:
        tenants, tenantProblems = loadTenants(shownFolder, base)
        problems.extend(tenantProblems)
    if problems:
        raise ConfigError(problems)
    return Config(
        path=absolute,
        smtp=smtp,
        web=web,
        storage=storage,
        database=database,
        tenants=tenants,
        tenants_path=tenantsPath,
        log=log,
        metrics=metrics,
    )


# --- tenant files ------------------------------------------------------------


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


def _patterns(table: _Table, key: str, default: Sequence[str] = ()) -> tuple[str, ...]:
    out = []
    for value in table.strings(key, default):
        normal = _pattern(value, allowWildcards=True)
        if normal is None:
            table.problem(key, f'"{value}" is not an address, "name@*" or "*@domain"')
        else:
            out.append(normal)
    return tuple(out)


def _domains(table: _Table) -> tuple[str, ...]:
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


def _sources(table: _Table) -> tuple[tuple[str, ...], tuple[IPNetwork, ...], bool]:
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


def _relay(table: _Table, base: str) -> str:
    relay = table.string("relay", required=True, nonEmpty=True)
    if not relay:
        return relay
    try:
        target = parseRelayTarget(relay)
    except ValueError as e:
        table.problem("relay", str(e))
        return relay
    if isinstance(target, MaildirTarget):
        return MAILDIR_PREFIX + _resolve(base, target.path)
    return relay


def _requiredHeader(table: _Table) -> str:
    value = table.string("required_header")
    if not value:
        return value
    name, colon, rest = value.partition(":")
    if not _FIELD_NAME.match(name) or _CONTROL.search(rest.replace("\t", " ")):
        table.problem("required_header", f'must be "Name" or "Name: value", not "{value}"')
    return value


def _line(table: _Table, key: str) -> str:
    """A text shown to recipients (banner, pages): one line, no control characters."""
    value = table.string(key)
    if _CONTROL.search(value.replace("\t", " ")):
        table.problem(key, "must be one line without control characters")
    return value


def _file(table: _Table, key: str, base: str, needKey: bool) -> str:
    value = table.string(key)
    if not value:
        return value
    path = _resolve(base, value)
    _checkPEM(table, key, path, needKey=needKey)
    return path


def _logo(table: _Table, base: str) -> str:
    """A PNG or SVG file the tenant's pages show, checked now so a page never breaks."""
    value = table.string("logo")
    if not value:
        return value
    path = _resolve(base, value)
    if os.path.splitext(path)[1].lower() not in LOGO_TYPES:
        table.problem("logo", f"must be a .png or .svg file, not {path}")
    elif not os.path.isfile(path) or not os.access(path, os.R_OK):
        table.problem("logo", f"cannot read {path}")
    return path


def loadTenant(file: str, base: str, problems: list[str]) -> Optional[Tenant]:
    """One tenant file; problems are appended, ``None`` if unreadable."""
    data = _readTOML(file, problems)
    if data is None:
        return None
    t = _Table(file, "", data, problems)
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
        mode=t.choice("mode", "opt-out", MODES),
        min_attachment_size=t.integer("min_attachment_size", 1024, minimum=0),
        exclude_senders=_patterns(t, "exclude_senders"),
        exclude_recipients=_patterns(t, "exclude_recipients"),
        required_header=_requiredHeader(t),
        content_mode=t.choice("content_mode", "link", CONTENT_MODES),
        confirmation_mail=t.boolean("confirmation_mail", False),
        users=_patterns(t, "users"),
        auto_create_users=t.choice("auto_create_users", "no", AUTO_CREATE_USERS),
        unknown_sender=t.choice("unknown_sender", "pass", UNKNOWN_SENDER),
        disclaimer=disclaimer,
        link_expiry_days=t.integer("link_expiry_days", 14, minimum=1),
        language=t.choice("language", "nl", LANGUAGES),
        on_error=t.choice("on_error", "tempfail", ON_ERROR),
        organisation=organisation,
        help_contact=helpContact,
        logo=_logo(t, base),
        recipient_verification=t.choice("recipient_verification", "none", RECIPIENT_VERIFICATION),
        download_notification=t.boolean("download_notification", False),
        networks=networks,
        exchange_online=exchangeOnline,
        source=file,
    )
    t.finish()
    return tenant


def loadTenants(folder: str, base: str) -> tuple[tuple[Tenant, ...], list[str]]:
    """
    Every ``*.toml`` in ``folder`` (sorted by name), relative paths in
    them against ``base`` (the main file's folder), checked against each
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
        tenant = loadTenant(file, base, problems)
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
    tenants, problems = loadTenants(config.tenants_path, os.path.dirname(config.path))
    if problems:
        raise ConfigError(problems)
    return tenants


def unavailable(config: Config) -> list[str]:
    """
    What a valid configuration asks for that this build or this
    environment cannot do: reported like any other problem, so neither
    ``check-config`` nor twistd accepts a config whose files would
    silently land elsewhere, or whose database password is missing.
    """
    problems = []
    passwordEnv = config.database.password_env
    if passwordEnv and passwordEnv not in os.environ:
        problems.append(f"{config.path}: database.password_env: {passwordEnv} is not set in the environment")
    return problems


def missingEnvironment(config: Config, environ: Optional[dict[str, str]] = None) -> list[str]:
    """
    The environment variables the config names for secrets (SPEC 3:
    secrets never in the file) that are not set, each as a problem.
    """
    environ = os.environ if environ is None else environ
    storage = config.storage
    if storage.backend != "s3":
        return []
    return [
        f"{config.path}: storage.{key}: environment variable {name} is not set"
        for key, name in (("access_key_id_env", storage.access_key_id_env),
                          ("secret_access_key_env", storage.secret_access_key_env))
        if not environ.get(name)
    ]


def loadUsableConfig(path: str) -> Config:
    """
    ``loadConfig``, then what this build or this environment cannot do:
    the service's and the tools' view.
    """
    config = loadConfig(path)
    problems = unavailable(config) + missingEnvironment(config)
    if problems:
        raise ConfigError(problems)
    return config
