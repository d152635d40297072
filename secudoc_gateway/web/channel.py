"""
The web listener's connections (SPEC 8): how long a client may take,
how many connections one address may hold, and a proper answer to a
request the parser refuses.

Twisted's ``HTTPChannel`` has one timer, reset by every byte: a client
that sends a header line every few seconds keeps its connection for
hours.  Here a request's headers must be complete within
``headerTimeout`` seconds of its first byte (of the connection, for the
first request), a request's body must keep up ``minBodyRate`` bytes a
second over each window of ``headerTimeout`` seconds (a body trickled a
byte a minute would otherwise hold its connection for weeks), and the
channel's own timer (``timeOut``) closes a connection idle between
requests.  A chunk that declares more than the site takes (``maxBody``)
is refused when its size line arrives, not after the idle timeout.  An
HTTP/1.1 request without a Host header, or with more than one, or with
one that names no host, is a 400 (RFC 9112 3.2), and so is a transfer
coding other than chunked.  Where Twisted answers a bad request
with a bare 400, or drops the connection on a header line past its
limit, the client gets a status with the security headers: 400 for a
malformed request, 431 for headers past the limits, 408 for headers too
slow, 413 for a body too large.  After such an answer the connection
stops reading and closes its sending side, then lingers a moment so the
client reads the answer instead of a reset.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, Mapping, Optional

from twisted.internet.interfaces import IDelayedCall, IHalfCloseableDescriptor, ISSLTransport
from twisted.web.http import RESPONSES, HTTPChannel, _ChunkedTransferDecoder

HEADER_TIMEOUT = 30.0
IDLE_TIMEOUT = 60.0
MIN_BODY_RATE = 256
"""Bytes a second: our forms are a few hundred bytes, a slow phone sends thousands."""
LINGER = 2.0
"""Seconds a refused connection keeps reading (and dropping) before it closes."""

MAX_CONTENT_LENGTH_DIGITS = 18
"""Longer is no body we take, and Python refuses to parse past 4300 digits."""

# RFC 9110 7.2 / RFC 3986 3.2.2: uri-host [ ":" port ], empty allowed.
_HOST = re.compile(rb"(?:\[[0-9A-Za-z:.]+\]|[A-Za-z0-9._~%!$&'()*+,;=-]*)(?::[0-9]*)?")

TOO_LARGE = 413
HEADERS_TOO_LARGE = 431
_REASONS = {**RESPONSES, HEADERS_TOO_LARGE: b"Request Header Fields Too Large"}


def rawResponse(code: int, headers: Mapping[bytes, bytes]) -> bytes:
    """A complete bodiless response that closes the connection."""
    lines = [b"HTTP/1.1 %d %s" % (code, _REASONS.get(code, b"Error"))]
    lines += [name + b": " + value for name, value in headers.items()]
    lines += [b"Content-Length: 0", b"Connection: close", b"", b""]
    return b"\r\n".join(lines)


class ConnectionCount:
    """Open connections per client address, for ``max_connections_per_ip``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: Counter[str] = Counter()

    def admits(self, host: Optional[str]) -> bool:
        return host is None or self._open[host] < self.limit

    def opened(self, host: Optional[str]) -> None:
        if host is not None:
            self._open[host] += 1

    def closed(self, host: Optional[str]) -> None:
        if host is not None:
            self._open[host] -= 1
            if self._open[host] <= 0:
                del self._open[host]


def hostOf(address: Any) -> Optional[str]:
    """The client's IP address; ``None`` for a UNIX socket, which has none."""
    return getattr(address, "host", None)


