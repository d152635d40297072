"""
Helpers for tests and benches: a complete configuration in a temporary
folder (certificate, main file, tenant files) and the real service
started on free ports.  The in-memory fakes are in ``fakes``.
"""

from __future__ import annotations

import atexit
import os
import resource
import signal
import subprocess
import sys
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
    "relay": "maildir:../outbox/example",  # relative to the tenant file's folder
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
    scan: Optional[dict[str, Any]] = None,
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
        **({"scan": scan} if scan is not None else {}),
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


# The checkout (put on the path, so twistd finds the plugin) and twistd.
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")


def checkoutEnvironment(**more: str) -> dict[str, str]:
    """This environment with the checkout first on the path."""
    return dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), **more)


def run(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    """A command to its end, with the checkout on the path; its output captured as text."""
    return subprocess.run(args, capture_output=True, text=True, env=checkoutEnvironment(), timeout=timeout)


class GatewayProcess:
    """
    The gateway as operators run it: ``twistd --nodaemon secudoc-gateway``
    in its own process (and session, so a signal to its process group is
    a terminal's Ctrl-C), with ``--workers``; standard output and error
    in files next to the config.  It is started once its one "ready"
    line is logged.  Blocking: for tests that drive processes, benches,
    several nodes.  ``inFolder`` writes a fresh config on free ports.
    """

    def __init__(self, configPath: str, smtpPort: int, webPort: int, workers: int = 1,
                 env: Optional[dict[str, str]] = None, webScheme: str = "http",
                 metricsPort: Optional[int] = None, fileLimit: Optional[tuple[int, int]] = None) -> None:
        """``fileLimit``: the (soft, hard) RLIMIT_NOFILE twistd starts under."""
        self.configPath = os.path.abspath(configPath)
        self.folder = os.path.dirname(self.configPath)
        self.smtpPort = smtpPort
        self.webPort = webPort
        self.metricsPort = metricsPort
        self.workers = workers
        self.env = env or {}
        self.webScheme = webScheme
        self.fileLimit = fileLimit
        self.stdoutPath = f"{self.configPath}.{smtpPort}.stdout"
        self.stderrPath = f"{self.configPath}.{smtpPort}.stderr"
        self.logPath = self._configuredLog()
        self.process: Any = None
        self._readyBefore = 0

    @classmethod
    def inFolder(cls, folder: str, tenant: Optional[dict[str, Any]] = None, workers: int = 1,
                 env: Optional[dict[str, str]] = None, fileLimit: Optional[tuple[int, int]] = None,
                 **sections: Any) -> "GatewayProcess":
        """A config in ``folder`` on free ports: ``tenant`` over the demo tenant, ``sections`` to ``writeConfig``."""
        from secudoc_gateway.testing.ports import freePort

        ports = freePort(), freePort(), freePort()
        listen = lambda port: {"listen": [f"tcp:{port}:interface=127.0.0.1"]}
        path = writeConfig(
            folder, [dict(DEMO_TENANT, **(tenant or {}))],
            smtp=dict(listen(ports[0]), **sections.pop("smtp", {})),
            web=dict(listen(ports[1]), **sections.pop("web", {})),
            metrics=listen(ports[2]), **sections,
        )
        return cls(path, ports[0], ports[1], workers, env, metricsPort=ports[2], fileLimit=fileLimit)

    def _configuredLog(self) -> str:
        """The ``[log] path`` file, if the log goes to a file rather than standard output."""
        from secudoc_gateway.config import loadConfig
        from secudoc_gateway.errors import ConfigError

        try:
            path = loadConfig(self.configPath).log.path
        except ConfigError:
            return ""
        return "" if path == "-" else path

    def start(self, timeout: float = 60) -> "GatewayProcess":
        """``launch``, then ``ready``."""
        return self.launch().ready(timeout)

    def launch(self) -> "GatewayProcess":
        """Start the process, without waiting (several nodes start at once; a start that must fail)."""
        limit = self.fileLimit
        # The log is appended to: an earlier start's ready line is no answer.
        self._readyBefore = len(self.readyLines()) if os.path.exists(self.stdoutPath) else 0
        with open(self.stdoutPath, "ab") as out, open(self.stderrPath, "ab") as err:
            self.process = subprocess.Popen(
                [TWISTD, "--nodaemon", "--pidfile=", "secudoc-gateway", "--config", self.configPath,
                 "--workers", str(self.workers)],
                stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=checkoutEnvironment(**self.env),
                cwd=self.folder, start_new_session=True,
                preexec_fn=None if limit is None else lambda: resource.setrlimit(resource.RLIMIT_NOFILE, limit))
        return self

    def ready(self, timeout: float = 60) -> "GatewayProcess":
        """Wait for the ready line: every listener serves in every worker."""
        self.waitFor(lambda: len(self.readyLines()) > self._readyBefore, timeout, "the ready line")
        return self

    def readyLines(self) -> list[str]:
        return [line for line in self.log().splitlines() if "ready: " in line and " worker(s)" in line]

    def waitFor(self, condition: Any, timeout: float, what: str) -> None:
        """Poll ``condition``; fail with the log's end when the gateway exits or the time is over."""
        from secudoc_gateway.testing.polling import untilBlocking

        untilBlocking(condition, what, timeout, process=self.process, context=lambda: self.log()[-4000:])

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

    def output(self) -> tuple[bytes, bytes]:
        """Standard output and standard error so far."""
        with open(self.stdoutPath, "rb") as out, open(self.stderrPath, "rb") as err:
            return out.read(), err.read()

    def log(self) -> str:
        """Everything it wrote: standard output, standard error, the ``[log]`` file."""
        out, err = self.output()
        text = (out + err).decode("utf-8", "replace")
        if self.logPath and os.path.exists(self.logPath):
            with open(self.logPath, encoding="utf-8", errors="replace") as f:
                text += f.read()
        return text

    def workerPids(self) -> dict[int, int]:
        """Each worker number's latest pid, from the parent's log."""
        import re

        return {int(n): int(pid) for n, pid in re.findall(r"worker (\d+) started \(pid (\d+)\)", self.log())}

    def signalGroup(self, signum: int) -> None:
        """``signum`` to the parent and every worker at once, as a terminal's Ctrl-C (SIGINT) does."""
        os.killpg(self.process.pid, signum)

    def wait(self, timeout: float = 60) -> int:
        return int(self.process.wait(timeout))

    def stop(self, timeout: float = 120) -> int:
        """SIGTERM, then the exit status; killed (with its workers) if it outlasts ``timeout``."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return int(self.process.wait(timeout))
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            return int(self.process.wait())
