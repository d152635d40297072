"""
The main file: its sections read into a ``Config`` together with the
tenant files its ``tenants.path`` names.  Only when no file had a
problem is the ``Config`` returned; otherwise ``ConfigError(problems)``
carries them all.
"""

from __future__ import annotations

import os
import urllib.parse
from typing import Any, Mapping, Optional

from secudoc_gateway.config.reader import CONTROL, Table, checkPEM, httpURL, readTOML, resolve
from secudoc_gateway.config.tenants import loadTenants
from secudoc_gateway.config.values import (
    LOG_FORMATS,
    MIN_PART_SIZE,
    S3_ADDRESSING,
    STORAGE_BACKENDS,
    Config,
    DatabaseConfig,
    LogConfig,
    MetricsConfig,
    PortalConfig,
    ScanConfig,
    SMTPConfig,
    StorageConfig,
    Tenant,
    WebConfig,
)
from secudoc_gateway.errors import ConfigError


def _listen(table: Table, default: tuple[str, ...]) -> tuple[str, ...]:
    value = table.strings("listen", default, nonEmpty=True)
    if any(not s.strip() for s in value):
        table.problem("listen", "has an empty endpoint string")
        return default
    return value


def _smtp(table: Table, base: str) -> SMTPConfig:
    d = SMTPConfig()
    listen = _listen(table, d.listen)
    hostname = table.string("hostname", d.hostname, nonEmpty=True)
    if hostname and (CONTROL.search(hostname) or " " in hostname):
        table.problem("hostname", f'must be a host name, not "{hostname}"')
    certificate = table.string("tls_certificate", "../var/tls/gateway.pem", nonEmpty=True)
    certificate = resolve(base, certificate)
    checkPEM(table, "tls_certificate", certificate, needKey=True)
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


def _web(table: Table) -> WebConfig:
    d = WebConfig()
    listen = _listen(table, d.listen)
    url = table.string("public_url", d.public_url, nonEmpty=True)
    if not httpURL(table, "public_url", url):
        url = d.public_url
    language = table.enum("language", d.language)
    return WebConfig(listen=listen, public_url=url.rstrip("/"), language=language)


def _storage(table: Table, base: str) -> StorageConfig:
    backend = table.choice("backend", "fs", STORAGE_BACKENDS)
    path = resolve(base, table.string("path", "../var/objects", nonEmpty=True))
    s3 = backend == "s3"
    endpoint = table.string("endpoint", "", required=s3, nonEmpty=s3)
    if endpoint:
        httpURL(table, "endpoint", endpoint)
    s3Keys = {
        key: table.string(key, "", required=s3, nonEmpty=s3)
        for key in ("bucket", "region", "access_key_id_env", "secret_access_key_env")
    }
    d = StorageConfig()
    caFile = table.string("ca_file", "")
    if caFile:
        caFile = resolve(base, caFile)
        checkPEM(table, "ca_file", caFile, needKey=False)
    return StorageConfig(
        backend=backend, path=path, endpoint=endpoint.rstrip("/"), **s3Keys,
        prefix=table.string("prefix", ""),
        addressing=table.choice("addressing", d.addressing, S3_ADDRESSING),
        ca_file=caFile,
        part_size=table.integer("part_size", d.part_size, minimum=MIN_PART_SIZE),
    )


def _database(table: Table, base: str) -> DatabaseConfig:
    d = DatabaseConfig("")
    url = table.string("url", "sqlite:../var/gateway.sqlite3", nonEmpty=True)
    more: dict[str, Any] = dict(password_env=table.string("password_env", d.password_env),
                               pool_size=table.integer("pool_size", d.pool_size))
    if url.startswith("sqlite:"):
        path = url[len("sqlite:"):]
        if path.startswith("//"):
            table.problem("url", f'must be "sqlite:PATH" (no "//"), not "{url}"')
        elif not path:
            table.problem("url", "sqlite: needs a path")
        elif path != ":memory:":
            url = "sqlite:" + resolve(base, path)
        return DatabaseConfig(url, **more)
    parts = urllib.parse.urlsplit(url)
    if parts.scheme in ("postgresql", "postgres") and url.startswith(parts.scheme + "://"):
        try:
            parts.port
        except ValueError:
            table.problem("url", f'has a bad port: "{url}"')
        return DatabaseConfig(url, **more)
    table.problem("url", f'must be "sqlite:PATH" or a postgresql:// URL, not "{url}"')
    return DatabaseConfig("sqlite:" + resolve(base, "../var/gateway.sqlite3"))


