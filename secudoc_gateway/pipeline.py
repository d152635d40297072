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

import datetime
import mimetypes
import os
from typing import Any, Awaitable, Callable, Optional, Sequence

import attrs
from twisted.internet.defer import Deferred, DeferredList, ensureDeferred
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from secudoc_gateway import crypto, policy
from secudoc_gateway.envelope import Envelope
from secudoc_gateway.errors import RelayError, StorageError
from secudoc_gateway.extract import AttachmentSink, objectKey
from secudoc_gateway.interfaces import IIngress, IRelay, ITransaction
from secudoc_gateway.metrics import Metrics
from secudoc_gateway.mails import bannerFor, confirmationMail, separateMessage, welcomeMail
from secudoc_gateway.mime.decode import IdentityDecoder, decoderFor
from secudoc_gateway.mime.names import cleanName, decodeHeader
from secudoc_gateway.mime.parser import BodyData, Defect, MIMEParser, PartEnd, PartStart
from secudoc_gateway.mime.rewrite import linkModePlan, transferModePlan
from secudoc_gateway.mime.stamp import lineEnding, stampFields, withoutGatewayFields
from secudoc_gateway.mime.structure import (
    LEAF, MESSAGE, MESSAGE_TYPES, SEALED_TYPES, CidScanner, Part, Structure, attachments, isAttachment,
)
from secudoc_gateway.outgoing import OutgoingMessage, Segment, SpoolRange
from secudoc_gateway.smtp import replies
from secudoc_gateway.smtp.relay import relayFor
from secudoc_gateway.smtp.replies import Reply
from secudoc_gateway.spool import MemoryBudget, Spool
from secudoc_gateway.tenants import TenantRegistry
from secudoc_gateway.transfers import DONE, INFLIGHT, StoredFile, Transfer

TEMPFAILED = "tempfailed"
ERROR = "error"
"""The X-SecuDoc-Status reason of a message passed by ``on_error = "pass"``."""
NO_CIDS: frozenset[str] = frozenset()
MAX_PENDING_WRITES = 4
"""Store writes not yet acknowledged before the client is paused."""


def newQueueId() -> str:
    return os.urandom(8).hex().upper()


def _unfold(value: bytes) -> str:
    text = value.replace(b"\r", b"").replace(b"\n", b"")
    try:
        return text.decode("utf-8").strip()
    except UnicodeDecodeError:
        return text.decode("latin-1").strip()


@attrs.define
class Candidate:
    """A part that is an attachment unless an HTML body shows it by cid:."""

    path: tuple[int, ...]
    slot: int
    kind: str
    headers: Any
    sink: Optional[AttachmentSink] = None
    size: int = 0
    sha256: str = ""
    stored: bool = False


@attrs.frozen
class Leg:
    """
    One relay transaction of a message: who gets which copy.  ``make``
    builds the segments only when the leg is really relayed (a protected
    leg creates its transfer then, not for a resend that dedup skips).
    ``extra`` marks a message the gateway made itself: relayed after the
    main legs, and its failure cannot fail a message already relayed.
    """

    name: str
    recipients: tuple[str, ...]
    make: Callable[[], Awaitable[Sequence[Segment]]]
    sender: Optional[str] = None
    extra: bool = False


