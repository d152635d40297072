"""
The configuration: the main TOML file and one TOML file per tenant
(SPEC section 3), read into frozen attrs values.

``values`` holds the values and the choices their keys allow,
``reader`` the checked reading of any one file, ``main`` the main file
(and what this environment cannot do), ``tenants`` the tenant files.
Importers use the names below.
"""

from secudoc_gateway.config.main import loadConfig, loadUsableConfig, missingEnvironment, unavailable
from secudoc_gateway.config.tenants import loadTenant, loadTenants, reloadTenants
from secudoc_gateway.config.values import (
    DATA_RATE_WINDOW,
    DEFAULT_CONFIG_PATH,
    EXCHANGE_ONLINE,
    EXCHANGE_ONLINE_NETWORKS,
    LANGUAGES,
    LOG_FORMATS,
    LOGO_TYPES,
    MIN_PART_SIZE,
    S3_ADDRESSING,
    STORAGE_BACKENDS,
    AutoCreateUsers,
    Config,
    ContentMode,
    DatabaseConfig,
    Language,
    LogConfig,
    MetricsConfig,
    Mode,
    OnError,
    OnMalware,
    OnScanError,
    PortalConfig,
    PortalLogin,
    RecipientVerification,
    SMTPConfig,
    ScanConfig,
    StorageConfig,
    Tenant,
    UnknownSender,
    WebConfig,
)

__all__ = [
    "DATA_RATE_WINDOW",
    "DEFAULT_CONFIG_PATH",
    "EXCHANGE_ONLINE",
    "EXCHANGE_ONLINE_NETWORKS",
    "LANGUAGES",
    "LOG_FORMATS",
    "LOGO_TYPES",
    "MIN_PART_SIZE",
    "S3_ADDRESSING",
    "STORAGE_BACKENDS",
    "AutoCreateUsers",
    "Config",
    "ContentMode",
    "DatabaseConfig",
    "Language",
    "LogConfig",
    "MetricsConfig",
    "Mode",
    "OnError",
    "OnMalware",
    "OnScanError",
    "PortalConfig",
    "PortalLogin",
    "RecipientVerification",
    "SMTPConfig",
    "ScanConfig",
    "StorageConfig",
    "Tenant",
    "UnknownSender",
    "WebConfig",
    "loadConfig",
    "loadTenant",
    "loadTenants",
    "loadUsableConfig",
    "missingEnvironment",
    "reloadTenants",
    "unavailable",
]
