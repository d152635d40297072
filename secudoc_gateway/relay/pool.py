"""
The connection cache of one ``SMTPRelay``, like Postfix's smtp(8)
connection cache: the greeting, EHLO, STARTTLS with its handshake and
the second EHLO are paid once per connection, not per message.  After a
transaction's final reply (or a refusal followed by RSET, RFC 5321
4.1.1.5) the connection goes back to a small per-relay pool (LIFO, so
the warmest is reused and the rest time out); it is closed with QUIT
after ``maxIdleTime``, when the pool is full, or after ``maxMessages``
transactions.  The server may close an idle connection (RFC 5321
4.5.3.2.7, or 421 and close, 3.8): anything it says while idle, or its
close, drops the connection from the pool.  Racing that, a send on a
reused connection may still find it gone; ``SMTPRelay`` then retries
once on a new connection, but only when the target had not yet accepted
MAIL, so no message is ever sent twice.  Each ``SMTPRelay`` is one
target with one client certificate (one tenant), so connections are
never shared across tenants.
"""

from __future__ import annotations

from typing import Any, Iterable, Optional

from twisted.internet import defer
from twisted.internet.defer import Deferred

from secudoc_gateway.errors import RelayError
from secudoc_gateway.relay.connection import _ClientProtocol
from secudoc_gateway.replies import Reply

# After Postfix's smtp_connection_cache_* settings: an idle connection
# costs the target little for a few seconds, a message stream of one per
# few seconds or more keeps it warm, and a bounded count of messages
# spreads load over the target's front ends and picks up DNS changes.
DEFAULT_MAX_IDLE = 20
DEFAULT_MAX_IDLE_TIME = 5.0
DEFAULT_MAX_MESSAGES = 100


def _allClosed(protos: Iterable[_ClientProtocol]) -> Deferred:
    return defer.DeferredList([p.closed for p in protos]).addCallback(lambda _: None)


class ConnectionPool:
    """
    The connections one relay opened, busy or idle.  At most ``maxIdle``
    idle ones, each for ``maxIdleTime`` seconds, each used for at most
    ``maxMessages`` transactions.  ``maxIdle = 0`` turns the cache off:
    one connection per message.
    """

    def __init__(
        self,
        reactor: Any,
        maxIdle: int = DEFAULT_MAX_IDLE,
        maxIdleTime: float = DEFAULT_MAX_IDLE_TIME,
        maxMessages: int = DEFAULT_MAX_MESSAGES,
    ) -> None:
        self._reactor = reactor
        self.maxIdle = maxIdle
        self.maxIdleTime = maxIdleTime
        self.maxMessages = maxMessages
        self._open: set[_ClientProtocol] = set()
        self._idle: list[_ClientProtocol] = []  # a stack: the last one in is the first out
        self._resetting: set[_ClientProtocol] = set()
        self._closed = False

    @property
    def idleConnections(self) -> int:
        """How many connections wait in the cache."""
        return len(self._idle)

    def whenIdle(self) -> Deferred:
        """Fires when every connection this pool was given, busy or cached, has closed."""
        return _allClosed(self._open)

    def closeIdle(self) -> Deferred:
        """
        QUIT every cached connection (and abandon any still in its RSET);
        fires when they have closed.  Caching goes on afterwards.
        """
        closing = list(self._idle) + list(self._resetting)
        for proto in closing:
            self._unpool(proto)
            proto.quit()
        return _allClosed(closing)

    def close(self) -> Deferred:
        """
        For shutdown: cache no more (connections busy now QUIT after
        their transaction, later sends use one connection each) and
        ``closeIdle``.  Does not wait for transactions in flight.
        """
        self._closed = True
        return self.closeIdle()

    def add(self, proto: _ClientProtocol) -> None:
        """A newly opened connection, known until it closes."""
        self._open.add(proto)
        proto.closed.addBoth(lambda _: self._forget(proto))

    def take(self) -> Optional[_ClientProtocol]:
        """The warmest idle connection that can start a transaction, if any."""
        while self._idle:
            proto = self._idle.pop()
            self._unpool(proto)
            if proto.reusable():
                return proto
            proto.quit()
        return None

    def release(self, proto: _ClientProtocol) -> None:
        """A transaction ended cleanly: cache the connection, or QUIT it."""
        if (
            self._closed
            or not proto.reusable()
            or proto.transactions >= self.maxMessages
            or self.maxIdle <= 0
            or self.maxIdleTime <= 0
        ):
            proto.quit()
            return
        while len(self._idle) >= self.maxIdle:
            oldest = self._idle[0]
            self._unpool(oldest)
            oldest.quit()
        proto.pooled = True
        proto.idleTimer = self._reactor.callLater(self.maxIdleTime, self._expire, proto)
        self._idle.append(proto)

    def afterRefusal(self, proto: _ClientProtocol, error: RelayError, timeout: float) -> None:
        """
        The target refused the message but the connection is sound:
        RSET (RFC 5321 4.1.1.5), then cache it.  Done in the background:
        the refusal is reported without waiting for the 250.
        """
        if not proto.reusable() or (error.reply is not None and error.reply.code == 421):
            proto.quit()
            return
        if not proto.mailSent:
            self.release(proto)
            return
        self._resetting.add(proto)
        d = proto.command(b"RSET", "rset", timeout)

        def reset(result: Any) -> None:
            resetting = proto in self._resetting
            self._resetting.discard(proto)
            if resetting and isinstance(result, Reply) and result.code == 250:
                self.release(proto)
            else:
                proto.quit()

        d.addBoth(reset)

    def _expire(self, proto: _ClientProtocol) -> None:
        proto.idleTimer = None
        self._unpool(proto)
        proto.quit()

    def _unpool(self, proto: _ClientProtocol) -> None:
        proto.pooled = False
        self._resetting.discard(proto)
        if proto in self._idle:
            self._idle.remove(proto)
        if proto.idleTimer is not None:
            if proto.idleTimer.active():
                proto.idleTimer.cancel()
            proto.idleTimer = None

    def _forget(self, proto: _ClientProtocol) -> None:
        self._unpool(proto)
        self._open.discard(proto)


__all__ = [
    "DEFAULT_MAX_IDLE",
    "DEFAULT_MAX_IDLE_TIME",
    "DEFAULT_MAX_MESSAGES",
    "ConnectionPool",
]
