"""
The sender's link from the confirmation mail (SPEC 6):
``/t/sender/<secret>`` shows the transfer's downloads (when, which
file, and who where recipients verify) and a button that withdraws the
transfer, ``POST /t/sender/<secret>/revoke`` (CSRF-protected).  The
secret is a second one, hashed in the database like the token; it
derives no key, so it opens no file.  A revoke here is an admin event by the sender
(SPEC 7): whoever holds the sender's link acts as the sender.
"""

from __future__ import annotations

from typing import Optional

from twisted.internet.defer import ensureDeferred
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from secudoc_gateway import links
from secudoc_gateway.config import RecipientVerification
from secudoc_gateway.crypto import secretHash
from secudoc_gateway.display import shown
from secudoc_gateway.notices.texts import formatMoment, humanSize, texts
from secudoc_gateway.transfers import Transfer
from secudoc_gateway.web.context import UNKNOWN, WebContext, failed, refuse
from secudoc_gateway.web.pages import csrfToken, csrfValid, pageLanguage, render, sendPage

REVOKE = b"revoke"
_PURPOSE = "revoke"


class SenderRoot(Resource):
    """``/t/sender``: below it, one sender's link per secret."""

    def __init__(self, context: WebContext) -> None:
        super().__init__()
        self.context = context

    def getChild(self, path: bytes, request: Request) -> Resource:
        postpath = request.postpath or []
        action = postpath[0] if postpath else b""
        if len(postpath) > 1 or action not in (b"", REVOKE):
            action = b"unknown"
        return SenderResource(self.context, path.decode("ascii", "replace"), action)

    def render(self, request: Request) -> int:
        refuse(self.context, request, UNKNOWN, None)
        return NOT_DONE_YET


class SenderResource(Resource):
    isLeaf = True

    def __init__(self, context: WebContext, secret: str, action: bytes) -> None:
        super().__init__()
        self.context = context
        self.secret = secret
        self.action = action
        self.base = links.senderPath(context.publicURL, secret)

    def render_GET(self, request: Request) -> int:
        ensureDeferred(self._show(request)).addErrback(failed, request)
        return NOT_DONE_YET

    render_HEAD = render_GET

    def render_POST(self, request: Request) -> int:
        ensureDeferred(self._revoke(request)).addErrback(failed, request)
        return NOT_DONE_YET

    async def _transfer(self, request: Request) -> Optional[Transfer]:
        transfer = None
        if self.secret and self.action != b"unknown":
            transfer = await self.context.transfers.lookupSender(secretHash(self.secret))
        if transfer is None:
            refuse(self.context, request, UNKNOWN, None)
        return transfer

    async def _show(self, request: Request) -> None:
        transfer = await self._transfer(request)
        if transfer is None:
            return
        context = self.context
        tenant = context.tenantOf(transfer.tenant)
        language = pageLanguage(request, tenant.language if tenant is not None else context.language, self.base,
                                context.secureCookies)
        t = texts(language)
        verified = tenant is not None and tenant.recipient_verification is RecipientVerification.EMAIL_CODE
        names = {f.n: shown(f.name) for f in transfer.files}
        downloads = [
            {"when": formatMoment(d.at, language), "file": shown(d.name or names.get(d.n, str(d.n))),
             "who": shown(d.recipient) if d.recipient else t["unverified"]}
            for d in await context.transfers.downloads(transfer.id)
        ]
        live = transfer.revoked is None and transfer.purged is None and transfer.expires > context.reactor.seconds()
        if transfer.revoked is not None:
            status = t["revoked_on"].format(moment=formatMoment(transfer.revoked, language))
        else:
            status = t["sender_expires" if live else "expired_on"].format(
                moment=formatMoment(transfer.expires, language))
        body = render(
            "sender.html", language, title=t["sender_title"], subject=shown(transfer.subject), status=status,
            recipients=[shown(r) for r in transfer.recipients],
            files=[{"name": names[f.n], "size": humanSize(f.size, language)} for f in transfer.files],
            downloads=downloads, verified=verified, can_revoke=live, action=f"{self.base}/revoke",
            csrf=csrfToken(request, await context.access.formKey(), _PURPOSE, transfer.id, self.base,
                           context.secureCookies) if live else "",
            organisation=shown(tenant.organisation) if tenant is not None else "", switch=self.base,
        )
        sendPage(request, 200, body)

    async def _revoke(self, request: Request) -> None:
        if self.action != REVOKE:
            request.setResponseCode(405)
            request.finish()
            return
        transfer = await self._transfer(request)
        if transfer is None:
            return
        if not csrfValid(request, self.context.publicOrigin, await self.context.access.formKey(), _PURPOSE,
                         transfer.id):
            tenant = self.context.tenantOf(transfer.tenant)
            language = pageLanguage(request, tenant.language if tenant is not None else self.context.language)
            t = texts(language)
            sendPage(request, 403, render("message.html", language, title=t["error"], body=t["form_expired"]))
            return
        await self.context.transfers.revoke(transfer.id, by=transfer.sender)
        request.setResponseCode(303)
        request.setHeader(b"Location", self.base.encode("ascii"))
        request.finish()

