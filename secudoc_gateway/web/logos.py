"""
The tenants' logos, held in memory: a page view asks for the logo
every time, and reading a file per request on the reactor thread would
make every page wait for the disk.  A logo is read in the thread pool
on first use and kept with the file's modification time; at most every
``RECHECK`` seconds a request looks (again in the pool) whether the
file changed, so a new logo shows without a restart.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Optional

import attrs
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.threads import deferToThreadPool

from secudoc_gateway.config import LOGO_TYPES

MAX_LOGO = 1 << 20
RECHECK = 30.0


@attrs.frozen
class Logo:
    data: bytes
    contentType: str
    mtime: float
    checked: float


def _read(path: str, known: Optional[Logo], now: float) -> Logo:
    """The logo at ``path``, read only when its modification time is not ``known``'s."""
    mtime = os.stat(path).st_mtime
    if known is not None and known.mtime == mtime:
        return attrs.evolve(known, checked=now)
    with open(path, "rb") as f:
        data = f.read(MAX_LOGO)
    return Logo(data, LOGO_TYPES[os.path.splitext(path)[1].lower()], mtime, now)


class LogoCache:
    """Logos by path; ``get`` answers from memory while a logo is fresh."""

    def __init__(self, reactor: Any, recheck: float = RECHECK) -> None:
        self._reactor = reactor
        self._recheck = recheck
        self._logos: dict[str, Logo] = {}

    def _blocking(self, f: Callable[[], Logo]) -> Deferred[Logo]:
        pool = self._reactor.getThreadPool() if hasattr(self._reactor, "getThreadPool") else None
        if pool is None:
            return maybeDeferred(f)
        return deferToThreadPool(self._reactor, pool, f)

    async def get(self, path: str) -> Logo:
        """The logo at ``path``; raises ``OSError`` when it cannot be read."""
        now = self._reactor.seconds()
        known = self._logos.get(path)
        if known is not None and now - known.checked < self._recheck:
            return known
        logo = await self._blocking(lambda: _read(path, known, now))
        self._logos[path] = logo
        return logo
