"""
Settings live (SPEC 3 and 9): the portal's overrides of a tenant file.

Theory of operation: the tenant file is the operator's base; an admin's
value for one of ``PORTAL_KEYS`` is a row of ``tenant_settings`` (the
value as JSON, who, when).  A tenant's effective settings are the file
merged with its rows and read again as the file is
(``config.tenants.withOverrides``), one frozen ``Tenant`` that the
registry hands out: nothing else knows where a value came from.

Every change (a set or a reset) bumps the one-row counter
``tenant_settings_version`` in its own transaction, beside the admin
event that records it.  Each worker and node reads that counter every
``POLL_SECONDS`` and reloads the rows only when it moved, so a change
made anywhere is in force everywhere within ``2 * POLL_SECONDS``; the
process that made it applies it at once.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Optional, Sequence

import attrs
from twisted.application.internet import TimerService
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from secudoc_gateway.config import Tenant
from secudoc_gateway.config.tenants import portalKeyProblem, withOverrides
from secudoc_gateway.db import Database
from secudoc_gateway.transfers.events import SETTING, insertEvent

POLL_SECONDS = 10.0

log = Logger()


@attrs.frozen
class Override:
    """One portal value: ``value`` as the tenant file would hold it (a TOML value), who set it and when."""

    tenant: str
    key: str
    value: Any
    who: str
    at: float


def encode(value: Any) -> str:
    """A value as stored (and as the admin event's old and new value): JSON, keys in order."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


class SettingRefused(Exception):
    """An override the store will not keep: ``problems`` in check-config's words."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = list(problems)


class SettingsStore:
    """``tenant_settings`` on a ``Database``; ``clock`` times each change."""

    def __init__(self, database: Database, clock: Any) -> None:
        self._db = database
        self._clock = clock

    def version(self) -> Deferred[int]:
        """The change counter: cheap to read every few seconds on every node."""
        d = self._db.runQuery("SELECT version FROM tenant_settings_version WHERE id = 1")
        return d.addCallback(lambda rows: int(rows[0][0]) if rows else 0)

    def overrides(self) -> Deferred[tuple[int, tuple[Override, ...]]]:
        """Every tenant's overrides and the counter they go with, read in one snapshot."""

        def read(txn: Any) -> tuple[int, tuple[Override, ...]]:
            txn.execute("SELECT version FROM tenant_settings_version WHERE id = 1")
            row = txn.fetchone()
            txn.execute("SELECT tenant, key, value, who, at FROM tenant_settings ORDER BY tenant, key")
            found = tuple(Override(tenant, key, json.loads(value), who, at)
                          for tenant, key, value, who, at in txn.fetchall())
            return (int(row[0]) if row else 0), found

        return self._db.runReadTransaction(read)

    def change(self, tenant: Tenant, key: str, value: Any, who: str) -> Deferred[bool]:
        """
        Set ``key`` of ``tenant`` (as read from its file) to ``value``
        or, with ``value`` ``None``, back to the file's value.  Refused
        (``SettingRefused``) for an operator's key or a value the file
        could not hold, checked against the overrides in the database
        now, not a node's copy.  The admin event (old and new effective
        value) is written in the same transaction.  Fires with whether
        anything changed.
        """
        why = portalKeyProblem(key)
        if why is not None:
            raise SettingRefused([f"{key}: {why}"])
        now = self._clock.seconds()

        def change(txn: Any) -> bool:
            txn.execute(f"SELECT version FROM tenant_settings_version WHERE id = 1{txn.dialect.forUpdate}")
            txn.execute("SELECT key, value FROM tenant_settings WHERE tenant = ?", (tenant.id,))
            current = {k: json.loads(v) for k, v in txn.fetchall()}
            before, _ = withOverrides(tenant, current)
            wanted = dict(current)
            if value is None:
                wanted.pop(key, None)
            else:
                wanted[key] = value
            after, problems = withOverrides(tenant, wanted)
            if problems:
                raise SettingRefused(problems)
            if value is None and key not in current:
                return False
            if value is not None and key in current and encode(current[key]) == encode(value):
                return False
            if value is None:
                txn.execute("DELETE FROM tenant_settings WHERE tenant = ? AND key = ?", (tenant.id, key))
            else:
                txn.execute("INSERT INTO tenant_settings (tenant, key, value, who, at) VALUES (?, ?, ?, ?, ?)"
                            " ON CONFLICT (tenant, key) DO UPDATE SET value = excluded.value,"
                            " who = excluded.who, at = excluded.at", (tenant.id, key, encode(value), who, now))
            txn.execute("UPDATE tenant_settings_version SET version = version + 1 WHERE id = 1")
            insertEvent(txn, tenant.id, now, who, SETTING, key, shownValue(getattr(before, key)),
                        shownValue(getattr(after, key)))
            return True

        return self._db.runTransaction(change)


def shownValue(value: Any) -> str:
    """An effective value as an admin event and ``tenants show`` print it: as the tenant file would."""
    if hasattr(value, "value"):  # an enum member
        value = value.value
    if isinstance(value, tuple):
        value = list(value)
    return encode(value)


def effective(tenants: Sequence[Tenant], overrides: Sequence[Override]) -> tuple[tuple[Tenant, ...], list[str]]:
    """
    Each file tenant with its overrides.  An override that no longer
    fits its file (the operator changed it since) is left out, with a
    problem saying so; the others still hold.
    """
    byTenant: dict[str, dict[str, Any]] = {}
    for o in overrides:
        byTenant.setdefault(o.tenant, {})[o.key] = o.value
    out: list[Tenant] = []
    problems: list[str] = []
    for tenant in tenants:
        mine = byTenant.get(tenant.id, {})
        merged, found = withOverrides(tenant, mine)
        if found:
            kept: dict[str, Any] = {}
            for key, value in mine.items():
                alone, wrong = withOverrides(tenant, {**kept, key: value})
                if wrong:
                    problems.extend(f"{p} (the portal's value, left out)" for p in wrong)
                else:
                    kept[key] = value
            merged, _ = withOverrides(tenant, kept)
        out.append(merged)
    return tuple(out), problems


class LiveSettings:
    """
    One process's view: the file tenants (replaced on SIGHUP), the
    overrides last read, and ``publish`` called with the effective
    tenants whenever either changes.
    """

    def __init__(self, store: SettingsStore, tenants: Sequence[Tenant],
                 publish: Callable[[tuple[Tenant, ...]], None]) -> None:
        self.store = store
        self._files = tuple(tenants)
        self._publish = publish
        self._version: Optional[int] = None
        self._overrides: tuple[Override, ...] = ()

    def fileTenant(self, tenantId: str) -> Optional[Tenant]:
        return next((t for t in self._files if t.id == tenantId), None)

    def overridesOf(self, tenantId: str) -> dict[str, Override]:
        return {o.key: o for o in self._overrides if o.tenant == tenantId}

    def files(self, tenants: Sequence[Tenant]) -> None:
        """The tenant files were read again (SIGHUP)."""
        self._files = tuple(tenants)
        self._apply()

    def _apply(self) -> None:
        tenants, problems = effective(self._files, self._overrides)
        for problem in problems:
            log.error("setting not applied: {problem}", problem=problem)
        self._publish(tenants)

    async def refresh(self) -> None:
        """Read the overrides again and apply them (at once, after a change made here)."""
        version, overrides = await self.store.overrides()
        self._version = version
        if overrides != self._overrides:
            self._overrides = overrides
            self._apply()

    async def poll(self) -> None:
        """Read the counter; the overrides only when it moved."""
        if self._version is None or await self.store.version() != self._version:
            await self.refresh()

    async def change(self, tenantId: str, key: str, value: Any, who: str) -> bool:
        """Set (``value`` None: reset) a key from the portal; in force here at once."""
        tenant = self.fileTenant(tenantId)
        if tenant is None:
            raise SettingRefused([f"{tenantId}: no such tenant"])
        changed = await self.store.change(tenant, key, value, who)
        await self.refresh()
        return changed


class SettingsPoller(TimerService):
    """Polls the overrides every ``POLL_SECONDS`` while the gateway runs."""

    def __init__(self, live: LiveSettings, clock: Any, interval: float = POLL_SECONDS) -> None:
        super().__init__(interval, self._poll)
        self.clock = clock
        self._live = live

    def _poll(self) -> Deferred[None]:
        from twisted.internet.defer import ensureDeferred

        d = ensureDeferred(self._live.poll())
        d.addErrback(lambda f: log.failure("reading the portal's settings failed; tried again", f))
        return d