def _portal(table: Table) -> PortalConfig:
    d = PortalConfig()
    return PortalConfig(
        enabled=table.boolean("enabled", d.enabled),
        session_hours=table.integer("session_hours", d.session_hours),
        idle_minutes=table.integer("idle_minutes", d.idle_minutes),
        max_upload_size=table.integer("max_upload_size", d.max_upload_size),
        trace_days=table.integer("trace_days", d.trace_days),
    )


def _scan(table: Table, base: str) -> ScanConfig:
    """``clamd`` is ``""``, ``unix:PATH`` (relative as every path) or ``tcp:HOST:PORT``."""
    d = ScanConfig()
    clamd = table.string("clamd", d.clamd)
    kind, _, rest = clamd.partition(":")
    host, _, port = rest.rpartition(":")
    if kind == "unix" and rest:
        clamd = "unix:" + resolve(base, rest)
    elif clamd and not (kind == "tcp" and host and port.isdigit() and 0 < int(port) < 65536):
        table.problem("clamd", f'must be "", "unix:PATH" or "tcp:HOST:PORT", not "{clamd}"')
        clamd = d.clamd
    return ScanConfig(clamd=clamd, timeout=table.seconds("timeout", d.timeout),
                      max_file_size=table.integer("max_file_size", d.max_file_size))


def _log(table: Table, base: str) -> LogConfig:
    fmt = table.choice("format", "text", LOG_FORMATS)
    path = table.string("path", "-", nonEmpty=True)
    if path != "-":
        path = resolve(base, path)
    return LogConfig(format=fmt, path=path)


def loadConfig(path: str) -> Config:
    """
    Read the main file at ``path`` and every ``*.toml`` in its tenants
    folder.  Raises ``ConfigError`` with every problem found.
    """
    problems: list[str] = []
    absolute = os.path.abspath(path)
    base = os.path.dirname(absolute)
    data = readTOML(path, problems)
    if data is None:
        raise ConfigError(problems)
    root = Table(path, "", data, problems)
    tables = {name: root.table(name)
              for name in ("smtp", "web", "metrics", "storage", "database", "tenants", "log", "portal", "scan")}
    root.finish()
    smtp = _smtp(tables["smtp"], base)
    web = _web(tables["web"])
    metrics = MetricsConfig(listen=_listen(tables["metrics"], MetricsConfig().listen))
    storage = _storage(tables["storage"], base)
    database = _database(tables["database"], base)
    tenantsTable = tables["tenants"]
    tenantsRaw = tenantsTable.string("path", "tenants", nonEmpty=True)
    log = _log(tables["log"], base)
    portal = _portal(tables["portal"])
    scan = _scan(tables["scan"], base)
    for table in tables.values():
        table.finish()

    tenantsPath = resolve(base, tenantsRaw)
    # Tenant files are named in problems the way the main file was given.
    shownFolder = os.path.join(os.path.dirname(path), os.path.expanduser(tenantsRaw))
    tenants: tuple[Tenant, ...] = ()
    if not os.path.isdir(tenantsPath):
        tenantsTable.problem("path", f"{tenantsPath} is not a folder")
    else:
        tenants, tenantProblems = loadTenants(shownFolder)
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
        portal=portal,
        scan=scan,
    )


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


def missingEnvironment(config: Config, environ: Optional[Mapping[str, str]] = None) -> list[str]:
    """
    The environment variables the config names for secrets (SPEC 3:
    secrets never in the file) that are not set, each as a problem.
    """
    env = os.environ if environ is None else environ
    storage = config.storage
    if storage.backend != "s3":
        return []
    return [
        f"{config.path}: storage.{key}: environment variable {name} is not set"
        for key, name in (("access_key_id_env", storage.access_key_id_env),
                          ("secret_access_key_env", storage.secret_access_key_env))
        if not env.get(name)
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
