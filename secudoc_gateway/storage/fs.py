"""
The embedded object store: one file per object under a folder.

An object is written to a temporary name (``.tmp-<random>``) in the
folder it will live in, flushed, fsynced and renamed into place, so a
half-written object is never visible under its key and a crash leaves
only temporary files (which no key can name: every key segment starts
with a letter or digit).  ``rename`` within one folder is atomic on
POSIX file systems.  ``removeLeftovers`` deletes those once they are
older than any transaction can be (at start and by every purge).

Reads are a streaming ``IPushProducer`` that reads one chunk per reactor
turn (``callLater(0)``): a slow download pauses the reads instead of
buffering the file, and a big file never holds the reactor for long.
Writes are plain blocking writes on the reactor thread: local disk is
the fast case, and ``IObjectWriter.write`` returning a fired Deferred
keeps the door open for a backend that lags.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
from typing import IO, Any, Callable, Optional

from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.internet.interfaces import IConsumer, IDelayedCall, IPushProducer, IReactorTime
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from zope.interface import implementer

from secudoc_gateway.errors import ObjectNotFound, ProducerStopped, StorageError
from secudoc_gateway.interfaces import IObjectStore, IObjectWriter

CHUNK_SIZE = 64 * 1024
BUFFER_SIZE = 1024 * 1024
"""Bytes an object gathers in memory before it is written to its file."""
MAX_KEY_LENGTH = 1024
TEMPORARY_PREFIX = ".tmp-"

# A segment is a file name: at most 255 bytes (NAME_MAX on common file systems).
_SEGMENT = r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}"
_KEY = re.compile(rf"{_SEGMENT}(?:/{_SEGMENT})*\Z")


def validateKey(key: str) -> str:
    """
    Return ``key`` if it is a safe object key, else raise ``ValueError``.

    Keys are ``/``-separated segments of ``[A-Za-z0-9._-]``, each starting
    with a letter or digit and at most 255 long, with no ``..`` anywhere: a key can name no
    file outside the store and no temporary file inside it.
    """
    if not isinstance(key, str) or len(key) > MAX_KEY_LENGTH:
        raise ValueError(f"invalid object key {key!r}")
    if ".." in key or _KEY.match(key) is None:
        raise ValueError(f"invalid object key {key!r}")
    return key


def _fsyncFolder(folder: str) -> None:
    """Make a rename in ``folder`` durable (the rename lives in the folder's entries)."""
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _openTemporary(folder: str) -> tuple[IO[bytes], str]:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    while True:
        path = os.path.join(folder, TEMPORARY_PREFIX + secrets.token_hex(8))
        try:
            fd = os.open(path, flags, 0o600)
        except FileExistsError:
            continue
        return os.fdopen(fd, "wb"), path


@implementer(IObjectWriter)
class FileWriter:
    """
    One object being written to a temporary file.

    Creating a file and syncing it are the slow parts on these machines
    (anchors.md), so nothing touches the disk until ``BUFFER_SIZE`` bytes
    have gathered or the object is finished, and the disk work runs in
    the thread pool, one step after another per object, while the
    reactor goes on.  A small attachment costs one trip to the pool.
    The Deferreds ``write`` returns fire when the disk took the bytes:
    the extractor pauses the client while too many are outstanding.
    """

    def __init__(self, key: str, path: str, blocking: Callable[..., Deferred], root: str = "") -> None:
        self._key = key
        self._path = path
        self._root = root or os.path.dirname(path)
        self._blocking = blocking
        self._file: Optional[IO[bytes]] = None
        self._temporary: Optional[str] = None
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._size = 0
        self._open = True
        self._error: Optional[StorageError] = None
        self._steps: Deferred = succeed(None)

    def _queue(self, step: Callable[[], Any]) -> Deferred:
        """Run ``step`` in the pool after the steps queued before it."""
        done: Deferred = Deferred()

        def run(_: Any) -> Any:
            if self._error is not None:
                raise self._error
            return self._blocking(step)

        def settle(result: Any) -> None:
            if isinstance(result, Failure):
                if self._error is None:
                    self._error = result.value if isinstance(result.value, StorageError) else \
                        StorageError(f"object {self._key!r}: {result.getErrorMessage()}")
                done.errback(self._error)
            else:
                done.callback(result)

        self._steps.addCallback(run).addBoth(settle)
        return done

    def _writeNow(self, chunk: bytes) -> None:
        try:
            if self._file is None:
                folder = os.path.dirname(self._path)
                try:
                    self._file, self._temporary = _openTemporary(folder)
                except FileNotFoundError:
                    # The folder was emptied and removed meanwhile (a purge).
                    _makeFolders(self._root, folder)
                    self._file, self._temporary = _openTemporary(folder)
            self._file.write(chunk)
        except OSError as e:
            self._discardNow()
            raise StorageError(f"object {self._key!r}: {e}") from e

    def _discardNow(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
            self._file = None
        if self._temporary is not None:
            try:
                os.unlink(self._temporary)
            except FileNotFoundError:
                pass
            self._temporary = None

    def _take(self) -> bytes:
        chunk = b"".join(self._buffer)
        self._buffer = []
        self._buffered = 0
        return chunk

    def write(self, data: bytes) -> Deferred[None]:
        if not self._open:
            return fail(StorageError(f"object {self._key!r}: write after finish or abort"))
        if self._error is not None:
            return fail(self._error)
        self._buffer.append(data)
        self._buffered += len(data)
        self._size += len(data)
        if self._buffered < BUFFER_SIZE:
            return succeed(None)
        chunk = self._take()
        return self._queue(lambda: self._writeNow(chunk))

    def finish(self) -> Deferred[int]:
        """
        Write what is left, fsync, rename into place, fsync the folder:
        the object is durable before the message carrying its link is
        relayed.
        """
        if not self._open:
            return fail(StorageError(f"object {self._key!r}: finish after finish or abort"))
        self._open = False
        chunk = self._take()

        def complete() -> int:
            self._writeNow(chunk)
            file = self._file
            assert file is not None and self._temporary is not None
            try:
                file.flush()
                os.fsync(file.fileno())
                file.close()
                self._file = None
                os.replace(self._temporary, self._path)
                self._temporary = None
                _fsyncFolder(os.path.dirname(self._path))
            except OSError as e:
                self._discardNow()
                raise StorageError(f"object {self._key!r}: {e}") from e
            return self._size

        return self._queue(complete)

    def abort(self) -> Deferred[None]:
        """Discard everything; nothing is ever visible under the key."""
        if not self._open and self._file is None and self._temporary is None:
            return succeed(None)
        self._open = False
        self._buffer = []
        done: Deferred = Deferred()
        self._steps.addBoth(lambda _: self._blocking(self._discardNow)).addBoth(
            lambda result: done.callback(None))
        return done


@implementer(IPushProducer)
class FileProducer:
    """
    Streams an open file into a consumer, one chunk per reactor turn
    while not paused.  ``deferred`` fires when every byte was written,
    fails with ``ProducerStopped`` when the consumer stops it (a download
    cut short), and can be cancelled.
    """

    def __init__(
        self, file: IO[bytes], consumer: IConsumer, reactor: IReactorTime, chunkSize: int,
        length: Optional[int] = None,
    ) -> None:
        self._file = file
        self._remaining = length
        self._consumer = consumer
        self._reactor = reactor
        self._chunkSize = chunkSize
        self._call: Optional[IDelayedCall] = None
        self._paused = False
        self._done = False
        self.deferred: Deferred[None] = Deferred(self._cancel)

    def start(self) -> None:
        try:
            self._consumer.registerProducer(self, True)
        except BaseException:
            self._end()
            raise
        self._schedule()

    def _schedule(self) -> None:
        if self._call is None and not self._paused and not self._done:
            self._call = self._reactor.callLater(0, self._readChunk)

    def _unschedule(self) -> None:
        if self._call is not None:
            self._call.cancel()
            self._call = None

    def _end(self) -> None:
        self._done = True
        self._unschedule()
        self._file.close()

    def _readChunk(self) -> None:
        self._call = None
        if self._paused or self._done:
            return
        size = self._chunkSize if self._remaining is None else min(self._chunkSize, self._remaining)
        try:
            data = self._file.read(size) if size else b""
        except OSError as e:
            self._end()
            self._consumer.unregisterProducer()
            self.deferred.errback(StorageError(f"read failed: {e}"))
            return
        if not data:
            self._end()
            self._consumer.unregisterProducer()
            if self._remaining:
                self.deferred.errback(StorageError(f"object ends {self._remaining} bytes short of the range"))
            else:
                self.deferred.callback(None)
            return
        if self._remaining is not None:
            self._remaining -= len(data)
        try:
            # May call pauseProducing or stopProducing before it returns.
            self._consumer.write(data)
        except BaseException:
            failure = Failure()
            if not self._done:
                self._end()
                self.deferred.errback(failure)
            return
        self._schedule()

    def pauseProducing(self) -> None:
        self._paused = True
        self._unschedule()

    def resumeProducing(self) -> None:
        self._paused = False
        self._schedule()

    def stopProducing(self) -> None:
        if self._done:
            return
        self._end()
        self.deferred.errback(ProducerStopped("the consumer stopped the transfer"))

    def _cancel(self, deferred: Deferred[None]) -> None:
        if not self._done:
            self._end()
            self._consumer.unregisterProducer()


def _makeFolders(root: str, folder: str) -> None:
    """
    ``folder`` and its parents below ``root``, but never ``root`` itself:
    a store folder that is gone (an unmounted share) fails the write.
    """
    if not os.path.isdir(root):
        raise FileNotFoundError(errno.ENOENT, "the object folder is gone", root)
    os.makedirs(folder, exist_ok=True)


@implementer(IObjectStore)
class FilesystemStore:
    """Objects as files under ``path``; see the module docstring."""

    def __init__(self, path: str, reactor: Any = None, chunkSize: int = CHUNK_SIZE) -> None:
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self._root = os.path.abspath(path)
        self._reactor = reactor
        self._chunkSize = chunkSize
        try:
            os.makedirs(self._root, exist_ok=True)
        except OSError as e:
            raise StorageError(f"object folder {self._root}: {e}") from e

    def _path(self, key: str) -> str:
        return os.path.join(self._root, *validateKey(key).split("/"))

    def _blocking(self, f: Callable[[], Any]) -> Deferred:
        """Run a call that waits for the disk in the reactor's thread pool (inline without one)."""
        pool = self._reactor.getThreadPool() if hasattr(self._reactor, "getThreadPool") else None
        if pool is None:
            return maybeDeferred(f)
        return deferToThreadPool(self._reactor, pool, f)

    def writer(self, key: str) -> FileWriter:
        """
        Start writing ``key``.  Nothing touches the disk until the first
        bytes do (its folder is made then, in the thread pool): a message
        that ends up passed costs no file system work.
        """
        return FileWriter(key, self._path(key), self._blocking, self._root)

    def produce(self, key: str, consumer: IConsumer, offset: int = 0,
                length: Optional[int] = None) -> Deferred[None]:
        if offset < 0 or (length is not None and length < 0):
            raise ValueError("offset and length must not be negative")
        path = self._path(key)
        try:
            file = open(path, "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return fail(ObjectNotFound(key))
        except OSError as e:
            return fail(StorageError(f"object {key!r}: {e}"))
        try:
            if offset:
                file.seek(offset)
        except OSError as e:
            file.close()
            return fail(StorageError(f"object {key!r}: {e}"))
        producer = FileProducer(file, consumer, self._reactor, self._chunkSize, length)
        producer.start()
        return producer.deferred

    def size(self, key: str) -> Deferred[int]:
        path = self._path(key)
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            return fail(ObjectNotFound(key))
        except OSError as e:
            return fail(StorageError(f"object {key!r}: {e}"))
        if not os.path.isfile(path):
            return fail(ObjectNotFound(key))
        return succeed(st.st_size)

    def delete(self, key: str) -> Deferred[None]:
        """Remove ``key`` and any folders it leaves empty (purge removes whole transfers)."""
        path = self._path(key)
        try:
            os.unlink(path)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return succeed(None)
        except OSError as e:
            return fail(StorageError(f"object {key!r}: {e}"))
        folder = os.path.dirname(path)
        while folder != self._root:
            try:
                os.rmdir(folder)
            except OSError as e:
                if e.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT):
                    return fail(StorageError(f"folder {folder}: {e}"))
                break
            folder = os.path.dirname(folder)
        return succeed(None)

    def removeLeftovers(self, olderThan: float, now: float) -> Deferred[int]:
        """
        Delete temporary files last written more than ``olderThan``
        seconds before ``now``: a live writer's file is younger (see
        ``SMTPConfig.longestTransaction``), so these are a crash's.
        """

        def sweep() -> int:
            removed = 0
            for folder, _, names in os.walk(self._root):
                for name in names:
                    if not name.startswith(TEMPORARY_PREFIX):
                        continue
                    path = os.path.join(folder, name)
                    try:
                        if os.stat(path).st_mtime < now - olderThan:
                            os.unlink(path)
                            removed += 1
                    except FileNotFoundError:
                        continue  # finished or removed meanwhile
                    except OSError as e:
                        raise StorageError(f"temporary object {path}: {e}") from e
            return removed

        return self._blocking(sweep)

    def check(self) -> Deferred[None]:
        """
        Fires when a file can be created in the store's folder (for
        /healthz).  The folder itself is never made here: a share that
        is not mounted must show as down, not be replaced by an empty
        folder on the local disk.
        """
        try:
            file, temporary = _openTemporary(self._root)
            try:
                with file:
                    file.write(b"ok")
            finally:
                os.unlink(temporary)
        except OSError as e:
            return fail(StorageError(f"object folder {self._root}: {e}"))
        return succeed(None)

    def close(self) -> Deferred[None]:
        return succeed(None)
