"""
"Send files" (SPEC 9): the page (``GET /portal/send``, with its script
``/portal/send.js`` for drag and drop, progress and cancel; without it
the form still posts), and what ``POST /portal/send`` makes of an
upload once its body is in (``upload.Upload`` stored the files as they
came): the malware verdicts, the transfer like a mail transfer (token,
expiry, the sender's link), the transfer mail to each recipient (a
mail of their own) through the tenant's relay, the sender's
confirmation, and a 303 to the new transfer's page.

A relay that refuses the transfer mail to any recipient leaves the
transfer "not sent" (``transfers.sends``): its page says so with the
relay's answer and offers to send again to those recipients (from the
same session: the link's token is sealed under its secret) or to
delete the transfer.
"""

from __future__ import annotations

import os
from typing import Optional, Sequence

from twisted.logger import Logger

from secudoc_gateway import crypto, links
from secudoc_gateway.config.values import OnMalware, OnScanError
from secudoc_gateway.envelope import Envelope
from secudoc_gateway.errors import RelayError, StorageError
from secudoc_gateway.notices.banner import bannerFor
from secudoc_gateway.notices.mails import confirmationMail
from secudoc_gateway.notices.texts import humanSize
from secudoc_gateway.notices.uploads import uploadMail
from secudoc_gateway.outgoing import OutgoingMessage
from secudoc_gateway.portal.pages import Visit, message, redirect, refusedForm, render
from secudoc_gateway.portal.routes import PUBLIC, SIGNED_IN, Route
from secudoc_gateway.portal.sessions import sessionSecret
from secudoc_gateway.portal.transfers import acting, one
from secudoc_gateway.portal.upload import SendForm, Upload, UploadedFile, Uploads, readForm
from secudoc_gateway.scan import ScanResult, Verdict
from secudoc_gateway.spool import MemoryBudget, Spool
from secudoc_gateway.storage.objects import objectKey
from secudoc_gateway.transfers import StoredFile, Transfer, WithheldFile
from secudoc_gateway.transfers.sends import UNSENT, BrowserSend, openToken, sealToken
from secudoc_gateway.web.pages import PAGE_CSP, sendBody, sendPage

log = Logger()

SEND_PATH = b"/portal/send"
"""The path the web site streams (``WebSite.streamed``)."""
SEND_CSP = PAGE_CSP.replace(b"default-src 'none';", b"default-src 'none'; script-src 'self'; connect-src 'self';")
"""The send page runs one script, ours, from our origin; no inline script, nothing else."""
SCRIPT = os.path.join(os.path.dirname(__file__), "static", "send.js")


def _uploads(visit: Visit) -> Uploads:
    uploads = visit.portal.uploads
    assert uploads is not None
    return uploads


def _sendPage(visit: Visit, code: int, error: str = "", form: Optional[dict[str, str]] = None) -> None:
    assert visit.tenant is not None
    uploads = _uploads(visit)
    t = visit.t
    values = form or {"recipients": "", "subject": "", "message": ""}
    body = render(visit, "send.html", t["send_files"], current="send", error=error, values=values,
                  action=f"{visit.portal.base}/send", script=f"{visit.portal.base}/send.js",
                  max_size=uploads.maxUploadSize, max_size_text=humanSize(uploads.maxUploadSize, visit.language),
                  max_days=visit.tenant.link_expiry_days)
    sendPage(visit.request, code, body, SEND_CSP)


async def sendForm(visit: Visit) -> None:
    _sendPage(visit, 200)


async def script(visit: Visit) -> None:
    """The page's script, a static resource of our own origin (the CSP allows no other)."""
    with open(SCRIPT, "rb") as f:
        sendBody(visit.request, 200, f.read(), b"text/javascript; charset=utf-8")


def _typed(upload: Upload) -> dict[str, str]:
    """What the person typed, for the form shown again."""
    def field(name: str) -> str:
        found = upload.fields.get(name.encode("ascii"))
        return found[0].decode("utf-8", "replace")[:20000] if found else ""

    return {"recipients": field("recipients"), "subject": field("subject"), "message": field("message")}


async def send(visit: Visit) -> None:
    upload = getattr(visit.request, "upload", None)
    if not isinstance(upload, Upload):
        message(visit, 400, visit.t["error"], visit.t["send_bad_form"].format(reason="not multipart/form-data"))
        return
    try:
        await upload.begun()
        visit.request.args.update(upload.fields)  # type: ignore[attr-defined]
        await _send(visit, upload)
    except Exception:
        upload.discard()
        raise
    finally:
        upload.done()


