"""
Signing in by e-mail link and out (SPEC 9).

``GET /portal/login`` shows the form; its ``POST`` answers every
address alike ("if this address has access, we sent a link"), after the
same work: the form's token and the rate limits (per address asked for
and per client, as for verification codes).  Whether the address is a
person of a tenant, and the mail, happen afterwards, on a later reactor
turn, so neither the answer nor its timing says who has access.

``GET /portal/login/<secret>`` only shows a "log in" button: scanners
fetch every link in a mail, and a GET must not use the link up.  Its
``POST`` uses it up and, if the address is still a user or admin of
its tenant, starts the session (``signIn``, which SAML sign-on shares).
"""

from __future__ import annotations

from typing import Optional

from twisted.internet.defer import ensureDeferred
from twisted.logger import Logger
from twisted.web.server import Request

from secudoc_gateway import links
from secudoc_gateway.addresses import addressKey, isMailbox
from secudoc_gateway.config import PortalLogin, Tenant
from secudoc_gateway.crypto import secretHash
from secudoc_gateway.notices.portal import loginMail
from secudoc_gateway.portal.context import PortalContext
from secudoc_gateway.portal.pages import Visit, message, page, redirect, refusedForm
from secudoc_gateway.portal.routes import PUBLIC, SIGNED_IN, Route
from secudoc_gateway.portal.sessions import (
    EMAIL_LINK, clearSessionCookie, emailRole, setSessionCookie,
)
from secudoc_gateway.transfers.events import LOGIN
from secudoc_gateway.web.pages import csrfToken, formValue, pageLanguage

log = Logger()

_ASK = "portal-login"
_ASK_SUBJECT = "login"
_USE = "portal-link"


def _client(request: Request) -> str:
    client = request.getClientAddress()
    return str(getattr(client, "host", client))


def _emailLinkAllowed(tenant: Tenant) -> bool:
    return tenant.portal_login in (PortalLogin.EMAIL_LINK, PortalLogin.BOTH)


async def signIn(visit: Visit, tenant: Tenant, address: str, role: str, how: str) -> None:
    """
    Start a session for ``address`` (ending the browser's old one),
    record the login as an admin event, and go to the transfer list.
    """
    portal = visit.portal
    if visit.session is not None:
        await portal.sessions.close(visit.session)
    secret, _ = await portal.sessions.open(tenant.id, address, role, how)
    await portal.web.transfers.recordEvent(tenant.id, address, LOGIN, how, None, role)
    setSessionCookie(visit.request, secret, portal.base, portal.secure)
    redirect(visit.request, portal.base + "/")


def _loginTenant(visit: Visit) -> Optional[Tenant]:
    """The tenant a per-tenant login page names (``/portal/login?tenant=<id>``), if any."""
    wanted = formValue(visit.request, "tenant", 200) or ""
    return visit.portal.web.tenantOf(wanted) if wanted else None


async def _askForm(visit: Visit, code: int = 200, error: str = "", address: str = "") -> None:
    """
    The login form; on a tenant's own login page (``?tenant=<id>``) also
    "Sign in with Microsoft" where the tenant has SAML, and no address
    form where it has SAML only.
    """
    portal = visit.portal
    csrf = csrfToken(visit.request, visit.formKey, _ASK, _ASK_SUBJECT, portal.base, portal.secure)
    tenant = _loginTenant(visit)
    saml = ""
    if tenant is not None and tenant.portal_login in (PortalLogin.SAML, PortalLogin.BOTH):
        saml = links.samlPath(portal.web.publicURL, tenant.id, "login")
    email = tenant is None or _emailLinkAllowed(tenant)
    page(visit, code, "login.html", visit.t["login_title"], action=f"{portal.base}/login", csrf=csrf,
         error=error, address=address, saml=saml, email=email)


async def loginForm(visit: Visit) -> None:
    if visit.session is not None:
        redirect(visit.request, visit.portal.base + "/")
        return
    await _askForm(visit)


async def askLink(visit: Visit) -> None:
    """The answer is the same for every address; the work behind it is not, so it happens later."""
    portal = visit.portal
    t = visit.t
    if not visit.publicFormValid(_ASK, _ASK_SUBJECT):
        await _askForm(visit, 403, t["form_expired"])
        return
    address = addressKey(formValue(visit.request, "address") or "")
    if not isMailbox(address):
        await _askForm(visit, 400, t["bad_address"], address)
        return
    access = portal.web.access
    if not await access.allow(access.limits.forLogins(address, _client(visit.request))):
        await _askForm(visit, 429, t["too_many"], address)
        return
    page(visit, 200, "login_sent.html", t["login_sent_title"], address=address, again=f"{portal.base}/login")
    # The mail is in the language this browser asked for (the switch, Accept-Language), else the tenant's.
    portal.web.reactor.callLater(0, _mailLater, portal, address, pageLanguage(visit.request, ""))


def _mailLater(portal: PortalContext, address: str, language: str) -> None:
    ensureDeferred(_mailLink(portal, address, language)).addErrback(
        lambda f: log.failure("portal login link not sent", f))


async def _mailLink(portal: PortalContext, address: str, language: str) -> None:
    tenant = portal.tenantForAddress(address)
    if tenant is None or not _emailLinkAllowed(tenant) or await emailRole(portal.web, tenant, address) is None:
        return
    secret, expires = await portal.logins.create(tenant.id, address)
    web = portal.web
    mail = loginMail(web.hostname, tenant, address, links.portalURL(web.publicURL, "login", secret), expires,
                     portal.sessions.clock.seconds(), language or None)
    await web.mailer(tenant, address, mail)


def _invalid(visit: Visit) -> None:
    t = visit.t
    message(visit, 410, t["login_invalid_title"], t["login_invalid"], link=f"{visit.portal.base}/login",
            link_text=t["login_again"])


async def linkPage(visit: Visit, secret: str) -> None:
    """The button only: a GET (a scanner's too) leaves the link as it was."""
    portal = visit.portal
    if not await portal.logins.valid(secret):
        _invalid(visit)
        return
    csrf = csrfToken(visit.request, visit.formKey, _USE, secretHash(secret), portal.base, portal.secure)
    page(visit, 200, "login_link.html", visit.t["login_title"], action=visit.path, csrf=csrf)


async def useLink(visit: Visit, secret: str) -> None:
    portal = visit.portal
    if not visit.publicFormValid(_USE, secretHash(secret)):
        message(visit, 403, visit.t["error"], visit.t["form_expired"], link=visit.path,
                link_text=visit.t["login_button"])
        return
    used = await portal.logins.use(secret)
    tenant = portal.web.tenantOf(used.tenant) if used is not None else None
    if used is None or tenant is None or not _emailLinkAllowed(tenant):
        _invalid(visit)
        return
    role = await emailRole(portal.web, tenant, used.address)
    if role is None:
        _invalid(visit)
        return
    await signIn(visit, tenant, used.address, role, EMAIL_LINK)


async def logout(visit: Visit) -> None:
    portal = visit.portal
    assert visit.session is not None
    if refusedForm(visit, ""):
        return
    await portal.sessions.close(visit.session)
    clearSessionCookie(visit.request, portal.base, portal.secure)
    redirect(visit.request, f"{portal.base}/login")


ROUTES = (
    Route("GET", "login", loginForm, PUBLIC),
    Route("POST", "login", askLink, PUBLIC),
    Route("GET", "login/{secret}", linkPage, PUBLIC),
    Route("POST", "login/{secret}", useLink, PUBLIC),
    Route("POST", "logout", logout, SIGNED_IN),
)

