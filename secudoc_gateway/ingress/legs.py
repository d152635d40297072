"""
The legs of one message: each relay transaction, who gets which copy.

A message goes out as one or more legs: the original (with the
gateway's fields), the protected copy, then the messages the gateway
makes itself.  Each leg is claimed and recorded for dedup around its
relay (SPEC 4), so a resend relays only what is missing, and each gets
its Postfix-style summary line.  The message's trace row (SPEC 7) rides
in the transaction that marks its last leg done, when there is one.  A collaborator of the transaction,
apart from its receiving and deciding because it is the only part that
talks to the relay and the dedup records.
"""

from __future__ import annotations

from typing import Awaitable, Callable, Optional, Sequence

import attrs
from twisted.logger import Logger, LogLevel

from secudoc_gateway import policy, replies
from secudoc_gateway.config.values import Tenant
from secudoc_gateway.envelope import Envelope
from secudoc_gateway.errors import RelayError
from secudoc_gateway.ingress.context import Context
from secudoc_gateway.ingress.tracer import statusReason
from secudoc_gateway.mime.facts import HeaderFacts
from secudoc_gateway.interfaces import IRelay
from secudoc_gateway.logs import BOUNCED, DEFERRED, SENT, SKIPPED, SUMMARY, Addresses
from secudoc_gateway.metrics import TEMPFAILED
from secudoc_gateway.outgoing import OutgoingMessage, Segment
from secudoc_gateway.replies import Reply
from secudoc_gateway.spool import Spool
from secudoc_gateway.transfers import DONE, INFLIGHT, TraceEntry


class _InFlight(Exception):
    """A copy of this leg is being relayed right now (SPEC 4: 451)."""


@attrs.frozen
class Leg:
    """
    One relay transaction of a message: who gets which copy.  ``make``
    builds the segments only when the leg is really relayed (a protected
    leg creates its transfer then, not for a resend that dedup skips).
    ``reason`` is what the summary line says of a leg that was sent: its
    ``X-SecuDoc-Status``, or what the gateway made.
    """

    name: str
    recipients: tuple[str, ...]
    make: Callable[[], Awaitable[Sequence[Segment]]]
    reason: str
    sender: Optional[str] = None


def ready(segments: Sequence[Segment]) -> Callable[[], Awaitable[Sequence[Segment]]]:
    async def make() -> Sequence[Segment]:
        return segments

    return make


def countMessage(gateway: Context, tenant: Optional[Tenant], status: str) -> None:
    """One message more in the metrics, by its tenant (none yet: ``""``) and what became of it."""
    gateway.metrics.messages.labels(tenant=tenant.id if tenant is not None else "", status=status).inc()