class Channel(HTTPChannel):
    """
    One web connection.  ``site`` (set by the site when it builds the
    channel) gives ``headerTimeout``, ``minBodyRate``, ``maxBody``,
    ``securityHeaders``, the ``connections`` count and ``logRefusal``.
    """

    site: Any
    _host: Optional[str] = None
    _headerDeadline: Optional[IDelayedCall] = None
    _bodyDeadline: Optional[IDelayedCall] = None
    _linger: Optional[IDelayedCall] = None
    _bytesOfRequest = 0
    _bytesOfBody = 0  # raw, chunk framing included
    _bytesOfBodyWindow = 0
    _betweenRequests = False
    refused = False

    # Arriving and leaving.

    def connectionMade(self) -> None:
        super().connectionMade()
        self._host = hostOf(self._connection.getPeer())
        self.site.connections.opened(self._host)
        self._startHeaderDeadline()

    @property
    def _connection(self) -> Any:
        """The TCP (or TLS) transport, which can also abort and half-close."""
        return self.transport

    def connectionLost(self, reason: Any = None) -> None:
        self.site.connections.closed(self._host)
        for call in (self._headerDeadline, self._bodyDeadline, self._linger):
            if call is not None and call.active():
                call.cancel()
        self._headerDeadline = self._bodyDeadline = self._linger = None
        super().connectionLost(reason)

    # The header deadline.

    def _startHeaderDeadline(self) -> None:
        self._bytesOfRequest = 0
        self._headerDeadline = self.callLater(self.site.headerTimeout, self._headersTooSlow)

    def _headersTooSlow(self) -> None:
        self._headerDeadline = None
        if self._bytesOfRequest:
            self.refuse(408)
        else:
            self._connection.abortConnection()

    def dataReceived(self, data: bytes) -> None:
        if self.refused:
            return  # lingering: read and drop
        if self._betweenRequests:
            self._betweenRequests = False
            self._startHeaderDeadline()  # the first byte of the next request
        self._bytesOfRequest += len(data)
        super().dataReceived(data)

    def allHeadersReceived(self) -> None:
        self._betweenRequests = False
        if self._headerDeadline is not None:
            if self._headerDeadline.active():
                self._headerDeadline.cancel()
            self._headerDeadline = None
        if not self._hostIsValid():
            self.refuse(400)
            return
        if self.length != 0:  # a body follows (a length, or chunked)
            self._bytesOfBody = 0
            self._startBodyWindow()
        super().allHeadersReceived()

    def _hostIsValid(self) -> bool:
        hosts = self.requests[-1].requestHeaders.getRawHeaders(b"host") or []
        if len(hosts) > 1:
            return False
        if not hosts:
            return getattr(self, "_version", b"") != b"HTTP/1.1"
        return _HOST.fullmatch(hosts[0]) is not None

    # The body's pace.

    def _startBodyWindow(self) -> None:
        self._bytesOfBodyWindow = 0
        self._bodyDeadline = self.callLater(self.site.headerTimeout, self._bodyWindowEnded)

    def _bodyWindowEnded(self) -> None:
        self._bodyDeadline = None
        if self._bytesOfBodyWindow >= self.site.minBodyRate * self.site.headerTimeout:
            self._startBodyWindow()
        else:
            self.refuse(408)

    def allContentReceived(self) -> None:
        if self.refused:
            return  # refused once its headers were in: never processed
        if self._bodyDeadline is not None:
            if self._bodyDeadline.active():
                self._bodyDeadline.cancel()
            self._bodyDeadline = None
        super().allContentReceived()

    def requestDone(self, request: Any) -> None:
        # Before the base class replays what a pipelining client sent meanwhile.
        self._betweenRequests = True
        super().requestDone(request)

    # Limits and malformed requests: an answer, not a dropped connection.

    def lineLengthExceeded(self, line: bytes) -> None:
        self.refuse(HEADERS_TOO_LARGE)

    def lineReceived(self, line: bytes) -> None:
        if self.refused:
            return  # what the client sent after the refused request
        if self._receivedHeaderSize + len(line) > self.totalHeadersSize:
            self.refuse(HEADERS_TOO_LARGE)
            return
        super().lineReceived(line)

    def headerReceived(self, line: bytes) -> bool:
        if self._receivedHeaderCount >= self.maxHeaders:
            self.refuse(HEADERS_TOO_LARGE)
            return False
        name, _, value = line.partition(b":")
        name, value = name.strip().lower(), value.strip()
        if name == b"content-length" and len(value) > MAX_CONTENT_LENGTH_DIGITS:
            self.refuse(TOO_LARGE if value.isdigit() else 400)
            return False
        # RFC 9112 6.1 and 6.3: a transfer coding other than chunked (Twisted
        # ignores ``identity`` and then frames by Content-Length, the shape
        # of a smuggled request), or any on HTTP/1.0, is faulty framing.
        if name == b"transfer-encoding" and (value.lower() != b"chunked" or self._version != b"HTTP/1.1"):
            self.refuse(400)
            return False
        return bool(super().headerReceived(line))

    def _send100Continue(self) -> None:
        if not self.refused:  # never after the final answer of a refused request
            super()._send100Continue()

    def rawDataReceived(self, data: bytes) -> None:
        if self.refused:
            return
        self._bytesOfBodyWindow += len(data)
        self._bytesOfBody += len(data)
        super().rawDataReceived(data)
        decoder = self._transferDecoder
        # What came, and what the chunk being read still declares.
        if (isinstance(decoder, _ChunkedTransferDecoder) and decoder.state == "BODY"
                and self._bytesOfBody + decoder.length > self._maxBody()):
            self.refuse(TOO_LARGE)

    def _maxBody(self) -> int:
        """The limit of the request being read: the site's, or a streamed upload's own."""
        request = self.requests[-1] if self.requests else None
        return int(getattr(request, "maxBody", self.site.maxBody))

    def _respondToBadRequestAndDisconnect(self) -> None:
        self.refuse(400)

    def refuse(self, code: int) -> None:
        """Answer ``code`` (once), stop reading requests, and close after a short linger."""
        if self.refused or self.transport is None:
            return
        self.refused = True
        self.setTimeout(None)
        for call in (self._headerDeadline, self._bodyDeadline):
            if call is not None and call.active():
                call.cancel()
        self._headerDeadline = self._bodyDeadline = None
        self.transport.write(rawResponse(code, self.site.securityHeaders))
        command = getattr(self, "_command", None)
        self.site.logRefusal(self._host, None if command is None else (command, self._path, self._version), code)
        connection = self._connection
        # TLS ends with its own close, not a half-close.
        halfCloses = IHalfCloseableDescriptor.providedBy(self.transport) and not ISSLTransport.providedBy(self.transport)
        if not halfCloses:
            connection.loseConnection()
            return
        connection.loseWriteConnection()
        self._linger = self.callLater(LINGER, connection.abortConnection)
