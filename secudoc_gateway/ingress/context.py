"""
What a message's transaction and its legs read of the gateway that
began them: named here, below both, so neither imports ``Gateway``
(which imports them) even for its annotations.
"""

from __future__ import annotations

from typing import Any, Optional, Protocol

from secudoc_gateway.config.values import Tenant
from secudoc_gateway.ingress.tracer import Tracer
from secudoc_gateway.interfaces import IObjectStore, IRelay
from secudoc_gateway.metrics import Metrics
from secudoc_gateway.scan import Scanner
from secudoc_gateway.spool import MemoryBudget
from secudoc_gateway.tenants import TenantRegistry


class Context(Protocol):
    """The gateway's state one transaction may read (``ingress.gateway.Gateway`` is the one)."""

    config: Any  # the loaded configuration: smtp and web settings
    registry: TenantRegistry
    metrics: Metrics
    reactor: Any  # an IReactorTime: every time a message records
    store: Optional[IObjectStore]
    transfers: Any  # a TransferStore, or None without a database
    budget: MemoryBudget
    scanner: Optional[Scanner]  # None: scanning is off
    tracer: Tracer  # the message trace's notifier

    def relayFor(self, tenant: Tenant) -> IRelay:
        """The relay of this tenant's settings."""
