"""
The S3 object store (SPEC 7): any S3-compatible API (AWS, MinIO, Ceph).

``S3Writer`` (``s3upload``) takes an object up, as one PUT or a
multipart upload paced by the memory budget; ``S3Producer``
(``s3download``) streams a range of one down to a consumer, paced by
the consumer; ``S3Client`` (``s3client``) signs and sends each request.
The store ties them to one bucket and does what spans objects: size,
delete, the health check, and clearing up.

Multipart uploads older than the longest possible transaction are
aborted (``removeLeftovers``, which the purge runs at start and every
hour): a crashed gateway leaves them behind, and S3 bills their parts
until they go.
"""

from __future__ import annotations

import datetime
from typing import Any, Optional
from xml.etree import ElementTree

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.interfaces import IConsumer
from twisted.logger import Logger
from zope.interface import implementer

from secudoc_gateway.interfaces import IObjectStore
from secudoc_gateway.spool import MemoryBudget
from secudoc_gateway.storage.s3client import S3Client, S3Settings, xmlAll, xmlText
from secudoc_gateway.storage.s3download import S3Producer
from secudoc_gateway.storage.s3upload import S3Writer

@implementer(IObjectStore)
class S3Store:
    """Objects in one bucket of an S3-compatible API; see the module docstring."""

    log = Logger()

    def __init__(self, settings: S3Settings, reactor: Any, budget: MemoryBudget, agent: Any = None) -> None:
        self.client = S3Client(settings, reactor, agent)
        self._reactor = reactor
        self._budget = budget

    def writer(self, key: str) -> S3Writer:
        return S3Writer(self.client, key, self._budget)

    def produce(self, key: str, consumer: IConsumer, offset: int = 0,
                length: Optional[int] = None) -> Deferred[None]:
        if offset < 0 or (length is not None and length < 0):
            raise ValueError("offset and length must not be negative")
        producer = S3Producer(self.client, key, consumer, offset, length)
        producer.start()
        return producer.deferred

    def size(self, key: str) -> Deferred[int]:
        async def size() -> int:
            response, _ = await self.client.call("HEAD", key)
            return int(response.headers.getRawHeaders(b"content-length", [b"0"])[0])

        return ensureDeferred(size())

    def delete(self, key: str) -> Deferred[None]:
        return ensureDeferred(self.client.call("DELETE", key, expect=(204, 200, 404))).addCallback(lambda _: None)

    def check(self) -> Deferred[None]:
        """HEAD of the bucket: it answers and our key may use it (for /healthz)."""
        return ensureDeferred(self.client.call("HEAD", idempotent=False, timeout=10)).addCallback(lambda _: None)

    def removeLeftovers(self, olderThan: float, now: float) -> Deferred[int]:
        """The multipart uploads started more than ``olderThan`` seconds before ``now``, aborted."""
        return ensureDeferred(self._abortStale(now - olderThan))

    async def _abortStale(self, before: float) -> int:
        cutoff = datetime.datetime.fromtimestamp(before, datetime.timezone.utc)
        aborted = 0
        markers: list[tuple[str, str]] = []
        while True:
            query = [("uploads", ""), ("prefix", self.client.settings.prefix), *markers]
            _, body = await self.client.call("GET", query=query)
            root = ElementTree.fromstring(body)
            for upload in xmlAll(root, "Upload"):
                initiated = datetime.datetime.fromisoformat(xmlText(upload, "Initiated").replace("Z", "+00:00"))
                if initiated.tzinfo is None:
                    initiated = initiated.replace(tzinfo=datetime.timezone.utc)
                if initiated > cutoff:
                    continue
                fullKey = xmlText(upload, "Key")
                key = fullKey[len(self.client.settings.prefix):]
                await self.client.call("DELETE", key, query=[("uploadId", xmlText(upload, "UploadId"))],
                                       expect=(204, 200, 404))
                aborted += 1
            if xmlText(root, "IsTruncated") != "true":
                break
            markers = [("key-marker", xmlText(root, "NextKeyMarker")),
                       ("upload-id-marker", xmlText(root, "NextUploadIdMarker"))]
        if aborted:
            self.log.info("aborted {count} multipart upload(s) left by an earlier run", count=aborted)
        return aborted

    def close(self) -> Deferred[None]:
        return ensureDeferred(self.client.close())
