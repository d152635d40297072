"""
What every portal page needs (``PortalContext``): the recipient side's
``WebContext`` (transfers, rate limits, mailer, clock, public URL), the
portal's own stores and the registry's lookup of a person's tenant.
"""

from __future__ import annotations

from typing import Callable, Optional

import attrs

from secudoc_gateway import links
from secudoc_gateway.config import Tenant
from secudoc_gateway.portal.loginlinks import LoginLinks
from secudoc_gateway.portal.saml.context import SAMLContext
from secudoc_gateway.portal.sessions import SessionStore
from secudoc_gateway.portal.upload import Uploads
from secudoc_gateway.settings import LiveSettings
from secudoc_gateway.web.context import WebContext


@attrs.frozen
class PortalContext:
    """
    ``tenantForAddress`` maps an address to the tenant of its domain in
    the current registry (``None`` for none): a SIGHUP reload is seen
    by the next request.  ``saml`` is SAML sign-on's (``None``: only
    e-mail links, as in tests of the pages alone).
    """

    web: WebContext
    sessions: SessionStore
    logins: LoginLinks
    tenantForAddress: Callable[[str], Optional[Tenant]]
    saml: Optional[SAMLContext] = None
    settings: Optional[LiveSettings] = None
    """The portal's overrides of the tenant files (settings live); ``None`` where none are kept."""
    uploads: Optional[Uploads] = None
    """The send path's collaborators (``None``: no sending from the browser, as in tests of the pages alone)."""

    @property
    def base(self) -> str:
        """The portal's path below the public URL (``/portal``, or a proxy's ``/prefix/portal``)."""
        return links.portalPath(self.web.publicURL)

    @property
    def secure(self) -> bool:
        return self.web.secureCookies
