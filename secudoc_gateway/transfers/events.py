"""
Admin events (SPEC 7): every portal login, every revoke and extend
(from the CLI, the sender's link or the portal) and every setting
changed in the portal, with who, when, and the old and new value.

They live beside the transfers, not in the portal, because three rooms
write them (``web``'s sender link, the CLI's ``inventory``, the
portal) and a revoke or an extend records its event in the same
transaction that makes the change: no change without its event, no
event without its change.  Like the download trail, nothing deletes
them.
"""

from __future__ import annotations

import datetime
from typing import Any, Optional

import attrs
from twisted.internet.defer import Deferred

from secudoc_gateway.db import Database

OPERATOR = "operator"
"""``who`` of a change made with the command line."""

# ``what`` (the table's CHECK names the same).
LOGIN = "login"
REVOKE = "revoke"
EXTEND = "extend"
SETTING = "setting"
USER_ADD = "user-add"
USER_REMOVE = "user-remove"
RELAY_TEST = "relay-test"
WHATS = (LOGIN, REVOKE, EXTEND, SETTING, USER_ADD, USER_REMOVE, RELAY_TEST)

def eventTime(seconds: Optional[float]) -> Optional[str]:
    """An old or new value that is a moment: RFC 3339, UTC, to the second (what the CLI prints)."""
    if seconds is None:
        return None
    moment = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


_COLUMNS = "id, tenant, at, who, what, subject, old_value, new_value"


@attrs.frozen
class AdminEvent:
    """One row: ``at`` in Unix seconds; ``old`` and ``new`` as text, ``None`` when there is none."""

    id: int
    tenant: str
    at: float
    who: str
    what: str
    subject: str
    old: Optional[str]
    new: Optional[str]


def insertEvent(txn: Any, tenant: str, at: float, who: str, what: str, subject: str = "",
                old: Optional[str] = None, new: Optional[str] = None) -> None:
    """Record an event inside a transaction that makes the change it names."""
    if what not in WHATS:
        raise ValueError(f"what must be one of {WHATS}, not {what!r}")
    txn.execute("INSERT INTO admin_events (tenant, at, who, what, subject, old_value, new_value)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)", (tenant, at, who, what, subject, old, new))


class EventRecords:
    """The admin events' part of ``TransferStore``."""

    _db: Database
    _clock: Any  # an IReactorTime

    def recordEvent(self, tenant: str, who: str, what: str, subject: str = "", old: Optional[str] = None,
                    new: Optional[str] = None) -> Deferred[None]:
        """An event whose change is made elsewhere (a login: the session is the change)."""
        now = self._clock.seconds()
        return self._db.runTransaction(lambda txn: insertEvent(txn, tenant, now, who, what, subject, old, new))

    def events(self, tenant: str, since: Optional[float] = None, until: Optional[float] = None,
               limit: int = 1000) -> Deferred[list[AdminEvent]]:
        """A tenant's newest ``limit`` events from ``since`` until before ``until``, newest first."""
        where: list[str] = ["tenant = ?"]
        params: list[Any] = [tenant]
        for clause, value in (("at >= ?", since), ("at < ?", until)):
            if value is not None:
                where.append(clause)
                params.append(value)
        d = self._db.runQuery(f"SELECT {_COLUMNS} FROM admin_events WHERE {' AND '.join(where)}"
                              " ORDER BY at DESC, id DESC LIMIT ?", (*params, limit))
        return d.addCallback(lambda rows: [AdminEvent(*row) for row in rows])
