"""
One attachment on its way into storage: transfer-decoded, hashed,
encrypted and written as its body streams in, so no attachment is ever
whole in memory.
"""

from __future__ import annotations

import hashlib
from typing import Optional

from twisted.internet.defer import Deferred

from secudoc_gateway.crypto import Encryptor
from secudoc_gateway.interfaces import IObjectStore
from secudoc_gateway.mime.decode import AnyDecoder


def objectKey(transferId: str, slot: int) -> str:
    """Where file ``slot`` of a transfer lives; the slot also keys its encryption."""
    return f"{transferId[:2]}/{transferId}/{slot}"


def slotOf(key: str) -> int:
    return int(key.rsplit("/", 1)[1])


class AttachmentSink:
    """
    ``feed`` returns the store's Deferred for the bytes it wrote (or
    ``None`` when nothing was written yet), so the caller can pause the
    client while the store lags.
    """

    def __init__(self, store: IObjectStore, key: str, fileKey: bytes, decoder: AnyDecoder) -> None:
        self.key = key
        self._writer = store.writer(key)
        self._decoder = decoder
        self._hash = hashlib.sha256()
        self._encryptor = Encryptor(fileKey)
        self.size = 0

    def feed(self, raw: bytes) -> Optional[Deferred]:
        return self._plain(self._decoder.feed(raw))

    def _plain(self, plain: bytes) -> Optional[Deferred]:
        if not plain:
            return None
        self._hash.update(plain)
        self.size += len(plain)
        sealed = self._encryptor.feed(plain)
        return self._writer.write(sealed) if sealed else None

    def finish(self) -> Deferred:
        """Fires when the object is complete under its key."""
        self._plain(self._decoder.close())
        self._writer.write(self._encryptor.finish())
        return self._writer.finish()

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def abort(self) -> Deferred:
        return self._writer.abort()
