"""
One attachment on its way into storage: decode, hash, encrypt, append.

Apart from the extractor because it is the only code that touches the
plain bytes of a file: the transfer decoding, the SHA-256 the download
page shows, and the encryption under the file's own key all happen in
one pass over each chunk, so no attachment is ever whole in memory.
With scanning on, the same plain bytes go to clamd on that pass too
(``FileScan``): never read back for it.
"""

from __future__ import annotations

import hashlib
from typing import Optional

from twisted.internet.defer import Deferred

from secudoc_gateway.crypto import Encryptor
from secudoc_gateway.mime.decode import AnyDecoder
from secudoc_gateway.scan import FileScan
from secudoc_gateway.storage.objects import TransferObject


class AttachmentSink:
    """
    One attachment: decode, hash, encrypt, append to the transfer's
    object.  ``feed`` returns the store's Deferred for the bytes it
    wrote (``None`` when nothing was written yet), so the caller can
    pause the client while the store lags.  ``offset`` and ``length``
    say where in the object the file's sealed stream lies.  With a
    ``scan``, the Deferred also waits for clamd to take the bytes.
    """

    def __init__(self, target: TransferObject, fileKey: bytes, decoder: AnyDecoder,
                 exclusive: bool = False, scan: Optional[FileScan] = None) -> None:
        self._target = target
        self.scan = scan
        self._exclusive = exclusive  # fed from inside the target's exclusive work
        self._decoder = decoder
        self._hash = hashlib.sha256()
        self._encryptor = Encryptor(fileKey)
        self.size = 0
        self.offset: Optional[int] = None
        self.length = 0

    def feed(self, raw: bytes) -> Optional[Deferred]:
        return self._plain(self._decoder.feed(raw))

    def _plain(self, plain: bytes) -> Optional[Deferred]:
        if not plain:
            return None
        self._hash.update(plain)
        self.size += len(plain)
        sealed = self._encryptor.feed(plain)
        written = self._inTurn(sealed) if sealed else None
        scanned = self.scan.feed(plain) if self.scan is not None else None
        if scanned is None:
            return written
        if written is None:
            return scanned
        # Both: the store's outcome, once clamd took the bytes too (those never fail).
        return scanned.addCallback(lambda _: written)

    def _inTurn(self, sealed: bytes) -> Deferred:
        if self._exclusive:
            return self.append(sealed)
        return self._target.run(lambda: self.append(sealed))

    def append(self, sealed: bytes) -> Deferred:
        """Put sealed bytes at the end of the object (when it is this file's turn)."""
        if self.offset is None:
            self.offset = self._target.size
        self.length += len(sealed)
        return self._target.append(sealed)

    def finish(self) -> Deferred:
        """Fires when the last bytes were handed to the store."""
        self._plain(self._decoder.close())
        if self.scan is not None:
            self.scan.finish()
        return self._inTurn(self._encryptor.finish())

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()
