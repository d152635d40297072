"""
The recipient's side: ``/t/<token>`` lists a transfer's files,
``/t/<token>/<n>`` streams file n, decrypted on the way out (SPEC 8).

The token is the only key: it is hashed to find the transfer and fed
to HKDF to derive each file's key, so the store and the database alone
can decrypt nothing.  A landing page view is not a download (link
scanners such as Safe Links fetch it), HEAD never counts, and every
download is written to the audit trail as it starts.  The plaintext is
released frame by frame as it is authenticated; a failure midway drops
the connection so the client, which was told the Content-Length, sees
an incomplete file rather than a silently short one.
"""

from __future__ import annotations

import datetime
import html
import urllib.parse
from typing import Any, Callable, Optional

from twisted.internet.defer import ensureDeferred
from twisted.internet.interfaces import IConsumer, IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer

from secudoc_gateway.crypto import DecryptionError, Decryptor, fileKey, tokenHash
from secudoc_gateway.errors import ProducerStopped, StorageError
from secudoc_gateway.mails import formatDate, humanSize
from secudoc_gateway.mime.names import cleanName, safeFilename

SECURITY_HEADERS = {
    b"Referrer-Policy": b"no-referrer",
    b"Cache-Control": b"no-store",
    b"X-Content-Type-Options": b"nosniff",
}
# Downloads are never rendered on our origin, whatever their type.
DOWNLOAD_CSP = b"default-src 'none'; sandbox"
PAGE_CSP = b"default-src 'none'; style-src 'unsafe-inline'"

TEXTS = {
    "nl": {
        "title": "Beveiligde bestanden",
        "intro": "{sender} heeft u de volgende bestanden gestuurd.",
        "expires": "Beschikbaar tot {date}.",
        "download": "Downloaden",
        "notFound": "Deze link is onbekend.",
        "gone": "Deze link is verlopen.",
    },
    "en": {
        "title": "Secure files",
        "intro": "{sender} sent you the following files.",
        "expires": "Available until {date}.",
        "download": "Download",
        "notFound": "This link is not known.",
        "gone": "This link has expired.",
    },
}


def contentDisposition(name: str) -> bytes:
    """RFC 6266: an ASCII ``filename`` fallback and the UTF-8 ``filename*``."""
    safe = safeFilename(name)
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\%' else "_" for c in safe)
    encoded = urllib.parse.quote(safe, safe="")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}".encode("ascii")


def _page(title: str, body: str) -> bytes:
    return (
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\">"
        "<meta name=\"robots\" content=\"noindex, nofollow\">"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;max-width:40em;margin:2em auto;padding:0 1em}"
        "li{margin:.5em 0}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>{body}</body></html>"
    ).encode("utf-8")


@implementer(IConsumer)
class _DecryptingConsumer:
    """Ciphertext in from the store, plaintext out to the response."""

    def __init__(self, request: Request, decryptor: Decryptor) -> None:
        self._request = request
        self._decryptor = decryptor

    def registerProducer(self, producer: IPushProducer, streaming: bool) -> None:
        self._request.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self._request.unregisterProducer()

    def write(self, data: bytes) -> None:
        plain = self._decryptor.feed(data)
        if plain:
            self._request.write(plain)

    def finish(self) -> None:
        tail = self._decryptor.finish()
        if tail:
            self._request.write(tail)


class TransfersResource(Resource):
    """``/t``: everything below it is keyed by a token."""

    log = Logger()

    def __init__(self, transfers: Any, store: Any, metrics: Any, reactor: Any,
                 language: Callable[[str], str]) -> None:
        super().__init__()
        self.transfers = transfers
        self.store = store
        self.metrics = metrics
        self.reactor = reactor
        self.language = language

    def getChild(self, path: bytes, request: Request) -> Resource:
        return _TransferResource(self, path.decode("ascii", "replace"))

    def render(self, request: Request) -> bytes:
        _secure(request)
        request.setResponseCode(404)
        return b""


def _secure(request: Request) -> None:
    for name, value in SECURITY_HEADERS.items():
        request.setHeader(name, value)


