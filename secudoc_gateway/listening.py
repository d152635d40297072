"""
The gateway's listeners: which there are (``listeners``, one ordered
list the single process, the ``--workers`` parent and every worker
agree on), and ``ListeningService``, which opens one (or adopts the
parent's socket in a worker) and refuses to let a start go on without
it: a gateway that cannot listen must not look healthy (SPEC 2).
"""

from __future__ import annotations

import os
import resource
import socket
from typing import Any, Optional

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.endpoints import (
    SSL4ServerEndpoint,
    TCP4ServerEndpoint,
    TCP6ServerEndpoint,
    UNIXServerEndpoint,
    serverFromString,
)
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure

from secudoc_gateway.config import Config
from secudoc_gateway.errors import ConfigError, GatewayError

EXIT_CANNOT_LISTEN = 3


def listeners(config: Config) -> list[tuple[str, str]]:
    """
    Every listener as (kind, endpoint description), in a fixed order:
    the parent of ``--workers`` opens them in this order and its workers
    adopt them in the same order, whatever kinds there are.
    """
    return ([("smtp", d) for d in config.smtp.listen] + [("web", d) for d in config.web.listen]
            + [("metrics", d) for d in config.metrics.listen])


def listenerProblems(config: Config, reactor: Any = None) -> list[str]:
    """Endpoint strings that Twisted cannot parse, as ``FILE: key: what is wrong``."""
    if reactor is None:
        from twisted.internet import reactor
    problems = []
    for kind, description in listeners(config):
        try:
            serverFromString(reactor, description)
        except Exception as e:
            problems.append(f"{config.path}: {kind}.listen: \"{description}\" is not an endpoint: {e}")
    return problems


def raiseFileLimit() -> int:
    """
    Raise this process's open-file limit to its hard limit and return it:
    every connection costs a descriptor, and a default soft limit of 1024
    would let idle web clients leave SMTP none to accept with (SPEC 8).
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            return soft  # a hard limit the kernel caps lower (nr_open): keep what there is
        return hard
    return soft


class CannotListen(GatewayError):
    """A listener's endpoint refused to listen (port in use, no such address...)."""


def adoptable(endpoint: Any, factory: Any) -> Any:
    """
    The factory a worker adopts a socket with: ``factory`` itself for a
    plain TCP or UNIX endpoint; wrapped in TLS as the endpoint would
    have done for an ``ssl:`` one.  Other kinds are refused rather than
    served without what their endpoint adds.
    """
    if isinstance(endpoint, SSL4ServerEndpoint):
        return TLSMemoryBIOFactory(endpoint._sslContextFactory, False, factory)
    if isinstance(endpoint, (TCP4ServerEndpoint, TCP6ServerEndpoint, UNIXServerEndpoint)):
        return factory
    raise ConfigError([f"a {type(endpoint).__name__} listener cannot be shared by --workers;"
                       " use tcp:, tcp6:, unix: or ssl:"])


def _acceptOneAtATime(port: Any) -> None:
    """
    A worker's port takes one connection each time the socket is ready
    (Twisted takes up to hundreds), so connections arriving together
    spread over the workers, and a busy worker, slower to come round,
    takes fewer.
    """
    cls = type(port)
    pinned = property(lambda self: 1, lambda self, value: None)
    port.__class__ = type("Shared" + cls.__name__, (cls,), {"numberAccepts": pinned})


class ListeningService(Service):
    """
    Listens on one endpoint; unlike StreamServerEndpointService it says
    where (``whenListening`` fires with the port), which tests, benches
    and the start-up log need for ``tcp:0`` listeners.
    """

    log = Logger()

    def __init__(self, endpoint: Any, factory: Any, description: str, reactor: Any,
                 adoptedFD: Optional[int] = None) -> None:
        """
        With ``adoptedFD``, a worker's listener: it accepts on that
        listening socket, opened by the parent, instead of opening one.
        """
        self.reactor = reactor
        self.endpoint = endpoint
        self.factory = factory
        self.description = description
        self.adoptedFD = adoptedFD
        self.port: Any = None
        self.whenListening: defer.Deferred = defer.Deferred()

    def _listen(self) -> defer.Deferred:
        if self.adoptedFD is None:
            return self.endpoint.listen(self.factory)
        fd, self.adoptedFD = self.adoptedFD, None
        try:
            probe = socket.socket(fileno=fd)  # learns the address family
            family = probe.family
            probe.detach()
            port = self.reactor.adoptStreamPort(fd, family, adoptable(self.endpoint, self.factory))
            os.close(fd)  # the port holds its own copy
            _acceptOneAtATime(port)
        except Exception:
            return defer.fail()
        return defer.succeed(port)

    def startService(self) -> None:
        super().startService()
        failure: list[Failure] = []

        def listening(port: Any) -> Any:
            self.port = port
            self.log.info("listening on {description} ({address})",
                          description=self.description, address=port.getHost())
            self.whenListening.callback(port)
            return port

        def failed(f: Failure) -> None:
            failure.append(f)
            if not starting:
                # An endpoint that fails later: the start is over, stop.
                self.log.critical("cannot listen on {listener}: {error}",
                                  listener=self.description, error=f.getErrorMessage())
                if self.reactor.running:
                    self.reactor.stop()
            self.whenListening.errback(f)

        starting = True
        self._listen().addCallbacks(listening, failed)
        starting = False
        if failure:
            self.whenListening.addErrback(lambda f: None)
            raise CannotListen(f"cannot listen on {self.description}: {failure[0].getErrorMessage()}")
        # Bound now, so a port in use stops the start; connections wait
        # in the backlog until ``serve`` (the database is migrated).
        self.port.stopReading()

    def serve(self) -> None:
        if self.port is not None:
            self.port.startReading()

    def stopService(self) -> Any:
        super().stopService()
        if self.port is not None:
            return self.port.stopListening()
        return None
