"""
The SMTP listener's factory: what one connection cannot decide alone.
It admits a connection or refuses it (the limits on all connections and
per address, the ingress's own check), counts replies and sessions for
the metrics, and stops serving in order (``drain``, ``expire``).
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Optional

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import ServerFactory
from twisted.logger import Logger

from secudoc_gateway.config import DATA_RATE_WINDOW
from secudoc_gateway.interfaces import IIngress
from secudoc_gateway.metrics import Metrics
from secudoc_gateway import replies
from secudoc_gateway.replies import Reply
from secudoc_gateway.smtp.protocol import SMTPProtocol
from secudoc_gateway.smtp.states import SessionLimits


class SMTPFactory(ServerFactory):
    """
    The listener's factory: connection limits, the shared ingress, and
    ``drain()`` for an orderly stop.
    """

    _log = Logger()

    def __init__(
        self,
        ingress: IIngress,
        hostname: str,
        tlsOptions: Any,
        requireTLS: bool,
        maxMessageSize: int,
        maxRecipients: int,
        maxConnections: int,
        maxConnectionsPerIP: int,
        commandTimeout: float,
        dataTimeout: float,
        reactor: IReactorTime,
        metrics: Optional[Metrics] = None,
        minDataRate: int = 0,
        rateWindow: float = DATA_RATE_WINDOW,
    ) -> None:
        self.ingress = ingress
        self.hostname = hostname
        self.tlsOptions = tlsOptions
        self.requireTLS = requireTLS
        self.limits = SessionLimits(maxMessageSize, maxRecipients)  # every session's
        self.maxConnections = maxConnections
        self.maxConnectionsPerIP = maxConnectionsPerIP
        self.commandTimeout = commandTimeout
        self.dataTimeout = dataTimeout
        self.minDataRate = minDataRate
        self.rateWindow = rateWindow
        self.reactor = reactor
        self.metrics = metrics
        self.draining = False
        self.connections: set[SMTPProtocol] = set()
        self._perIP: Counter[str] = Counter()
        self._drainWaiters: list[Deferred[None]] = []
        self._replyCounters: dict[int, Any] = {}  # by reply code: a labelled child costs a lock and a check each time

    # Twisted types a protocol's factory as a Factory; ours is read as a ``pacing.Listener``.
    def buildProtocol(self, addr: Any) -> SMTPProtocol:  # type: ignore[override]
        return SMTPProtocol(self)

    def drain(self) -> "Deferred[None]":
        """
        Stop serving: idle connections get 421 4.3.2 now, the others
        after their message's final reply.  Fires when every connection
        is closed, so every reply written was flushed to its client (a
        client that does not read is cut off after ``CLOSE_GRACE``).
        """
        self.draining = True
        for protocol in list(self.connections):
            protocol.shutdown()
        return self._whenClosed()

    def expire(self) -> "Deferred[None]":
        """
        The grace period is over: 421 4.3.2 to every connection, messages
        in flight too.  Fires when every connection is closed.
        """
        self.draining = True
        for protocol in list(self.connections):
            protocol.expire()
        return self._whenClosed()

    def _whenClosed(self) -> "Deferred[None]":
        d: Deferred[None] = Deferred()
        self._drainWaiters.append(d)
        self._checkDrained()
        return d

    def countReply(self, reply: Reply) -> None:
        if self.metrics is not None:
            counter = self._replyCounters.get(reply.code)
            if counter is None:
                counter = self._replyCounters[reply.code] = self.metrics.replies.labels(code=str(reply.code))
            counter.inc()

    def admit(self, protocol: SMTPProtocol) -> Optional[tuple[Reply, str]]:
        """``None`` when ``protocol`` may be served, else the reply to refuse it and why (for the log)."""
        peer = protocol.peer
        if self.draining:
            return replies.SHUTTING_DOWN, "shutting down"
        if len(self.connections) >= self.maxConnections:
            return replies.TOO_MANY_CONNECTIONS, f"max_connections {self.maxConnections} reached"
        if self._perIP[peer] >= self.maxConnectionsPerIP:
            return replies.TOO_MANY_FROM_IP, f"max_connections_per_ip {self.maxConnectionsPerIP} reached"
        try:
            refusal = self.ingress.checkConnection(peer)
        except Exception:
            self._log.failure("checkConnection failed for {peer}", peer=peer)
            return replies.CONNECT_TEMPFAIL, "internal error"
        if refusal is not None:
            return refusal, "no tenant allows this address"
        self.connections.add(protocol)
        self._perIP[peer] += 1
        if self.metrics is not None:
            self.metrics.connections.inc()
            self.metrics.sessionsActive.inc()
        return None

    def remove(self, protocol: SMTPProtocol) -> None:
        self.connections.discard(protocol)
        self._perIP[protocol.peer] -= 1
        if self._perIP[protocol.peer] <= 0:
            del self._perIP[protocol.peer]
        if self.metrics is not None:
            self.metrics.sessionsActive.dec()
        self._checkDrained()

    def _checkDrained(self) -> None:
        if self.draining and not self.connections:
            waiters, self._drainWaiters = self._drainWaiters, []
            for d in waiters:
                d.callback(None)
