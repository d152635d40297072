"""
Every Prometheus series the gateway exports, in one place, on an
injected registry (tests and several services in one process each get
their own).

Under ``--workers`` every worker process has ``PROMETHEUS_MULTIPROC_DIR``
set by the parent before prometheus-client is imported: each process
then writes its values to files there, and ``/metrics``, whichever
worker answers, reads all of them (``exposition``).
"""

from __future__ import annotations

import os
from typing import Iterable, Optional

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.multiprocess import MultiProcessCollector

from secudoc_gateway import __version__
from secudoc_gateway.policy import PASS, PROTECT, REJECT

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"

# secudoc_messages_total's status label (SPEC section 8): the policy's
# actions, and a message answered 451.
TEMPFAILED = "tempfailed"
MESSAGE_STATUSES = (PROTECT, PASS, REJECT, TEMPFAILED)
# Mail takes from milliseconds (a small message to a maildir) to
# minutes (150 MB to a slow connector): 10 ms to 10 min.
SCAN_RESULTS = ("clean", "infected", "skipped", "error")  # scan.ScanResult, SPEC 10
# clamd's time after a file's last byte: a millisecond (a small file,
# the test database) to a minute (100 MB, the full database).
SCAN_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class Metrics:
    """The collectors of SPEC section 8, registered on ``registry``."""

    def __init__(self, registry: Optional[CollectorRegistry] = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        # What /metrics answers: this process's series, or every worker's.
        folder = os.environ.get(MULTIPROCESS_ENV)
        if folder:
            self.exposition = CollectorRegistry()
            MultiProcessCollector(self.exposition, folder)
        else:
            self.exposition = self.registry
        r = self.registry
        self.connections = Counter(
            "secudoc_smtp_connections_total", "SMTP connections accepted", registry=r
        )
        self.sessionsActive = Gauge(
            "secudoc_smtp_sessions_active", "SMTP sessions open now", registry=r,
            multiprocess_mode="livesum",
        )
        self.messages = Counter(
            "secudoc_messages_total",
            "Messages by final outcome",
            ["tenant", "status"],
            registry=r,
        )
        self.attachments = Counter(
            "secudoc_attachments_total", "Attachments taken out", ["tenant"], registry=r
        )
        self.attachmentBytes = Counter(
            "secudoc_attachment_bytes_total",
            "Decoded attachment bytes stored",
            ["tenant"],
            registry=r,
        )
        self.relayErrors = Counter(
            "secudoc_relay_errors_total",
            "Relay failures by stage",
            ["tenant", "kind"],
            registry=r,
        )
        self.messageSeconds = Histogram(
            "secudoc_message_seconds",
            "From the end of the message data to the final reply",
            buckets=BUCKETS,
            registry=r,
        )
        self.downloads = Counter(
            "secudoc_downloads_total", "Files downloaded", ["tenant"], registry=r
        )
        self.buildInfo = Gauge(
            "secudoc_build_info", "Always 1; the version label says which build runs", ["version"], registry=r,
            multiprocess_mode="max",
        )
        self.buildInfo.labels(version=__version__).set(1)
        self.reloadSuccess = Gauge(
            "secudoc_config_reload_success",
            "1 when the last load or reload of the tenant files succeeded, else 0",
            registry=r,
            multiprocess_mode="livemin",  # a worker that failed to reload shows
        )
        self.reloadTimestamp = Gauge(
            "secudoc_config_reload_success_timestamp_seconds",
            "When the tenant files were last loaded successfully",
            registry=r,
            multiprocess_mode="livemin",
        )
        self.purgeTimestamp = Gauge(
            "secudoc_purge_last_success_timestamp_seconds",
            "When the last purge of expired transfers finished without error",
            registry=r,
            multiprocess_mode="max",
        )
        self.replies = Counter(
            "secudoc_smtp_replies_total", "SMTP replies sent to clients, by code", ["code"], registry=r
        )
        self.relaySeconds = Histogram(
            "secudoc_relay_seconds",
            "One relay transaction to the tenant's relay target",
            ["tenant"],
            buckets=BUCKETS,
            registry=r,
        )
        self.certificateExpiry = Gauge(
            "secudoc_tls_certificate_expiry_timestamp_seconds",
            "When the certificate a listener presents expires",
            ["listener"],
            registry=r,
            multiprocess_mode="livemin",
        )
        self.healthUp = Gauge(
            "secudoc_health_check_up",
            "1 when the /healthz check (storage, database) answered at the last scrape, else 0",
            ["check"],
            registry=r,
            multiprocess_mode="livemin",
        )

        self.scans = Counter(
            "secudoc_scans_total", "Files scanned by clamd, by verdict", ["tenant", "result"], registry=r
        )
        self.scanSeconds = Histogram(
            "secudoc_scan_seconds",
            "From a file's last byte to clamd's verdict",
            buckets=SCAN_BUCKETS,
            registry=r,
        )

    def showTenants(self, tenants: Iterable[str]) -> None:
        """
        Every tenant's series from the start, at zero, so a rate over
        them is 0 rather than absent (dashboards, alerts).
        """
        for tenant in tenants:
            for status in MESSAGE_STATUSES:
                self.messages.labels(tenant=tenant, status=status)
            for counter in (self.attachments, self.attachmentBytes, self.downloads):
                counter.labels(tenant=tenant)
            for result in SCAN_RESULTS:
                self.scans.labels(tenant=tenant, result=result)

    def configLoaded(self, ok: bool, now: float) -> None:
        """A load or reload of the tenant files succeeded (or not) at ``now``."""
        self.reloadSuccess.set(1 if ok else 0)
        if ok:
            self.reloadTimestamp.set(now)