def _storageFailed(visit: Visit, upload: Upload) -> None:
    """503: what was stored goes, the person may try again (as a mail gets 451)."""
    upload.discard()
    message(visit, 503, visit.t["error"], visit.t["send_storage_failed"], link=f"{visit.portal.base}/send",
            link_text=visit.t["back"])


async def _send(visit: Visit, upload: Upload) -> None:
    t = visit.t
    tenant = visit.tenant
    session = visit.session
    assert tenant is not None and session is not None
    typed = _typed(upload)
    if upload.error is not None and upload.error.status == 503:
        _storageFailed(visit, upload)
        return
    if refusedForm(visit, "send"):
        upload.discard()
        return
    form = upload.form or readForm(upload.fields, tenant, t, _uploads(visit).gateway.config.smtp.max_recipients)
    problem = form.problem
    if problem is None and upload.error is not None:
        problem = t["send_bad_form"].format(reason=upload.error.reason)
    if problem is None and (upload.parser is None or not upload.parser.complete):
        problem = t["send_bad_form"].format(reason="the form ended before its last boundary")
    if problem is None and not upload.files:
        problem = t["send_no_files"]
    if problem is not None:
        upload.discard()
        _sendPage(visit, 400, problem, typed)
        return
    try:
        files = await upload.stored()
    except StorageError:
        _storageFailed(visit, upload)
        return
    verdicts: list[Optional[Verdict]] = [None] * len(files)
    if upload.scans is not None:
        scanned = [await upload.scans.verdict(f.slot) for f in files]
        infected = [(f, v) for f, v in zip(files, scanned) if v.result is ScanResult.INFECTED]
        for f, v in infected:
            log.warn("{id}: {name}: malware found: {signature}", id=upload.transferId, name=f.name,
                     signature=v.signature)
        if infected and tenant.on_malware is OnMalware.REJECT:
            upload.discard()
            name, signature = infected[0][0].name, infected[0][1].signature
            _sendPage(visit, 400, t["send_malware"].format(name=name, signature=signature), typed)
            return
        if any(v.result is ScanResult.ERROR for v in scanned) and tenant.on_scan_error is OnScanError.TEMPFAIL:
            _storageFailed(visit, upload)
            return
        verdicts = list(scanned)
    assert upload.object is not None
    await upload.object.finish()
    await _create(visit, upload, form, files, verdicts)


async def _create(visit: Visit, upload: Upload, form: SendForm, files: list[UploadedFile],
                  verdicts: list[Optional[Verdict]]) -> None:
    tenant, session = visit.tenant, visit.session
    assert tenant is not None and session is not None
    web = visit.portal.web
    now = web.reactor.seconds()
    expires = now + form.expiryDays * 86400
    key = objectKey(upload.transferId)
    kept = [(f, v) for f, v in zip(files, verdicts) if v is None or v.result is not ScanResult.INFECTED]
    stored = tuple(
        StoredFile(n, f.name, f.contentType, f.sink.size, f.sink.sha256, key, f.sink.offset or 0, f.sink.length,
                   f.slot, scan=str(v.result) if v is not None else None)
        for n, (f, v) in enumerate(kept))
    withheld = tuple(WithheldFile(f.name, v.signature) for f, v in zip(files, verdicts)
                     if v is not None and v.result is ScanResult.INFECTED)
    senderSecret = crypto.newToken() if tenant.confirmation_mail else ""
    transfer = Transfer(
        id=upload.transferId, token_hash=crypto.tokenHash(upload.token), tenant=tenant.id, sender=session.address,
        recipients=form.recipients, subject=form.subject, created=now, expires=expires, files=stored,
        sender_hash=crypto.secretHash(senderSecret) if senderSecret else None, withheld=withheld,
    )
    secret = sessionSecret(visit.request, visit.portal.secure)
    sealed = sealToken(secret, transfer.id, upload.token, os.urandom(12))
    try:
        await web.transfers.createBrowserTransfer(transfer, form.message, sealed)
    except Exception:
        upload.discard()
        raise
    upload.object = None  # the transfer owns it now: a lost connection no longer removes it
    web.metrics.attachments.labels(tenant=tenant.id).inc(len(stored))
    web.metrics.attachmentBytes.labels(tenant=tenant.id).inc(sum(f.size for f in stored))
    sent = await _mail(visit, transfer, upload.token, form.message)
    if sent and senderSecret:
        confirmation = confirmationMail(
            web.hostname, tenant.facility_sender, transfer.sender, transfer.recipients,
            [(f.name, f.size) for f in stored], expires, transfer.subject, tenant.language, date=now,
            transferId=transfer.id, senderLink=links.senderURL(web.publicURL, senderSecret))
        web.mailer(tenant, transfer.sender, confirmation).addErrback(
            lambda f: log.failure("{id}: the confirmation mail failed", f, id=transfer.id))
    redirect(visit.request, f"{visit.portal.base}/transfers/{transfer.id}")