class _TransferResource(Resource):
    def __init__(self, root: TransfersResource, token: str) -> None:
        super().__init__()
        self.root = root
        self.token = token

    def getChild(self, path: bytes, request: Request) -> Resource:
        if request.postpath:  # /t/<token>/<n>/more
            return _FileResource(self, None)
        try:
            n = int(path.decode("ascii"))
        except ValueError:
            n = None
        return _FileResource(self, n if n is not None and n >= 0 and path.isdigit() else None)

    async def lookup(self, request: Request) -> Optional[Any]:
        """The transfer, or ``None`` after answering 404 / 410."""
        transfer = await self.root.transfers.lookup(tokenHash(self.token)) if self.token else None
        if transfer is None:
            self.refuse(request, 404, "notFound", "en")
            return None
        if transfer.expires <= self.root.reactor.seconds():
            self.refuse(request, 410, "gone", self.root.language(transfer.tenant))
            return None
        return transfer

    def refuse(self, request: Request, code: int, text: str, language: str) -> None:
        request.setResponseCode(code)
        request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
        request.setHeader(b"Content-Security-Policy", PAGE_CSP)
        texts = TEXTS[language]
        if request.method != b"HEAD":
            request.write(_page(texts["title"], f"<p>{html.escape(texts[text])}</p>"))
        request.finish()

    def render_GET(self, request: Request) -> int:
        _secure(request)
        ensureDeferred(self._landing(request)).addErrback(_failed, request, self.root.log)
        return NOT_DONE_YET

    render_HEAD = render_GET

    async def _landing(self, request: Request) -> None:
        transfer = await self.lookup(request)
        if transfer is None:
            return
        language = self.root.language(transfer.tenant)
        texts = TEXTS[language]
        expiry = datetime.datetime.fromtimestamp(transfer.expires, datetime.timezone.utc)
        token = html.escape(self.token)
        items = "".join(
            f"<li><a href=\"/t/{token}/{f.n}\">{html.escape(cleanName(f.name))}</a>"
            f" ({humanSize(f.size, language)})</li>"
            for f in transfer.files
        )
        body = (
            f"<p>{html.escape(texts['intro'].format(sender=transfer.sender))}</p>"
            f"<ul>{items}</ul>"
            f"<p>{html.escape(texts['expires'].format(date=formatDate(expiry.date(), language)))}</p>"
        )
        request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
        request.setHeader(b"Content-Security-Policy", PAGE_CSP)
        if request.method != b"HEAD":
            request.write(_page(texts["title"], body))
        request.finish()


class _FileResource(Resource):
    isLeaf = True

    def __init__(self, parent: _TransferResource, n: Optional[int]) -> None:
        super().__init__()
        self.parent = parent
        self.n = n

    def render_GET(self, request: Request) -> int:
        _secure(request)
        ensureDeferred(self._download(request)).addErrback(_failed, request, self.parent.root.log)
        return NOT_DONE_YET

    render_HEAD = render_GET

    async def _download(self, request: Request) -> None:
        root = self.parent.root
        transfer = await self.parent.lookup(request)
        if transfer is None:
            return
        stored = next((f for f in transfer.files if f.n == self.n), None)
        if stored is None:
            self.parent.refuse(request, 404, "notFound", root.language(transfer.tenant))
            return
        # The file's range must be there before anything promises its
        # bytes: a lost object is a 503, not a download that never completes.
        end = stored.object_offset + stored.object_length
        if await root.store.size(stored.object_key) < end:
            raise StorageError(f"transfer {transfer.id}: object {stored.object_key!r} is shorter than file {stored.n}")
        request.setHeader(b"Content-Type", (stored.content_type or "application/octet-stream").encode("ascii", "replace"))
        request.setHeader(b"Content-Length", str(stored.size).encode("ascii"))
        request.setHeader(b"Content-Disposition", contentDisposition(stored.name))
        request.setHeader(b"Content-Security-Policy", DOWNLOAD_CSP)
        if request.method == b"HEAD":
            request.finish()
            return
        client = request.getClientAddress()
        await root.transfers.recordDownload(
            transfer.id, stored.n, getattr(client, "host", str(client)),
            (request.getHeader(b"user-agent") or b"").decode("latin-1")[:512],
        )
        root.metrics.downloads.labels(tenant=transfer.tenant).inc()
        key = fileKey(self.parent.token, transfer.id, stored.key_index)
        consumer = _DecryptingConsumer(request, Decryptor(key))
        request.notifyFinish().addErrback(lambda f: None)
        try:
            await root.store.produce(stored.object_key, consumer, stored.object_offset, stored.object_length)
            consumer.finish()
        except ProducerStopped:
            return  # the client went away
        except DecryptionError:
            root.log.error("transfer {id} file {n}: stored object failed authentication",
                           id=transfer.id, n=stored.n)
            request.transport.abortConnection()
            return
        request.finish()


def _failed(failure: Failure, request: Request, log: Logger) -> None:
    log.failure("download request failed", failure)
    if request.startedWriting:
        request.transport.abortConnection()
        return
    for name in (b"Content-Length", b"Content-Disposition", b"Content-Type"):
        request.responseHeaders.removeHeader(name)
    request.setResponseCode(503)
    request.finish()
