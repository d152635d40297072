"""
Signed requests to an S3-compatible API over treq.

Theory of operation
-------------------

Every request is signed with botocore's ``S3SigV4Auth`` (AWS Signature
Version 4); nothing here computes a signature itself.  The request line
is built once, percent-encoded the way SigV4's canonical request wants
it (the key with ``/`` kept, query names and values with only
``-_.~`` unescaped, pairs sorted), and that very string is both signed
and sent, so the two can never differ.  An object's bytes (a part, a
single PUT) carry their CRC32 (``x-amz-checksum-crc32``), as the AWS
SDKs send by default: S3 checks each part against it and keeps the
object's checksum, and a server then completes the upload from the
parts' checksums without working one out over the whole object.  That
header is signed; the bytes' SHA-256 is not worked out at all
(``x-amz-content-sha256: UNSIGNED-PAYLOAD``, what the AWS SDKs send for
an upload with a checksum over TLS; botocore's ``payload_signing_enabled``
switch): a second hash pass over every part bought nothing the CRC32
and the files' own AES-GCM tags do not give already.  The CRC32 of a
body of more than a few KiB is worked out in the reactor's thread pool,
so a part of several MiB never stalls the reactor.  Other bodies (the
completion's XML) keep their SHA-256 in the signature.

Idempotent requests (a part, a single PUT, GET, HEAD, DELETE, abort)
are retried with exponential backoff on a 5xx answer or a connection
error; the others (create and complete a multipart upload) are tried
once, and the upload is aborted when they fail.  Addressing is
path-style (``endpoint/bucket/key``) or virtual-hosted
(``bucket.endpoint/key``); an https endpoint is verified against the
system trust or the configured CA bundle.
"""

from __future__ import annotations

import base64
import os
import urllib.parse
import zlib
from typing import Any, BinaryIO, Optional, Sequence, Union
from xml.etree import ElementTree

import attrs
import treq
from botocore.auth import S3SigV4Auth
from botocore.config import Config
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from twisted.internet import error as netError
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.web import client as webClient
from twisted.web.http_headers import Headers
from twisted.web.iweb import IResponse

from secudoc_gateway.errors import ObjectNotFound, StorageError

ATTEMPTS = 5
BACKOFF = 0.1
"""Seconds before the first retry; doubled each time (0.1, 0.2, 0.4, 0.8)."""
TIMEOUT = 120.0
"""Seconds a request may take to be answered (a part of several MiB must fit)."""
CLOSE_GRACE = 10.0
"""Seconds shutdown waits for S3 requests in flight (a transfer being discarded)."""
SIGN_INLINE = 4096
"""Bodies up to this size are signed (hashed) on the reactor thread; longer ones in the pool."""
CHECKSUM_HEADER = "x-amz-checksum-crc32"
READ_PIECE = 1024 * 1024
"""Bytes of a part buffer on disk read at a time for its CRC32."""
_UNRESERVED = "-_.~"
_UNSIGNED_PAYLOAD = Config(s3={"payload_signing_enabled": False})
"""botocore's own switch: ``x-amz-content-sha256: UNSIGNED-PAYLOAD``, even over http."""
S3_NAMESPACE = "{http://s3.amazonaws.com/doc/2006-03-01/}"

_CONNECTION_ERRORS = (
    netError.ConnectError, netError.ConnectionLost, netError.ConnectionClosed, netError.TimeoutError,
    netError.DNSLookupError, webClient.ResponseFailed, webClient.ResponseNeverReceived,
    webClient.RequestNotSent, webClient.RequestTransmissionFailed, CancelledError,
)


Body = Union[bytes, "Payload"]


class S3Unavailable(StorageError):
    """The server did not answer, or answered 5xx, after every attempt."""


@attrs.frozen
class S3Settings:
    """Where the bucket is and who we are there (the secret from the environment, never the file)."""

    endpoint: str
    bucket: str
    region: str
    access_key: str
    secret_key: str = attrs.field(repr=False)
    prefix: str = ""
    addressing: str = "path"
    ca_file: str = ""
    part_size: int = 8 * 1024 * 1024


