"""
How a portal page is answered: the ``Visit`` (one request, the session
it carries if any, its tenant and language), the templates
(``templates/``, on top of the recipient pages' ``base.html``: the same
look, headers and language switch), and the few answers every page
module shares (a page, a redirect, 404).

Pages are in the tenant's language, or the one the switch picked (kept
in a cookie on the portal's path), or the browser's where it prefers
Dutch or English (``web.pages.pageLanguage``).  No page runs a script:
the content security policy of ``/t/`` allows none.
"""

from __future__ import annotations

from typing import Any, Optional

import attrs
import jinja2
from twisted.web.server import Request

from secudoc_gateway.config import Tenant
from secudoc_gateway.display import shown
from secudoc_gateway.notices.texts import texts
from secudoc_gateway.portal.context import PortalContext
from secudoc_gateway.portal.sessions import Session, sessionFormToken, sessionFormValid
from secudoc_gateway.web.pages import csrfValid, formValue, sameOrigin, sendPage

_environment = jinja2.Environment(
    loader=jinja2.ChoiceLoader([jinja2.PackageLoader("secudoc_gateway.portal", "templates"),
                                jinja2.PackageLoader("secudoc_gateway.web", "templates")]),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
)


@attrs.frozen
class Visit:
    """
    One request to the portal.  ``session`` and ``tenant`` are both set
    for a signed-in person (a session whose tenant left the config is
    no session), both ``None`` otherwise.
    """

    portal: PortalContext
    request: Request
    language: str
    session: Optional[Session] = None
    tenant: Optional[Tenant] = None
    formKey: bytes = b""

    @property
    def t(self) -> dict[str, str]:
        return texts(self.language)

    @property
    def path(self) -> str:
        return self.request.path.decode("utf-8", "replace")

    def formToken(self) -> str:
        """The CSRF field of this session's forms."""
        assert self.session is not None
        return sessionFormToken(self.formKey, self.session)

    def formValid(self) -> bool:
        """
        A post from one of this session's own pages: its token is this
        session's, and Origin, when it names one, is ours (as on ``/t/``).
        """
        if self.session is None or not sameOrigin(self.request, self.portal.web.publicOrigin):
            return False
        return sessionFormValid(self.formKey, self.session, formValue(self.request, "csrf", 64) or "")

    def publicFormValid(self, purpose: str, subject: str) -> bool:
        """A post of a form shown before sign-in (bound to the browser's nonce cookie instead)."""
        return csrfValid(self.request, self.portal.web.publicOrigin, self.formKey, purpose, subject)


def render(visit: Visit, template: str, title: str, **values: Any) -> bytes:
    """A whole page: the chrome (organisation, help, the signed-in person's menu) around ``template``."""
    tenant = visit.tenant
    values.setdefault("wide", False)
    values.setdefault("current", "")
    return _environment.get_template(template).render(
        lang=visit.language, t=visit.t, title=title, site=visit.t["portal"], base=visit.portal.base,
        session=visit.session, csrf_session=visit.formToken() if visit.session is not None else "",
        switch=visit.path, logo="", sender="",
        organisation=shown(tenant.organisation) if tenant is not None else "",
        help_contact=shown(tenant.help_contact) if tenant is not None else "",
        **values,
    ).encode("utf-8")


def page(visit: Visit, code: int, template: str, title: str, **values: Any) -> None:
    sendPage(visit.request, code, render(visit, template, title, **values))


def message(visit: Visit, code: int, title: str, body: str, **values: Any) -> None:
    """A page that only says something (and may link on: ``link``, ``link_text``)."""
    values.setdefault("link", "")
    values.setdefault("link_text", "")
    page(visit, code, "portal_message.html", title, body=body, **values)


def refusedForm(visit: Visit, back: str) -> bool:
    """
    ``True``, after answering 403 with a link to ``back`` (a page below
    the portal), when a post's form is not this session's.
    """
    if visit.formValid():
        return False
    message(visit, 403, visit.t["error"], visit.t["form_expired"], link=f"{visit.portal.base}/{back}",
            link_text=visit.t["back"])
    return True


def notFound(visit: Visit) -> None:
    """404 for what does not exist and for what is not this person's alike: neither is told apart."""
    message(visit, 404, visit.t["not_found_title"], visit.t["not_found_body"])


def redirect(request: Request, location: str) -> None:
    """303: after a post, the browser asks for ``location`` with a GET."""
    request.setResponseCode(303)
    request.setHeader(b"Location", location.encode("utf-8"))
    request.setHeader(b"Content-Length", b"0")
    request.finish()
