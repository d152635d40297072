"""
One transaction, from the first byte of message data to the final
reply: the only module that knows every stage.

Theory of operation
-------------------

``Gateway`` is the ingress the SMTP protocol asks at connect, at MAIL
and at DATA.  Each message gets a ``Transaction``: its bytes go into a
spool and, in the same pass, through the MIME parser.  When the
top-level header block is complete the policy's early rules run; the
rest of the message only feeds the parser and the spool.  At the end
``finish`` takes the decision, relays the outgoing message (the spool
plus the gateway's header fields, as a list of segments) and only then
answers: 250 after the relay target accepted, 451 when it could not
(EXO keeps the message and retries), 554 with the target's own text
when it refused the message for good.
"""

from __future__ import annotations

import os
from typing import Any, Optional

import attrs
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from zope.interface import implementer

from secudoc_gateway import policy
from secudoc_gateway.envelope import Envelope
from secudoc_gateway.errors import RelayError
from secudoc_gateway.interfaces import IIngress, IRelay, ITransaction
from secudoc_gateway.metrics import Metrics
from secudoc_gateway.mime.parser import Defect, MIMEParser, PartStart
from secudoc_gateway.mime.stamp import lineEnding, stampFields, withoutGatewayFields
from secudoc_gateway.outgoing import OutgoingMessage, Segment, SpoolRange
from secudoc_gateway.smtp import replies
from secudoc_gateway.smtp.relay import relayFor
from secudoc_gateway.smtp.replies import Reply
from secudoc_gateway.spool import MemoryBudget, Spool
from secudoc_gateway.tenants import TenantRegistry

TEMPFAILED = "tempfailed"


def newQueueId() -> str:
    return os.urandom(8).hex().upper()


def _unfold(value: bytes) -> str:
    text = value.replace(b"\r", b"").replace(b"\n", b"")
    try:
        return text.decode("utf-8").strip()
    except UnicodeDecodeError:
        return text.decode("latin-1").strip()


@attrs.frozen
class Leg:
    """One relay transaction of a message: who gets which copy."""

    name: str
    recipients: tuple[str, ...]
    segments: tuple[Segment, ...]


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
    ) -> None:
        self.config = config
        self.registry = registry
        self.metrics = metrics
        self.reactor = reactor
        self.store = store
        self.transfers = transfers
        self.budget = MemoryBudget(config.smtp.memory_budget)
        self._relayFactory = relayFactory
        self._relays: dict[tuple[str, str], IRelay] = {}

    def relayFor(self, tenant: Any) -> IRelay:
        key = (tenant.id, tenant.relay)
        relay = self._relays.get(key)
        if relay is None:
            relay = self._relays[key] = self._relayFactory(tenant, self.config.smtp.hostname, self.reactor)
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

    def begin(self, envelope: Envelope, producer: IPushProducer) -> "Transaction":
        return Transaction(self, envelope, producer)


