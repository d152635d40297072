"""
``/saml/<tenant>/``: a tenant's SAML service provider (SPEC 9).

``metadata.xml`` is ours, for the admin to upload to Entra.  ``login``
starts an SP-initiated sign-on: a new AuthnRequest (HTTP-Redirect), its
id stored hashed with a nonce that only this browser's cookie carries,
and the browser sent to the IdP.  ``acs`` takes the IdP's HTTP-POST:
the cookie's nonce and the response's InResponseTo must name a request
this browser made in the last 10 minutes (used up here, whatever
follows), then every check of ``checks`` and pysaml2's signature
verification, then the assertion id must be new; the groups claim gives
the role and ``login.signIn`` the session.

The cookie is ``SameSite=None; Secure``: the IdP's POST back is a
cross-site request, and a Lax cookie would not come with it (every
login would fail in Chrome).  It lives on the ACS path only, 10 minutes,
and is cleared by the ACS that reads it.  A tenant whose
``portal_login`` is ``email-link`` has no sign-on here (404).
"""

from __future__ import annotations

from typing import Optional

from twisted.internet.defer import ensureDeferred
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from secudoc_gateway import links
from secudoc_gateway.addresses import addressKey, isMailbox
from secudoc_gateway.config import PortalLogin, Tenant
from secudoc_gateway.crypto import newToken
from secudoc_gateway.display import shown
from secudoc_gateway.portal import login
from secudoc_gateway.portal.context import PortalContext
from secudoc_gateway.portal.pages import Visit, message, notFound, page, redirect
from secudoc_gateway.portal.saml import checks
from secudoc_gateway.portal.saml.context import SAMLContext
from secudoc_gateway.portal.saml.metadata import IdP, MetadataError, spMetadata
from secudoc_gateway.portal.saml.signatures import Provider, authnRequest, verify
from secudoc_gateway.portal.saml.store import REQUEST_SECONDS
from secudoc_gateway.portal.sessions import ADMIN, SAML, USER, sessionSecret
from secudoc_gateway.web.context import failed
from secudoc_gateway.web.pages import formValue, pageLanguage, sendBody

log = Logger()

COOKIE = b"sd_saml"
METADATA = "metadata.xml"
LOGIN = "login"
ACS = "acs"


def samlAllowed(tenant: Tenant) -> bool:
    return tenant.portal_login in (PortalLogin.SAML, PortalLogin.BOTH)


def role(tenant: Tenant, groups: frozenset[str]) -> Optional[str]:
    """Admin wins; group object ids compare case-insensitively (the config keeps them lowercased)."""
    if groups & {g.lower() for g in tenant.saml_admin_groups}:
        return ADMIN
    if groups & {g.lower() for g in tenant.saml_user_groups}:
        return USER
    return None


