"""
The web listener's site: the resource tree and an access log that never
shows a download token (SPEC section 8: ``/t/<redacted>``).
"""

from __future__ import annotations

import re
from typing import Optional

from twisted.web.http import combinedLogFormatter
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

_TOKEN_PATH = re.compile(r"/t/(sender/)?[^/\s?\"]+")


def redact(text: str) -> str:
    """Replace every ``/t/<token>`` with ``/t/<redacted>`` (the sender's ``/t/sender/<secret>`` too)."""
    return _TOKEN_PATH.sub(lambda m: f"/t/{m.group(1) or ''}<redacted>", text)


def redactingLogFormatter(timestamp: str, request: Request) -> str:
    return redact(combinedLogFormatter(timestamp, request))


class _Root(Resource):
    """``/`` answers 404 like any unknown path: nothing to see here."""


class _Site(Site):
    """Names no software version (SPEC 8): Twisted's ``Server`` header is replaced."""

    def getResourceFor(self, request: Request) -> Resource:
        request.setHeader(b"Server", b"secudoc-gateway")
        return super().getResourceFor(request)


def makeSite(children: dict[bytes, Resource], logPath: Optional[str] = None) -> Site:
    root = _Root()
    for name, child in children.items():
        root.putChild(name, child)
    site = _Site(root, logPath=logPath, logFormatter=redactingLogFormatter)
    site.displayTracebacks = False
    return site
