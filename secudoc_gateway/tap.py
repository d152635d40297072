"""
The ``secudoc-gateway`` twistd plugin: ``Options`` and ``makeService``,
the one place where every piece is built and wired together.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any, Callable, Optional, Sequence, Union, overload

import attrs
from prometheus_client import CollectorRegistry
from twisted.application.service import IService, MultiService
from twisted.internet import defer
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.components import Componentized
from twisted.python.failure import Failure

from secudoc_gateway import __version__, links
from secudoc_gateway.config import DEFAULT_CONFIG_PATH, Config, loadUsableConfig, reloadTenants
from secudoc_gateway.config.values import OnScanError
from secudoc_gateway.errors import ConfigError
from secudoc_gateway.listening import (
    EXIT_CANNOT_LISTEN, CannotListen, ListeningService, listenerProblems, listeners, raiseFileLimit,
)
from secudoc_gateway.logs import LogService, logReady
from secudoc_gateway.metrics import Metrics
from secudoc_gateway.settings import LiveSettings, SettingsPoller, SettingsStore
from secudoc_gateway.tenants import TenantRegistry

DRAIN_GRACE_SECONDS = 60.0
CLAMD_CHECK = "clamd"
"""The /healthz check of the scanner, with scanning on (SPEC 10)."""
EXIT_CONFIG = 2

class Options(usage.Options):
    synopsis = "[--config PATH]"
    longdesc = (
        "Runs the whole gateway in this process: SMTP listeners, the public web"
        " listener for download links, the operators' metrics listener, the relay"
        " client and storage. SIGHUP reloads the tenant files; SIGTERM drains"
        f" transactions in flight (up to {DRAIN_GRACE_SECONDS:.0f} seconds) and stops."
        " The [log] section of the config decides where the log goes."
    )
    optParameters = [
        ["config", "c", DEFAULT_CONFIG_PATH,
         "Main configuration file (TOML); relative paths in it are relative to its folder."],
        ["workers", "w", 1, "Worker processes sharing the listeners (0: one per CPU core).", int],
    ]

    def opt_version(self) -> None:
        """Print the version and exit."""
        print(f"secudoc-gateway {__version__}")
        raise SystemExit(0)

    def postOptions(self) -> None:
        if self["workers"] < 0:
            raise usage.UsageError("--workers must be 0 or more")


def loadOrExit(path: str) -> Config:
    """Load the config, or print every problem and exit 2 (SPEC section 2)."""
    try:
        config = loadUsableConfig(path)
        problems = listenerProblems(config)
    except ConfigError as e:
        problems = e.problems
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        raise SystemExit(EXIT_CONFIG)
    return config


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
                 metrics: Metrics, afterDatabase: Sequence[IService] = (), worker: Optional[int] = None,
                 settings: Optional[LiveSettings] = None) -> None:
        super().__init__()
        # The portal's overrides: read once the database is open, before
        # anything serves, so the first message already follows them.
        self.settings = settings
        self.config = config
        self.metrics = metrics
        self.reactor = reactor
        self.gateway = gateway
        self.smtpFactory = smtpFactory
        self.database = database
        self.afterDatabase = list(afterDatabase)
        self._previousHangup: Any = None
        self.smtpListeners: list[ListeningService] = []
        self.webListeners: list[ListeningService] = []
        self.metricsListeners: list[ListeningService] = []
        self.logs = LogService(config.log.format, config.log.path, worker=worker)
        self.logs.setServiceParent(self)
        # What the start's end does: log the ready line; a worker tells its parent instead.
        self.announce: Callable[[], None] = lambda: logReady(self.log, self.listening(), self.config.tenants, 1)

    def listening(self) -> list[tuple[str, Any]]:
        """Each listener's kind and bound address (a ``tcp:0`` listener's real port)."""
        return [(kind, listener.port.getHost())
                for kind, served in (("smtp", self.smtpListeners), ("web", self.webListeners),
                                     ("metrics", self.metricsListeners))
                for listener in served if listener.port is not None]

    def setServiceParent(self, parent: Any) -> None:
        # twistd makes an Application for the plugin's service and only
        # then asks it for a log observer: hand ours over (see logs.py).
        if isinstance(parent, Componentized):
            self.logs.handOver(parent)
        super().setServiceParent(parent)

    def startService(self) -> None:
        raiseFileLimit()
        try:
            super().startService()
        except CannotListen as e:
            # A gateway without its listeners must not look healthy to
            # systemd: stop the start, non-zero (SPEC section 2).
            self.log.critical("{error}; not starting", error=str(e))
            raise SystemExit(EXIT_CANNOT_LISTEN)
        self._ready: defer.Deferred = defer.Deferred()
        self._installSignals()

        def opened(_: Any) -> None:
            # What needs the database (the listeners, the hourly purge) starts once it is migrated.
            for child in self.afterDatabase:
                child.setServiceParent(self)
            for listener in self.smtpListeners + self.webListeners + self.metricsListeners:
                listener.serve()
            self.announce()
            self._ready.callback(None)

        def failed(f: Any) -> None:
            self.log.failure("database could not be opened", f)
            self._ready.errback(f)
            if self.reactor.running:
                self.reactor.stop()

        d = self.database.open()
        if self.settings is not None:
            settings = self.settings
            d.addCallback(lambda _: defer.ensureDeferred(settings.refresh()))
        d.addCallbacks(opened, failed)

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
            self.metrics.configLoaded(False, self.reactor.seconds())
            return False
        self.config = attrs.evolve(self.config, tenants=tenants)
        if self.settings is not None:
            self.settings.files(tenants)  # with the portal's overrides
        else:
            self.gateway.reload(self.config)
        self.metrics.configLoaded(True, self.reactor.seconds())
        self.metrics.showTenants(t.id for t in tenants)
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
        yield self.gateway.store.close()
        self.database.close()


def portalResources(config: Config, web: Any, database: Any, clock: Any, gateway: Any,
                    reactor: Any, settings: Optional[LiveSettings] = None) -> tuple[Any, Any, IService]:
    """
    ``/portal/`` and ``/saml/`` (SPEC 9) on the recipient side's context,
    sessions and SAML requests timed by ``clock``; and the service that
    runs pysaml2's thread.  The IdPs' metadata is fetched with the
    platform's trusted roots (``SSL_CERT_FILE`` names others).
    """
    from treq.client import HTTPClient
    from twisted.web.client import Agent

    from secudoc_gateway.portal import PortalContext, PortalResource
    from secudoc_gateway.portal.loginlinks import LoginLinks
    from secudoc_gateway.portal.saml.context import SAMLContext
    from secudoc_gateway.portal.saml.federation import Federation
    from secudoc_gateway.portal.saml.resource import SAMLResource
    from secudoc_gateway.portal.saml.signatures import SAMLWorker
    from secudoc_gateway.portal.saml.store import SAMLStore
    from secudoc_gateway.portal.sessions import SessionLimits, SessionStore

    from secudoc_gateway.portal.send import SEND_PATH
    from secudoc_gateway.portal.upload import Uploads

    worker = SAMLWorker(reactor)
    saml = SAMLContext(store=SAMLStore(database, clock),
                       federation=Federation(database, clock, HTTPClient(Agent(reactor))), worker=worker)
    sessions = SessionStore(database, clock, SessionLimits.fromConfig(config.portal))
    uploads = Uploads(gateway, web, sessions, config.portal.max_upload_size)
    portal = PortalContext(web=web, sessions=sessions, logins=LoginLinks(database, clock),
                           tenantForAddress=lambda address: gateway.registry.forSender(address), saml=saml,
                           settings=settings, uploads=uploads)
    resource = PortalResource(portal)
    resource.streamed = {SEND_PATH: uploads}  # the site streams these POST bodies (``web.site.Streamed``)
    return resource, SAMLResource(portal, saml), worker


@overload
def makeService(config: Config, reactor: Optional[Any] = None, registry: Optional[CollectorRegistry] = None,
                clock: Optional[Any] = None, adoptedFDs: Optional[Sequence[int]] = None,
                worker: Optional[int] = None) -> GatewayService: ...


@overload
def makeService(config: Union[usage.Options, dict], reactor: Optional[Any] = None,
                registry: Optional[CollectorRegistry] = None, clock: Optional[Any] = None,
                adoptedFDs: Optional[Sequence[int]] = None, worker: Optional[int] = None) -> IService: ...


def makeService(config: Union[Config, usage.Options, dict], reactor: Optional[Any] = None,
                registry: Optional[CollectorRegistry] = None, clock: Optional[Any] = None,
                adoptedFDs: Optional[Sequence[int]] = None, worker: Optional[int] = None) -> IService:
    """
    Build the whole gateway.  ``config`` is a loaded ``Config``, or the
    plugin's ``Options`` (twistd passes those; with ``--workers`` other
    than 1 the service is the parent of the worker processes).  ``clock``
    (default the reactor) times verification codes and sessions, so
    tests can age them.  A worker passes ``adoptedFDs``: the parent's
    listening sockets, one for each of ``listeners(config)``, and its
    ``worker`` number, which each of its log lines carries.
    """
    if not isinstance(config, Config):
        path, workers = config["config"], config.get("workers", 1)
        config = loadOrExit(path)
        if workers != 1:
            from secudoc_gateway.workers import WorkerSupervisor

            return WorkerSupervisor(path, config, workers or os.cpu_count() or 1)
    if reactor is None:
        from twisted.internet import reactor as _reactor

        reactor = _reactor

    from secudoc_gateway.access import AccessStore
    from secudoc_gateway.db import Database
    from secudoc_gateway.ingress.gateway import Gateway
    from secudoc_gateway.purge import PurgeService
    from secudoc_gateway.scan import Scanner
    from secudoc_gateway.smtp.factory import SMTPFactory
    from secudoc_gateway.spool import MemoryBudget
    from secudoc_gateway.storage import storeFor
    from secudoc_gateway.tls import expiry, serverOptions
    from secudoc_gateway.transfers import TransferStore
    from secudoc_gateway.web.context import WebContext
    from secudoc_gateway.web.landing import TransfersResource
    from secudoc_gateway.web.mails import relayMailer
    from secudoc_gateway.web.ops import HealthMonitor, HealthResource, MetricsResource
    from secudoc_gateway.web.site import makeSite

    metrics = Metrics(registry)
    metrics.configLoaded(True, reactor.seconds())
    metrics.showTenants(t.id for t in config.tenants)
    budget = MemoryBudget(config.smtp.memory_budget)
    store = storeFor(config, reactor, budget)
    database = Database.fromConfig(config.database, reactor)
    transfers = TransferStore(database, reactor)
    scanner = Scanner(config.scan, reactor) if config.scan.clamd else None
    gateway = Gateway(config, TenantRegistry(config.tenants), metrics, reactor,
                      store=store, transfers=transfers, budget=budget, scanner=scanner)
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
    smtpFactory.noisy = False  # "Starting factory <object at 0x...>" tells an operator nothing
    checks = [("storage", store.check), ("database", database.check)]
    if scanner is not None:
        checks.append((CLAMD_CHECK, scanner.check))
    monitor = HealthMonitor(checks, reactor)

    def publish(tenants: Any) -> None:
        """The effective tenants (files and the portal's overrides) into the gateway's registry."""
        gateway.reload(attrs.evolve(service.config, tenants=tenants))

    settings = LiveSettings(SettingsStore(database, clock or reactor), config.tenants, publish)
    service = GatewayService(config, reactor, gateway, smtpFactory, database, metrics,
                             afterDatabase=[PurgeService(transfers, store, reactor, metrics, smtp.longestTransaction,
                                                         traceDays=config.portal.trace_days),
                                            monitor, SettingsPoller(settings, reactor)],
                             worker=worker, settings=settings)
    certificateExpiry = expiry(smtp.tls_certificate)
    for description in smtp.listen:
        metrics.certificateExpiry.labels(listener=description).set(certificateExpiry)

    web = WebContext(
        transfers=transfers, access=AccessStore(database, clock or reactor), store=store, metrics=metrics,
        reactor=reactor,
        tenantOf=lambda tenantId: gateway.registry.byId(tenantId), mailer=relayMailer(gateway),
        publicURL=config.web.public_url, language=config.web.language, hostname=smtp.hostname,
    )

    def degraded() -> frozenset[str]:
        """clamd down makes /healthz 503 only when a tenant answers 451 for it (SPEC 10)."""
        tempfails = any(t.on_scan_error is OnScanError.TEMPFAIL for t in gateway.config.tenants)
        return frozenset() if tempfails else frozenset({CLAMD_CHECK})

    health = HealthResource(monitor, degraded)
    public: dict[bytes, Any] = {b"t": TransfersResource(web), b"healthz": health}
    streamed: dict[bytes, Any] = {}
    if config.portal.enabled:
        portal, saml, samlWorker = portalResources(config, web, database, clock or reactor, gateway, reactor,
                                                   settings)
        public[links.PORTAL.encode("ascii")] = portal
        public[links.SAML.encode("ascii")] = saml
        service.afterDatabase.append(samlWorker)
        streamed.update(portal.streamed)
    # The web listeners admit as many connections from one address as SMTP does.
    https = config.web.public_url.startswith("https:")
    site = makeSite(public, smtp.max_connections_per_ip, https=https, reactor=reactor)
    site.streamed.update(streamed)
    factories = {
        "smtp": smtpFactory,
        "web": site,
        "metrics": makeSite({b"metrics": MetricsResource(metrics, monitor), b"healthz": health},
                            smtp.max_connections_per_ip, https=https, quiet=True, reactor=reactor),
    }
    served = {"smtp": service.smtpListeners, "web": service.webListeners, "metrics": service.metricsListeners}
    kinds = listeners(config)
    if adoptedFDs is not None and len(adoptedFDs) != len(kinds):
        raise ConfigError([f"{config.path}: the listeners changed since the parent opened them"])
    for i, (kind, description) in enumerate(kinds):
        listener = ListeningService(serverFromString(reactor, description), factories[kind], description,
                                    reactor, adoptedFD=None if adoptedFDs is None else adoptedFDs[i])
        listener.setServiceParent(service)
        served[kind].append(listener)
    return service