class SAMLResource(Resource):
    """Everything below ``/saml``."""

    isLeaf = True

    def __init__(self, portal: PortalContext, saml: SAMLContext) -> None:
        super().__init__()
        self.portal = portal
        self.saml = saml

    def render(self, request: Request) -> int:
        ensureDeferred(self._serve(request)).addErrback(failed, request)
        return NOT_DONE_YET

    def provider(self, tenant: Tenant, idp: IdP) -> Provider:
        publicURL = self.portal.web.publicURL
        return Provider(links.samlURL(publicURL, tenant.id, METADATA), links.samlURL(publicURL, tenant.id, ACS), idp)

    async def _serve(self, request: Request) -> None:
        portal = self.portal
        segments = [s.decode("utf-8", "replace") for s in request.postpath or []]
        tenant = portal.web.tenantOf(segments[0]) if len(segments) == 2 else None
        language = pageLanguage(request, tenant.language if tenant is not None else portal.web.language)
        secret = sessionSecret(request, portal.secure)
        session = await portal.sessions.find(secret) if secret else None
        own = portal.web.tenantOf(session.tenant) if session is not None else None
        visit = Visit(portal, request, language, session if own is not None else None, own,
                      await portal.web.access.formKey())
        method = request.method
        what = segments[1] if len(segments) == 2 else ""
        if tenant is None or what not in (METADATA, LOGIN, ACS):
            notFound(visit)
            return
        if what == METADATA and method in (b"GET", b"HEAD"):
            self._metadata(request, tenant)
            return
        if not samlAllowed(tenant):
            notFound(visit)
            return
        if what == LOGIN and method in (b"GET", b"HEAD"):
            await self._login(visit, tenant)
        elif what == ACS and method == b"POST":
            await self._acs(visit, tenant)
        else:
            request.setResponseCode(405)
            request.finish()

    def _metadata(self, request: Request, tenant: Tenant) -> None:
        publicURL = self.portal.web.publicURL
        body = spMetadata(links.samlURL(publicURL, tenant.id, METADATA), links.samlURL(publicURL, tenant.id, ACS))
        sendBody(request, 200, body, b"application/samlmetadata+xml",
                 {b"Content-Disposition": f'attachment; filename="secudoc-{tenant.id}-metadata.xml"'
                  .encode("ascii", "replace")})

    def _cookiePath(self, tenant: Tenant) -> bytes:
        return links.samlPath(self.portal.web.publicURL, tenant.id, ACS).encode("utf-8")

    async def _login(self, visit: Visit, tenant: Tenant) -> None:
        t = visit.t
        try:
            idp = await self.saml.federation.idp(tenant)
        except MetadataError as e:
            message(visit, 503, t["saml_unavailable_title"], t["saml_unavailable"].format(reason=shown(str(e))))
            return
        requestId, location = await self.saml.worker.run(authnRequest, self.provider(tenant, idp))
        nonce = newToken()
        await self.saml.store.remember(tenant.id, requestId, nonce)
        # SameSite=None: the IdP's POST back is cross-site.  Secure is required with it (and Chromium
        # takes Secure cookies from http://localhost and 127.0.0.1, as from any https origin).
        visit.request.addCookie(COOKIE, nonce.encode("ascii"), path=self._cookiePath(tenant),
                                max_age=str(int(REQUEST_SECONDS)).encode("ascii"), secure=True, httpOnly=True,
                                sameSite="none")
        visit.request.setHeader(b"Cache-Control", b"no-store")
        redirect(visit.request, location)

    def _refuse(self, visit: Visit, tenant: Tenant, refused: checks.Refused) -> None:
        log.warn("SAML response for tenant {tenant} refused: {reason} ({detail})", tenant=tenant.id,
                 reason=refused.reason, detail=refused.detail)
        t = visit.t
        retry = links.samlPath(self.portal.web.publicURL, tenant.id, LOGIN)
        if refused.reason == checks.UNSOLICITED:
            message(visit, 400, t["saml_refused_title"], t["saml_unsolicited"], link=retry,
                    link_text=t["saml_button"])
            return
        page(visit, 403, "saml_refused.html", t["saml_refused_title"], reason=refused.reason, link=retry)

    async def _acs(self, visit: Visit, tenant: Tenant) -> None:
        request = visit.request
        nonce = (request.getCookie(COOKIE) or b"").decode("ascii", "replace")
        request.addCookie(COOKIE, b"", path=self._cookiePath(tenant), max_age=b"0", secure=True, httpOnly=True,
                          sameSite="none")
        try:
            person = await self._verified(tenant, formValue(request, "SAMLResponse", 1024 * 1024) or "", nonce)
        except checks.Refused as refused:
            self._refuse(visit, tenant, refused)
            return
        except MetadataError as e:
            message(visit, 503, visit.t["saml_unavailable_title"],
                    visit.t["saml_unavailable"].format(reason=shown(str(e))))
            return
        await self._signIn(visit, tenant, person)

    async def _verified(self, tenant: Tenant, posted: str, nonce: str) -> checks.Person:
        root = checks.parse(checks.decode(posted))
        requestId = checks.inResponseTo(root)
        if not nonce:
            raise checks.Refused(checks.COOKIE, "no request cookie came with the response")
        if not await self.saml.store.take(tenant.id, requestId, nonce):
            raise checks.Refused(checks.REQUEST, "not a request this browser made in the last 10 minutes, or used")
        idp = await self.saml.federation.idp(tenant)
        provider = self.provider(tenant, idp)
        expected = checks.Expected(provider.entityId, provider.acsURL, idp.entityId, requestId)
        # The assertion's times against the real clock, as pysaml2 compares them (the store's clock may be a test's).
        person = checks.check(root, expected, self.portal.web.reactor.seconds())
        await self.saml.worker.run(verify, provider, posted, requestId)
        if not await self.saml.store.firstSight(tenant.id, person.assertionId, person.notOnOrAfter + checks.SKEW):
            raise checks.Refused(checks.REPLAY, "this assertion was used before")
        return person

    async def _signIn(self, visit: Visit, tenant: Tenant, person: checks.Person) -> None:
        t = visit.t
        needs = {"users": ", ".join(tenant.saml_user_groups) or "-", "admins": ", ".join(tenant.saml_admin_groups)
                 or "-"}
        if person.overage:
            message(visit, 403, t["saml_overage_title"], t["saml_overage"].format(**needs))
            return
        granted = role(tenant, person.groups)
        if granted is None:
            message(visit, 403, t["saml_no_group_title"], t["saml_no_group"].format(**needs))
            return
        address = addressKey(person.address)
        if not isMailbox(address):
            message(visit, 403, t["saml_refused_title"], t["saml_no_address"])
            return
        log.info("SAML login to tenant {tenant}: {address} ({role}, object id {objectId}, Entra tenant {entra})",
                 tenant=tenant.id, address=address, role=granted, objectId=person.objectId, entra=person.tenantId)
        await login.signIn(visit, tenant, address, granted, SAML)
