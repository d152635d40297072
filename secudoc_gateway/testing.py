"""
Helpers for tests and benches: a complete configuration in a temporary
folder (certificate, main file, tenant files) and the real service
started on free ports.
"""

from __future__ import annotations

import os
from typing import Any, Optional

import attrs
from prometheus_client import CollectorRegistry
from twisted.internet import defer
from zope.interface import implementer

from secudoc_gateway import devcert
from secudoc_gateway.interfaces import IObjectStore, IObjectWriter

DEMO_TENANT: dict[str, Any] = {
    "id": "example",
    "domains": ["example.test"],
    "allowed_sources": ["127.0.0.0/8"],
    "relay": "maildir:outbox/example",
    "users": ["*@example.test"],
    "facility_sender": "noreply@example.test",
}


def tomlValue(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(tomlValue(v) for v in value) + "]"
    raise TypeError(f"no TOML for {value!r}")


def tomlTable(values: dict[str, Any]) -> str:
    return "".join(f"{key} = {tomlValue(value)}\n" for key, value in values.items())


def writeConfig(
    folder: str,
    tenants: Optional[list[dict[str, Any]]] = None,
    smtp: Optional[dict[str, Any]] = None,
    web: Optional[dict[str, Any]] = None,
    log: Optional[dict[str, Any]] = None,
) -> str:
    """
    A config in ``folder`` listening on free loopback ports, storing
    under ``folder``; returns the main file's path.  ``tenants`` default
    to the demo tenant relaying into ``folder/outbox/example``.
    """
    os.makedirs(os.path.join(folder, "tenants"), exist_ok=True)
    certificate = os.path.join(folder, "gateway.pem")
    if not os.path.exists(certificate):
        devcert.issue(None, "mailproxy.localhost", ["mailproxy.localhost", "localhost", "127.0.0.1"]).writeTo(certificate)
    sections = {
        "smtp": {"listen": ["tcp:0:interface=127.0.0.1"], "tls_certificate": "gateway.pem", **(smtp or {})},
        "web": {"listen": ["tcp:0:interface=127.0.0.1"], **(web or {})},
        "storage": {"path": "objects"},
        "database": {"url": "sqlite:gateway.sqlite3"},
        "log": log or {},
    }
    path = os.path.join(folder, "gateway.toml")
    with open(path, "w", encoding="utf-8") as f:
        for name, values in sections.items():
            f.write(f"[{name}]\n{tomlTable(values)}\n")
    for tenant in tenants if tenants is not None else [DEMO_TENANT]:
        with open(os.path.join(folder, "tenants", f"{tenant['id']}.toml"), "w", encoding="utf-8") as f:
            f.write(tomlTable(tenant))
    return path


@attrs.define
class RunningGateway:
    service: Any
    smtpPort: int
    webPort: int

    @property
    def webURL(self) -> str:
        return f"http://127.0.0.1:{self.webPort}"

    def stop(self) -> defer.Deferred:
        return defer.maybeDeferred(self.service.stopService)


async def startGateway(configPath: str, reactor: Any = None) -> RunningGateway:
    """The real service from ``configPath``, listening; stop it with ``.stop()``."""
    from secudoc_gateway.config import loadConfig
    from secudoc_gateway.tap import makeService

    if reactor is None:
        from twisted.internet import reactor as _reactor

        reactor = _reactor
    service = makeService(loadConfig(configPath), reactor, CollectorRegistry())
    service.startService()
    smtp = await service.smtpListeners[0].whenListening
    web = await service.webListeners[0].whenListening
    await service.whenReady()
    return RunningGateway(service, smtp.getHost().port, web.getHost().port)


@implementer(IObjectWriter)
class MemoryWriter:
    """A writer of ``MemoryStore``: held writes model a store that lags."""

    def __init__(self, store: "MemoryStore", key: str) -> None:
        self._store = store
        self._key = key
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> defer.Deferred:
        self._parts.append(data)
        if self._store.hold:
            d: defer.Deferred = defer.Deferred()
            self._store.held.append(d)
            return d
        return defer.succeed(None)

    def finish(self) -> defer.Deferred:
        self._store.objects[self._key] = b"".join(self._parts)
        return defer.succeed(len(self._store.objects[self._key]))

    def abort(self) -> defer.Deferred:
        self._parts = []
        return defer.succeed(None)


@implementer(IObjectStore)
class MemoryStore:
    """
    An in-memory ``IObjectStore`` for unit tests of the glue, where a
    real store cannot be made to lag on demand.  With ``hold`` set,
    writes stay unacknowledged in ``held`` until a test fires them.
    """

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.hold = False
        self.held: list[defer.Deferred] = []

    def writer(self, key: str) -> MemoryWriter:
        return MemoryWriter(self, key)

    def produce(self, key: str, consumer: Any, offset: int = 0) -> defer.Deferred:
        consumer.write(self.objects[key][offset:])
        return defer.succeed(None)

    def size(self, key: str) -> defer.Deferred:
        return defer.succeed(len(self.objects[key]))

    def delete(self, key: str) -> defer.Deferred:
        self.objects.pop(key, None)
        return defer.succeed(None)

    def check(self) -> defer.Deferred:
        return defer.succeed(None)

    def removeLeftovers(self, olderThan: float, now: float) -> defer.Deferred:
        return defer.succeed(0)  # an unfinished writer leaves nothing here
