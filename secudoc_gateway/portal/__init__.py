"""
The portal (SPEC 9), on the ``[web]`` listener under ``/portal/``: where
a tenant's people sign in (an e-mail link; SAML comes beside it), see
their transfers and who downloaded them, and where admins see the whole
tenant and its admin events.

The rooms: ``sessions`` (server-side sessions, the cookie, the forms'
token), ``loginlinks`` (one-time links), ``login`` (the sign-in and
sign-out pages, ``signIn``), ``transfers`` and ``events`` (the pages),
``pages`` (the ``Visit`` and the templates), ``routes`` (the route
table) and ``site`` (the resource that serves them).  It reuses what
the recipient side built: the templates' base, form tokens, rate
limits, the mailer.
"""

from secudoc_gateway.portal.context import PortalContext
from secudoc_gateway.portal.site import PortalResource

__all__ = ["PortalContext", "PortalResource"]
