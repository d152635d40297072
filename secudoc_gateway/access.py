"""
Who may open a transfer when ``recipient_verification = "email-code"``
(SPEC 8): the codes mailed to recipients, the browser sessions a right
code opens, and the rate limits on both.

Everything lives in the database, so limits and codes hold across
worker processes and nodes.  A code is stored only as an HMAC keyed by
a key derived from the link's token: the database alone cannot try the
million codes offline.  Session secrets have 256 bits and are stored as
plain SHA-256 hashes.  The gateway's own secret, which signs form
tokens, is made once by whichever node starts first and read by every
other.  Every check that decides (a code's tries, a rate
limit) reads and writes under the write lock in one transaction.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any, Optional, Sequence

import attrs
from twisted.internet.defer import Deferred

from secudoc_gateway.crypto import formKey, newGatewaySecret, secretHash
from secudoc_gateway.db import Database

# Answers of ``AccessStore.checkCode``.
RIGHT = "right"
WRONG = "wrong"
EXPIRED = "expired"
EXHAUSTED = "exhausted"


@attrs.frozen
class Limit:
    """At most ``count`` events of ``scope`` in any ``window`` seconds."""

    scope: str
    count: int
    window: float


@attrs.frozen
class AccessLimits:
    """
    How long a code lives, how often it may be tried, and how many codes
    and tries a transfer and a client address get.  A code asked for
    again replaces the old one with fresh tries, so the per-transfer
    limit on tries is what bounds guessing (30 a day: at most about 1 in
    2,400 over a 14-day link), at the price of a stranger being able to
    make the real recipient wait a day.
    """

    codeSeconds: float = 15 * 60
    tries: int = 5
    sessionSeconds: float = 12 * 60 * 60
    codesPerTransfer: tuple[int, float] = (5, 60 * 60)
    codesPerClient: tuple[int, float] = (10, 60 * 60)
    triesPerTransfer: tuple[int, float] = (30, 24 * 60 * 60)
    triesPerClient: tuple[int, float] = (30, 60 * 60)
    # The portal's login links (SPEC 9: "rate limits as for verification
    # codes"): per address asked for, as codes per transfer, and per client.
    loginsPerAddress: tuple[int, float] = (5, 60 * 60)
    loginsPerClient: tuple[int, float] = (10, 60 * 60)

    @property
    def horizon(self) -> float:
        """How long a counted event can matter: older ones are deleted."""
        return max(window for _, window in (self.codesPerTransfer, self.codesPerClient, self.triesPerTransfer,
                                            self.triesPerClient, self.loginsPerAddress, self.loginsPerClient))

    def forCodes(self, transferId: str, client: str) -> list[Limit]:
        return [Limit(f"code:transfer:{transferId}", *self.codesPerTransfer),
                Limit(f"code:client:{client}", *self.codesPerClient)]

    def forLogins(self, address: str, client: str) -> list[Limit]:
        """A portal login link asked for ``address`` (known or not: the limit must not tell)."""
        return [Limit(f"login:address:{address}", *self.loginsPerAddress),
                Limit(f"login:client:{client}", *self.loginsPerClient)]

    def forTries(self, transferId: str, client: str) -> list[Limit]:
        return [Limit(f"try:transfer:{transferId}", *self.triesPerTransfer),
                Limit(f"try:client:{client}", *self.triesPerClient)]


def newCode() -> str:
    """Six digits, uniformly drawn."""
    return f"{secrets.randbelow(10**6):06d}"


class AccessStore:
    """Codes, sessions and rate limits on a ``Database``; ``clock`` gives the time."""

    def __init__(self, database: Database, clock: Any, limits: AccessLimits = AccessLimits()) -> None:
        self._db = database
        self._clock = clock
        self.limits = limits
        self._formKey: Optional[bytes] = None

    async def formKey(self) -> bytes:
        """The key that signs form tokens, the same on every node (read once, then kept)."""
        if self._formKey is None:
            candidate = newGatewaySecret()

            def read(txn: Any) -> str:
                txn.execute("INSERT INTO gateway_secrets (name, secret) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
                            ("forms", candidate))
                txn.execute("SELECT secret FROM gateway_secrets WHERE name = ?", ("forms",))
                return str(txn.fetchone()[0])

            self._formKey = formKey(await self._db.runTransaction(read))
        return self._formKey

    def allow(self, limits: Sequence[Limit]) -> Deferred[bool]:
        """
        Count one event against every limit, unless one is used up:
        then nothing is counted and the answer is ``False``.
        """
        now = self._clock.seconds()

        def allow(txn: Any) -> bool:
            txn.execute("DELETE FROM attempts WHERE at <= ?", (now - self.limits.horizon,))
            for limit in limits:
                txn.execute("SELECT COUNT(*) FROM attempts WHERE scope = ? AND at > ?",
                            (limit.scope, now - limit.window))
                if txn.fetchone()[0] >= limit.count:
                    return False
            txn.executemany("INSERT INTO attempts (scope, at) VALUES (?, ?)",
                            [(limit.scope, now) for limit in limits])
            return True

        return self._db.runTransaction(allow)

    def storeCode(self, transferId: str, recipient: str, hashed: str) -> Deferred[None]:
        """The code of ``recipient`` for this transfer, replacing an older one (fresh tries)."""
        expires = self._clock.seconds() + self.limits.codeSeconds
        return self._db.runTransaction(lambda txn: txn.execute(
            "INSERT INTO codes (transfer_id, recipient, code_hash, expires, tries) VALUES (?, ?, ?, ?, 0)"
            " ON CONFLICT (transfer_id, recipient) DO UPDATE SET code_hash = excluded.code_hash,"
            " expires = excluded.expires, tries = 0",
            (transferId, recipient, hashed, expires),
        ))

    def checkCode(self, transferId: str, recipient: str, hashed: str) -> Deferred[str]:
        """
        One try: ``RIGHT`` (the code is used up), ``WRONG``, ``EXPIRED``,
        or ``EXHAUSTED`` once its tries are spent, whatever was typed.
        An address that was never sent a code is simply ``WRONG``.
        """
        now = self._clock.seconds()

        def check(txn: Any) -> str:
            txn.execute("SELECT code_hash, expires, tries FROM codes WHERE transfer_id = ? AND recipient = ?",
                        (transferId, recipient))
            row = txn.fetchone()
            if row is None:
                return WRONG
            stored, expires, tries = row
            if tries >= self.limits.tries:
                return EXHAUSTED
            txn.execute("UPDATE codes SET tries = tries + 1 WHERE transfer_id = ? AND recipient = ?",
                        (transferId, recipient))
            if expires <= now:
                return EXPIRED
            if not hmac.compare_digest(stored, hashed):
                return WRONG
            txn.execute("DELETE FROM codes WHERE transfer_id = ? AND recipient = ?", (transferId, recipient))
            return RIGHT

        return self._db.runTransaction(check)

    def openSession(self, secret: str, transferId: str, recipient: str, until: float) -> Deferred[None]:
        """A right code's session, ending at ``until`` or after ``sessionSeconds``."""
        expires = min(until, self._clock.seconds() + self.limits.sessionSeconds)
        return self._db.runOperation(
            "INSERT INTO sessions (secret_hash, transfer_id, recipient, expires) VALUES (?, ?, ?, ?)",
            (secretHash(secret), transferId, recipient, expires),
        )

    def session(self, secret: str, transferId: str) -> Deferred[Optional[str]]:
        """The verified recipient of a live session for this transfer, else ``None``."""
        d = self._db.runQuery(
            "SELECT recipient FROM sessions WHERE secret_hash = ? AND transfer_id = ? AND expires > ?",
            (secretHash(secret), transferId, self._clock.seconds()),
        )
        return d.addCallback(lambda rows: rows[0][0] if rows else None)
