"""
The known users of each tenant (SPEC 5, step 7): a sender the tenant
file does not name, once created, with or without a welcome mail.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred

from secudoc_gateway.addresses import addressKey
from secudoc_gateway.db import Database

# How a user came to be known (``users.how``).
USER_SOURCES = ("config", "welcome", "silent")


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
