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
times its raw size of the memory budget from the moment it starts to
gather until its sealed bytes are handed to the store (raw, plain and
sealed bytes); when the budget has none to spare the bytes are worked
inline, as small parts always are (a thread hop costs more than 64 KiB
of work), behind any steps still out.
The Deferred ``feed`` returns for a step fires once it is written, so
the extractor's count of writes outstanding paces the client as before.
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable, Optional

from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
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
STEP_RESERVE = 3 * STEP_BYTES
"""Of the memory budget while a step gathers and is worked: its raw, plain and sealed bytes."""

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
        self._reserved = 0  # of the budget, for the step gathering now
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
        if self._failure is not None:
            return fail(self._failure)
        if self._worker is None or (not self._gathered and self._raw + len(raw) < INLINE_BYTES):
            self._raw += len(raw)
            return self._plain(self._decoder.feed(raw))
        assert self._budget is not None
        if not self._gathered:
            # A step's memory (raw, plain and sealed bytes) is reserved
            # before it gathers: twenty sessions gathering a MiB each, out
            # of the budget, were 20 MiB no one counted.
            if not self._budget.reserve(STEP_RESERVE):
                self._raw += len(raw)
                return self._inOrder(raw)
            self._reserved = STEP_RESERVE
        self._gathered.append(raw)
        self._gatheredSize += len(raw)
        if self._gatheredSize < STEP_BYTES:
            return None
        return self._step()

    def _inOrder(self, raw: bytes) -> Optional[Deferred]:
        """
        Raw bytes the budget has no room to gather, worked in the reactor
        thread: now, or behind the steps still out (order first).  Held
        meanwhile, unreserved, but only as many as the extractor lets
        wait for their writes.
        """
        if not self._stepsOut:
            return self._plain(self._decoder.feed(raw))
        return self._dispatch(raw, 0, lambda: maybeDeferred(self._seal, raw))

    def _step(self) -> Optional[Deferred]:
        """The gathered bytes as one step, in the worker, under the budget reserved for them."""
        raw = b"".join(self._gathered)
        self._gathered, self._gatheredSize = [], 0
        self._raw += len(raw)
        reserved, self._reserved = self._reserved, 0
        assert self._worker is not None
        worker = self._worker
        return self._dispatch(raw, reserved, lambda: worker(self._seal, raw))

    def _dispatch(self, raw: bytes, reserved: int, run: Callable[[], Deferred]) -> Deferred:
        """
        ``run`` (the step's pass) once the steps before it are done; its
        bytes appended in the object's turn, taken when the step is made.
        ``reserved`` goes back to the budget once they are handed over.
        """
        assert self._budget is not None
        budget = self._budget
        self._stepsOut += 1
        sealed: Deferred = Deferred()  # the step's (plain, sealed), once it was worked

        def work(_: Any) -> Deferred:
            return run()

        def settled(result: Any) -> None:
            self._stepsOut -= 1
            if isinstance(result, Failure):
                if self._failure is None:
                    self._failure = result
                self.drop()  # the part failed: no step gathers any more
                sealed.errback(result)
            else:
                sealed.callback(result)

        self._steps.addCallback(work).addBoth(settled)
        done: Deferred = Deferred()

        def append(result: Any) -> None:
            if isinstance(result, Failure):
                written: Deferred = fail(result)
            else:
                try:
                    written = self._written(*result)
                except BaseException:
                    written = fail()
            if reserved:  # handed over (or lost): before anyone waiting on ``done`` runs
                budget.release(reserved)
            written.chainDeferred(done)

        if self._exclusive:
            sealed.addBoth(append)  # inside the object's exclusive work already: its turn
        else:
            # The step's place in the object is taken now: the next file's bytes wait behind it.
            self._target.exclusive(lambda: sealed.addBoth(append))
        return done

    def drop(self) -> None:
        """No more bytes come (the file was dropped, or the message is over): a step's reservation goes back."""
        self._worker = None
        self._gathered, self._gatheredSize = [], 0
        if self._reserved:
            assert self._budget is not None
            self._budget.release(self._reserved)
            self._reserved = 0

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