def ready(segments: Sequence[Segment]) -> Callable[[], Awaitable[Sequence[Segment]]]:
    async def make() -> Sequence[Segment]:
        return segments

    return make


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

    def reload(self, config: Any) -> None:
        """New tenants from now on; relays are rebuilt as they are next needed."""
        self.config = config
        self.registry = TenantRegistry(config.tenants)
        old = list(self._relays.values())
        self._relays.clear()
        for relay in old:
            relay.close()

    def closeRelays(self) -> Deferred:
        """Shutdown: QUIT the pooled relay connections."""
        return DeferredList([relay.close() for relay in self._relays.values()])

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
    """
    One message: spool, parse, decide, relay, reply.

    Attachments are extracted while the message streams in (decoded,
    hashed, encrypted, written), unless the early rules already decided
    that the message passes.  Parts that only might be attachments (an
    inline part with a Content-ID an HTML body may still reference) are
    stored too and dropped at the end when they turn out to be shown.
    """

    log = Logger()

    def __init__(self, gateway: Gateway, envelope: Envelope, producer: IPushProducer) -> None:
        smtp = gateway.config.smtp
        self.gateway = gateway
        self.envelope = envelope
        self.producer = producer
        self.spool = Spool(gateway.budget)
        self.parser = MIMEParser(smtp.max_mime_depth, smtp.max_mime_parts, smtp.max_header_bytes)
        self.structure = Structure()
        self.queueId = newQueueId()
        self.tenant = envelope.tenant
        self.top: Optional[PartStart] = None
        self.facts: Optional[policy.HeaderFacts] = None
        self.early: Optional[policy.Decision] = None
        self.configuredUser = True
        self.defect: Optional[Defect] = None
        self.closed = False
        self.extras: list[Leg] = []  # messages the gateway makes, relayed after the main legs
        # Extraction
        self.extracting = gateway.store is not None
        self.token = crypto.newToken()
        self.transferId = crypto.newTransferId()
        self.candidates: list[Candidate] = []
        self.sinks: dict[tuple[int, ...], Candidate] = {}
        # Attached messages and signed/encrypted subtrees: no attachment inside.
        self.enclosing: set[tuple[int, ...]] = set()
        self.scanners: dict[tuple[int, ...], tuple[Any, CidScanner]] = {}
        self.referencedCids: set[str] = set()
        self.storing: list[Deferred] = []
        self.storageFailure: Any = None
        self.pendingWrites = 0
        self.paused = False
        self.sparse = False

    # -- receiving ---------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.defect is not None:
            self.spool.write(data)
            return
        start = self.spool.size
        events = self.parser.feed(data)
        self._spool(data, start, events)
        self._events(events)

    def _spool(self, data: bytes, start: int, events: list) -> None:
        """
        Keep the message in the spool, except the bodies of attachments
        that are surely leaving: once a message is bound to be protected
        and nobody gets the original, those bytes are never read again,
        and not writing them is a third of a big attachment's cost.
        """
        if not self.sparse or not self.spool.onDisk:
            self.spool.write(data)
            return
        at = start
        end = start + len(data)
        for event in events:
            if not isinstance(event, BodyData) or event.offset + len(event.data) <= at:
                continue
            candidate = self.sinks.get(event.path)
            if candidate is None or not self._leaving(candidate):
                continue
            skipFrom = max(event.offset, at)
            skipTo = min(event.offset + len(event.data), end)
            if skipFrom >= skipTo:
                continue
            self.spool.write(data[at - start: skipFrom - start])
            self.spool.skip(skipTo - skipFrom)
            at = skipTo
        self.spool.write(data[at - start:])

    def _leaving(self, candidate: Candidate) -> bool:
        """This part is an attachment of a message that will be protected."""
        headers = candidate.headers
        return (
            candidate.sink.size >= self.tenant.min_attachment_size
            and (headers.disposition == "attachment" or headers.contentId is None)
        )

    def _events(self, events: list) -> None:
        for event in events:
            self.structure.add(event)
            if isinstance(event, BodyData):
                candidate = self.sinks.get(event.path)
                if candidate is not None:
                    self._wrote(candidate.sink.feed(event.data))
                elif event.path in self.scanners:
                    decoder, scanner = self.scanners[event.path]
                    scanner.feed(decoder.feed(event.data))
            elif isinstance(event, PartStart):
                self._partStart(event)
            elif isinstance(event, PartEnd):
                self._partEnd(event)
            elif isinstance(event, Defect) and event.fatal:
                self.defect = event
                self._stopExtracting()

    def _partStart(self, event: PartStart) -> None:
        if event.path == ():
            self._topHeaders(event)
        if any(event.path[:n] in self.enclosing for n in range(len(event.path))):
            return
        headers = event.headers
        contentType = headers.contentType
        if contentType in SEALED_TYPES:
            self.enclosing.add(event.path)  # nothing inside leaves (structure.isAttachment)
        if contentType.startswith("multipart/"):
            return
        kind = MESSAGE if contentType in MESSAGE_TYPES and headers.transferEncoding not in (
            "base64", "quoted-printable") else LEAF
        provisional = Part(event.path, headers, event.headerStart, event.bodyStart,
                           event.bodyStart, event.bodyStart, kind, event.path[:-1] or None)
        if isAttachment(provisional, self.structure, NO_CIDS):
            candidate = Candidate(event.path, len(self.candidates), kind, headers)
            self.candidates.append(candidate)
            if kind == MESSAGE:
                self.enclosing.add(event.path)
            if self.extracting:
                self._openSink(candidate)
        elif contentType == "text/html":
            self.scanners[event.path] = (decoderFor(headers.transferEncoding) or IdentityDecoder(), CidScanner())

    def _candidate(self, path: tuple[int, ...]) -> Optional[Candidate]:
        return next((c for c in self.candidates if c.path == path), None)

    def _openSink(self, candidate: Candidate) -> None:
        decoder = IdentityDecoder() if candidate.kind == MESSAGE else decoderFor(candidate.headers.transferEncoding)
        try:
            candidate.sink = AttachmentSink(
                self.gateway.store, objectKey(self.transferId, candidate.slot),
                crypto.fileKey(self.token, self.transferId, candidate.slot), decoder or IdentityDecoder(),
            )
        except Exception:
            self._storageFailed(Failure())
            return
        if candidate.kind == LEAF:
            self.sinks[candidate.path] = candidate

    def _partEnd(self, event: PartEnd) -> None:
        scanner = self.scanners.pop(event.path, None)
        if scanner is not None:
            decoder, cids = scanner
            cids.feed(decoder.close())
            self.referencedCids |= cids.close()
            return
        candidate = self.sinks.pop(event.path, None)
        if candidate is None and event.path in self.enclosing and self._candidate(event.path):
            candidate = self._candidate(event.path)
            if candidate.sink is not None:
                # An attached message is stored byte-exact from the spool.
                start = self.structure[event.path].bodyStart
                for chunk in self.spool.read(start, event.bodyEnd):
                    self._wrote(candidate.sink.feed(chunk))
        if candidate is not None and candidate.sink is not None:
            sink = candidate.sink

            def stored(_: Any, candidate: Candidate = candidate) -> None:
                candidate.size, candidate.sha256, candidate.stored = sink.size, sink.sha256, True

            d = sink.finish()
            d.addCallbacks(stored, self._storageFailed)
            self.storing.append(d)

    def _wrote(self, d: Optional[Deferred]) -> None:
        """Pause the client while the store has too many writes outstanding."""
        if d is None or d.called:
            if d is not None:
                d.addErrback(self._storageFailed)
            return
        self.pendingWrites += 1
        if self.pendingWrites >= MAX_PENDING_WRITES and not self.paused:
            self.paused = True
            self.producer.pauseProducing()

        def acknowledged(result: Any) -> Any:
            self.pendingWrites -= 1
            if self.paused and self.pendingWrites < MAX_PENDING_WRITES:
                self.paused = False
                self.producer.resumeProducing()
            return result

        d.addBoth(acknowledged).addErrback(self._storageFailed)

    def _storageFailed(self, failure: Any) -> None:
        if self.storageFailure is None:
            self.storageFailure = failure
            self.log.failure("{queueId}: storing an attachment failed", failure, queueId=self.queueId)
        self._stopExtracting()

    def _stopExtracting(self) -> None:
        """No protection after all: abort open sinks, forget stored objects."""
        if not self.extracting:
            return
        self.extracting = False
        self.sparse = False
        for candidate in self.sinks.values():
            candidate.sink.abort()
        self.sinks.clear()

    def _topHeaders(self, event: PartStart) -> None:
        self.top = event
        self.facts = facts = policy.headerFacts(
            (name, _unfold(value)) for name, value in event.headers.fields)
        if self.tenant is None:
            self.tenant = policy.tenantForNullSender(facts, self.gateway.registry.forMicrosoftTenantId)
            if self.tenant is None:
                self._stopExtracting()
                return
        self.early = policy.earlyDecision(
            self.tenant, self.envelope.sender, self.envelope.recipients, facts, True)
        if self.early is not None:
            self._stopExtracting()
            return
        sender = policy.effectiveSender(self.envelope.sender, facts)
        self.configuredUser = policy.isConfiguredUser(self.tenant, sender)
        original, _ = policy.splitRecipients(self.tenant, self.envelope.recipients)
        # Only then is a big attachment certain to leave (see _spool).
        self.sparse = (self.extracting and self.configuredUser and not original
                       and self.tenant.on_error == "tempfail")

    # -- deciding and relaying ---------------------------------------------

    def finish(self) -> Deferred:
        started = self.gateway.reactor.seconds()

        def done(reply: Reply) -> Reply:
            self.gateway.metrics.messageSeconds.observe(self.gateway.reactor.seconds() - started)
            return reply

        return ensureDeferred(self._finish()).addBoth(self._cleanup).addCallback(done)

    def abort(self) -> None:
        self._stopExtracting()
        self._discardStored()
        self._cleanup(None)

    def _cleanup(self, result: Any) -> Any:
        if not self.closed:
            self.closed = True
            self.spool.close()
        return result

    def _count(self, status: str) -> None:
        tenant = self.tenant.id if self.tenant is not None else ""
        self.gateway.metrics.messages.labels(tenant=tenant, status=status).inc()

    def _discardStored(self, keep: frozenset = frozenset()) -> None:
        """Delete stored objects (all but ``keep`` slots) once their writes settle."""
        store = self.gateway.store
        if not self.candidates:
            return

        def delete(_: Any) -> None:
            for candidate in self.candidates:
                if candidate.stored and candidate.slot not in keep:
                    store.delete(objectKey(self.transferId, candidate.slot)).addErrback(
                        lambda f: self.log.failure("deleting a stored object failed", f))

        DeferredList(self.storing, consumeErrors=True).addCallback(delete)

    async def _finish(self) -> Reply:
        if self.defect is None:
            self._events(self.parser.close())
        if self.defect is not None:
            self.log.info("{queueId}: refused, {reason} at byte {offset}",
                          queueId=self.queueId, reason=self.defect.reason, offset=self.defect.offset)
            self._discardStored()
            self._count(policy.REJECT)
            return replies.MIME_LIMIT
        facts = self.facts or policy.headerFacts(())
        if self.tenant is None or not self.tenant.allowsSource(self.envelope.peer):
            self._count(policy.REJECT)
            return replies.TENANT_MISMATCH
        try:
            decision = self.early or await self._decide(facts)
            if decision.action == policy.REJECT:
                self._discardStored()
                self._count(policy.REJECT)
                return decision.reply
            if decision.action == policy.PASS:
                self._discardStored()
                leg = Leg("original", self.envelope.recipients, ready(self._original(decision.status)))
                return await self._relay([leg], decision.action)
            return await self._protect(decision, facts)
        except Exception:
            return await self._internalError(Failure())

    async def _decide(self, facts: policy.HeaderFacts) -> policy.Decision:
        sender = policy.effectiveSender(self.envelope.sender, facts)
        known = self.configuredUser
        if not known and self.gateway.transfers is not None:
            known = await self.gateway.transfers.isKnownUser(self.tenant.id, sender)
        decision = policy.earlyDecision(self.tenant, self.envelope.sender, self.envelope.recipients, facts, known)
        if decision is not None:
            return decision
        how = policy.userAction(self.tenant, sender, known)
        if how is not None and self.gateway.transfers is not None:
            created = await self.gateway.transfers.createUser(self.tenant.id, sender, how)
            if created and how == policy.CREATE_WELCOME:
                welcome = welcomeMail(self.gateway.config.smtp.hostname, self.tenant.facility_sender, sender,
                                      self.tenant.language, date=self.gateway.reactor.seconds())
                self.extras.append(Leg("welcome", (sender,), ready([welcome]),
                                       sender=self.tenant.facility_sender, extra=True))
        if self.storing:
            await DeferredList(self.storing, consumeErrors=True)
        if self.storageFailure is not None:
            raise StorageError(self.storageFailure.getErrorMessage())
        found = {part.path for part in attachments(self.structure, self.referencedCids)}
        files = [c for c in self.candidates if c.path in found]
        if files and any(not c.stored for c in files):
            # Extraction stopped early (e.g. no store configured): cannot protect.
            raise StorageError("attachments were not stored")
        largest = max((c.size for c in files), default=0)
        return policy.finalDecision(self.tenant, self.envelope.sender, self.envelope.recipients,
                                    facts, largest, len(files))

    async def _internalError(self, failure: Failure) -> Reply:
        """
        Storage, database or our own bug: 451 so EXO retries, or with
        ``on_error = "pass"`` the original, unprotected, to everyone.
        """
        self.log.failure("{queueId}: processing failed", failure, queueId=self.queueId)
        self._discardStored()
        if self.tenant.on_error == "pass":
            status = policy.passed(ERROR, self.envelope.recipients).status
            leg = Leg("original", self.envelope.recipients, ready(self._original(status)))
            try:
                return await self._relay([leg], policy.PASS)
            except Exception:
                self.log.failure("{queueId}: relaying the original failed too", queueId=self.queueId)
        self._count(TEMPFAILED)
        return replies.LOCAL_TEMPFAIL

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

    def _fileName(self, candidate: Candidate) -> str:
        name = candidate.headers.filename
        if not name and candidate.kind == MESSAGE:
            subject = self.structure.children(candidate.path)[0].headers.get("subject") if \
                self.structure.children(candidate.path) else None
            name = (decodeHeader(subject) if subject else "message") + ".eml"
        if not name:
            extension = mimetypes.guess_extension(candidate.headers.contentType) or ".bin"
            name = "attachment" + extension
        return cleanName(name)

    async def _protect(self, decision: policy.Decision, facts: policy.HeaderFacts) -> Reply:
        tenant = self.tenant
        gateway = self.gateway
        found = {part.path for part in attachments(self.structure, self.referencedCids)}
        files = [c for c in self.candidates if c.path in found]
        self._discardStored(keep=frozenset(c.slot for c in files))
        now = gateway.reactor.seconds()
        expires = now + tenant.link_expiry_days * 86400
        stored = tuple(
            StoredFile(n, self._fileName(c), c.headers.contentType, c.size, c.sha256,
                       objectKey(self.transferId, c.slot))
            for n, c in enumerate(files)
        )
        subject = decodeHeader(facts.values("subject")[0]) if facts.values("subject") else ""
        transfer = Transfer(
            id=self.transferId, token_hash=crypto.tokenHash(self.token), tenant=tenant.id,
            sender=policy.effectiveSender(self.envelope.sender, facts),
            recipients=decision.protectedRecipients, subject=subject, created=now, expires=expires,
            files=stored, message_id=facts.dedupId,
        )
        created = []
        hostname = gateway.config.smtp.hostname
        link = f"{gateway.config.web.public_url}/t/{self.token}"
        expiry = datetime.datetime.fromtimestamp(expires, datetime.timezone.utc).date()
        files_ = [(f.name, f.size) for f in stored]
        banner = bannerFor(tenant.language, transfer.sender, files_, link, expiry, tenant.disclaimer)
        removed = {c.path for c in files}

        async def protectedMessage() -> Sequence[Segment]:
            await gateway.transfers.createTransfer(transfer)
            created.append(transfer.id)
            block, _ = self._headerBlock()
            stamp = self._stamp(block, decision.status, self.transferId)
            if tenant.content_mode == "transfer":
                return transferModePlan(self.structure, removed, banner, stamp, self.spool.size, tenant.language)
            return linkModePlan(self.structure, removed, None if tenant.content_mode == "separate" else banner,
                                stamp, self.spool.size)

        legs = []
        if decision.originalRecipients:
            status = policy.passed(policy.INTERNAL_RECIPIENT, decision.originalRecipients).status
            legs.append(Leg("original", decision.originalRecipients, ready(self._original(status))))
        legs.append(Leg("protected", decision.protectedRecipients, protectedMessage))
        if tenant.content_mode == "separate":
            notice = separateMessage(hostname, transfer.sender, decision.protectedRecipients, subject, banner,
                                     tenant.language, date=now, transferId=self.transferId,
                                     references=facts.messageId)
            legs.append(Leg("separate", decision.protectedRecipients, ready([notice]), extra=True))
        if tenant.confirmation_mail and transfer.sender:
            confirmation = confirmationMail(hostname, tenant.facility_sender, transfer.sender,
                                            decision.protectedRecipients, files_, expiry, subject,
                                            tenant.language, date=now, transferId=self.transferId)
            legs.append(Leg("confirmation", (transfer.sender,), ready([confirmation]),
                            sender=tenant.facility_sender, extra=True))
        try:
            reply = await self._relay(legs, policy.PROTECT, queueId=self.transferId)
        except Exception:
            if created:
                await gateway.transfers.deleteTransfer(self.transferId)
            raise
        if reply.positive and created:
            gateway.metrics.attachments.labels(tenant=tenant.id).inc(len(stored))
            gateway.metrics.attachmentBytes.labels(tenant=tenant.id).inc(sum(f.size for f in stored))
        elif created:
            await gateway.transfers.deleteTransfer(self.transferId)
        if not created or not reply.positive:
            self._discardStored()
        return reply

    async def _relay(self, legs: list[Leg], status: str, queueId: Optional[str] = None) -> Reply:
        """
        Relay each leg that was not relayed before (SPEC 4 dedup: the
        network message id, else Message-ID, with the same sender and
        recipients, per leg), recording each as its relay accepts it.
        """
        relay = self.gateway.relayFor(self.tenant)
        transfers = self.gateway.transfers
        dedupId = self.facts.dedupId if self.facts is not None and transfers is not None else None
        last = ""
        for leg in [*legs, *self.extras]:
            key = None
            if dedupId:
                key = transfers.dedupKey(self.tenant.id, dedupId, self.envelope.sender, leg.recipients, leg.name)
                state = await transfers.claim(key, self.tenant.id)
                if state == DONE:
                    self.log.info("{queueId}: {leg} already relayed, not again", queueId=self.queueId, leg=leg.name)
                    continue
                if state == INFLIGHT:
                    self._count(TEMPFAILED)
                    return replies.DUPLICATE_IN_FLIGHT
            envelope = attrs.evolve(self.envelope, recipients=leg.recipients, tenant=self.tenant,
                                    sender=self.envelope.sender if leg.sender is None else leg.sender)
            try:
                segments = await leg.make()
                last = await relay.send(envelope, OutgoingMessage(self.spool, segments))
            except Exception as e:
                if key is not None:
                    await transfers.release(key)
                if leg.extra:
                    self._extraFailed(leg, e)
                    continue
                if isinstance(e, RelayError):
                    return self._relayFailed(e)
                raise
            if key is not None:
                try:
                    await transfers.markDone(key, self.tenant.id)
                except Exception:
                    self.log.failure("{queueId}: recording {leg} for dedup failed", queueId=self.queueId, leg=leg.name)
        self.log.info("{queueId}: relayed ({status}): {remote}", queueId=self.queueId, status=status, remote=last)
        self._count(status)
        return replies.ACCEPTED.withText(f"Ok {queueId or self.queueId}")

    def _extraFailed(self, leg: Leg, e: Exception) -> None:
        kind = e.kind if isinstance(e, RelayError) else "internal"
        self.gateway.metrics.relayErrors.labels(tenant=self.tenant.id, kind=kind).inc()
        self.log.warn("{queueId}: the {leg} message could not be relayed: {error}",
                      queueId=self.queueId, leg=leg.name, error=str(e))

    def _relayFailed(self, e: RelayError) -> Reply:
        self.gateway.metrics.relayErrors.labels(tenant=self.tenant.id, kind=e.kind).inc()
        self.log.warn("{queueId}: relay failed at {kind}: {message}", queueId=self.queueId, kind=e.kind, message=e.message)
        if e.permanent and e.reply is not None:
            self._count(policy.REJECT)
            enhanced = e.reply.enhanced if e.reply.enhanced.startswith("5.") else "5.0.0"
            return Reply(554, enhanced, e.reply.text or "Relay target refused the message")
        self._count(TEMPFAILED)
        return replies.RELAY_TEMPFAIL
