"""
The ``secudoc-gateway`` twistd plugin: ``Options`` and ``makeService``,
the one place where every piece is built and wired together.
"""

from __future__ import annotations

import signal
import sys
from typing import Any, Optional, Sequence, Union

import attrs
from prometheus_client import CollectorRegistry
from twisted.application.service import IService, MultiService, Service
from twisted.internet import defer
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.failure import Failure

from secudoc_gateway.config import DEFAULT_CONFIG_PATH, Config, loadUsableConfig, reloadTenants
from secudoc_gateway.errors import ConfigError
from secudoc_gateway.metrics import Metrics
from secudoc_gateway.tenants import TenantRegistry

DRAIN_GRACE_SECONDS = 60.0


class Options(usage.Options):
    optParameters = [
        ["config", "c", DEFAULT_CONFIG_PATH, "Main configuration file (TOML)."],
    ]


def loadOrExit(path: str) -> Config:
    """Load the config, or print every problem and exit 2 (SPEC section 2)."""
    try:
        return loadUsableConfig(path)
    except ConfigError as e:
        for problem in e.problems:
            print(problem, file=sys.stderr)
        raise SystemExit(2)


class ListeningService(Service):
    """
    Listens on one endpoint; unlike StreamServerEndpointService it says
    where (``whenListening`` fires with the port), which tests, benches
    and the start-up log need for ``tcp:0`` listeners.
    """

    log = Logger()

    def __init__(self, endpoint: Any, factory: Any, description: str, reactor: Any) -> None:
        self.reactor = reactor
        self.endpoint = endpoint
        self.factory = factory
        self.description = description
        self.port: Any = None
        self.whenListening: defer.Deferred = defer.Deferred()

    def startService(self) -> None:
        super().startService()

        def listening(port: Any) -> Any:
            self.port = port
            self.log.info("listening on {description} ({address})",
                          description=self.description, address=port.getHost())
            self.whenListening.callback(port)
            return port

        def failed(f: Any) -> None:
            self.log.failure("cannot listen on {description}", f, description=self.description)
            self.whenListening.errback(f)
            if self.reactor.running:
                self.reactor.stop()

        self.endpoint.listen(self.factory).addCallbacks(listening, failed)

    def stopService(self) -> Any:
        super().stopService()
        if self.port is not None:
            return self.port.stopListening()
        return None


class GatewayService(MultiService):
    """
    The listeners as children; on stop, listeners close first, then
    in-flight transactions get up to ``DRAIN_GRACE_SECONDS`` to finish,
    and every connection is closed (its final reply flushed) before the
    database closes and the reactor may stop.  Past the grace period the
    rest get 421 (EXO retries whatever we tempfail).
    """

    log = Logger()

    def __init__(self, config: Config, reactor: Any, gateway: Any, smtpFactory: Any, database: Any,
                 afterDatabase: Sequence[IService] = ()) -> None:
        super().__init__()
        self.config = config
        self.reactor = reactor
        self.gateway = gateway
        self.smtpFactory = smtpFactory
        self.database = database
        self.afterDatabase = list(afterDatabase)
        self._previousHangup: Any = None
        self.smtpListeners: list[ListeningService] = []
        self.webListeners: list[ListeningService] = []

    def startService(self) -> None:
        super().startService()
        self._ready: defer.Deferred = defer.Deferred()
        self._installSignals()

        def opened(_: Any) -> None:
            # Jobs that need the database (the hourly purge) start once it is migrated.
            for child in self.afterDatabase:
                child.setServiceParent(self)
            self._ready.callback(None)

        def failed(f: Any) -> None:
            self.log.failure("database could not be opened", f)
            self._ready.errback(f)
            if self.reactor.running:
                self.reactor.stop()

        self.database.open().addCallbacks(opened, failed)

    def whenReady(self) -> defer.Deferred:
        """Fires once the database is open and migrated (fails if it could not be)."""
        d: defer.Deferred = defer.Deferred()

        def relay(result: Any) -> Any:
            (d.errback if isinstance(result, Failure) else d.callback)(result)
            return None

        self._ready.addBoth(relay)
        return d

    def reload(self) -> bool:
        """
        SIGHUP: read the tenant files again.  A bad file keeps the old
        tenants (and says why); connections and transactions in flight
        are not touched, each keeps the tenant it started with.
        """
        try:
            tenants = reloadTenants(self.config)
        except ConfigError as e:
            for problem in e.problems:
                self.log.error("reload refused: {problem}", problem=problem)
            return False
        self.config = attrs.evolve(self.config, tenants=tenants)
        self.gateway.reload(self.config)
        self.log.info("reloaded {count} tenant(s)", count=len(tenants))
        return True

    def _installSignals(self) -> None:
        def onHangup(signum: int, frame: Any) -> None:
            self.reactor.callFromThread(self.reload)

        self._previousHangup = signal.signal(signal.SIGHUP, onHangup)

    @defer.inlineCallbacks
    def stopService(self):
        if self._previousHangup is not None:
            signal.signal(signal.SIGHUP, self._previousHangup)
            self._previousHangup = None
        yield super().stopService()
        drained = self.smtpFactory.drain()
        timeout = self.reactor.callLater(DRAIN_GRACE_SECONDS, drained.cancel)
        try:
            yield drained
        except defer.CancelledError:
            self.log.warn("grace period over with transactions still in flight: 421 to them")
            yield self.smtpFactory.expire()
        finally:
            if timeout.active():
                timeout.cancel()
        yield self.gateway.closeRelays()
        self.database.close()


