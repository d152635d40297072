"""
The known users of each tenant (SPEC 5, step 7): a sender the tenant
file does not name, once created, with or without a welcome mail; one
who signed in with SSO; one an admin added in the portal (SPEC 9).
"""

from __future__ import annotations

from typing import Any, Optional

import attrs
from twisted.internet.defer import Deferred

from secudoc_gateway.addresses import addressKey
from secudoc_gateway.db import Database
from secudoc_gateway.transfers.events import LOGIN, USER_ADD, USER_REMOVE, insertEvent

# How a user came to be known (``users.how``).
ADMIN_ADDED = "admin"
USER_SOURCES = ("config", "welcome", "silent", "sso", ADMIN_ADDED)


@attrs.frozen
class User:
    """A row of the users table, with the person's last portal login (``None``: never)."""

    tenant: str
    address: str
    created: float
    how: str
    last_login: Optional[float] = None


class UserRecords:
    """The users' part of ``TransferStore``."""

    _db: Database
    _clock: Any  # an IReactorTime

    def isKnownUser(self, tenant: str, address: str) -> Deferred[bool]:
        """
        Whether ``address`` is a stored user of ``tenant`` (the tenant
        file's ``users`` patterns are the policy's to check).
        """
        d = self._db.runQuery(
            "SELECT 1 FROM users WHERE tenant = ? AND address = ?",
            (tenant, addressKey(address)),
        )
        return d.addCallback(bool)

    def createUser(self, tenant: str, address: str, how: str) -> Deferred[bool]:
        """
        Make ``address`` a known user of ``tenant``; ``how`` is one of
        ``USER_SOURCES``.  Fires with ``True`` only when the user is new,
        so a welcome mail goes out once even when two messages race.
        """
        if how not in USER_SOURCES:
            raise ValueError(f"how must be one of {USER_SOURCES}, not {how!r}")
        now = self._clock.seconds()

        def create(txn: Any) -> bool:
            txn.execute(
                "INSERT INTO users (tenant, address, created, how) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (tenant, address) DO NOTHING",
                (tenant, addressKey(address), now, how),
            )
            return bool(txn.rowcount == 1)

        return self._db.runTransaction(create)

    def users(self, tenant: str, limit: int = 5000) -> Deferred[list[User]]:
        """A tenant's stored users by address, each with its last login (an admin event)."""
        d = self._db.runQuery(
            "SELECT u.tenant, u.address, u.created, u.how,"
            " (SELECT MAX(e.at) FROM admin_events e WHERE e.tenant = u.tenant AND e.what = ?"
            " AND lower(e.who) = u.address) FROM users u WHERE u.tenant = ? ORDER BY u.address LIMIT ?",
            (LOGIN, tenant, limit),
        )
        return d.addCallback(lambda rows: [User(*row) for row in rows])

    def lastLogins(self, tenant: str) -> Deferred[dict[str, float]]:
        """Each address's last portal login in ``tenant`` (the admins of the file have no row of their own)."""
        d = self._db.runQuery("SELECT lower(who), MAX(at) FROM admin_events WHERE tenant = ? AND what = ?"
                              " GROUP BY lower(who)", (tenant, LOGIN))
        return d.addCallback(lambda rows: {who: at for who, at in rows})

    def addUser(self, tenant: str, address: str, by: str) -> Deferred[bool]:
        """An admin adds a user; fires with whether it is new (then an admin event, in the same transaction)."""
        now = self._clock.seconds()
        key = addressKey(address)

        def add(txn: Any) -> bool:
            txn.execute("INSERT INTO users (tenant, address, created, how) VALUES (?, ?, ?, ?)"
                        " ON CONFLICT (tenant, address) DO NOTHING", (tenant, key, now, ADMIN_ADDED))
            if txn.rowcount != 1:
                return False
            insertEvent(txn, tenant, now, by, USER_ADD, key, None, ADMIN_ADDED)
            return True

        return self._db.runTransaction(add)

    def removeUser(self, tenant: str, address: str, by: str) -> Deferred[bool]:
        """An admin removes a stored user; fires with whether there was one (and then records the event)."""
        now = self._clock.seconds()
        key = addressKey(address)

        def remove(txn: Any) -> bool:
            txn.execute(f"SELECT how FROM users WHERE tenant = ? AND address = ?{txn.dialect.forUpdate}",
                        (tenant, key))
            row = txn.fetchone()
            if row is None:
                return False
            txn.execute("DELETE FROM users WHERE tenant = ? AND address = ?", (tenant, key))
            insertEvent(txn, tenant, now, by, USER_REMOVE, key, row[0], None)
            return True

        return self._db.runTransaction(remove)
