"""
Deciding and protecting one received message: the policy's content
and final rules (the early ones ran as the headers came in), the
sender's user record, and for a protected message its transfer, its
banner and the legs that carry it (the original to internal recipients,
the protected copy, the messages the gateway makes).

A collaborator of the transaction: it reads what the ``Reception``
found and hands its legs to the transaction's ``Legs``; it never sees
a byte arrive, and never talks to the relay itself.
"""

from __future__ import annotations

import mimetypes
from typing import Optional, Sequence

from twisted.logger import Logger

from secudoc_gateway import crypto, links, policy, replies
from secudoc_gateway.addresses import addressKey
from secudoc_gateway.config.values import AutoCreateUsers, ContentMode, OnMalware, OnScanError
from secudoc_gateway.display import shown
from secudoc_gateway.envelope import Envelope
from secudoc_gateway.ingress.context import Context
from secudoc_gateway.ingress.extractor import StoredAttachment
from secudoc_gateway.ingress.legs import Leg, Legs, ready
from secudoc_gateway.ingress.reception import Reception
from secudoc_gateway.mime.facts import HeaderFacts
from secudoc_gateway.mime.names import decodeHeader
from secudoc_gateway.mime.rewrite import linkModePlan, transferModePlan
from secudoc_gateway.mime.structure import MESSAGE
from secudoc_gateway.notices.banner import bannerFor
from secudoc_gateway.notices.mails import confirmationMail, separateMessage, transferTemplate, welcomeMail
from secudoc_gateway.outgoing import Segment
from secudoc_gateway.metrics import TEMPFAILED
from secudoc_gateway.replies import Reply
from secudoc_gateway.scan import FileVerdict, ScanResult, Verdict, worst
from secudoc_gateway.transfers import StoredFile, Transfer, WithheldFile


def displayName(facts: HeaderFacts, sender: str) -> str:
    """
    The From display name the landing page shows beside the sender:
    only when From is the sender's own address (else it could mislead).
    """
    name, address = facts.fromMailbox
    if not address or addressKey(address) != addressKey(sender):
        return ""
    return shown(name)[:200]