def makeService(config: Union[Config, usage.Options, dict], reactor: Optional[Any] = None,
                registry: Optional[CollectorRegistry] = None) -> IService:
    """
    Build the whole gateway.  ``config`` is a loaded ``Config``, or the
    plugin's ``Options`` (twistd passes those).
    """
    if not isinstance(config, Config):
        config = loadOrExit(config["config"])
    if reactor is None:
        from twisted.internet import reactor as _reactor

        reactor = _reactor

    from secudoc_gateway.db import Database
    from secudoc_gateway.logs import LogService
    from secudoc_gateway.pipeline import Gateway
    from secudoc_gateway.purge import PurgeService
    from secudoc_gateway.smtp.protocol import SMTPFactory
    from secudoc_gateway.storage.fs import FilesystemStore
    from secudoc_gateway.tls import serverOptions
    from secudoc_gateway.transfers import TransferStore
    from secudoc_gateway.web.download import TransfersResource
    from secudoc_gateway.web.ops import HealthResource, MetricsResource
    from secudoc_gateway.web.site import makeSite

    metrics = Metrics(registry)
    store = FilesystemStore(config.storage.path, reactor)
    database = Database.fromURL(config.database.url, reactor)
    transfers = TransferStore(database, reactor)
    gateway = Gateway(config, TenantRegistry(config.tenants), metrics, reactor,
                      store=store, transfers=transfers)
    smtp = config.smtp
    smtpFactory = SMTPFactory(
        gateway,
        hostname=smtp.hostname,
        tlsOptions=serverOptions(smtp.tls_certificate),
        requireTLS=smtp.require_tls,
        maxMessageSize=smtp.max_message_size,
        maxRecipients=smtp.max_recipients,
        maxConnections=smtp.max_connections,
        maxConnectionsPerIP=smtp.max_connections_per_ip,
        commandTimeout=smtp.command_timeout,
        dataTimeout=smtp.data_timeout,
        minDataRate=smtp.min_data_rate,
        reactor=reactor,
        metrics=metrics,
    )
    service = GatewayService(config, reactor, gateway, smtpFactory, database,
                             afterDatabase=[PurgeService(transfers, store, reactor,
                                                         leftoverAge=smtp.longestTransaction)])
    LogService(config.log.format, config.log.path).setServiceParent(service)
    for description in smtp.listen:
        listener = ListeningService(serverFromString(reactor, description), smtpFactory, description, reactor)
        listener.setServiceParent(service)
        service.smtpListeners.append(listener)

    def language(tenantId: str) -> str:
        tenant = gateway.registry.byId(tenantId)
        return tenant.language if tenant is not None else "en"

    site = makeSite({
        b"t": TransfersResource(transfers, store, metrics, reactor, language),
        b"metrics": MetricsResource(metrics.registry),
        b"healthz": HealthResource([("storage", store.check), ("database", database.check)], reactor),
    })
    for description in config.web.listen:
        listener = ListeningService(serverFromString(reactor, description), site, description, reactor)
        listener.setServiceParent(service)
        service.webListeners.append(listener)
    return service
