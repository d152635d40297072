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
from typing import Optional

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"


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
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=r,
        )
        self.downloads = Counter(
            "secudoc_downloads_total", "Files downloaded", ["tenant"], registry=r
        )
