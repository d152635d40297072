"""
Helpers for tests and benches: a complete configuration in a temporary
folder (certificate, main file, tenant files) and the real service
started on free ports.  The in-memory fakes are in ``fakes``.
"""

from __future__ import annotations

import atexit
import os
import tempfile
from typing import Any, Optional

import attrs
from prometheus_client import CollectorRegistry
from twisted.internet import defer

from secudoc_gateway import devcert
from secudoc_gateway.envelope import Envelope

DEMO_TENANT: dict[str, Any] = {
    "id": "example",
    "domains": ["example.test"],
    "allowed_sources": ["127.0.0.0/8"],
    "relay": "maildir:outbox/example",
    "users": ["*@example.test"],
    "facility_sender": "noreply@example.test",
}


def tomlValue(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(tomlValue(v) for v in value) + "]"
    raise TypeError(f"no TOML for {value!r}")


def tomlTable(values: dict[str, Any]) -> str:
    return "".join(f"{key} = {tomlValue(value)}\n" for key, value in values.items())


# Which database end-to-end tests run on: "sqlite" (default) or "postgresql".
DATABASE_ENV = "SECUDOC_TEST_DATABASE"


def postgresqlServer() -> str:
    """
    The admin URL of the test PostgreSQL cluster, its password in the
    environment (``pgcluster.PASSWORD_ENV``): the one the Makefile
    started for the whole run, else one started for this process and
    stopped when it exits.
    """
    from secudoc_gateway.testing import postgres as pgcluster

    if pgcluster.URL_ENV not in os.environ:
        cluster = pgcluster.Cluster(tempfile.mkdtemp(prefix="secudoc-pg-"))
        cluster.create()
        cluster.start()
        atexit.register(cluster.destroy)
        os.environ.update(cluster.environment())
    return os.environ[pgcluster.URL_ENV]


def freshPostgreSQL() -> dict[str, Any]:
    """A ``[database]`` table naming a new, empty database on the test cluster."""
    from secudoc_gateway.testing import postgres as pgcluster

    admin = postgresqlServer()
    return {"url": pgcluster.freshDatabase(admin, os.environ[pgcluster.PASSWORD_ENV]),
            "password_env": pgcluster.PASSWORD_ENV}


def testDatabase() -> dict[str, Any]:
    """The ``[database]`` table of a test config, as ``SECUDOC_TEST_DATABASE`` asks."""
    kind = os.environ.get(DATABASE_ENV, "sqlite")
    if kind == "postgresql":
        return freshPostgreSQL()
    if kind != "sqlite":
        raise ValueError(f"{DATABASE_ENV} must be sqlite or postgresql, not {kind!r}")
    return {"url": "sqlite:gateway.sqlite3"}


def writeConfig(
    folder: str,
    tenants: Optional[list[dict[str, Any]]] = None,
    smtp: Optional[dict[str, Any]] = None,
    web: Optional[dict[str, Any]] = None,
    log: Optional[dict[str, Any]] = None,
    metrics: Optional[dict[str, Any]] = None,
    storage: Optional[dict[str, Any]] = None,
    database: Optional[dict[str, Any]] = None,
    portal: Optional[dict[str, Any]] = None,
) -> str:
    """
    A config in ``folder`` listening on free loopback ports, storing
    under ``folder`` (or, with ``SECUDOC_TEST_STORAGE=s3`` in the
    environment, in a new bucket of the run's S3 server); returns the
    main file's path.  ``tenants`` default to the demo tenant relaying
    into ``folder/outbox/example``; ``database`` to ``testDatabase()``.
    """
    os.makedirs(os.path.join(folder, "tenants"), exist_ok=True)
    certificate = os.path.join(folder, "gateway.pem")
    if not os.path.exists(certificate):
        devcert.issue(None, "mailproxy.localhost", ["mailproxy.localhost", "localhost", "127.0.0.1"]).writeTo(certificate)
    if storage is None and os.environ.get("SECUDOC_TEST_STORAGE", "fs") == "s3":
        from secudoc_gateway.testing.s3 import testStorage

        storage = testStorage()
    sections = {
        "smtp": {"listen": ["tcp:0:interface=127.0.0.1"], "tls_certificate": "gateway.pem", **(smtp or {})},
        "web": {"listen": ["tcp:0:interface=127.0.0.1"], **(web or {})},
        "metrics": {"listen": ["tcp:0:interface=127.0.0.1"], **(metrics or {})},
        "storage": storage or {"path": "objects"},
        "database": database if database is not None else testDatabase(),
        "log": log or {},
        **({"portal": portal} if portal is not None else {}),
    }
    path = os.path.join(folder, "gateway.toml")
    with open(path, "w", encoding="utf-8") as f:
        for name, values in sections.items():
            f.write(f"[{name}]\n{tomlTable(values)}\n")
    for tenant in tenants if tenants is not None else [DEMO_TENANT]:
        with open(os.path.join(folder, "tenants", f"{tenant['id']}.toml"), "w", encoding="utf-8") as f:
            f.write(tomlTable(tenant))
    return path


def ingressOn(clock: Any, folder: str, tenants: Optional[list[dict[str, Any]]] = None,
              smtp: Optional[dict[str, Any]] = None, database: Optional[dict[str, Any]] = None,
              registry: Optional[CollectorRegistry] = None, **parts: Any) -> Any:
    """
    The ingress alone, in this process: a ``Gateway`` on ``clock`` over a
    complete configuration written in ``folder``, with no listener.
    ``parts`` are the Gateway's own (``store``, ``transfers``,
    ``relayFactory``, ...).
    """
    from secudoc_gateway.config import loadConfig
    from secudoc_gateway.ingress.gateway import Gateway
    from secudoc_gateway.metrics import Metrics
    from secudoc_gateway.tenants import TenantRegistry

    config = loadConfig(writeConfig(folder, tenants, smtp=smtp, database=database))
    return Gateway(config, TenantRegistry(config.tenants), Metrics(registry or CollectorRegistry()), clock,
                   **parts)


def envelopeFor(gateway: Any, recipients: tuple[str, ...] = ("bob@external.test",),
                sender: str = "alice@example.test", peer: str = "127.0.0.1") -> Envelope:
    """The envelope the SMTP side hands over, the sender's tenant found as at MAIL."""
    _, tenant = gateway.checkSender(peer, sender)
    return Envelope(sender, recipients, peer=peer, tenant=tenant)


@attrs.define
class RunningGateway:
    service: Any
    smtpPort: int
    webPort: int
    metricsPort: int

    @property
    def webURL(self) -> str:
        return f"http://127.0.0.1:{self.webPort}"

    @property
    def metricsURL(self) -> str:
        return f"http://127.0.0.1:{self.metricsPort}"

    def stop(self) -> defer.Deferred:
        """Drain and stop (a test may stop it before its cleanup does: the second stop does nothing)."""
        if not self.service.running:
            return defer.succeed(None)
        return defer.maybeDeferred(self.service.stopService)


async def startGateway(configPath: str, reactor: Any = None, clock: Any = None) -> RunningGateway:
    """
    The real service from ``configPath``, listening; stop it with
    ``.stop()``.  ``clock`` times verification codes (``makeService``).
    """
    from secudoc_gateway.config import loadConfig
    from secudoc_gateway.tap import makeService

    if reactor is None:
        from twisted.internet import reactor as _reactor

        reactor = _reactor
    service = makeService(loadConfig(configPath), reactor, CollectorRegistry(), clock=clock)
    service.startService()
    await service.whenReady()
    smtp = await service.smtpListeners[0].whenListening
    web = await service.webListeners[0].whenListening
    metrics = await service.metricsListeners[0].whenListening
    await service.whenReady()
    return RunningGateway(service, smtp.getHost().port, web.getHost().port, metrics.getHost().port)


class GatewayProcess:
    """
    The gateway as its own ``twistd`` process (``--workers`` and
    several-node tests, benches), its log in ``logPath``.  Blocking.
    """

    def __init__(self, configPath: str, smtpPort: int, webPort: int, workers: int = 1,
                 env: Optional[dict[str, str]] = None, webScheme: str = "http") -> None:
        self.configPath = configPath
        self.smtpPort = smtpPort
        self.webPort = webPort
        self.workers = workers
        self.env = env or {}
        self.webScheme = webScheme
        self.logPath = configPath + f".{smtpPort}.log"
        self.process: Any = None

    def start(self, timeout: float = 60) -> "GatewayProcess":
        """``launch``, then ``ready``."""
        return self.launch().ready(timeout)

    def launch(self) -> "GatewayProcess":
        """Start the process, without waiting (several nodes start at once)."""
        import subprocess
        import sys

        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""), **self.env)
        twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        with open(self.logPath, "ab") as log:
            self.process = subprocess.Popen(
                [twistd, "--nodaemon", "--pidfile=", "secudoc-gateway", "--config", self.configPath,
                 "--workers", str(self.workers)], stdout=log, stderr=subprocess.STDOUT, env=env)
        return self

    def ready(self, timeout: float = 60) -> "GatewayProcess":
        """Wait until it answers /healthz and every worker listens."""
        self.waitFor(lambda: self.health() == 200, timeout, "the gateway to answer /healthz")
        self.waitFor(lambda: self.listening() >= self.workers, timeout, "every worker to listen")
        return self

    def listening(self) -> int:
        """How many processes have started serving SMTP (each worker once per start)."""
        return self.log().count(f"listening on tcp:{self.smtpPort}:interface=127.0.0.1 (IPv4Address")

    def waitFor(self, condition: Any, timeout: float, what: str) -> None:
        import time

        deadline = time.monotonic() + timeout
        while not condition():
            if self.process.poll() is not None:
                raise AssertionError(f"the gateway exited ({self.process.returncode}) waiting for {what}:\n"
                                     + self.log()[-4000:])
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}:\n" + self.log()[-4000:])
            time.sleep(0.05)

    def get(self, path: str, scheme: str = "http", port: Optional[int] = None) -> tuple[int, bytes]:
        """``path`` from the web listener (or ``port``: the metrics listener's, say)."""
        import ssl
        import urllib.error
        import urllib.request

        context = ssl._create_unverified_context() if scheme == "https" else None
        try:
            with urllib.request.urlopen(f"{scheme}://127.0.0.1:{port or self.webPort}{path}", timeout=10,
                                        context=context) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
        except OSError:
            return 0, b""

    def health(self) -> int:
        return self.get("/healthz", self.webScheme)[0]

    def log(self) -> str:
        with open(self.logPath, encoding="utf-8", errors="replace") as f:
            return f.read()

    def workerPids(self) -> dict[int, int]:
        """Each worker number's latest pid, from the parent's log."""
        import re

        return {int(n): int(pid) for n, pid in re.findall(r"worker (\d+) started \(pid (\d+)\)", self.log())}

    def stop(self, timeout: float = 120) -> int:
        """SIGTERM, then the exit status."""
        import signal

        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)
