"""
``/portal/``: one resource that takes every path below it, finds the
browser's session, the page's language and the route, checks who may
ask (a signed-in person; for admin pages an admin of the session's
tenant), and hands a ``Visit`` to the route's handler.

Not signed in, a page that needs a session redirects to the login form;
signed in as a user, an admin page is the same 404 as a path that
routes nowhere.  The routes are the page modules' ``ROUTES``.
"""

from __future__ import annotations

from typing import Sequence

from twisted.internet.defer import ensureDeferred
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from secudoc_gateway.portal import admin, events, login, send, settings, sso, trace, transfers
from secudoc_gateway.portal.context import PortalContext
from secudoc_gateway.portal.pages import Visit, notFound, redirect
from secudoc_gateway.portal.routes import ADMIN_ONLY, PUBLIC, Route, resolve
from secudoc_gateway.portal.sessions import signedIn
from secudoc_gateway.web.context import failed
from secudoc_gateway.web.pages import pageLanguage
from secudoc_gateway.web.site import Streamed

ROUTES: tuple[Route, ...] = (login.ROUTES + transfers.ROUTES + events.ROUTES + settings.ROUTES + admin.ROUTES
                             + sso.ROUTES + trace.ROUTES + send.ROUTES)


class PortalResource(Resource):
    """Everything below ``/portal``; ``routes`` are the pages it serves."""

    isLeaf = True

    def __init__(self, portal: PortalContext, routes: Sequence[Route] = ROUTES) -> None:
        super().__init__()
        self.portal = portal
        self.routes = tuple(routes)
        self.streamed: dict[bytes, Streamed] = {}
        """The POST paths whose bodies the web site streams to a receiver (``send.SEND_PATH``)."""

    def render(self, request: Request) -> int:
        ensureDeferred(self._serve(request)).addErrback(failed, request)
        return NOT_DONE_YET

    async def _serve(self, request: Request) -> None:
        portal = self.portal
        raw = list(request.postpath or [])
        if not raw:  # /portal: the list is at /portal/
            redirect(request, portal.base + "/")
            return
        if raw[-1] == b"":
            raw.pop()
        segments = [s.decode("utf-8", "replace") for s in raw]
        session, tenant = await signedIn(portal.web, portal.sessions, request, portal.secure)
        language = pageLanguage(request, tenant.language if tenant is not None else portal.web.language,
                                portal.base, portal.secure)
        visit = Visit(portal, request, language, session, tenant, await portal.web.access.formKey())
        match = resolve(self.routes, request.method.decode("ascii", "replace"), segments)
        route = match.route
        if route is None:
            if match.otherMethods:
                request.setResponseCode(405)
                request.finish()
            else:
                notFound(visit)
            return
        if route.access != PUBLIC and session is None:
            redirect(request, f"{portal.base}/login")
            return
        if route.access == ADMIN_ONLY and not (session is not None and session.isAdmin):
            notFound(visit)
            return
        await route.handler(visit, **match.params)