class Payload:
    """
    A request body kept as the chunks it was written in: signed (hashed)
    and sent from them, never joined into one more copy of a part.
    """

    def __init__(self, chunks: Sequence[bytes]) -> None:
        self.chunks = list(chunks)
        self.length = sum(len(c) for c in self.chunks)
        self._crc32: Optional[str] = None

    def crc32(self) -> str:
        """The CRC32 as ``x-amz-checksum-crc32`` wants it (base64, big-endian), worked out once."""
        if self._crc32 is None:
            value = 0
            for chunk in self.chunks:
                value = zlib.crc32(chunk, value)
            self._crc32 = base64.b64encode(value.to_bytes(4, "big")).decode("ascii")
        return self._crc32

    def reader(self) -> Any:
        return _PayloadReader(self)

    def close(self) -> None:
        """The body is stored or dropped (no retry will read it again)."""


class FilePayload(Payload):
    """
    A request body in a temporary file (a part buffer the memory budget
    had no room for): hashed and sent from the file a piece at a time.
    """

    def __init__(self, file: BinaryIO, length: int) -> None:
        super().__init__(())
        file.flush()
        self._file = file
        self.length = length

    def crc32(self) -> str:
        if self._crc32 is None:
            value, at = 0, 0
            while at < self.length:
                piece = os.pread(self._file.fileno(), min(READ_PIECE, self.length - at), at)
                if not piece:
                    raise StorageError(f"part buffer truncated at byte {at} of {self.length}")
                value = zlib.crc32(piece, value)
                at += len(piece)
            self._crc32 = base64.b64encode(value.to_bytes(4, "big")).decode("ascii")
        return self._crc32

    def reader(self) -> Any:
        return _FileReader(self._file.fileno(), self.length)

    def close(self) -> None:
        self._file.close()


class _FileReader:
    """A file-like view of a ``FilePayload`` with its own position, left open by ``FileBodyProducer``."""

    def __init__(self, fd: int, length: int) -> None:
        self._fd = fd
        self._length = length
        self._position = 0

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = 0) -> int:
        target = {0: offset, 1: self._position + offset, 2: self._length + offset}[whence]
        self._position = max(0, min(target, self._length))
        return self._position

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = self._length - self._position
        piece = os.pread(self._fd, min(size, self._length - self._position), self._position)
        self._position += len(piece)
        return piece

    def close(self) -> None:
        """The file stays for a retry; the writer closes it once the part is stored."""


class _PayloadReader:
    """A file-like view of a ``Payload`` for twisted's ``FileBodyProducer``."""

    def __init__(self, payload: Payload) -> None:
        self._chunks = payload.chunks
        self._length = payload.length
        self._position = 0
        self._index = 0  # chunk holding the position
        self._within = 0

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = 0) -> int:
        target = {0: offset, 1: self._position + offset, 2: self._length + offset}[whence]
        self._position = max(0, min(target, self._length))
        self._index, self._within, at = 0, 0, 0
        while self._index < len(self._chunks) and at + len(self._chunks[self._index]) <= self._position:
            at += len(self._chunks[self._index])
            self._index += 1
        self._within = self._position - at
        return self._position

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = self._length - self._position
        out = []
        while size > 0 and self._index < len(self._chunks):
            chunk = self._chunks[self._index]
            piece = chunk[self._within:self._within + size]
            out.append(piece)
            size -= len(piece)
            self._position += len(piece)
            self._within += len(piece)
            if self._within >= len(chunk):
                self._index += 1
                self._within = 0
        return b"".join(out)

    def close(self) -> None:
        """``FileBodyProducer`` closes its file at the end; the chunks stay for a retry."""


def encodeQuery(query: Sequence[tuple[str, str]]) -> str:
    """A query string encoded exactly as SigV4's canonical query string."""
    pairs = sorted((urllib.parse.quote(k, safe=_UNRESERVED), urllib.parse.quote(v, safe=_UNRESERVED))
                   for k, v in query)
    return "&".join(f"{k}={v}" for k, v in pairs)