@implementer(ITransaction)
class Transaction:
    """One message: spool, parse, decide, relay, reply."""

    log = Logger()

    def __init__(self, gateway: Gateway, envelope: Envelope, producer: IPushProducer) -> None:
        smtp = gateway.config.smtp
        self.gateway = gateway
        self.envelope = envelope
        self.producer = producer
        self.spool = Spool(gateway.budget)
        self.parser = MIMEParser(smtp.max_mime_depth, smtp.max_mime_parts, smtp.max_header_bytes)
        self.queueId = newQueueId()
        self.tenant = envelope.tenant
        self.top: Optional[PartStart] = None
        self.facts: Optional[policy.HeaderFacts] = None
        self.defect: Optional[Defect] = None
        self.closed = False

    # -- receiving ---------------------------------------------------------

    def write(self, data: bytes) -> None:
        self.spool.write(data)
        if self.defect is None:
            self._events(self.parser.feed(data))

    def _events(self, events: list) -> None:
        for event in events:
            if isinstance(event, PartStart) and event.path == ():
                self._topHeaders(event)
            elif isinstance(event, Defect) and event.fatal:
                self.defect = event

    def _topHeaders(self, event: PartStart) -> None:
        self.top = event
        self.facts = policy.headerFacts((name, _unfold(value)) for name, value in event.headers.fields)

    # -- deciding and relaying ---------------------------------------------

    def finish(self) -> Deferred:
        started = self.gateway.reactor.seconds()

        def done(reply: Reply) -> Reply:
            self.gateway.metrics.messageSeconds.observe(self.gateway.reactor.seconds() - started)
            return reply

        return ensureDeferred(self._finish()).addBoth(self._cleanup).addCallback(done)

    def abort(self) -> None:
        self._cleanup(None)

    def _cleanup(self, result: Any) -> Any:
        if not self.closed:
            self.closed = True
            self.spool.close()
        return result

    def _count(self, status: str) -> None:
        tenant = self.tenant.id if self.tenant is not None else ""
        self.gateway.metrics.messages.labels(tenant=tenant, status=status).inc()

    async def _finish(self) -> Reply:
        if self.defect is None:
            self._events(self.parser.close())
        if self.defect is not None:
            self.log.info(
                "{queueId}: refused, {reason} at byte {offset}",
                queueId=self.queueId, reason=self.defect.reason, offset=self.defect.offset,
            )
            self._count(policy.REJECT)
            return replies.MIME_LIMIT
        facts = self.facts or policy.headerFacts(())
        if self.tenant is None:
            self.tenant = policy.tenantForNullSender(facts, self.gateway.registry.forMicrosoftTenantId)
            if self.tenant is None or not self.tenant.allowsSource(self.envelope.peer):
                self._count(policy.REJECT)
                return replies.TENANT_MISMATCH
        decision = policy.earlyDecision(
            self.tenant, self.envelope.sender, self.envelope.recipients, facts, True
        ) or policy.finalDecision(
            self.tenant, self.envelope.sender, self.envelope.recipients, facts, 0, 0
        )
        if decision.action == policy.REJECT:
            self._count(policy.REJECT)
            return decision.reply
        leg = Leg("original", self.envelope.recipients, self._original(decision.status))
        return await self._relay([leg], decision.action)

    def _headerBlock(self) -> tuple[bytes, int]:
        """The top header block without incoming gateway fields, and where the body starts."""
        end = self.top.bodyStart if self.top is not None else 0
        return withoutGatewayFields(self.spool.readBytes(0, end)), end

    def _stamp(self, block: bytes, status: str, transferId: Optional[str] = None) -> bytes:
        return stampFields(
            self.envelope, self.gateway.config.smtp.hostname, self.queueId, status,
            transferId, lineEnding(block),
        )

    def _original(self, status: str) -> tuple[Segment, ...]:
        """The message as received, with the gateway's fields."""
        block, bodyStart = self._headerBlock()
        return (self._stamp(block, status), block, SpoolRange(bodyStart, self.spool.size))

    async def _relay(self, legs: list[Leg], status: str) -> Reply:
        relay = self.gateway.relayFor(self.tenant)
        last = ""
        for leg in legs:
            envelope = attrs.evolve(self.envelope, recipients=leg.recipients, tenant=self.tenant)
            try:
                last = await relay.send(envelope, OutgoingMessage(self.spool, leg.segments))
            except RelayError as e:
                return self._relayFailed(e)
        self.log.info("{queueId}: relayed ({status}): {remote}", queueId=self.queueId, status=status, remote=last)
        self._count(status)
        return replies.ACCEPTED.withText(f"Ok {self.queueId}")

    def _relayFailed(self, e: RelayError) -> Reply:
        self.gateway.metrics.relayErrors.labels(tenant=self.tenant.id, kind=e.kind).inc()
        self.log.warn("{queueId}: relay failed at {kind}: {message}", queueId=self.queueId, kind=e.kind, message=e.message)
        if e.permanent and e.reply is not None:
            self._count(policy.REJECT)
            enhanced = e.reply.enhanced if e.reply.enhanced.startswith("5.") else "5.0.0"
            return Reply(554, enhanced, e.reply.text or "Relay target refused the message")
        self._count(TEMPFAILED)
        return replies.RELAY_TEMPFAIL
