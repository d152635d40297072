"""
One byte range of an S3 object streamed to a consumer (``S3Producer``,
for ``S3Store.produce``).

A ranged GET whose body is handed to the consumer as it arrives; the
consumer's pause pauses the HTTP response's transport, so a slow
downloader stops the S3 read and nothing is buffered whole.  A
connection lost midway is resumed from the byte reached.
"""

from __future__ import annotations

from typing import Any, Optional

import treq
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.interfaces import IConsumer, IPushProducer
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.http import PotentialDataLoss
from zope.interface import implementer

from secudoc_gateway.errors import ProducerStopped, StorageError
from secudoc_gateway.storage.s3client import ATTEMPTS, S3Client, failure


class _Body(Protocol):
    """Receives a GET's body for ``S3Producer``."""

    def __init__(self, producer: "S3Producer") -> None:
        self._producer = producer
        self.done: Deferred = Deferred()

    def connectionMade(self) -> None:
        self._producer._body(self.transport)

    def dataReceived(self, data: bytes) -> None:
        self._producer._received(data)

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        if reason.check(ResponseDone, PotentialDataLoss):
            self.done.callback(None)
        else:
            self.done.errback(reason)


@implementer(IPushProducer)
class S3Producer:
    """Streams a byte range of an object into a consumer, the consumer's pauses reaching the socket."""

    def __init__(self, client: S3Client, key: str, consumer: IConsumer, offset: int,
                 length: Optional[int]) -> None:
        self._client = client
        self._key = key
        self._consumer = consumer
        self._offset = offset
        self._length = length
        self._sent = 0
        self._transport: Any = None
        self._paused = False
        self._stopped = False
        self._refused: Optional[Failure] = None  # the consumer raised (a file that fails to decrypt)
        self.deferred: Deferred[None] = Deferred()

    def start(self) -> None:
        self._consumer.registerProducer(self, True)
        ensureDeferred(self._run()).addCallbacks(self._ended, self._failed)

    def _range(self) -> Optional[str]:
        start = self._offset + self._sent
        if self._length is None:
            return f"bytes={start}-" if start else None
        return f"bytes={start}-{self._offset + self._length - 1}"

    def _remaining(self) -> Optional[int]:
        return None if self._length is None else self._length - self._sent

    async def _run(self) -> None:
        losses = 0
        while self._remaining() != 0 and not self._stopped:
            wanted = self._range()
            response = await self._client.request("GET", self._key, headers={"Range": wanted} if wanted else {},
                                                  stream=True)
            if response.code not in (200, 206):
                raise failure("GET", self._key, response.code, await treq.content(response))
            body = _Body(self)
            before = self._sent
            self._transport = None
            response.deliverBody(body)
            try:
                await body.done
            except Exception:
                if self._refused is None:
                    losses += 1
                    if self._stopped or losses >= ATTEMPTS:
                        raise
                    continue
            if self._refused is not None:
                self._refused.raiseException()
            if self._length is None:
                return
            if self._sent == before:
                raise StorageError(f"object {self._key!r} ends {self._remaining()} bytes short of the range")

    def _received(self, data: bytes) -> None:
        if self._stopped:
            return
        remaining = self._remaining()
        if remaining is not None and len(data) > remaining:
            data = data[:remaining]  # a server that ignored the range
        self._sent += len(data)
        try:
            self._consumer.write(data)
        except Exception:
            self._refused = Failure()
            self._transport.stopProducing()

    def _ended(self, _: Any) -> None:
        if not self._stopped:
            self._stopped = True
            self._consumer.unregisterProducer()
            self.deferred.callback(None)

    def _failed(self, failure: Failure) -> None:
        if not self._stopped:
            self._stopped = True
            self._consumer.unregisterProducer()
            self.deferred.errback(failure)

    def _body(self, transport: Any) -> None:
        self._transport = transport
        if self._stopped:
            transport.stopProducing()
        elif self._paused:
            transport.pauseProducing()

    def pauseProducing(self) -> None:
        self._paused = True
        if self._transport is not None:
            self._transport.pauseProducing()

    def resumeProducing(self) -> None:
        self._paused = False
        if self._transport is not None:
            self._transport.resumeProducing()

    def stopProducing(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self._transport is not None:
            self._transport.stopProducing()
        self.deferred.errback(ProducerStopped("the consumer stopped the transfer"))
