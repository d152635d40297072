"""
The two web sites: the public one (download links and ``/healthz``) and
the operators' one (``/metrics`` and ``/healthz``), each a resource tree
whose every other path is a plain 404.  No response names the server
software; every response carries the security headers; the access log
never shows a download token or a sender's secret, in whatever form the
request spelled it (SPEC section 8: ``/t/<redacted>``).  Connections and
their limits are ``channel``'s.
"""

from __future__ import annotations

import io
import re
from typing import Any, Mapping, Optional, Protocol

from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from secudoc_gateway import links
from secudoc_gateway.web.channel import (HEADER_TIMEOUT, IDLE_TIMEOUT, MIN_BODY_RATE, TOO_LARGE, Channel,
                                         ConnectionCount, hostOf)
from secudoc_gateway.web.pages import HSTS, SECURITY_HEADERS

# A run of secret-like characters (a token, percent-encoded or not) in a
# request's target that names no ``/t/`` segment: redacted all the same.
_OPAQUE = re.compile(r"(?:[A-Za-z0-9_-]|%[0-9A-Fa-f]{2}){32,}")


# RFC 9112 3.2.2: the absolute-form of a request target (what a client
# speaking to a proxy sends); a server must accept it, and its path routes.
_ABSOLUTE_FORM = re.compile(rb"https?://[^/?#]*", re.IGNORECASE)


def loggedTarget(raw: bytes) -> str:
    """A request target (or a Referer) as the access log shows it: no secret in any form."""
    return _OPAQUE.sub(links.REDACTED, links.redact(raw.decode("latin-1")))


def _quoted(text: str) -> str:
    """Escaped for a double-quoted field of the combined log format."""
    return text.encode("unicode_escape").decode("ascii").replace('"', '\\"')


def _line(timestamp: str, client: Optional[str], method: bytes, target: bytes, version: bytes, code: int,
          length: Any, referrer: Optional[bytes], agent: Optional[bytes]) -> str:
    """The combined log format, the target, the Referer and the User-Agent redacted."""
    return (f'"{client or "-"}" - - {timestamp} "{_quoted(method.decode("latin-1"))} {_quoted(loggedTarget(target))}'
            f' {_quoted(version.decode("latin-1"))}" {code} {length or "-"}'
            f' "{_quoted(loggedTarget(referrer) if referrer else "-")}" "{_quoted(loggedTarget(agent or b"-"))}"')


def accessLine(timestamp: str, request: Request) -> str:
    """A request's access line."""
    return _line(timestamp, hostOf(request.getClientAddress()), request.method, request.uri or b"",
                 request.clientproto, request.code, request.sentLength,
                 request.getHeader(b"referer"), request.getHeader(b"user-agent"))


MAX_BODY = 64 * 1024
"""Bytes of a request body: our forms post an address or a code, never more."""


class BodyReceiver(Protocol):
    """
    A request body taken as it arrives instead of kept whole (a streamed
    upload): ``feed`` each chunk, ``lost`` when the connection goes
    before the request is answered; ``fields`` become the request's
    ``args`` when the body is complete.
    """

    fields: dict[bytes, list[bytes]]

    def feed(self, data: bytes) -> None: ...

    def lost(self) -> None: ...


class Streamed(Protocol):
    """What a site serves streamed: ``maxBody`` bytes at most, each request's receiver from ``receive``."""

    maxBody: int

    def receive(self, request: Request, length: Optional[int]) -> BodyReceiver: ...


