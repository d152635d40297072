"""
Portal sessions (SPEC 9): who is signed in, in which tenant, with which
role, and since when.

A session id is 256 random bits (``crypto.newToken``) that only the
browser's cookie holds; the database keeps its ``secretHash``, so any
worker or node serves it and a copy of the database opens none.  A
session ends ``idleSeconds`` after its last use or ``absoluteSeconds``
after it began, whichever comes first; every use that finds it alive
moves ``last_seen``.  The cookie is HttpOnly and SameSite=Lax (a link
from webmail still arrives signed in; another site's POST carries no
cookie); with an https ``public_url`` it is Secure and ``__Host-``
prefixed, which binds it to this host and path ``/``, so no sibling
subdomain can plant one.

Every form a signed-in page shows carries one token bound to the
session (``crypto.formToken`` with the session as its subject): another
site can neither read it (the cookie is HttpOnly, the pages are ours)
nor make one for a session it does not hold.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

import attrs
from twisted.internet.defer import Deferred
from twisted.web.server import Request

from secudoc_gateway.addresses import addressKey
from secudoc_gateway.config import PortalConfig, Tenant
from secudoc_gateway.crypto import formToken, formTokenValid, newToken, secretHash
from secudoc_gateway.db import Database
from secudoc_gateway.policy import isConfiguredUser

if TYPE_CHECKING:
    from secudoc_gateway.web.context import WebContext

# A session's role and how it began (the table's CHECKs name the same).
USER = "user"
ADMIN = "admin"
EMAIL_LINK = "email-link"
SAML = "saml"

COOKIE = b"sd_portal"
HOST_COOKIE = b"__Host-sd_portal"
_FORM_PURPOSE = "portal"
_FORM_NONCE = "session"


@attrs.frozen
class Session:
    """A live session; ``key`` is its id's hash (what the database and form tokens know it by)."""

    key: str
    tenant: str
    address: str
    role: str
    how: str
    created: float
    last_seen: float

    @property
    def isAdmin(self) -> bool:
        return self.role == ADMIN


@attrs.frozen
class SessionLimits:
    """How long a session may sit unused, and live at all (``[portal]`` idle_minutes, session_hours)."""

    idleSeconds: float = 60 * 60
    absoluteSeconds: float = 8 * 60 * 60

    @classmethod
    def fromConfig(cls, config: PortalConfig) -> "SessionLimits":
        return cls(idleSeconds=config.idle_minutes * 60.0, absoluteSeconds=config.session_hours * 3600.0)


_COLUMNS = "tenant, address, role, how, created, last_seen"