async def _mail(visit: Visit, transfer: Transfer, token: str, text: str,
                recipients: Optional[Sequence[str]] = None) -> bool:
    """
    The transfer mail through the tenant's relay, one to each of
    ``recipients`` (default: all): a browser transfer is no conversation,
    so no recipient sees the others' addresses.  The ones the relay
    refused leave the transfer unsent, with why; a retry mails only them.
    """
    tenant = visit.tenant
    assert tenant is not None
    web = visit.portal.web
    gateway = _uploads(visit).gateway
    relay = gateway.relayFor(tenant)
    link = links.transferURL(web.publicURL, token)
    banner = bannerFor(tenant.language, transfer.sender, [(f.name, f.size) for f in transfer.files], link,
                       transfer.expires, tenant.disclaimer, organisation=tenant.organisation,
                       helpContact=tenant.help_contact, withheld=[w.name for w in transfer.withheld])
    refused: list[tuple[str, str]] = []
    for recipient in recipients if recipients is not None else transfer.recipients:
        mail = uploadMail(web.hostname, tenant.facility_sender, transfer.sender, [recipient], transfer.subject,
                          text, banner, tenant.language, date=web.reactor.seconds(), transferId=transfer.id)
        envelope = Envelope(sender=tenant.facility_sender, recipients=(recipient,), tenant=tenant)
        try:
            await relay.send(envelope, OutgoingMessage(Spool(MemoryBudget(0)), [mail]))
        except RelayError as e:
            reply = e.reply.line if e.reply is not None else e.message
            log.warn("{id}: the relay refused the transfer mail to {recipient}: {reply}", id=transfer.id,
                     recipient=recipient, reply=reply)
            refused.append((recipient, reply))
        except Exception as e:
            log.failure("{id}: sending the transfer mail to {recipient} failed", id=transfer.id, recipient=recipient)
            refused.append((recipient, str(e) or type(e).__name__))
    if refused:
        await web.transfers.markUnsent(transfer.id, "; ".join(f"{r}: {why}" for r, why in refused),
                                       [r for r, _ in refused])
        return False
    await web.transfers.markSent(transfer.id)
    log.info("{id}: sent from the browser by {sender} to {count} recipient(s)", id=transfer.id,
             sender=transfer.sender, count=len(transfer.recipients))
    return True


async def _unsent(visit: Visit, id: str) -> Optional[tuple[Transfer, BrowserSend]]:
    """The unsent browser transfer a post acts on, once its token is right and it is this person's."""
    transfer = await acting(visit, id)
    if transfer is None:
        return None
    record = await visit.portal.web.transfers.browserSend(transfer.id)
    if record is None or record.state != UNSENT:
        redirect(visit.request, f"{visit.portal.base}/transfers/{transfer.id}")
        return None
    return transfer, record


async def resend(visit: Visit, id: str) -> None:
    found = await _unsent(visit, id)
    if found is None:
        return
    transfer, record = found
    token = openToken(sessionSecret(visit.request, visit.portal.secure), transfer.id, record.sealed_token or "")
    if token is None:
        await one(visit, transfer.id, 409, visit.t["unsent_other_session"])
        return
    await _mail(visit, transfer, token, record.message, record.pending or None)
    redirect(visit.request, f"{visit.portal.base}/transfers/{transfer.id}")


async def delete(visit: Visit, id: str) -> None:
    """An unsent transfer goes whole: its rows and its object (nobody has its link)."""
    found = await _unsent(visit, id)
    if found is None:
        return
    transfer, _ = found
    web = visit.portal.web
    await web.transfers.deleteTransfer(transfer.id)
    try:
        await web.store.delete(objectKey(transfer.id))
    except Exception:
        log.failure("{id}: deleting an unsent transfer's object failed (the purge will not find it)", id=transfer.id)
    message(visit, 200, visit.t["send_delete"], visit.t["send_deleted"], link=f"{visit.portal.base}/",
            link_text=visit.t["my_transfers"])


ROUTES = (
    Route("GET", "send", sendForm, SIGNED_IN),
    Route("POST", "send", send, SIGNED_IN),
    Route("GET", "send.js", script, PUBLIC),
    Route("POST", "transfers/{id}/resend", resend, SIGNED_IN),
    Route("POST", "transfers/{id}/delete", delete, SIGNED_IN),
)
