"""
One message, from the first byte of its data to the final reply: the
one owner of a message's state, so nothing else holds its bytes and a
reload never reaches it.

Theory of operation
-------------------

The transaction is made of collaborators, each owning one stage:
``Reception`` (``reception``) takes the bytes as they arrive (spool,
parser, extraction, the early rules on the header block); at the end,
``Protection`` (``protection``) takes the decision and, for a protected
message, builds its transfer and legs; ``Legs`` (``legs``) relays them,
with dedup and the summary lines.  This class wires them and owns what
crosses them: the refusals at the end of the data, the pass-through of
a message the rules let pass, and the fallback when anything fails.
Only then the reply: 250 after the relay target accepted, 451 when it
could not (EXO keeps the message and retries), 554 with the target's
own text when it refused the message for good.  A message whose tenant
is known leaves its trace row (SPEC 7) before the reply goes out: with
the last leg's dedup record (``Legs``), else here, with the ``Tracer``.
"""

from __future__ import annotations

import os
from typing import Any, Optional

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from secudoc_gateway import policy, replies
from secudoc_gateway.config.values import OnError
from secudoc_gateway.envelope import Envelope
from secudoc_gateway.ingress.context import Context
from secudoc_gateway.ingress.legs import Leg, Legs, countMessage, ready
from secudoc_gateway.ingress.protection import Protection
from secudoc_gateway.ingress.reception import Reception
from secudoc_gateway.ingress.tracer import statusReason
from secudoc_gateway.interfaces import ITransaction
from secudoc_gateway.logs import END_OF_MESSAGE, logReject
from secudoc_gateway.metrics import TEMPFAILED
from secudoc_gateway.mime.facts import headerFacts
from secudoc_gateway.mime.headers import Headers
from secudoc_gateway.replies import Reply

ERROR = "error"
"""The X-SecuDoc-Status reason of a message passed by ``on_error = "pass"``."""


def newQueueId() -> str:
    return os.urandom(8).hex().upper()


@implementer(ITransaction)
class Transaction:
    """
    One message: its ``reception`` while the data streams in; at the end
    its ``legs`` and the decision (``Protection``), then the reply.

    Attachments are extracted while the message streams in (decoded,
    hashed, encrypted, written), unless the early rules already decided
    that the message passes.  Parts that only might be attachments (an
    inline part with a Content-ID an HTML body may still reference) are
    stored too and dropped at the end when they turn out to be shown.
    """

    log = Logger()

    def __init__(self, gateway: Context, envelope: Envelope, producer: IPushProducer) -> None:
        self.gateway = gateway
        self.envelope = envelope
        self.queueId = newQueueId()
        self.started = gateway.reactor.seconds()
        self.reception = Reception(gateway, envelope, producer, self.queueId)
        self.legs: Optional[Legs] = None
        self.outcome: Optional[tuple[str, str]] = None  # a refusal's status and reason, for the trace

    # -- receiving ---------------------------------------------------------

    def write(self, data: bytes) -> None:
        self.reception.write(data)

    def abort(self) -> None:
        self.reception.stop()
        self.reception.extractor.discard()
        self.reception.release()

    # -- deciding and relaying ---------------------------------------------

    def finish(self) -> Deferred:
        started = self.gateway.reactor.seconds()

        def done(reply: Reply) -> Reply:
            self.gateway.metrics.messageSeconds.observe(self.gateway.reactor.seconds() - started)
            return reply

        return ensureDeferred(self._finish()).addBoth(self._release).addCallback(done)

    def _release(self, result: Any) -> Any:
        self.reception.release()
        return result

    async def _finish(self) -> Reply:
        reply = await self._answer()
        await self._trace(reply)
        return reply

    async def _trace(self, reply: Reply) -> None:
        """
        The trace row, unless the last leg's dedup record carried it; none
        without a tenant (that refusal is in the log: nobody owns it).
        """
        legs, tenant = self.legs, self.reception.tenant
        if tenant is None or (legs is not None and legs.traced):
            return
        if self.outcome is not None:
            status, reason = self.outcome
            entry = self.gateway.tracer.entry(tenant, self.queueId, self.envelope, self.reception.facts,
                                              self.reception.spool.size, status, reason, reply,
                                              legs.transferId if legs is not None else None,
                                              scan=legs.scan if legs is not None else None)
        elif legs is not None:
            entry = legs.traceEntry(reply)
        else:
            return
        await self.gateway.tracer.record(entry)

    async def _answer(self) -> Reply:
        reception = self.reception
        reception.end()
        if reception.overBudget:
            return self._refuse(replies.OUT_OF_MEMORY, "the memory budget is used up", TEMPFAILED)
        if reception.defect is not None:
            return self._refuse(replies.MIME_LIMIT, f"{reception.defect.reason} at byte {reception.defect.offset}")
        facts = reception.facts or headerFacts(Headers(()))
        if reception.tenant is None:
            return self._refuse(replies.TENANT_MISMATCH, "null sender, and the headers name no tenant that allows"
                                                         " this address")
        self.legs = legs = Legs(self.gateway, self.envelope, reception.tenant, reception.facts, reception.spool,
                                self.queueId, self.started)
        try:
            protection = Protection(self.gateway, self.envelope, reception, legs)
            decision = reception.early or await protection.decide(facts)
            if decision.reply is not None:  # a rejection, the one decision with a reply of its own
                return self._refuse(decision.reply, decision.status)
            if decision.action == policy.PASS:
                reception.extractor.discard()
                leg = Leg("original", self.envelope.recipients, ready(reception.original(decision.status)),
                          decision.status)
                return await legs.relay([leg], decision.action)
            refusal = await protection.screen()
            if refusal is not None:
                return self._refuse(*refusal)
            return await protection.protect(decision, facts)
        except Exception:
            return await self._internalError(Failure(), legs)

    def _refuse(self, reply: Reply, reason: str, status: str = policy.REJECT) -> Reply:
        """Refuse the message at its end: nothing stored stays, and its refusal line."""
        self.reception.extractor.discard()
        countMessage(self.gateway, self.reception.tenant, status)
        self.outcome = (status, statusReason(reason) or reason)
        envelope = self.envelope
        logReject(self.log, END_OF_MESSAGE, envelope.peer, reply, reason, queueId=self.queueId,
                  sender=envelope.sender, recipients=envelope.recipients, helo=envelope.helo)
        return reply

    async def _internalError(self, failure: Failure, legs: Legs) -> Reply:
        """
        Storage, database or our own bug: 451 so EXO retries, or with
        ``on_error = "pass"`` the original, unprotected, to everyone.
        """
        self.log.failure("{queueId}: processing failed", failure, queueId=self.queueId)
        self.reception.extractor.discard()
        missing = tuple(r for r in self.envelope.recipients if r not in legs.delivered)
        if legs.tenant.on_error is OnError.PASS and missing:
            status = policy.passed(ERROR, missing).status
            leg = Leg("original", missing, ready(self.reception.original(status)), status)
            try:
                return await legs.relay([leg], policy.PASS)
            except Exception:
                self.log.failure("{queueId}: relaying the original failed too", queueId=self.queueId)
        legs.count(TEMPFAILED, "internal error")
        return replies.LOCAL_TEMPFAIL