def errorOf(body: bytes) -> Optional[tuple[str, str]]:
    """``(Code, Message)`` of an S3 ``<Error>`` document, else ``None``."""
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        return None
    if root.tag.removeprefix(S3_NAMESPACE) != "Error":
        return None
    return (root.findtext("Code") or "", root.findtext("Message") or "")


def xmlText(element: ElementTree.Element, name: str) -> str:
    """A child's text, whether or not the document uses S3's namespace."""
    found = element.find(S3_NAMESPACE + name)
    if found is None:
        found = element.find(name)
    return (found.text or "") if found is not None else ""


def xmlAll(element: ElementTree.Element, name: str) -> list[ElementTree.Element]:
    return element.findall(S3_NAMESPACE + name) + element.findall(name)


def _agent(reactor: Any, settings: S3Settings, pool: webClient.HTTPConnectionPool) -> webClient.Agent:
    from secudoc_gateway.tls import loadTrustRoots

    trust = loadTrustRoots(settings.ca_file) if settings.ca_file else None
    policy = webClient.BrowserLikePolicyForHTTPS(trustRoot=trust)
    return webClient.Agent(reactor, contextFactory=policy, pool=pool)


class S3Client:
    """Signed, retried requests against one bucket (see the module docstring)."""

    log = Logger()

    def __init__(self, settings: S3Settings, reactor: Any, agent: Optional[Any] = None) -> None:
        self.settings = settings
        self._reactor = reactor
        self._pool = webClient.HTTPConnectionPool(reactor, persistent=True)
        self._pool.maxPersistentPerHost = 32
        self._pool.retryAutomatically = False  # retries are ours, and only for idempotent requests
        self._http = treq.client.HTTPClient(agent or _agent(reactor, settings, self._pool))
        self._busy = 0
        self._idle: list[Deferred] = []
        self._auth = S3SigV4Auth(Credentials(settings.access_key, settings.secret_key), "s3", settings.region)
        parts = urllib.parse.urlsplit(settings.endpoint)
        self._scheme = parts.scheme
        if settings.addressing == "virtual":
            self._host = f"{settings.bucket}.{parts.netloc}"
            self._root = parts.path.rstrip("/")
        else:
            self._host = parts.netloc
            self._root = f"{parts.path.rstrip('/')}/{urllib.parse.quote(settings.bucket, safe=_UNRESERVED)}"

    def url(self, key: Optional[str] = None, query: Sequence[tuple[str, str]] = ()) -> str:
        """
        The URL of the bucket (``key`` None) or of an object, the key
        behind the configured prefix; the same string is signed and sent.
        """
        if key is None:
            path = self._root or "/"
        else:
            path = f"{self._root}/{urllib.parse.quote(self.settings.prefix + key, safe='/' + _UNRESERVED)}"
        encoded = encodeQuery(query)
        return f"{self._scheme}://{self._host}{path}" + (f"?{encoded}" if encoded else "")

    def _sign(self, method: str, url: str, headers: dict[str, str], body: Optional[Body]) -> Headers:
        if isinstance(body, Payload):
            # An object's bytes: their CRC32 is signed, not their SHA-256.
            request = AWSRequest(method=method, url=url,
                                 headers=dict(headers, Host=self._host, **{CHECKSUM_HEADER: body.crc32()}))
            request.context["client_config"] = _UNSIGNED_PAYLOAD
        else:
            request = AWSRequest(method=method, url=url, headers=dict(headers, Host=self._host), data=body or b"")
        self._auth.add_auth(request)
        return Headers({name.encode("latin-1"): [value.encode("latin-1") if isinstance(value, str) else value]
                        for name, value in request.headers.items()})

    def _signed(self, method: str, url: str, headers: dict[str, str], body: Optional[Body]) -> Any:
        size = body.length if isinstance(body, Payload) else len(body or b"")
        if size > SIGN_INLINE and hasattr(self._reactor, "getThreadPool"):
            return deferToThreadPool(self._reactor, self._reactor.getThreadPool(), self._sign, method, url,
                                     headers, body)
        return self._sign(method, url, headers, body)

    async def request(
        self,
        method: str,
        key: Optional[str] = None,
        query: Sequence[tuple[str, str]] = (),
        headers: Optional[dict[str, str]] = None,
        body: Optional[Body] = None,
        idempotent: bool = True,
        stream: bool = False,
        timeout: float = TIMEOUT,
    ) -> IResponse:
        """
        One request, signed anew for each attempt (the signature carries
        its time).  Returns the response of the last attempt below 500;
        raises ``S3Unavailable`` when every attempt failed.  With
        ``stream`` the body is left unread for the caller.
        """
        self._busy += 1
        try:
            return await self._attempts(method, key, query, headers, body, idempotent, stream, timeout)
        finally:
            self._done()

    def _done(self) -> None:
        self._busy -= 1
        if not self._busy:
            idle, self._idle = self._idle, []
            for d in idle:
                d.callback(None)

    async def _attempts(self, method: str, key: Optional[str], query: Sequence[tuple[str, str]],
                        headers: Optional[dict[str, str]], body: Optional[Body], idempotent: bool,
                        stream: bool, timeout: float) -> IResponse:
        url = self.url(key, query)
        attempts = ATTEMPTS if idempotent else 1
        problem = ""
        for attempt in range(attempts):
            if attempt:
                await deferLater(self._reactor, BACKOFF * 2 ** (attempt - 1), lambda: None)
            try:
                signed = await _maybe(self._signed(method, url, headers or {}, body))
                data = webClient.FileBodyProducer(body.reader()) if isinstance(body, Payload) else body
                response = await self._http.request(method, url, headers=signed, data=data,
                                                    unbuffered=stream, timeout=timeout)
            except _CONNECTION_ERRORS as e:
                problem = f"{type(e).__name__}: {e}"
                continue
            if response.code < 500:
                return response
            problem = f"HTTP {response.code}"
            try:
                await treq.content(response)
            except _CONNECTION_ERRORS:
                pass  # read only to free the connection; the attempt failed either way
        self.log.warn("S3 {method} {key}: gave up after {attempts} attempt(s): {problem}",
                      method=method, key=key or "(bucket)", attempts=attempts, problem=problem)
        raise S3Unavailable(f"S3 {method} {key or '(bucket)'}: {problem}")

    async def call(self, method: str, key: Optional[str] = None, expect: Sequence[int] = (200,),
                   **kw: Any) -> tuple[IResponse, bytes]:
        """``request``, its body read, any status outside ``expect`` raised as a ``StorageError``."""
        # Busy until the body is in: only then is its connection back in
        # the pool, where ``close`` can find it.
        self._busy += 1
        try:
            response = await self.request(method, key, **kw)
            body = await treq.content(response)
        except _CONNECTION_ERRORS as e:
            raise S3Unavailable(f"S3 {method} {key or '(bucket)'}: {type(e).__name__}") from e
        finally:
            self._done()
        if response.code not in expect:
            raise failure(method, key, response.code, body)
        return response, body

    async def close(self, grace: float = CLOSE_GRACE) -> None:
        """Shutdown: wait (a while) for requests in flight, then close the pooled connections."""
        if self._busy:
            idle: Deferred = Deferred()
            self._idle.append(idle)
            idle.addTimeout(grace, self._reactor)
            try:
                await idle
            except (CancelledError, netError.TimeoutError):
                self.log.warn("S3 requests still in flight at shutdown")
        await self._pool.closeCachedConnections()


def failure(method: str, key: Optional[str], code: int, body: bytes) -> StorageError:
    """The error for an unexpected status, with S3's own code and message when it gave them."""
    detail = errorOf(body)
    what = f"S3 {method} {key or '(bucket)'}: HTTP {code}" + (f" {detail[0]}: {detail[1]}" if detail else "")
    if code == 404 and key is not None and (detail is None or detail[0] in ("NoSuchKey", "")):
        return ObjectNotFound(key)
    return StorageError(what)


async def _maybe(value: Any) -> Any:
    """Await a Deferred, pass a plain value through."""
    if hasattr(value, "addCallback"):
        return await value
    return value
