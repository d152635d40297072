"""
The recipient's side (SPEC 8): ``/t/<token>`` shows a transfer's page,
``/t/<token>/<n>`` streams file n (whole or one range),
``/t/<token>/all.zip`` every file as one ZIP, ``/t/<token>/logo`` the
tenant's logo; ``/t/sender/<secret>`` is the sender's page.

The token is the only key: it is hashed to find the transfer and fed
to HKDF to derive each file's key, so the store and the database alone
can decrypt nothing.  A landing page view is not a download (link
scanners such as Safe Links fetch it), HEAD never counts, and every
download is written to the audit trail as it starts.  The sender hears
of a file's first download (``DownloadNotifier``) only once a response
sent its last byte: a scanner's one-byte range is in the audit but is
no news.  Pages are in the browser's language where it prefers Dutch
or English, else the tenant's, with a switch (``pages.pageLanguage``).  With
``recipient_verification = "email-code"`` nothing but the address form
is shown until the browser holds a session for this transfer.
"""

from __future__ import annotations

from typing import Any, Optional

import attrs
from twisted.internet.defer import ensureDeferred
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from secudoc_gateway import links
from secudoc_gateway.config import RecipientVerification, Tenant
from secudoc_gateway.crypto import DecryptionError, tokenHash
from secudoc_gateway.errors import ProducerStopped, StorageError
from secudoc_gateway.display import shown
from secudoc_gateway.notices.texts import formatMoment, humanSize, plural, texts
from secudoc_gateway.transfers import StoredFile, Transfer
from secudoc_gateway.web import verification
from secudoc_gateway.web.context import (
    LOGO, SESSION_COOKIE, UNKNOWN, WebContext, chrome, cut, failed, log, refuse, state,
)
from secudoc_gateway.web.download import (
    UNSATISFIABLE, byteRange, checkStored, contentDisposition, streamFile, streamZip, zipWriter,
)
from secudoc_gateway.web.logos import LogoCache
from secudoc_gateway.web.mails import DownloadNotifier, FirstDownload
from secudoc_gateway.web.pages import DOWNLOAD_CSP, pageLanguage, render, sendBody, sendPage
from secudoc_gateway.web.sender import SenderRoot

ZIP = links.ZIP.encode("ascii")


@attrs.frozen
class Visit:
    """
    A live transfer opened by its token; ``recipient`` is the verified
    one, if any; ``language`` the one its pages are shown in.
    """

    transfer: Transfer
    tenant: Tenant
    token: str
    recipient: Optional[str]
    language: str

    @property
    def needsCode(self) -> bool:
        return self.tenant.recipient_verification is RecipientVerification.EMAIL_CODE and self.recipient is None


def basePath(context: WebContext, token: str) -> str:
    """The path of a transfer's page, below the public URL's own path (a proxy's prefix)."""
    return links.transferPath(context.publicURL, token)


async def openVisit(context: WebContext, request: Request, token: str) -> Optional[Visit]:
    """The transfer of ``token`` if its link opens, else ``None`` after answering 404 or 410."""
    transfer = await context.transfers.lookup(tokenHash(token)) if token else None
    why = state(context, transfer)
    if why is not None:
        refuse(context, request, why, transfer, token if why != UNKNOWN else "")
        return None
    tenant = context.tenantOf(transfer.tenant) if transfer is not None else None
    assert transfer is not None and tenant is not None  # else state() named why
    recipient = None
    if tenant.recipient_verification is RecipientVerification.EMAIL_CODE:
        secret = request.getCookie(SESSION_COOKIE)
        if secret:
            recipient = await context.access.session(secret.decode("ascii", "replace"), transfer.id)
    language = pageLanguage(request, tenant.language, basePath(context, token), context.secureCookies)
    return Visit(transfer, tenant, token, recipient, language)


def _async(handler: Any, request: Request, *args: Any) -> int:
    ensureDeferred(handler(request, *args)).addErrback(failed, request)
    return NOT_DONE_YET


class TransfersResource(Resource):
    """``/t``: everything below it is keyed by a secret."""

    def __init__(self, context: WebContext) -> None:
        super().__init__()
        self.context = context
        self.notifier = DownloadNotifier(context.hostname, context.mailer, context.reactor)
        self.logos = LogoCache(context.reactor)

    def getChild(self, path: bytes, request: Request) -> Resource:
        if path == b"sender":
            return SenderRoot(self.context)
        return _TransferResource(self, path.decode("ascii", "replace"))

    def render(self, request: Request) -> int:
        return _async(self._unknown, request)

    async def _unknown(self, request: Request) -> None:
        refuse(self.context, request, UNKNOWN, None)


