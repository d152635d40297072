"""
Transfers sent from the browser (SPEC 9): beside the transfer's own
rows, whether the tenant's relay took its transfer mail, the user's
message for it, and while it did not, the link's token sealed under a
key only the sender's session secret gives (``sealToken``): a retry
from that session can mail the same link, while the database alone
still opens no file.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Optional, Sequence

import attrs
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from twisted.internet.defer import Deferred, succeed

from secudoc_gateway.db import Database
from secudoc_gateway.transfers.records import Transfer, insertTransfer

SENT = "sent"
UNSENT = "unsent"


@attrs.frozen
class BrowserSend:
    """``pending``: the recipients whose mail the relay refused (empty once sent, or from a row before them)."""

    transfer_id: str
    state: str
    message: str
    sealed_token: Optional[str]
    error: str
    pending: tuple[str, ...] = ()


def _pending(text: str) -> tuple[str, ...]:
    return tuple(json.loads(text)) if text else ()


def _sealKey(sessionSecret: str, transferId: str) -> bytes:
    return HKDF(hashes.SHA256(), 32, salt=None, info=b"secudoc unsent link " + transferId.encode("ascii")).derive(
        sessionSecret.encode("ascii"))


def sealToken(sessionSecret: str, transferId: str, token: str, nonce: bytes) -> str:
    """``token`` sealed (AES-256-GCM, the transfer id as associated data) under the session's key."""
    sealed = AESGCM(_sealKey(sessionSecret, transferId)).encrypt(nonce, token.encode("ascii"),
                                                                  transferId.encode("ascii"))
    return base64.urlsafe_b64encode(nonce + sealed).decode("ascii")


def openToken(sessionSecret: str, transferId: str, sealed: str) -> Optional[str]:
    """The token, or ``None`` when this session did not seal it (another session, a forged row)."""
    try:
        raw = base64.urlsafe_b64decode(sealed.encode("ascii"))
        plain = AESGCM(_sealKey(sessionSecret, transferId)).decrypt(raw[:12], raw[12:],
                                                                    transferId.encode("ascii"))
    except Exception:
        return None
    return plain.decode("ascii")


class SendRecords:
    """The browser sends' part of ``TransferStore``."""

    _db: Database
    _clock: Any

    def createBrowserTransfer(self, transfer: Transfer, message: str, sealedToken: str) -> Deferred[None]:
        """The transfer and its send record (unsent until ``markSent``), all or nothing."""
        def create(txn: Any) -> None:
            insertTransfer(txn, transfer)
            txn.execute("INSERT INTO browser_sends (transfer_id, state, message, sealed_token, error)"
                        " VALUES (?, ?, ?, ?, '')", (transfer.id, UNSENT, message, sealedToken))

        return self._db.runTransaction(create)

    def browserSend(self, transferId: str) -> Deferred[Optional[BrowserSend]]:
        d = self._db.runQuery("SELECT transfer_id, state, message, sealed_token, error, pending FROM browser_sends"
                              " WHERE transfer_id = ?", (transferId,))

        def record(rows: list[tuple[Any, ...]]) -> Optional[BrowserSend]:
            if not rows:
                return None
            id, state, message, sealed, error, pending = rows[0]
            return BrowserSend(id, state, message, sealed, error, _pending(pending))

        return d.addCallback(record)

    def unsentOf(self, transferIds: Sequence[str]) -> Deferred[set[str]]:
        """Which of ``transferIds`` are browser sends still unsent (the list marks them)."""
        if not transferIds:
            return succeed(set())
        marks = ", ".join("?" for _ in transferIds)
        d = self._db.runQuery(f"SELECT transfer_id FROM browser_sends WHERE state = ? AND transfer_id IN ({marks})",
                              (UNSENT, *transferIds))
        return d.addCallback(lambda rows: {id for (id,) in rows})

    def markSent(self, transferId: str) -> Deferred[None]:
        """The relay took the mail: the sealed token goes, the link lives only with the recipients."""
        return self._db.runOperation("UPDATE browser_sends SET state = ?, sealed_token = NULL, error = '',"
                                     " pending = '' WHERE transfer_id = ?", (SENT, transferId))

    def markUnsent(self, transferId: str, error: str, pending: Sequence[str]) -> Deferred[None]:
        """The relay refused the mail to ``pending``: a retry sends to them alone."""
        return self._db.runOperation("UPDATE browser_sends SET state = ?, error = ?, pending = ? WHERE transfer_id = ?",
                                     (UNSENT, error[:2000], json.dumps(list(pending), ensure_ascii=False),
                                      transferId))
