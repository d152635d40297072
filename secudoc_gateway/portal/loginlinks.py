"""
One-time login links (SPEC 9, ``portal_login = "email-link"``): a
256-bit secret mailed as ``<public_url>/portal/login/<secret>``, stored
as its hash, valid ``LINK_SECONDS``.

Link scanners (Safe Links and the like) fetch every link in a mail, so
looking a link up (``valid``) changes nothing; only ``use`` does, and
it deletes the row under the write lock in the transaction that reads
it: of two posts at once, on any nodes, exactly one gets the address.
"""

from __future__ import annotations

from typing import Any, Optional

import attrs
from twisted.internet.defer import Deferred

from secudoc_gateway.crypto import newToken, secretHash
from secudoc_gateway.db import Database

LINK_SECONDS = 15 * 60


@attrs.frozen
class LoginRequest:
    """Who a used link was mailed to."""

    tenant: str
    address: str


class LoginLinks:
    """The links on a ``Database``; ``clock`` gives the time."""

    def __init__(self, database: Database, clock: Any, seconds: float = LINK_SECONDS) -> None:
        self._db = database
        self.clock = clock
        self.seconds = seconds

    def create(self, tenant: str, address: str) -> Deferred[tuple[str, float]]:
        """A new link's secret and when it expires; expired links go on the way."""
        now = self.clock.seconds()
        secret = newToken()
        expires = now + self.seconds

        def create(txn: Any) -> tuple[str, float]:
            txn.execute("DELETE FROM portal_login_links WHERE expires <= ?", (now,))
            txn.execute("INSERT INTO portal_login_links (secret_hash, tenant, address, expires) VALUES (?, ?, ?, ?)",
                        (secretHash(secret), tenant, address, expires))
            return secret, expires

        return self._db.runTransaction(create)

    def valid(self, secret: str) -> Deferred[bool]:
        """Whether the link would still log in (a GET's question: nothing changes)."""
        d = self._db.runQuery("SELECT 1 FROM portal_login_links WHERE secret_hash = ? AND expires > ?",
                              (secretHash(secret), self.clock.seconds()))
        return d.addCallback(bool)

    def use(self, secret: str) -> Deferred[Optional[LoginRequest]]:
        """Use the link up: whom it was for if it was live and unused, else ``None``."""
        now = self.clock.seconds()
        key = secretHash(secret)

        def use(txn: Any) -> Optional[LoginRequest]:
            txn.execute(f"SELECT tenant, address, expires FROM portal_login_links WHERE secret_hash = ?"
                        f"{txn.dialect.forUpdate}", (key,))
            row = txn.fetchone()
            if row is None:
                return None
            txn.execute("DELETE FROM portal_login_links WHERE secret_hash = ?", (key,))
            if txn.rowcount != 1 or row[2] <= now:
                return None
            return LoginRequest(row[0], row[1])

        return self._db.runTransaction(use)
