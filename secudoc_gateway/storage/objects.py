"""
One object per transfer (SPEC 7): a message's files appended one after
another to a single object, in message order, as the message streams in.

Theory of operation
-------------------

``TransferObject`` hands its files' bytes to one ``IObjectWriter`` in
the order the files come in the message.  MIME is sequential, so a leaf
attachment's bytes simply go to the end of the object as they are
sealed; the file records where it started (``offset``) and how many
bytes it wrote (``length``), which the database keeps so a download
reads that range.

The one exception is an attached message: it is stored byte-exact from
the spool once its end is known, which takes several reactor turns
while the parser may already report the next attachment from the same
chunk.  Such work runs ``exclusive``: steps queued after it wait until
it is done (the client is paused meanwhile, so the queue holds at most
what one received chunk yields).

Nothing is visible under the key before ``finish``; ``discard`` removes
whatever was written, finished or not.  Bytes of a candidate that
turned out to be shown inline (``cid:``) stay in the object unreferenced:
sealed under their own key, they cost a little space and reveal nothing.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, Optional

from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.python.failure import Failure

from secudoc_gateway.errors import StorageError
from secudoc_gateway.interfaces import IObjectStore, IObjectWriter


def objectKey(transferId: str) -> str:
    """
    The object of a transfer.  Fanned out by the id's first characters:
    a folder (fs) or key prefix (s3) per transfer would cost a creation.
    """
    return f"{transferId[:2]}/{transferId}"


class TransferObject:
    """The files of one transfer going into its one object; see the module docstring."""

    def __init__(self, store: IObjectStore, key: str) -> None:
        self.key = key
        self._store = store
        self._writer: Optional[IObjectWriter] = None
        self._queue: deque[Callable[[], Any]] = deque()
        self._blocked = False
        self._settled: Optional[Deferred] = None
        self._discarded = False
        self.size = 0

    def run(self, step: Callable[[], Any]) -> Deferred:
        """
        Run ``step`` now when nothing waits before it, else once the
        exclusive work before it is done; fires with its result.
        """
        if not (self._blocked or self._queue):
            return maybeDeferred(step)
        done: Deferred = Deferred()
        self._queue.append(lambda: maybeDeferred(step).chainDeferred(done))
        return done

    def exclusive(self, work: Callable[[], Deferred]) -> Deferred:
        """
        Run ``work`` in turn; steps queued meanwhile wait until the
        Deferred it returns has fired.  Fires with its result.
        """

        def release(result: Any) -> Any:
            self._blocked = False
            self._drain()
            return result

        def step() -> Deferred:
            self._blocked = True
            return maybeDeferred(work).addBoth(release)

        return self.run(step)

    def _drain(self) -> None:
        while self._queue and not self._blocked:
            self._queue.popleft()()

    def append(self, data: bytes) -> Deferred[None]:
        """
        Write ``data`` at the end of the object now (only from a step
        that runs, never queued); fires when the writer wants more.
        """
        self.size += len(data)
        return self._open().write(data)

    def _open(self) -> IObjectWriter:
        if self._discarded:
            raise StorageError(f"object {self.key!r} was discarded")
        if self._writer is None:
            self._writer = self._store.writer(self.key)
        return self._writer

    def finish(self) -> Deferred[int]:
        """Make the object visible under its key; fires with its size."""
        finished = self._open().finish()
        settled: Deferred[bool] = Deferred()
        self._settled = settled

        def settle(result: Any) -> Any:
            settled.callback(not isinstance(result, Failure))
            return result

        return finished.addBoth(settle)

    def discard(self) -> Deferred[None]:
        """Remove everything written: abort the writer, or delete the finished object."""
        writer, self._writer = self._writer, None
        self._discarded = True
        if writer is None:
            return succeed(None)
        if self._settled is None:
            return writer.abort()
        store, key = self._store, self.key
        # A finish that failed left nothing under the key (the writer saw to that).
        return self._settled.addCallback(lambda finished: store.delete(key) if finished else None)
