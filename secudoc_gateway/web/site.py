"""
The two web sites: the public one (download links and ``/healthz``) and
the operators' one (``/metrics`` and ``/healthz``), each a resource tree
whose every other path is a plain 404.  No response names the server
software; every response carries the security headers; the access log
never shows a download token (SPEC section 8: ``/t/<redacted>``).
"""

from __future__ import annotations

from typing import Any

from twisted.web.http import combinedLogFormatter
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from secudoc_gateway.logs import redact
from secudoc_gateway.web.pages import SECURITY_HEADERS


def redactingLogFormatter(timestamp: str, request: Request) -> str:
    return redact(combinedLogFormatter(timestamp, request))


class _Request(Request):
    """Security headers on every response, and no ``Server`` header."""

    def process(self) -> None:
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

    def log(self, request: Request) -> None:
        pass


def makeSite(children: dict[bytes, Resource], quiet: bool = False) -> Site:
    root = _Root()
    for name, child in children.items():
        root.putChild(name, child)
    site = (_QuietSite if quiet else Site)(root, logFormatter=redactingLogFormatter)
    site.requestFactory = _Request
    site.noisy = False
    site.displayTracebacks = False
    return site