class _TransferResource(Resource):
    def __init__(self, root: TransfersResource, token: str) -> None:
        super().__init__()
        self.root = root
        self.context = root.context
        self.token = token

    def getChild(self, path: bytes, request: Request) -> Resource:
        if request.postpath:  # /t/<token>/<x>/more
            return _Leaf(self, "unknown")
        if path == ZIP:
            return _Leaf(self, "zip")
        if path == LOGO.encode("ascii"):
            return _Leaf(self, "logo")
        if path in (verification.CODE, verification.VERIFY):
            return verification.FormResource(self.context, self.token, path, openVisit, basePath)
        if path.isdigit() and len(path) < 10:
            return _Leaf(self, "file", int(path))
        return _Leaf(self, "unknown")

    def render_GET(self, request: Request) -> int:
        return _async(self._landing, request)

    render_HEAD = render_GET

    async def _landing(self, request: Request) -> None:
        context = self.context
        visit = await openVisit(context, request, self.token)
        if visit is None:
            return
        if visit.needsCode:
            await verification.addressPage(context, request, visit, basePath(context, self.token))
            return
        transfer = visit.transfer
        language = visit.language
        t = texts(language)
        base = basePath(context, self.token)
        page = chrome(context, transfer, self.token)
        count = len(transfer.files)
        intro = plural(language, count, "intro_one", "intro_many",
                       sender=shown(transfer.sender_name) or shown(transfer.sender))
        body = render(
            "landing.html", language, title=intro, intro=intro,
            sender_name=shown(transfer.sender_name), subject=shown(transfer.subject),
            files_heading=plural(language, count, "files_one", "files_many"),
            files=[{"href": f"{base}/{f.n}", "name": shown(f.name), "size": humanSize(f.size, language),
                    "unscanned": f.unscanned}
                   for f in transfer.files],
            withheld=[t["withheld_page"].format(name=shown(w.name), signature=shown(w.signature))
                      for w in transfer.withheld],
            all_href=f"{base}/all.zip" if count > 1 else "",
            all_size=humanSize(zipWriter(transfer).size, language),
            expires=t["expires"].format(moment=formatMoment(transfer.expires, language)), switch=base,
            **{**page, "sender": shown(transfer.sender)},
        )
        sendPage(request, 200, body)