class Legs:
    """
    The relaying of one received message, held by its ``Transaction``:
    the legs in order, their dedup claims, the reply they earn, and the
    summary lines.  ``transferId`` is the protected copy's, once it has
    one; ``extras`` the messages the gateway makes, relayed after the
    main legs; ``delivered`` the recipients a leg was relayed to.
    ``outcome`` is what became of the message and why, once counted;
    ``relayReplies`` what the relay target answered each main leg;
    ``traced`` whether its trace row is written already.
    """

    log = Logger()

    def __init__(self, gateway: Context, envelope: Envelope, tenant: Tenant, facts: Optional[HeaderFacts],
                 spool: Spool, queueId: str, started: float) -> None:
        self.gateway = gateway
        self.envelope = envelope
        self.tenant = tenant
        self.facts = facts
        self.spool = spool
        self.queueId = queueId
        self.started = started
        self.transferId: Optional[str] = None
        self.extras: list[Leg] = []
        self.delivered: set[str] = set()
        self.outcome: Optional[tuple[str, str]] = None
        self.relayReplies: list[str] = []
        self.traced = False
        self.scan: Optional[str] = None  # the malware verdict, one word (scan.worst), once scanned

    def count(self, status: str, reason: str) -> None:
        countMessage(self.gateway, self.tenant, status)
        self.outcome = (status, reason)

    def traceEntry(self, reply: Reply) -> Optional[TraceEntry]:
        """The message's trace row for ``reply`` (``None`` before its outcome, or with the trace off)."""
        if self.outcome is None:
            return None
        decision, reason = self.outcome
        return self.gateway.tracer.entry(self.tenant, self.queueId, self.envelope, self.facts, self.spool.size,
                                         decision, reason, reply, self.transferId, "; ".join(self.relayReplies),
                                         self.scan)

    async def relay(self, legs: list[Leg], status: str, queueId: Optional[str] = None) -> Reply:
        """
        Relay the legs in order, then the messages the gateway made
        itself (``extras``: their failure is logged, never the reply).
        """
        relay = self.gateway.relayFor(self.tenant)
        accepted = replies.ACCEPTED.withText(f"Ok {queueId or self.queueId}")
        reason = statusReason(legs[-1].reason) if legs else ""

        def lastEntry() -> Optional[TraceEntry]:
            # The last main leg is in: nothing after it changes the reply.
            self.outcome = (status, reason)
            return self.traceEntry(accepted)

        for leg in legs:
            try:
                await self._relayLeg(leg, relay, True, lastEntry if leg is legs[-1] else None)
            except _InFlight:
                self._summary(leg, DEFERRED, "a copy is being relayed now")
                self.count(TEMPFAILED, "a copy is being relayed now")
                return replies.DUPLICATE_IN_FLIGHT
            except RelayError as e:
                return self._relayFailed(leg, e)
            except Exception:
                self._summary(leg, DEFERRED, "internal error")
                raise
        for leg in self.extras:
            try:
                await self._relayLeg(leg, relay)
            except _InFlight:
                continue  # the copy being relayed sends it
            except Exception as e:
                self._extraFailed(leg, e)
        self.count(status, reason)
        return accepted

    async def _relayLeg(self, leg: Leg, relay: IRelay, main: bool = False,
                        lastEntry: Optional[Callable[[], Optional[TraceEntry]]] = None) -> None:
        """
        One leg, unless it was relayed before (SPEC 4 dedup: the network
        message id, else Message-ID, with the same sender and recipients,
        per leg); recorded as soon as its relay accepted it, and logged
        (the summary line) either way.  A ``main`` leg's remote reply goes
        into the trace (those of the gateway's own mails do not);
        ``lastEntry`` makes the trace row of a message whose last leg
        this is, written with its dedup record.
        """
        transfers = self.gateway.transfers
        dedupId = self.facts.dedupId if self.facts is not None and transfers is not None else None
        key = None
        if dedupId:
            key = transfers.dedupKey(self.tenant.id, dedupId, self.envelope.sender, leg.recipients, leg.name)
            state = await transfers.claim(key, self.tenant.id)
            if state == DONE:
                self._summary(leg, SKIPPED, "already relayed")
                self.delivered.update(leg.recipients)
                if main:
                    self.relayReplies.append("already relayed")
                return
            if state == INFLIGHT:
                raise _InFlight()
        envelope = attrs.evolve(self.envelope, recipients=leg.recipients, tenant=self.tenant,
                                sender=self.envelope.sender if leg.sender is None else leg.sender)
        try:
            segments = await leg.make()
            began = self.gateway.reactor.seconds()
            remote = await relay.send(envelope, OutgoingMessage(self.spool, segments))
            self.gateway.metrics.relaySeconds.labels(tenant=self.tenant.id).observe(
                self.gateway.reactor.seconds() - began)
        except Exception:
            if key is not None:
                try:
                    await transfers.release(key)
                except Exception:
                    self.log.failure("{queueId}: releasing {leg}'s dedup claim failed",
                                     queueId=self.queueId, leg=leg.name)
            raise
        self.delivered.update(leg.recipients)
        self._summary(leg, SENT, leg.reason, remote)
        if main:
            self.relayReplies.append(remote)
        if key is not None:
            entry = lastEntry() if lastEntry is not None else None
            try:
                await transfers.markDone(key, self.tenant.id, trace=entry)
                self.traced = entry is not None
            except Exception:
                self.log.failure("{queueId}: recording {leg} for dedup failed", queueId=self.queueId, leg=leg.name)

    def _summary(self, leg: Leg, status: str, reason: str, reply: str = "") -> None:
        """The leg's Postfix-style line (logs.SUMMARY)."""
        level = LogLevel.info if status in (SENT, SKIPPED) else LogLevel.warn
        self.log.emit(
            level, SUMMARY, queue_id=self.queueId, tenant=self.tenant.id,
            sender=self.envelope.sender if leg.sender is None else leg.sender,
            recipients=Addresses(leg.recipients), size=self.spool.size, leg=leg.name, status=status,
            reason=reason, transfer_id=self.transferId, relay=self.tenant.relay, reply=reply,
            delay=round(self.gateway.reactor.seconds() - self.started, 3),
        )

    def _extraFailed(self, leg: Leg, e: Exception) -> None:
        kind = e.kind if isinstance(e, RelayError) else "internal"
        self.gateway.metrics.relayErrors.labels(tenant=self.tenant.id, kind=kind).inc()
        if isinstance(e, RelayError):
            self._relayFailedSummary(leg, e)
        else:
            self._summary(leg, DEFERRED, f"internal error: {e}")

    def _relayFailedSummary(self, leg: Leg, e: RelayError) -> None:
        reply = e.reply.line if e.reply is not None else ""
        self._summary(leg, BOUNCED if e.permanent else DEFERRED, f"{e.kind}: {e.message}", reply)

    def _relayFailed(self, leg: Leg, e: RelayError) -> Reply:
        self.gateway.metrics.relayErrors.labels(tenant=self.tenant.id, kind=e.kind).inc()
        self._relayFailedSummary(leg, e)
        if e.reply is not None:
            self.relayReplies.append(e.reply.line)
        reason = f"{e.kind}: {e.message}"
        if e.permanent and e.reply is not None:
            self.count(policy.REJECT, reason)
            enhanced = e.reply.enhanced if e.reply.enhanced.startswith("5.") else "5.0.0"
            return Reply(554, enhanced, e.reply.text or "Relay target refused the message")
        self.count(TEMPFAILED, reason)
        return replies.RELAY_TEMPFAIL
