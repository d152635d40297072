"""
One attachment on its way into storage: decode, hash, encrypt, append.

Apart from the extractor because it is the only code that touches the
plain bytes of a file: the transfer decoding, the SHA-256 the download
page shows, and the encryption under the file's own key all happen in
one pass over each chunk, so no attachment is ever whole in memory.
With scanning on, the same plain bytes go to clamd on that pass too
(``FileScan``): never read back for it.

A big part's pass runs in a worker thread (``worker``): once a part has
brought ``INLINE_BYTES``, its raw bytes gather into steps of
``STEP_BYTES`` and each step is decoded, hashed and sealed in the pool
while the reactor goes on receiving and parsing the next (hashlib and
OpenSSL let go of the GIL on big buffers).  One step at a time per part,
in order; each step takes its place in the object when it is made (an
``exclusive`` turn, so the next file's bytes wait behind it) and its
sealed bytes are appended in the reactor thread.  A step holds three
times its raw size of the memory budget while it is out (raw, plain and
sealed bytes); when the budget has none to spare the step runs inline,
as small parts always do (a thread hop costs more than 64 KiB of work).
The Deferred ``feed`` returns for a step fires once it is written, so
the extractor's count of writes outstanding paces the client as before.
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable, Optional

from twisted.internet.defer import Deferred, fail, succeed
from twisted.python.failure import Failure

from secudoc_gateway.crypto import Encryptor
from secudoc_gateway.mime.decode import AnyDecoder
from secudoc_gateway.scan import FileScan
from secudoc_gateway.spool import MemoryBudget
from secudoc_gateway.storage.objects import TransferObject

INLINE_BYTES = 512 * 1024
"""Raw bytes of a part worked inline before its steps go to the worker thread."""
STEP_BYTES = 1024 * 1024
"""Raw bytes of one step in the worker thread (anchors.md: 1 MiB steps reach the ceiling)."""

Worker = Callable[..., Deferred]
"""Runs ``f(*args)`` in a thread; fires with its result in the reactor thread."""


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
                 exclusive: bool = False, scan: Optional[FileScan] = None,
                 worker: Optional[Worker] = None, budget: Optional[MemoryBudget] = None) -> None:
        self._target = target
        self._worker = worker if budget is not None else None
        self._budget = budget
        self._raw = 0  # raw bytes fed
        self._gathered: list[bytes] = []  # raw bytes of the next step
        self._gatheredSize = 0
        self._steps: Deferred = succeed(None)  # the steps' work, in order
        self._stepsOut = 0
        self._failure: Optional[Failure] = None
        self.scan = scan
        self._exclusive = exclusive  # fed from inside the target's exclusive work
        self._decoder = decoder
        self._hash = hashlib.sha256()
        self._encryptor = Encryptor(fileKey)
        self.size = 0
        self.offset: Optional[int] = None
        self.length = 0

    def feed(self, raw: bytes) -> Optional[Deferred]:
        if self._worker is None or (not self._gathered and self._raw + len(raw) < INLINE_BYTES):
            self._raw += len(raw)
            return self._plain(self._decoder.feed(raw))
        self._gathered.append(raw)
        self._gatheredSize += len(raw)
        if self._gatheredSize < STEP_BYTES:
            return None
        return self._step()

    def _step(self) -> Optional[Deferred]:
        """
        The gathered bytes as one step: in the worker when the budget
        allows (or steps are out already: order first; the extractor's
        limit on writes outstanding bounds them), else inline.
        """
        raw = b"".join(self._gathered)
        self._gathered, self._gatheredSize = [], 0
        self._raw += len(raw)
        assert self._worker is not None and self._budget is not None
        worker, budget = self._worker, self._budget
        reserved = 3 * len(raw)  # the raw step, its plain and its sealed bytes
        if not budget.reserve(reserved):
            if not self._stepsOut:
                return self._plain(self._decoder.feed(raw))
            reserved = 0
        self._stepsOut += 1
        sealed: Deferred = Deferred()  # the step's (plain, sealed), once the worker did it

        def work(_: Any) -> Deferred:
            return worker(self._seal, raw)

        def settled(result: Any) -> None:
            self._stepsOut -= 1
            if reserved:
                budget.release(reserved)
            if isinstance(result, Failure):
                if self._failure is None:
                    self._failure = result
                sealed.errback(result)
            else:
                sealed.callback(result)

        self._steps.addCallback(work).addBoth(settled)
        done: Deferred = Deferred()

        def append(result: Any) -> None:
            if isinstance(result, Failure):
                done.errback(result)
            else:
                self._written(*result).chainDeferred(done)

        if self._exclusive:
            sealed.addBoth(append)  # inside the object's exclusive work already: its turn
        else:
            # The step's place in the object is taken now: the next file's bytes wait behind it.
            self._target.exclusive(lambda: sealed.addBoth(append))
        return done

    def _seal(self, raw: bytes) -> tuple[bytes, bytes]:
        """One step's pass (in the worker thread): decode, hash, seal."""
        if self._failure is not None:
            raise self._failure.value
        plain = self._decoder.feed(raw)
        self._hash.update(plain)
        return plain, self._encryptor.feed(plain)

    def _written(self, plain: bytes, sealed: bytes) -> Deferred:
        """A step's bytes, done in the worker, in their turn: to the object and to clamd."""
        return self._deliver(plain, sealed, inTurn=True) or succeed(None)

    def _plain(self, plain: bytes, inTurn: bool = False) -> Optional[Deferred]:
        """Plain bytes worked inline: hashed, sealed, delivered."""
        if not plain:
            return None
        self._hash.update(plain)
        return self._deliver(plain, self._encryptor.feed(plain), inTurn)

    def _deliver(self, plain: bytes, sealed: bytes, inTurn: bool = False) -> Optional[Deferred]:
        """
        The sealed bytes to the object (``inTurn``: it is this file's turn
        already), the plain ones to clamd; the Deferred of whatever waits.
        """
        self.size += len(plain)
        written = (self.append(sealed) if inTurn else self._inTurn(sealed)) if sealed else None
        scanned = self.scan.feed(plain) if self.scan is not None and plain else None
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
        if self._gathered:
            self._step()
        if not self._stepsOut:
            return self._finishNow()
        # The last bytes take their place in the object now, behind the
        # steps out, and go in once those are done (failed if one did).
        last: Deferred = Deferred()
        stepsDone: Deferred = Deferred()
        self._steps.addCallback(lambda _: stepsDone.callback(None))

        def final(_: Any) -> None:
            self._finishNow(inTurn=True).chainDeferred(last)

        if self._exclusive:
            stepsDone.addCallback(final)
        else:
            self._target.exclusive(lambda: stepsDone.addCallback(final))
        return last

    def _finishNow(self, inTurn: bool = False) -> Deferred:
        """The decoder's and the encryptor's last bytes; ``inTurn``: it is this file's turn in the object now."""
        if self._failure is not None:
            return fail(self._failure)
        self._plain(self._decoder.close(), inTurn)
        if self.scan is not None:
            self.scan.finish()
        sealed = self._encryptor.finish()
        return self.append(sealed) if inTurn else self._inTurn(sealed)

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()
