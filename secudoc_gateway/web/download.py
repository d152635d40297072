"""
Files out of the store, decrypted on the way: one file whole or a
single byte range (RFC 9110 14: 206, or 416 for a range past the end),
and every file of a transfer as one streamed ZIP.

The plaintext is released frame by frame as it is authenticated.  A
range reads the stream's header, then only the frames that hold the
range, and stops the store's producer after the last of them.  A
failure midway drops the connection, so a client that was told the
Content-Length sees an incomplete file rather than a silently short one.
"""

from __future__ import annotations

import datetime
import re
import urllib.parse
from typing import Any, Callable, Final, Literal, Optional, Union

from twisted.internet.interfaces import IConsumer, IProducer
from twisted.web.server import Request
from zope.interface import implementer

from secudoc_gateway.crypto import HEADER_SIZE, DecryptionError, Decryptor, fileKey, frameOffset
from secudoc_gateway.errors import ProducerStopped, StorageError
from secudoc_gateway.mime.names import safeFilename
from secudoc_gateway.transfers import StoredFile, Transfer
from secudoc_gateway.web.archive import Entry, ZipWriter, archiveNames
from secudoc_gateway.notices.texts import ZONE

UNSATISFIABLE: Final = "unsatisfiable"
_RANGE = re.compile(r"bytes=(\d*)-(\d*)\Z", re.IGNORECASE)  # range units are case-insensitive (RFC 9110 14.1)


def contentDisposition(name: str) -> bytes:
    """RFC 6266: an ASCII ``filename`` fallback and the UTF-8 ``filename*``."""
    safe = safeFilename(name)
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\%' else "_" for c in safe)
    encoded = urllib.parse.quote(safe, safe="")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}".encode("ascii")


def byteRange(header: Optional[str], size: int) -> Union[None, Literal["unsatisfiable"], tuple[int, int]]:
    """
    The ``Range`` header (RFC 9110 14.1.2) of a ``size``-byte file as
    ``(first, last)``, both inclusive; ``UNSATISFIABLE`` when no byte of
    it exists; ``None`` to send the whole file (no header, a header we
    do not parse, or several ranges, which a server may ignore).
    """
    if header is None:
        return None
    match = _RANGE.match(header.strip().replace(" ", ""))
    if match is None:
        return None
    first, last = (n.lstrip("0") or ("0" if n else "") for n in match.groups())
    if not first and not last:
        return None
    # Past 18 digits a number is beyond any file (and Python will not parse thousands).
    if len(first) > 18:
        return UNSATISFIABLE
    if len(last) > 18:
        last = str(size)
    if not first:  # the last N bytes
        suffix = int(last)
        if suffix == 0 or size == 0:
            return UNSATISFIABLE
        return max(size - suffix, 0), size - 1
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None
    if start >= size:
        return UNSATISFIABLE
    return start, min(end, size - 1)


@implementer(IConsumer)
class _Window:
    """
    Bytes of an object from the store into ``take``, at most ``limit``
    of them (``None``: to the end), after which the store's producer is
    stopped.  The producer is registered with the response, so a slow
    client pauses the reads.
    """

    def __init__(self, request: Request, limit: Optional[int], take: Callable[[bytes], None]) -> None:
        self._request = request
        self._left = limit
        self._take = take
        self._producer: Optional[IProducer] = None
        self.full = False

    def registerProducer(self, producer: IProducer, streaming: bool) -> None:
        self._producer = producer
        self._request.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        if self._producer is not None:
            self._producer = None
            self._request.unregisterProducer()

    def write(self, data: bytes) -> None:
        if self._left is not None:
            data = data[: self._left]
            self._left -= len(data)
        self._take(data)
        if self._left == 0 and self._producer is not None:
            self.full = True
            producer = self._producer
            self.unregisterProducer()
            producer.stopProducing()


