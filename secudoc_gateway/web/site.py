"""
The two web sites: the public one (download links and ``/healthz``) and
the operators' one (``/metrics`` and ``/healthz``), each a resource tree
whose every other path is a plain 404.  No response names the server
software; every response carries the security headers; the access log
never shows a download token (SPEC section 8: ``/t/<redacted>``).
"""

from __future__ import annotations

from typing import Any, cast

from twisted.internet.interfaces import ITransport
from twisted.web import http
from twisted.web.http import combinedLogFormatter
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from secudoc_gateway.logs import redact
from secudoc_gateway.web.pages import SECURITY_HEADERS


def redactingLogFormatter(timestamp: str, request: Request) -> str:
    return redact(combinedLogFormatter(timestamp, request))


MAX_BODY = 64 * 1024
"""Bytes of a request body: our forms post an address or a code, never more."""

_TOO_LARGE = b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class _Request(Request):
    """
    Security headers on every response, and no ``Server`` header.  A
    body past ``MAX_BODY`` (declared, or counted as it comes, chunked
    too) gets 413 and the connection closes: Twisted would otherwise
    keep any size in a temporary file.
    """

    _bodyBytes = 0
    _refused = False

    def gotLength(self, length: Any) -> None:
        super().gotLength(length)
        if length is not None and length > MAX_BODY:
            self._refuse()

    def handleContentChunk(self, data: bytes) -> None:
        self._bodyBytes += len(data)
        if self._bodyBytes > MAX_BODY:
            self._refuse()
        if not self._refused:
            super().handleContentChunk(data)

    def _refuse(self) -> None:
        if not self._refused:
            self._refused = True
            transport = cast(ITransport, self.channel.transport)
            transport.write(_TOO_LARGE)
            transport.loseConnection()

    def process(self) -> None:
        if self._refused:
            return
        for name, value in SECURITY_HEADERS.items():
            self.setHeader(name, value)
        super().process()

    def setHeader(self, name: Any, value: Any) -> None:
        if (name.encode("ascii") if isinstance(name, str) else name).lower() == b"server":
            return
        super().setHeader(name, value)


class NotFound(Resource):
    """A plain 404, whatever was asked."""

    isLeaf = True

    def render(self, request: Request) -> bytes:
        request.setResponseCode(404)
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        return b"Not found\n"


class _Root(Resource):
    """Only the named children; anything else, ``/`` included, is a 404."""

    def getChild(self, path: bytes, request: Request) -> Resource:
        return NotFound()

    def render(self, request: Request) -> bytes:
        return NotFound().render(request)


class _QuietSite(Site):
    """The operators' site: Prometheus scrapes every few seconds, which is not news."""

    def log(self, request: http.Request) -> None:
        """No access log line: a scrape is not news."""


def makeSite(children: dict[bytes, Resource], quiet: bool = False) -> Site:
    root = _Root()
    for name, child in children.items():
        root.putChild(name, child)
    site = (_QuietSite if quiet else Site)(root, logFormatter=redactingLogFormatter)
    site.requestFactory = _Request
    site.noisy = False
    site.displayTracebacks = False
    return site