class _Request(Request):
    """
    Security headers on every response, and no ``Server`` header.  A
    body past ``MAX_BODY`` (declared, or counted as it comes, chunked
    too) gets 413 and the connection closes: Twisted would otherwise
    keep any size in a temporary file.  A POST to a path the site
    streams (``WebSite.streamed``) has its own limit and hands its body
    to a ``BodyReceiver`` chunk by chunk: nothing of it is kept here.
    """

    _bodyBytes = 0
    _refused = False
    maxBody = MAX_BODY
    upload: Optional[BodyReceiver] = None

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        absolute = _ABSOLUTE_FORM.match(path)
        if absolute is not None:
            path = path[absolute.end():]
            path = path if path.startswith(b"/") else b"/" + path
        super().requestReceived(command, path, version)

    def _streamed(self) -> Optional[Streamed]:
        channel: Any = self.channel
        if getattr(channel, "_command", b"") != b"POST":
            return None
        target = getattr(channel, "_path", b"")
        absolute = _ABSOLUTE_FORM.match(target)
        if absolute is not None:
            target = target[absolute.end():]
        return channel.site.streamed.get(target.split(b"?", 1)[0])

    def gotLength(self, length: Any) -> None:
        streamed = self._streamed()
        if streamed is None:
            super().gotLength(length)
        else:
            self.content = io.BytesIO()  # type: ignore[assignment]  # stays empty: the receiver takes the body
            self._parsePOSTFormSubmission = False
            self.maxBody = streamed.maxBody
        if length is not None and length > self.maxBody:
            self._refuse()
        elif streamed is not None:
            self.upload = streamed.receive(self, length)

    def handleContentChunk(self, data: bytes) -> None:
        self._bodyBytes += len(data)
        if self._bodyBytes > self.maxBody:
            self._refuse()
        if self._refused:
            return
        if self.upload is not None:
            self.upload.feed(data)
        else:
            super().handleContentChunk(data)

    def connectionLost(self, reason: Any) -> None:
        if self.upload is not None:
            self.upload.lost()
        super().connectionLost(reason)

    def _refuse(self) -> None:
        if not self._refused:
            self._refused = True
            channel: Optional[Channel] = self.channel  # type: ignore[assignment]
            if channel is not None:
                channel.refuse(TOO_LARGE)

    def process(self) -> None:
        if self._refused:
            return
        if self.upload is not None:
            self.args.update(self.upload.fields)  # type: ignore[attr-defined]
        channel: Channel = self.channel  # type: ignore[assignment]
        for name, value in channel.site.securityHeaders.items():
            self.setHeader(name, value)
        super().process()

    def setHeader(self, name: Any, value: Any) -> None:
        if (name.encode("ascii") if isinstance(name, str) else name).lower() == b"server":
            return
        super().setHeader(name, value)


class NotFound(Resource):
    """A plain 404, whatever was asked."""

    isLeaf = True

    BODY = b"Not found\n"

    def render(self, request: Request) -> bytes:
        request.setResponseCode(404)
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        request.setHeader(b"Content-Length", b"%d" % len(self.BODY))
        # A body for HEAD makes Twisted log a warning: a log line per request an attacker sends.
        return b"" if request.method == b"HEAD" else self.BODY


class _Root(Resource):
    """Only the named children; anything else, ``/`` included, is a 404."""

    def getChild(self, path: bytes, request: Request) -> Resource:
        return NotFound()

    def render(self, request: Request) -> bytes:
        return NotFound().render(request)


class WebSite(Site):
    """
    A site on ``Channel``s: ``timeOut`` (idle between requests),
    ``headerTimeout`` and ``minBodyRate`` are attributes, so a test can
    change them on the running site; ``connections`` admits at most ``maxConnectionsPerIP``
    per client address and closes any further one at once.
    """

    protocol = Channel  # type: ignore[assignment]
    requestFactory = _Request
    headerTimeout = HEADER_TIMEOUT
    minBodyRate = MIN_BODY_RATE
    maxBody = MAX_BODY
    noisy = False
    displayTracebacks = False

    def __init__(self, root: Resource, maxConnectionsPerIP: int, securityHeaders: Mapping[bytes, bytes],
                 reactor: Optional[Any] = None) -> None:
        super().__init__(root, logFormatter=accessLine, timeout=IDLE_TIMEOUT, reactor=reactor)
        self.connections = ConnectionCount(maxConnectionsPerIP)
        self.securityHeaders = dict(securityHeaders)
        self.streamed: dict[bytes, Streamed] = {}
        """POST paths whose bodies are streamed to a receiver (``/portal/send``), not kept."""

    def logRefusal(self, client: Optional[str], requestLine: Optional[tuple[bytes, bytes, bytes]],
                   code: int) -> None:
        """
        A request the channel answered itself (400, 408, 413, 431) never
        reaches a resource nor the access log: its own line, with what of
        the request line had come (``"-"`` before that).
        """
        if self._logFile is not None:
            method, target, version = requestLine or (b"-", b"-", b"-")
            timestamp = self._logDateTime or "-"
            self._logFile.write(_line(timestamp, client, method, target, version, code, None, None, None) + "\n")

    def buildProtocol(self, addr: Any) -> Any:
        if not self.connections.admits(hostOf(addr)):
            return None
        return super().buildProtocol(addr)


class _QuietSite(WebSite):
    """The operators' site: Prometheus scrapes every few seconds, which is not news."""

    def log(self, request: http.Request) -> None:
        """No access log line: a scrape is not news."""


def makeSite(children: dict[bytes, Resource], maxConnectionsPerIP: int, https: bool = False,
             quiet: bool = False, reactor: Optional[Any] = None) -> WebSite:
    """``https``: the public URL is https, so every response asks for it (HSTS)."""
    root = _Root()
    for name, child in children.items():
        root.putChild(name, child)
    headers = {**SECURITY_HEADERS, **(HSTS if https else {})}
    return (_QuietSite if quiet else WebSite)(root, maxConnectionsPerIP, headers, reactor)