async def _read(store: Any, request: Request, stored: StoredFile, offset: int, limit: Optional[int],
                take: Callable[[bytes], None]) -> None:
    """
    ``limit`` bytes (``None``: to its end) of a file's sealed stream from
    ``offset`` into ``take``; the stream lies at ``object_offset`` in the
    transfer's one object (SPEC 7).
    """
    if limit is None:
        limit = stored.object_length - offset
    window = _Window(request, limit, take)
    try:
        await store.produce(stored.object_key, window, stored.object_offset + offset, limit)
    except ProducerStopped:
        if not window.full:
            raise  # the client went away


async def checkStored(store: Any, transfer: Transfer, files: Any) -> None:
    """
    Every one of ``files`` is in the object before anything promises
    their bytes: a lost object is a 503, not a download that never
    completes.
    """
    for stored in files:
        if await store.size(stored.object_key) < stored.object_offset + stored.object_length:
            raise StorageError(f"transfer {transfer.id}: object {stored.object_key!r} is shorter than file {stored.n}")


class _Plaintext:
    """Opens ciphertext frames and passes on the plaintext bytes ``[skip, skip + length)``."""

    def __init__(self, decryptor: Decryptor, skip: int, length: int, sink: Callable[[bytes], None]) -> None:
        self._decryptor = decryptor
        self._skip = skip
        self.left = length
        self._sink = sink

    def feed(self, data: bytes) -> None:
        self._emit(self._decryptor.feed(data))

    def finish(self) -> None:
        self._emit(self._decryptor.finish())

    def _emit(self, plain: bytes) -> None:
        if self._skip:
            cut = min(self._skip, len(plain))
            plain = plain[cut:]
            self._skip -= cut
        plain = plain[: self.left]
        if plain:
            self.left -= len(plain)
            self._sink(plain)


async def streamFile(store: Any, request: Request, token: str, transfer: Transfer, stored: StoredFile,
                     first: int, last: int, sink: Callable[[bytes], None]) -> None:
    """
    Bytes ``first`` to ``last`` (inclusive) of a file's plaintext into
    ``sink``; only the frames that hold them are read and opened.
    Raises ``DecryptionError`` for a stored object that fails
    authentication and ``ProducerStopped`` when the client went away.
    """
    decryptor = Decryptor(fileKey(token, transfer.id, stored.key_index))
    plaintext = _Plaintext(decryptor, 0, last - first + 1, sink)
    offset = 0
    limit = None
    if first or last + 1 < stored.size:
        header: list[bytes] = []
        await _read(store, request, stored, 0, HEADER_SIZE, header.append)
        offset, frameStart = decryptor.seek(b"".join(header), first)
        plaintext = _Plaintext(decryptor, first - frameStart, last - first + 1, sink)
        frameSize = decryptor.frameSize
        if last // frameSize < stored.size // frameSize:  # the stream's last frame is not needed
            limit = frameOffset(last // frameSize + 1, frameSize) - offset
    await _read(store, request, stored, offset, limit, plaintext.feed)
    if limit is None:
        plaintext.finish()
    if plaintext.left:
        raise DecryptionError("the stored object ended before the range")


def zipWriter(transfer: Transfer) -> ZipWriter:
    """The archive of every file of ``transfer``, dated when it was sent."""
    names = archiveNames([safeFilename(f.name) for f in transfer.files])
    return ZipWriter([Entry(name, f.size) for name, f in zip(names, transfer.files)],
                     datetime.datetime.fromtimestamp(transfer.created, ZONE))


async def streamZip(store: Any, request: Request, token: str, transfer: Transfer, writer: ZipWriter) -> None:
    """Every file of ``transfer`` through ``writer`` into the response, one after another."""

    def sink(data: bytes) -> None:
        writer.feed(data)
        request.write(data)

    for index, stored in enumerate(transfer.files):
        request.write(writer.begin(index))
        await streamFile(store, request, token, transfer, stored, 0, stored.size - 1, sink)
        request.write(writer.end())
    request.write(writer.finish())