class _Leaf(Resource):
    """One thing below a token: a file, the ZIP, the logo, or nothing."""

    isLeaf = True

    def __init__(self, parent: _TransferResource, kind: str, n: int = -1) -> None:
        super().__init__()
        self.parent = parent
        self.context = parent.context
        self.kind = kind
        self.n = n

    def render_GET(self, request: Request) -> int:
        return _async(getattr(self, "_" + self.kind), request)

    render_HEAD = render_GET

    async def _unknown(self, request: Request) -> None:
        refuse(self.context, request, UNKNOWN, None)

    async def _logo(self, request: Request) -> None:
        context = self.context
        transfer = await context.transfers.lookup(tokenHash(self.parent.token))
        tenant = context.tenantOf(transfer.tenant) if transfer is not None else None
        if tenant is None or not tenant.logo:
            refuse(context, request, UNKNOWN, None)
            return
        logo = await self.parent.root.logos.get(tenant.logo)
        sendBody(request, 200, logo.data, logo.contentType.encode("ascii"), {b"Content-Security-Policy": DOWNLOAD_CSP})

    async def _gate(self, request: Request) -> Optional[Visit]:
        """The visit, if it may download; a browser without its code goes back to the page."""
        visit = await openVisit(self.context, request, self.parent.token)
        if visit is not None and visit.needsCode:
            request.setResponseCode(303)
            request.setHeader(b"Location", basePath(self.context, self.parent.token).encode("ascii"))
            request.finish()
            return None
        return visit

    async def _record(self, request: Request, visit: Visit, n: int) -> None:
        """The audit trail and the metric: every download, a range too, as it starts."""
        context = self.context
        client = request.getClientAddress()
        transfer = visit.transfer
        await context.transfers.recordDownload(
            transfer.id, n, getattr(client, "host", str(client)),
            (request.getHeader(b"user-agent") or b"").decode("latin-1")[:512], visit.recipient)
        context.metrics.downloads.labels(tenant=transfer.tenant).inc()

    async def _sentWhole(self, visit: Visit, stored: StoredFile) -> None:
        """A response sent the file's last byte: the sender may hear of its first download."""
        notifier = self.parent.root.notifier
        transfer = visit.transfer
        if not notifier.wanted(visit.tenant, transfer.sender):
            return
        if await self.context.transfers.claimNotice(transfer.id, stored.n):
            notifier.notify(FirstDownload(visit.tenant, transfer.id, transfer.sender, stored.name, visit.recipient,
                                          self.context.reactor.seconds()))

    async def _available(self, request: Request, visit: Visit, files: Any) -> bool:
        """
        Every one of ``files`` is in the store; else, before any byte was
        promised, a 503 page in the visit's language with the help contact.
        """
        try:
            await checkStored(self.context.store, visit.transfer, files)
        except StorageError as e:
            log.error("transfer {id}: cannot read its object: {error}", id=visit.transfer.id, error=e)
            self._unavailable(request, visit)
            return False
        return True

    def _unavailable(self, request: Request, visit: Visit) -> None:
        for name in (b"Content-Length", b"Content-Disposition", b"Content-Type", b"Content-Range", b"ETag",
                     b"Accept-Ranges"):
            request.responseHeaders.removeHeader(name)
        t = texts(visit.language)
        body = render("message.html", visit.language, title=t["unavailable_title"], body=t["unavailable_body"],
                      switch=basePath(self.context, self.parent.token),
                      **chrome(self.context, visit.transfer, self.parent.token))
        sendPage(request, 503, body)

    async def _file(self, request: Request) -> None:
        context = self.context
        visit = await self._gate(request)
        if visit is None:
            return
        transfer = visit.transfer
        stored = next((f for f in transfer.files if f.n == self.n), None)
        if stored is None:
            refuse(context, request, UNKNOWN, None)
            return
        if not await self._available(request, visit, [stored]):
            return
        etag = f'"{stored.sha256[:32]}"'.encode("ascii")
        request.setHeader(b"Accept-Ranges", b"bytes")
        request.setHeader(b"ETag", etag)
        request.setHeader(b"Content-Security-Policy", DOWNLOAD_CSP)
        wanted = request.getHeader(b"range")
        ifRange = request.getHeader(b"if-range")
        span = byteRange(wanted.decode("latin-1") if wanted and ifRange in (None, etag) else None, stored.size)
        if span == UNSATISFIABLE:
            request.setResponseCode(416)
            request.setHeader(b"Content-Range", f"bytes */{stored.size}".encode("ascii"))
            request.finish()
            return
        first, last = (0, stored.size - 1) if span is None else span
        if span is not None:
            request.setResponseCode(206)
            request.setHeader(b"Content-Range", f"bytes {first}-{last}/{stored.size}".encode("ascii"))
        request.setHeader(b"Content-Type", (stored.content_type or "application/octet-stream").encode("ascii", "replace"))
        request.setHeader(b"Content-Length", str(last - first + 1).encode("ascii"))
        request.setHeader(b"Content-Disposition", contentDisposition(stored.name))
        if request.method == b"HEAD":
            request.finish()
            return
        await self._record(request, visit, stored.n)
        if await self._stream(request, visit, streamFile(context.store, request, self.parent.token, transfer,
                                                         stored, first, last, request.write)):
            if last >= stored.size - 1:
                await self._sentWhole(visit, stored)

    async def _zip(self, request: Request) -> None:
        context = self.context
        visit = await self._gate(request)
        if visit is None:
            return
        transfer = visit.transfer
        if not await self._available(request, visit, transfer.files):
            return
        writer = zipWriter(transfer)
        request.setHeader(b"Content-Type", b"application/zip")
        request.setHeader(b"Content-Length", str(writer.size).encode("ascii"))
        request.setHeader(b"Content-Disposition", contentDisposition(texts(visit.language)["zip_name"]))
        request.setHeader(b"Content-Security-Policy", DOWNLOAD_CSP)
        if request.method == b"HEAD":
            request.finish()
            return
        for stored in transfer.files:
            await self._record(request, visit, stored.n)
        if await self._stream(request, visit, streamZip(context.store, request, self.parent.token, transfer,
                                                        writer)):
            for stored in transfer.files:
                await self._sentWhole(visit, stored)

    async def _stream(self, request: Request, visit: Visit, streaming: Any) -> bool:
        """Whether the whole response went out; a fault before its first byte is the 503 page."""
        request.notifyFinish().addErrback(lambda f: None)
        try:
            await streaming
        except ProducerStopped:
            return False  # the client went away
        except DecryptionError:
            log.error("transfer {id}: a stored object failed authentication", id=visit.transfer.id)
            cut(request)
            return False
        except StorageError as e:
            log.error("transfer {id}: cannot read its object: {error}", id=visit.transfer.id, error=e)
            if request.startedWriting:
                cut(request)
            else:
                self._unavailable(request, visit)
            return False
        request.finish()
        return True
