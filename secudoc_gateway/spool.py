"""
The spool: where one message's bytes wait between ingress and relay.

A small message stays in memory; past ``memoryLimit`` bytes, or when
the process-wide ``MemoryBudget`` is used up, the spool moves to an
anonymous temporary file.  Creating files is the dominant cost of a
small message on these machines (anchors.md), and the budget keeps two
thousand connections from holding gigabytes between them.
"""

from __future__ import annotations

import os
import tempfile
from collections import deque
from typing import BinaryIO, Callable, Iterator, Optional

READ_SIZE = 65536


class MemoryBudget:
    """
    Bytes of message data all spools together may hold in memory.  A
    spool past it moves to disk; a buffer that cannot (an object store's
    part) waits for bytes to be released (``reserveOrWait``).
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._waiting: deque[tuple[int, Callable[[], None]]] = deque()

    def reserveOrWait(self, n: int, granted: Callable[[], None]) -> bool:
        """
        Reserve ``n`` bytes now (``True``), or queue the request and call
        ``granted`` once they are reserved (``False``).  A request larger
        than the whole budget is granted when nothing else is held.
        """
        if not self._waiting and self.reserve(n):
            return True
        self._waiting.append((n, granted))
        return False

    def reserve(self, n: int) -> bool:
        """Reserve ``n`` bytes if they are free and nobody waits for them first."""
        if self._waiting or self.used + n > self.limit:
            return False
        self.used += n
        return True

    def release(self, n: int) -> None:
        self.used -= n
        while self._waiting:
            wanted, granted = self._waiting[0]
            if self.used and self.used + wanted > self.limit:
                break
            self._waiting.popleft()
            self.used += wanted
            granted()


class Spool:
    """Append-only store of one message, readable by byte range."""

    def __init__(
        self,
        budget: MemoryBudget,
        memoryLimit: int = 1 << 20,
        tempdir: Optional[str] = None,
    ) -> None:
        self._budget = budget
        self._memoryLimit = memoryLimit
        self._tempdir = tempdir
        self._memory: Optional[bytearray] = bytearray()
        self._file: Optional[BinaryIO] = None
        self._reserved = 0
        self._hole = 0
        self.size = 0

    @property
    def onDisk(self) -> bool:
        return self._file is not None

    def write(self, data: bytes) -> None:
        if self._memory is not None:
            wanted = len(data)
            if self.size + wanted <= self._memoryLimit and self._budget.reserve(wanted):
                self._reserved += wanted
                self._memory += data
                self.size += wanted
                return
            self._moveToDisk()
        assert self._file is not None
        if not data:
            return
        if self._hole:
            self._file.seek(self._hole, os.SEEK_CUR)
            self._hole = 0
        self._file.write(data)
        self.size += len(data)

    def skip(self, n: int) -> None:
        """
        Leave ``n`` bytes out (a hole on disk): for ranges nobody will
        read.  In memory the spool has no holes, so it writes zeros there.
        On disk the next write seeks past the hole: a big attachment is
        skipped a chunk at a time, and a seek each flushed and cost a
        system call.
        """
        if self._file is None:
            self.write(bytes(n))
            return
        self._hole += n
        self.size += n

    def _moveToDisk(self) -> None:
        self._file = tempfile.TemporaryFile(prefix="secudoc-spool-", dir=self._tempdir)
        if self._memory:
            self._file.write(self._memory)
        self._memory = None
        self._budget.release(self._reserved)
        self._reserved = 0

    def read(self, start: int = 0, end: Optional[int] = None, size: int = READ_SIZE) -> Iterator[bytes]:
        """
        The bytes ``[start:end)`` in pieces of at most ``size`` bytes.
        The spool may grow (or move to disk) between pieces: a reader
        that waits on the store holds no view of the memory buffer, so
        the writes meanwhile can append to it.
        """
        end = self.size if end is None else min(end, self.size)
        at = start
        while at < end:
            piece = self._piece(at, min(size, end - at))
            at += len(piece)
            yield piece

    def _piece(self, at: int, size: int) -> bytes:
        if self._memory is not None:
            with memoryview(self._memory) as view:
                return view[at : at + size].tobytes()
        assert self._file is not None
        self._file.flush()
        piece = os.pread(self._file.fileno(), size, at)
        if not piece:
            raise IOError(f"spool truncated at byte {at} of {self.size}")
        return piece

    def close(self) -> None:
        if self._memory is not None:
            self._budget.release(self._reserved)
            self._reserved = 0
            self._memory = None
        if self._file is not None:
            self._file.close()
            self._file = None
