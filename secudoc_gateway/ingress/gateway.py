"""
The ingress: what the SMTP protocol asks at connect, at MAIL and at DATA.

``Gateway`` admits peers and senders by the tenant registry, keeps one
relay per tenant's settings (so pooled connections survive a reload
that did not change them), and begins a ``Transaction`` per message.
It holds no message state: that lives in the transaction, so a reload
never changes a message already under way.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from zope.interface import implementer

from secudoc_gateway import policy, replies
from secudoc_gateway.config.values import Tenant
from secudoc_gateway.envelope import Envelope
from secudoc_gateway.ingress.tracer import Tracer
from secudoc_gateway.ingress.transaction import Transaction, newQueueId
from secudoc_gateway.interfaces import IIngress, IRelay
from secudoc_gateway.metrics import Metrics
from secudoc_gateway.relay.smtp import relayFor
from secudoc_gateway.replies import Reply
from secudoc_gateway.scan import Scanner
from secudoc_gateway.spool import MemoryBudget
from secudoc_gateway.tenants import TenantRegistry


@implementer(IIngress)
class Gateway:
    """The SMTP protocol's view of the rest of the gateway."""

    log = Logger()

    def __init__(
        self,
        config: Any,
        registry: TenantRegistry,
        metrics: Metrics,
        reactor: Any,
        store: Any = None,
        transfers: Any = None,
        relayFactory: Any = relayFor,
        budget: Optional[MemoryBudget] = None,
        scanner: Optional[Scanner] = None,
        tracer: Optional[Tracer] = None,
    ) -> None:
        self.config = config
        self.registry = registry
        self.metrics = metrics
        self.reactor = reactor
        self.store = store
        self.transfers = transfers
        self.budget = budget or MemoryBudget(config.smtp.memory_budget)
        self.scanner = scanner
        # A Tracer(..., enabled=False) only for the bench's "without".
        self.tracer = tracer or Tracer(transfers, reactor)
        self._relayFactory = relayFactory
        self._relays: dict[Any, IRelay] = {}  # by the tenant's settings (frozen, hashable)
        self._current = frozenset(config.tenants)

    def reload(self, config: Any) -> None:
        """
        New tenants from now on.  A tenant whose settings did not change
        keeps its relay (and its pooled connections); the others' close.
        """
        self.config = config
        self.registry = TenantRegistry(config.tenants)
        self._current = current = frozenset(config.tenants)
        for tenant in [t for t in self._relays if t not in current]:
            self._relays.pop(tenant).close()

    def closeRelays(self) -> Deferred:
        """Shutdown: QUIT the pooled relay connections."""
        return DeferredList([relay.close() for relay in self._relays.values()])

    def relayFor(self, tenant: Tenant) -> IRelay:
        """
        The relay of this tenant's settings, kept per settings: a
        transaction that began before a reload keeps the old tenant, and
        must not leave a relay with old certificates in the cache.
        """
        relay = self._relays.get(tenant)
        if relay is None:
            relay = self._relayFactory(tenant, self.config.smtp.hostname, self.reactor)
            if tenant in self._current:
                self._relays[tenant] = relay
            else:
                # A tenant a reload replaced: closed from the start, so its
                # connection QUITs after this send instead of idling in a
                # pool nobody will use again.
                relay.close()
        return relay

    def checkConnection(self, peer: str) -> Optional[Reply]:
        return None if self.registry.anyAllows(peer) else replies.ACCESS_DENIED

    def checkSender(self, peer: str, sender: str) -> tuple[Optional[Reply], Any]:
        if not sender:
            return None, None
        tenant = self.registry.forSender(sender)
        if tenant is None or not tenant.allowsSource(peer):
            return replies.RELAY_DENIED, None
        return None, tenant

    def refused(self, envelope: Envelope, reply: Reply, reason: str) -> None:
        if envelope.tenant is not None:
            self.tracer.record(self.tracer.entry(envelope.tenant, newQueueId(), envelope, None, envelope.size or 0,
                                                 policy.REJECT, reason, reply))

    def begin(self, envelope: Envelope, producer: IPushProducer) -> Transaction:
        return Transaction(self, envelope, producer)
