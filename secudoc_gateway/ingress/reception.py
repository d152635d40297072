"""
Receiving one message: the only code that sees its bytes arrive.

Each chunk goes once through the MIME parser, and its events once to
the ``Extractor`` (attachments into encrypted storage as they stream);
the bytes go into the spool on the same pass, except an attachment's
bytes that are surely leaving.  When the top-level header block is
complete the policy's early rules run; a message they pass stops
extracting at once.  What receiving found (the header facts, the
effective sender and tenant, the early decision, a fatal defect, the
memory budget used up) is read by the transaction that holds it, and
the original leaves from here as received (``original``).
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet.interfaces import IPushProducer
from twisted.internet.threads import deferToThreadPool

from secudoc_gateway import policy
from secudoc_gateway.config.values import OnError, Tenant
from secudoc_gateway.envelope import Envelope
from secudoc_gateway.ingress.context import Context
from secudoc_gateway.ingress.extractor import Extractor
from secudoc_gateway.ingress.sink import Worker
from secudoc_gateway.mime.facts import HeaderFacts, headerFacts
from secudoc_gateway.mime.headers import lineEnding
from secudoc_gateway.mime.parser import BodyData, Defect, MIMEParser, PartEnd, PartStart
from secudoc_gateway.mime.stamp import stampFields, stamped, withoutGatewayFields
from secudoc_gateway.mime.structure import Structure
from secudoc_gateway.outgoing import Segment, SpoolRange
from secudoc_gateway.spool import Spool

PART_MEMORY = 4096
FIELD_MEMORY = 224
"""
What one part's state costs in memory beyond its header bytes (its
structure entry, candidate, sink, parsed values), and what each header
field adds: measured with tracemalloc, rounded up.  The header bytes
count twice: the block as received and its parsed fields.  Counted in the
memory budget, so ``max_mime_parts`` parts with big header blocks in
many connections cannot exhaust the machine.
"""
PART_ALLOWANCE = 64 * 1024
"""
Part state a transaction holds before it counts in the budget, like
its other fixed buffers: an ordinary message (a dozen parts) never
waits on a budget the spools of a busy moment have used up.
"""


def partMemory(event: PartStart) -> int:
    return PART_MEMORY + 2 * (event.bodyStart - event.headerStart) + FIELD_MEMORY * len(event.headers.fields)


def workerOf(reactor: Any) -> Optional[Worker]:
    """The reactor's thread pool for a big part's work; ``None`` (all inline) for a clock without one."""
    if not hasattr(reactor, "getThreadPool"):
        return None
    return lambda f, *args: deferToThreadPool(reactor, reactor.getThreadPool(), f, *args)


class Reception:
    """
    One message as it arrives: spool, parser, structure and extractor,
    and what the bytes told on the way.  ``tenant`` is the envelope's,
    or for a null sender the one its headers name once they are in.
    """

    def __init__(self, gateway: Context, envelope: Envelope, producer: IPushProducer, queueId: str) -> None:
        smtp = gateway.config.smtp
        self.gateway = gateway
        self.envelope = envelope
        self.queueId = queueId
        self.spool = Spool(gateway.budget)
        self.parser = MIMEParser(smtp.max_mime_depth, smtp.max_mime_parts, smtp.max_header_bytes)
        self.structure = Structure()
        self.extractor = Extractor(gateway.store, producer, self.spool, self.structure, queueId,
                                   gateway.scanner, worker=workerOf(gateway.reactor), budget=gateway.budget)
        self.tenant: Optional[Tenant] = envelope.tenant
        self.top: Optional[PartStart] = None
        self.facts: Optional[HeaderFacts] = None
        self.sender = envelope.sender  # the effective sender, From for a null one once the headers are in
        self.early: Optional[policy.Decision] = None
        self.configuredUser = True
        self.defect: Optional[Defect] = None
        self.sparse = False
        self.skipped = False  # attachment bytes left out of the spool: the original is gone
        self.partCost = 0  # what the parts' state costs
        self.partMemory = 0  # what of it is reserved in the budget
        self.overBudget = False
        self.closed = False

    @property
    def parsing(self) -> bool:
        return self.defect is None and not self.overBudget

    def write(self, data: bytes) -> None:
        if not self.parsing:
            self.spool.write(data)
            return
        start = self.spool.size
        at = self._events(self.parser.feed(data), data, start)
        self.spool.write(data[at - start:])

    def end(self) -> None:
        """All data is in: the parser's last events."""
        if self.parsing:
            self._events(self.parser.close(), b"", self.spool.size)

    def stop(self) -> None:
        """No attachments leave after all: stop extracting (the spool keeps every byte from now on)."""
        self.sparse = False
        self.extractor.stop()

    def release(self) -> None:
        """The message is over: the spool and the budget go back (once)."""
        if not self.closed:
            self.closed = True
            self.extractor.stop()  # small objects still waiting give their budget back
            self.spool.close()
            self.gateway.budget.release(self.partMemory)
            self.partMemory = 0

    def _events(self, events: list, data: bytes, start: int) -> int:
        """
        One pass over a chunk's events: each goes once to the structure
        and the extractor (with the parser's window, and then how far it
        got, for an attached message stored as received), and the chunk
        (``data``, at ``start`` in the message) into the spool on the way,
        up to where the spool may be read next (a part's end: a TNEF part
        the reader could not open is copied from the spool then).  Left
        out are the bodies of attachments that are surely leaving: once a
        message is bound to be protected and nobody gets the original,
        those bytes are never read again, and not writing them is a third
        of a big attachment's cost.  Returns how far the spool got; the
        caller writes the rest.
        """
        extractor = self.extractor
        minimum = self.tenant.min_attachment_size if self.sparse and self.tenant and self.spool.onDisk else None
        at = start
        extractor.window(*self.parser.window)
        for event in events:
            if isinstance(event, PartStart) and not self._reserve(partMemory(event)):
                break
            self.structure.add(event)
            if isinstance(event, BodyData):
                if extractor.bodyData(event, minimum):
                    at = self._skip(data, start, at, event)
            elif isinstance(event, PartStart):
                if event.path == ():
                    self._topHeaders(event)
                extractor.partStart(event)
                if extractor.rightsProtected and extractor.active and not self.skipped:
                    # Rule 6: the message will pass as it is.
                    self.stop()
            elif isinstance(event, PartEnd):
                end = min(event.bodyEnd, start + len(data))
                if end > at:
                    self.spool.write(data[at - start:end - start])
                    at = end
                extractor.partEnd(event)
            elif isinstance(event, Defect) and event.fatal:
                self.defect = event
                self.stop()
        extractor.passed(self.parser.consumed)
        return at

    def _skip(self, data: bytes, start: int, at: int, event: BodyData) -> int:
        """Spool the chunk up to ``event``'s bytes and leave those out; where the spool got."""
        skipFrom = max(event.offset, at)
        skipTo = min(event.offset + len(event.data), start + len(data))
        if skipFrom >= skipTo:
            return at
        self.spool.write(data[at - start:skipFrom - start])
        self.spool.skip(skipTo - skipFrom)
        self.skipped = True
        return skipTo

    def _reserve(self, cost: int) -> bool:
        """Count a part's state in the memory budget; past it, stop parsing (452 at the end)."""
        self.partCost += cost
        due = self.partCost - PART_ALLOWANCE - self.partMemory
        if due <= 0:
            return True
        if self.gateway.budget.reserve(due):
            self.partMemory += due
            return True
        self.overBudget = True
        self.stop()
        return False

    def _topHeaders(self, event: PartStart) -> None:
        self.top = event
        self.facts = facts = headerFacts(event.headers)
        self.sender = sender = policy.effectiveSender(self.envelope.sender, facts)
        if self.tenant is None:
            tenant = policy.tenantForNullSender(facts, self.gateway.registry.forMicrosoftTenantId)
            if tenant is None or not tenant.allowsSource(self.envelope.peer):
                self.stop()
                return
            self.tenant = tenant
        self.early = policy.earlyDecision(
            self.tenant, self.envelope.sender, self.envelope.recipients, facts, True)
        if self.early is not None:
            self.stop()
            return
        self.configuredUser = policy.isConfiguredUser(self.tenant, sender)
        original, _ = policy.splitRecipients(self.tenant, self.envelope.recipients)
        # Only then is a big attachment certain to leave (see _events).
        self.sparse = (self.extractor.active and self.configuredUser and not original
                       and self.tenant.on_error is OnError.TEMPFAIL)

    # -- the message as received -------------------------------------------

    def headerBlock(self) -> tuple[bytes, int]:
        """
        The top header block as received without incoming gateway
        fields, and where it ends (the blank line, if any, goes with
        the body).
        """
        if self.top is None:
            return b"", 0
        return withoutGatewayFields(self.top.headers), self.top.headerStart + self.top.headers.size

    def stamp(self, block: bytes, status: str, transferId: Optional[str] = None) -> bytes:
        """The gateway's fields for a copy of this message with ``status``."""
        return stampFields(
            self.envelope, self.gateway.config.smtp.hostname, self.queueId, status,
            transferId, lineEnding(block), date=self.gateway.reactor.seconds(),
        )

    def original(self, status: str) -> tuple[Segment, ...]:
        """The message as received, with the gateway's fields."""
        block, bodyStart = self.headerBlock()
        return (*stamped(block, self.stamp(block, status)), SpoolRange(bodyStart, self.spool.size))