class Protection:
    """What becomes of one received message, and its protected copy (module docstring)."""

    log = Logger()

    def __init__(self, gateway: Context, envelope: Envelope, reception: Reception, legs: Legs) -> None:
        self.gateway = gateway
        self.envelope = envelope
        self.reception = reception
        self.legs = legs
        self.tenant = legs.tenant  # known: the transaction refused a message without one
        self.files: list[StoredAttachment] = []
        self.verdicts: tuple[FileVerdict, ...] = ()
        """
        Each file's malware verdict, in message order (empty: not
        scanned): the message's verdict summary, for the log and the
        trace (``scan.worst`` makes it one word).
        """

    async def decide(self, facts: HeaderFacts) -> policy.Decision:
        """Rules 1-6 and the recipient split ran on the header block already (``Reception``); the rest."""
        reception = self.reception
        sender = reception.sender
        known = reception.configuredUser
        transfers = self.gateway.transfers
        if not known and transfers is not None:
            known = await transfers.isKnownUser(self.tenant.id, sender)
        rightsProtected = reception.extractor.rightsProtected
        if rightsProtected and reception.skipped:
            # Rare: a Purview part after attachments already left out of
            # the spool.  The original cannot pass whole; it is protected,
            # message.rpmsg among its files (Outlook opens it).
            self.log.warn("{queueId}: rights-protected part after attachments, protected",
                          queueId=reception.queueId)
            rightsProtected = False
        decision = policy.contentDecision(self.tenant, self.envelope.recipients, known, rightsProtected)
        if decision is not None:
            return decision
        how = policy.userAction(self.tenant, sender, known)
        if how is not None and transfers is not None:
            created = await transfers.createUser(self.tenant.id, sender, how)
            if created and how is AutoCreateUsers.WELCOME:
                config = self.gateway.config
                welcome = welcomeMail(config.smtp.hostname, self.tenant.facility_sender, sender,
                                      self.tenant.language, date=self.gateway.reactor.seconds(),
                                      portalLink=links.portalURL(config.web.public_url, "login")
                                      if config.portal.enabled else "")
                self.legs.extras.append(Leg("welcome", (sender,), ready([welcome]), "welcome mail",
                                            sender=self.tenant.facility_sender))
        self.files = files = await reception.extractor.attachments()
        largest = max((c.size for c in files), default=0)
        return policy.finalDecision(self.tenant, self.envelope.sender, self.envelope.recipients,
                                    facts, largest, len(files))

    async def screen(self) -> Optional[tuple[Reply, str, str]]:
        """
        SPEC 10, once the message is to be protected (a message that
        passes is not scanned: the gateway scans what it serves): wait
        for every file's verdict; the refusal (reply, reason, status)
        ``on_malware = "reject"`` or ``on_scan_error = "tempfail"`` makes
        of them, or None.  Under ``"strip"`` ``protect`` withholds the
        infected files.
        """
        verdicts = await self.reception.extractor.verdicts(self.files)
        if verdicts is None:
            return None
        self.verdicts = tuple(FileVerdict(self._fileName(f), v) for f, v in zip(self.files, verdicts))
        self.legs.scan = worst(self.verdicts) or None
        metrics = self.gateway.metrics
        queueId = self.reception.queueId
        for file in self.verdicts:
            verdict = file.verdict
            metrics.scans.labels(tenant=self.tenant.id, result=str(verdict.result)).inc()
            if verdict.result is not ScanResult.ERROR:
                metrics.scanSeconds.observe(verdict.seconds)
            if verdict.result is ScanResult.INFECTED:
                self.log.warn("{queueId}: {name}: malware found: {signature}", queueId=queueId,
                              name=file.name, signature=verdict.signature)
            elif verdict.result is not ScanResult.CLEAN:
                self.log.warn("{queueId}: {name}: scan {result}: {reason}", queueId=queueId, name=file.name,
                              result=str(verdict.result), reason=verdict.reason)
        infected = [f.verdict for f in self.verdicts if f.result is ScanResult.INFECTED]
        if infected and self.tenant.on_malware is OnMalware.REJECT:
            signature = infected[0].signature
            return (replies.MALWARE_FOUND.withText(f"Malware found: {signature}"),
                    f"malware found: {signature}", policy.REJECT)
        failed = [f.verdict for f in self.verdicts if f.result is ScanResult.ERROR]
        if failed and self.tenant.on_scan_error is OnScanError.TEMPFAIL:
            return replies.SCAN_TEMPFAIL, f"malware scan failed: {failed[0].reason}", TEMPFAILED
        return None

    def _fileName(self, candidate: StoredAttachment) -> str:
        name = candidate.name or candidate.headers.filename
        if not name and candidate.kind == MESSAGE:
            inner = self.reception.structure.children(candidate.path)
            subject = inner[0].headers.get("subject") if inner else None
            name = (decodeHeader(subject) if subject else "message") + ".eml"
        if not name:
            extension = mimetypes.guess_extension(candidate.headers.contentType) or ".bin"
            name = "attachment" + extension
        return shown(name)

    def _shownSender(self, facts: HeaderFacts) -> tuple[str, str]:
        """
        Who the banner names: the From field's display name and address,
        as the recipient's mail program shows them; the envelope sender
        when From has no address.
        """
        name, address = facts.fromMailbox
        if not address:
            return "", self.envelope.sender
        return name, address

    async def protect(self, decision: policy.Decision, facts: HeaderFacts) -> Reply:
        """The transfer, its legs relayed, and the reply they earned."""
        tenant = self.tenant
        gateway = self.gateway
        reception = self.reception
        extractor = reception.extractor
        files = self.files
        self.legs.transferId = extractor.transferId
        await extractor.commit()
        now = gateway.reactor.seconds()
        expires = now + tenant.link_expiry_days * 86400
        key = extractor.object.key if extractor.object is not None else ""
        verdicts: list[Optional[Verdict]] = [v.verdict for v in self.verdicts] or [None] * len(files)
        # Infected files (on_malware = "strip") are withheld: out of the
        # message like the others, and in no row a link can reach.
        kept = [(c, v) for c, v in zip(files, verdicts) if v is None or v.result is not ScanResult.INFECTED]
        withheld = tuple(WithheldFile(self._fileName(c), v.signature)
                         for c, v in zip(files, verdicts) if v is not None and v.result is ScanResult.INFECTED)
        stored = tuple(
            StoredFile(n, self._fileName(c), c.contentType, c.size, c.sha256, key, *c.span, c.slot,
                       scan=str(v.result) if v is not None else None)
            for n, (c, v) in enumerate(kept)
        )
        subject = decodeHeader(facts.values("subject")[0]) if facts.values("subject") else ""
        sender = reception.sender
        # The sender's link (confirmation mail): a second secret that opens no file.
        senderSecret = crypto.newToken() if tenant.confirmation_mail and sender else ""
        transfer = Transfer(
            id=extractor.transferId, token_hash=crypto.tokenHash(extractor.token), tenant=tenant.id,
            sender=sender, recipients=decision.protectedRecipients, subject=subject, created=now,
            expires=expires, files=stored, message_id=facts.dedupId, sender_name=displayName(facts, sender),
            sender_hash=crypto.secretHash(senderSecret) if senderSecret else None, withheld=withheld,
        )
        created = []
        hostname = gateway.config.smtp.hostname
        link = links.transferURL(gateway.config.web.public_url, extractor.token)
        files_ = [(f.name, f.size) for f in stored]
        senderName, senderAddress = self._shownSender(facts)
        banner = bannerFor(tenant.language, senderAddress, files_, link, expires, tenant.disclaimer,
                           senderName=senderName, organisation=tenant.organisation,
                           helpContact=tenant.help_contact, withheld=[w.name for w in withheld])
        removed = {c.path for c in files}

        async def protectedMessage() -> Sequence[Segment]:
            await gateway.transfers.createTransfer(transfer)
            created.append(transfer.id)
            block, _ = reception.headerBlock()
            stamp = reception.stamp(block, decision.status, extractor.transferId)
            if tenant.content_mode is ContentMode.TRANSFER:
                return transferModePlan(reception.structure, removed, banner, stamp, reception.spool.size,
                                        transferTemplate(banner, tenant.language))
            return linkModePlan(reception.structure, removed,
                                None if tenant.content_mode is ContentMode.SEPARATE else banner,
                                stamp, reception.spool.size)

        legs = []
        if decision.originalRecipients:
            status = policy.passed(policy.INTERNAL_RECIPIENT, decision.originalRecipients).status
            legs.append(Leg("original", decision.originalRecipients, ready(reception.original(status)), status))
        legs.append(Leg("protected", decision.protectedRecipients, protectedMessage, decision.status))
        if tenant.content_mode is ContentMode.SEPARATE:
            notice = separateMessage(hostname, transfer.sender, decision.protectedRecipients, subject, banner,
                                     tenant.language, date=now, transferId=extractor.transferId,
                                     references=facts.messageId)
            self.legs.extras.append(Leg("separate", decision.protectedRecipients, ready([notice]),
                                        "link message"))
        if tenant.confirmation_mail and transfer.sender:
            confirmation = confirmationMail(hostname, tenant.facility_sender, transfer.sender,
                                            decision.protectedRecipients, files_, expires, subject,
                                            tenant.language, date=now, transferId=extractor.transferId,
                                            senderLink=links.senderURL(gateway.config.web.public_url, senderSecret))
            self.legs.extras.append(Leg("confirmation", (transfer.sender,), ready([confirmation]),
                                        "confirmation mail", sender=tenant.facility_sender))
        try:
            reply = await self.legs.relay(legs, policy.PROTECT, queueId=extractor.transferId)
        except Exception:
            if created:
                await gateway.transfers.deleteTransfer(extractor.transferId)
            raise
        if reply.positive and created:
            gateway.metrics.attachments.labels(tenant=tenant.id).inc(len(stored))
            gateway.metrics.attachmentBytes.labels(tenant=tenant.id).inc(sum(f.size for f in stored))
        elif created:
            await gateway.transfers.deleteTransfer(extractor.transferId)
        if not created or not reply.positive:
            extractor.discard()
        return reply
