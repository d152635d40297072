"""
What SAML sign-on keeps in the database (SPEC 9), so that every worker
and node agrees: the AuthnRequests not yet answered and the assertion
ids already used.

pysaml2 keeps no state of its own that we trust here (its outstanding
requests never expire).  A request is stored as the hash of its id with
the nonce of the cookie that the browser which asked carries: only that
browser can answer it, once (the row is deleted by the ACS that finds
it, under the write lock, before the response is even verified), within
``REQUEST_SECONDS``.  An assertion id is stored (hashed) until its
assertion expires: a second post of the same assertion, on any node,
finds it.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred

from secudoc_gateway.crypto import secretHash
from secudoc_gateway.db import Database

REQUEST_SECONDS = 10 * 60


def _requestKey(tenant: str, requestId: str, nonce: str) -> str:
    return secretHash(f"{tenant}\n{requestId}\n{nonce}")


class SAMLStore:
    """Requests and seen assertions on a ``Database``; ``clock`` gives the time."""

    def __init__(self, database: Database, clock: Any, requestSeconds: float = REQUEST_SECONDS) -> None:
        self._db = database
        self.clock = clock
        self.requestSeconds = requestSeconds

    def remember(self, tenant: str, requestId: str, nonce: str) -> Deferred[None]:
        """A request this browser (``nonce``) made now; expired ones go on the way."""
        now = self.clock.seconds()

        def remember(txn: Any) -> None:
            txn.execute("DELETE FROM saml_requests WHERE expires <= ?", (now,))
            txn.execute("INSERT INTO saml_requests (request_hash, tenant, expires) VALUES (?, ?, ?)",
                        (_requestKey(tenant, requestId, nonce), tenant, now + self.requestSeconds))

        return self._db.runTransaction(remember)

    def take(self, tenant: str, requestId: str, nonce: str) -> Deferred[bool]:
        """Whether this browser made ``requestId`` in the last ``requestSeconds``; it is used up either way."""
        now = self.clock.seconds()
        key = _requestKey(tenant, requestId, nonce)

        def take(txn: Any) -> bool:
            txn.execute(f"SELECT expires FROM saml_requests WHERE request_hash = ?{txn.dialect.forUpdate}", (key,))
            row = txn.fetchone()
            if row is None:
                return False
            txn.execute("DELETE FROM saml_requests WHERE request_hash = ?", (key,))
            return bool(txn.rowcount == 1 and row[0] > now)

        return self._db.runTransaction(take)

    def firstSight(self, tenant: str, assertionId: str, until: float) -> Deferred[bool]:
        """Record an assertion id till ``until``: ``False`` if it was seen before (a replay)."""
        now = self.clock.seconds()
        key = secretHash(f"{tenant}\n{assertionId}")

        def sight(txn: Any) -> bool:
            txn.execute("DELETE FROM saml_assertions WHERE expires <= ?", (now,))
            txn.execute("INSERT INTO saml_assertions (assertion_hash, tenant, expires) VALUES (?, ?, ?)"
                        " ON CONFLICT (assertion_hash) DO NOTHING", (key, tenant, max(until, now + 60)))
            return bool(txn.rowcount == 1)

        return self._db.runTransaction(sight)
