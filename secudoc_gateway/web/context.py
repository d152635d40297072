"""
What every ``/t/`` resource needs (``WebContext``), and the answers for
a link that leads nowhere: 404 for an unknown link in the browser's
language (else ``[web] language``), 410 in the tenant's language for
one that expired, was purged (its tombstone) or was withdrawn, saying
which and whom to ask (SPEC 8), in the browser's language where it
prefers Dutch or English (``pages.pageLanguage``).
"""

from __future__ import annotations

import urllib.parse
from typing import Any, Callable, Optional, cast

import attrs
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import Request

from secudoc_gateway import links
from secudoc_gateway.config import Tenant
from secudoc_gateway.interfaces import IConnection
from secudoc_gateway.display import shown
from secudoc_gateway.notices.texts import texts
from secudoc_gateway.transfers import Transfer
from secudoc_gateway.web.pages import pageLanguage, render, sendPage

LOGO = links.LOGO
SESSION_COOKIE = b"sd_session"

# Why a transfer's link no longer opens.
UNKNOWN = "unknown"
EXPIRED = "expired"
REVOKED = "revoked"


@attrs.frozen
class WebContext:
    """
    The collaborators of the recipient's and the sender's pages.
    ``tenantOf`` maps a tenant id to the current ``Tenant`` (``None``
    once the tenant left the config); ``mailer(tenant, recipient,
    message)`` relays a message the web side made through the tenant's
    relay and fires when it was accepted.
    """

    transfers: Any
    access: Any
    store: Any
    metrics: Any
    reactor: Any
    tenantOf: Callable[[str], Optional[Tenant]]
    mailer: Callable[[Any, str, bytes], Deferred]
    publicURL: str
    language: str
    hostname: str

    @property
    def publicOrigin(self) -> str:
        parts = urllib.parse.urlsplit(self.publicURL)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def secureCookies(self) -> bool:
        return self.publicURL.startswith("https:")


log = Logger()


def state(context: WebContext, transfer: Optional[Transfer]) -> Optional[str]:
    """``None`` for a live transfer, else why its link does not open."""
    if transfer is None:
        return UNKNOWN
    if transfer.revoked is not None:
        return REVOKED
    if (transfer.purged is not None or transfer.expires <= context.reactor.seconds()
            or context.tenantOf(transfer.tenant) is None):
        return EXPIRED
    return None


def chrome(context: WebContext, transfer: Transfer, token: str = "") -> dict[str, Any]:
    """The base template's values for a transfer's pages: organisation, logo, help."""
    tenant = context.tenantOf(transfer.tenant)
    if tenant is None:
        return {"sender": shownSender(transfer)}
    return {
        "organisation": shown(tenant.organisation),
        "logo": links.transferPath(context.publicURL, token, LOGO) if tenant.logo and token else "",
        "help_contact": shown(tenant.help_contact),
        "sender": shownSender(transfer),
    }


def shownSender(transfer: Transfer) -> str:
    name = shown(transfer.sender_name)
    return f"{name} <{transfer.sender}>" if name else shown(transfer.sender)


def languageOf(context: WebContext, transfer: Transfer) -> str:
    tenant = context.tenantOf(transfer.tenant)
    return tenant.language if tenant is not None else context.language


def refuse(context: WebContext, request: Request, why: str, transfer: Optional[Transfer],
           token: str = "") -> None:
    """Answer 404 (unknown) or 410 (expired, withdrawn) with a page that says what to do."""
    if transfer is None:
        language = pageLanguage(request, context.language)
        t = texts(language)
        body = render("message.html", language, title=t["unknown_title"], body=t["unknown_body"],
                      switch=request.path.decode("latin-1"))
        sendPage(request, 404, body)
        return
    language = pageLanguage(request, languageOf(context, transfer))
    t = texts(language)
    page = chrome(context, transfer, token)
    sender = page["sender"]
    body = render("message.html", language, title=t[f"{why}_title"], body=t[f"{why}_body"].format(sender=sender),
                  switch=request.path.decode("latin-1"), **page)
    sendPage(request, 410, body)


def cut(request: Request) -> None:
    """Abort the connection: a response that cannot be finished must not look finished."""
    cast(IConnection, request.transport).abortConnection()


def failed(failure: Failure, request: Request) -> None:
    """An unexpected error: 503 before the first byte, a cut connection after it."""
    log.failure("web request failed", failure)
    if request.finished or getattr(request, "_disconnected", False):
        return
    if request.startedWriting:
        cut(request)
        return
    for name in (b"Content-Length", b"Content-Disposition", b"Content-Type", b"Content-Range"):
        request.responseHeaders.removeHeader(name)
    request.setResponseCode(503)
    request.finish()