class SessionStore:
    """Sessions on a ``Database``; ``clock`` gives the time (tests age sessions with it)."""

    def __init__(self, database: Database, clock: Any, limits: SessionLimits = SessionLimits()) -> None:
        self._db = database
        self.clock = clock
        self.limits = limits

    def _expired(self, now: float) -> tuple[str, tuple[float, float]]:
        return ("created <= ? OR last_seen <= ?",
                (now - self.limits.absoluteSeconds, now - self.limits.idleSeconds))

    def open(self, tenant: str, address: str, role: str, how: str) -> Deferred[tuple[str, Session]]:
        """A new session: its id (for the cookie, never stored) and its value.  Ended ones go on the way."""
        if role not in (USER, ADMIN) or how not in (EMAIL_LINK, SAML):
            raise ValueError(f"no session of role {role!r} made by {how!r}")
        now = self.clock.seconds()
        secret = newToken()
        session = Session(secretHash(secret), tenant, address, role, how, now, now)
        expired, bounds = self._expired(now)

        def open(txn: Any) -> tuple[str, Session]:
            txn.execute(f"DELETE FROM portal_sessions WHERE {expired}", bounds)
            txn.execute(f"INSERT INTO portal_sessions (secret_hash, {_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (session.key, tenant, address, role, how, now, now))
            return secret, session

        return self._db.runTransaction(open)

    def find(self, secret: str) -> Deferred[Optional[Session]]:
        """The live session of ``secret``, now marked used; an ended one is deleted and ``None``."""
        now = self.clock.seconds()
        key = secretHash(secret)
        expired, bounds = self._expired(now)

        def find(txn: Any) -> Optional[Session]:
            txn.execute(f"SELECT {_COLUMNS} FROM portal_sessions WHERE secret_hash = ?", (key,))
            row = txn.fetchone()
            if row is None:
                return None
            txn.execute(f"DELETE FROM portal_sessions WHERE secret_hash = ? AND ({expired})", (key, *bounds))
            if txn.rowcount:
                return None
            txn.execute("UPDATE portal_sessions SET last_seen = ? WHERE secret_hash = ?", (now, key))
            tenant, address, role, how, created, _ = row
            return Session(key, tenant, address, role, how, created, now)

        return self._db.runTransaction(find)

    def close(self, session: Session) -> Deferred[None]:
        """Logout: the session ends now, on every node."""
        return self._db.runOperation("DELETE FROM portal_sessions WHERE secret_hash = ?", (session.key,))


def cookieName(secure: bool) -> bytes:
    return HOST_COOKIE if secure else COOKIE


def cookiePath(portalPath: str, secure: bool) -> str:
    """``__Host-`` cookies must be on ``/``; a plain one stays on the portal's own path."""
    return "/" if secure else portalPath


def sessionSecret(request: Request, secure: bool) -> str:
    """The session id the browser sent, if it looks like one of ours."""
    value = (request.getCookie(cookieName(secure)) or b"").decode("ascii", "replace")
    return value if len(value) == 43 and value.replace("-", "").replace("_", "").isalnum() else ""


def setSessionCookie(request: Request, secret: str, portalPath: str, secure: bool) -> None:
    """The session's cookie: a browser session cookie (no Max-Age); the server ends it."""
    request.addCookie(cookieName(secure), secret.encode("ascii"), path=cookiePath(portalPath, secure).encode("ascii"),
                      httpOnly=True, secure=secure, sameSite="lax")


def clearSessionCookie(request: Request, portalPath: str, secure: bool) -> None:
    request.addCookie(cookieName(secure), b"", path=cookiePath(portalPath, secure).encode("ascii"),
                      expires=b"Thu, 01 Jan 1970 00:00:00 GMT", max_age=b"0", httpOnly=True, secure=secure,
                      sameSite="lax")


def sessionFormToken(key: bytes, session: Session) -> str:
    """The CSRF token of every form a signed-in page shows, bound to its session."""
    return formToken(key, _FORM_PURPOSE, session.key, _FORM_NONCE)


def sessionFormValid(key: bytes, session: Session, token: str) -> bool:
    """Whether ``token`` was made for this very session (another session's token is refused)."""
    return formTokenValid(key, _FORM_PURPOSE, session.key, _FORM_NONCE, token)


async def emailRole(web: "WebContext", tenant: Tenant, address: str) -> Optional[str]:
    """
    The role of ``address`` in ``tenant`` for an e-mail link: admin if
    ``admins`` names it, user if ``users`` matches it or the users table
    holds it, else ``None`` (no access).
    """
    key = addressKey(address)
    if key in {addressKey(a) for a in tenant.admins}:
        return ADMIN
    if isConfiguredUser(tenant, key) or await web.transfers.isKnownUser(tenant.id, key):
        return USER
    return None


async def signedIn(web: "WebContext", sessions: SessionStore, request: Request,
                   secure: bool) -> tuple[Optional[Session], Optional[Tenant]]:
    """
    The request's session and its tenant (``None, None`` without one),
    under the tenant's settings as they are now: an admin signed in by
    e-mail link whom ``admins`` no longer names is one no more from the
    next request on (a user if the tenant still knows the address, else
    signed out), not only once the session ends.  A SAML session keeps
    the role its groups gave it at sign-in.  Pages and uploads alike.
    """
    secret = sessionSecret(request, secure)
    session = await sessions.find(secret) if secret else None
    tenant = web.tenantOf(session.tenant) if session is not None else None
    if session is None or tenant is None:
        return None, None
    if (session.how == EMAIL_LINK and session.isAdmin
            and addressKey(session.address) not in {addressKey(a) for a in tenant.admins}):
        role = await emailRole(web, tenant, session.address)
        if role is None:
            return None, None
        session = attrs.evolve(session, role=role)
    return session, tenant
