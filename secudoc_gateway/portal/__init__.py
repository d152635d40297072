"""
The portal (SPEC 9), on the ``[web]`` listener under ``/portal/``: where
a tenant's people sign in (an e-mail link, or SAML with Entra ID), see
their transfers and who downloaded them, and send files from the
browser; where admins see the whole tenant, its download trail, admin
events and message trace, and change its settings live.

The rooms: ``sessions`` (server-side sessions, the cookie, the forms'
token), ``loginlinks`` (one-time links), ``login`` (the sign-in and
sign-out pages, ``signIn``, which ``saml`` shares), the page modules
(``transfers``, ``events``, ``admin``, ``settings``, ``sso``, ``trace``,
``send``) with what they share (``filters``, ``exports``), ``upload``
and ``formdata`` (a streamed send's body), ``pages`` (the ``Visit`` and
the templates), ``routes`` (the route table) and ``site`` (the resource
that serves them).  It reuses what the recipient side built: the
templates' base, form tokens, rate limits, the mailer, and for uploads
the mail attachment's sink.
"""

from secudoc_gateway.portal.context import PortalContext
from secudoc_gateway.portal.site import PortalResource

__all__ = ["PortalContext", "PortalResource"]
