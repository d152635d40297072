"""
``--workers N``: one parent process opens every listener once and runs N
worker processes, each a whole gateway accepting on those same sockets.

Why adopted sockets rather than SO_REUSEPORT: Twisted has no reuse-port
option on its endpoints, the parent opens any endpoint string the config
names (a port in use fails the start once, in one place, before any
worker runs), and a restarted worker takes over the same socket, so no
connection waiting in the kernel's accept queue is lost while it starts.

The parent does no mail work.  It opens the listeners in the order of
``listening.listeners`` and stops reading them; each worker gets them as file
descriptors 3, 4, ... and adopts them (``reactor.adoptStreamPort``).  A
worker that dies is logged and started again; SIGHUP and SIGTERM are
passed on to every worker; on SIGTERM the parent waits for the workers
to finish their transactions (their own grace period) before it exits;
a worker whose parent dies stops too.
Metrics go through prometheus-client's multiprocess mode, in a folder
the parent empties at start.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import sys
import tempfile
from typing import Any

from prometheus_client.multiprocess import mark_process_dead
from twisted.application.service import Service
from twisted.internet import defer, protocol
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.interfaces import IProcessTransport
from twisted.logger import Logger
from twisted.python.components import Componentized
from twisted.python.failure import Failure

from secudoc_gateway.listening import EXIT_CANNOT_LISTEN, adoptable, listeners
from secudoc_gateway.logs import LogService
from secudoc_gateway.metrics import MULTIPROCESS_ENV

# A worker that dies sooner than this after its start waits RESTART_DELAY
# before the next start, so a worker that cannot start does not spin.
QUICK_DEATH = 10.0
RESTART_DELAY = 2.0
# On SIGTERM: the workers' grace period (tap.DRAIN_GRACE_SECONDS) and some
# time to close, then they are killed.
STOP_TIMEOUT = 75.0
FIRST_FD = 3


class _Refuse(protocol.Factory):
    """The parent never accepts (it stops reading at once); if it did, it would close."""

    noisy = False

    def buildProtocol(self, addr: Any) -> None:
        return None


class _Worker(protocol.ProcessProtocol):
    transport: IProcessTransport  # set by spawnProcess, before the worker is kept

    def __init__(self, supervisor: "WorkerSupervisor", number: int) -> None:
        self.supervisor = supervisor
        self.number = number
        self.pid = 0
        self.ended: defer.Deferred = defer.Deferred()

    def processEnded(self, reason: Failure) -> None:
        self.supervisor._ended(self, reason)
        self.ended.callback(None)


class WorkerSupervisor(Service):
    """The parent of ``--workers``: ``count`` workers of the config at ``configPath``."""

    log = Logger()

    def __init__(self, configPath: str, config: Any, count: int, reactor: Any = None) -> None:
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self.configPath = os.path.abspath(configPath)
        self.config = config
        self.count = count
        self.reactor = reactor
        self.ports: list[Any] = []
        self.workers: dict[int, _Worker] = {}
        self._started: dict[int, float] = {}
        self._metricsFolder = ""
        self._ownFolder = False
        self._previousHangup: Any = None

    def startService(self) -> None:
        super().startService()
        self._prepareMetrics()
        self._previousHangup = signal.signal(
            signal.SIGHUP, lambda signum, frame: self.reactor.callFromThread(self.signalAll, "HUP"))
        failure: list[Failure] = []
        starting = True

        def failed(f: Failure) -> None:
            if starting:
                failure.append(f)
            else:
                self._cannotListen(f)

        self._open().addCallbacks(self._startWorkers, failed)
        starting = False
        if failure:
            # As for one process (listening.py): no listener, no start, non-zero.
            self.log.critical("cannot listen: {error}; not starting", error=failure[0].getErrorMessage())
            raise SystemExit(EXIT_CANNOT_LISTEN)

    def setServiceParent(self, parent: Any) -> None:
        # twistd asks the application for its log observer: the configured one (see logs.py).
        if isinstance(parent, Componentized):
            LogService(self.config.log.format, self.config.log.path).handOver(parent)
        super().setServiceParent(parent)

    def _prepareMetrics(self) -> None:
        folder = os.environ.get(MULTIPROCESS_ENV)
        if folder:
            os.makedirs(folder, exist_ok=True)
            # Files of an earlier run would add its counts to this one's.
            for name in glob.glob(os.path.join(folder, "*.db")):
                os.unlink(name)
        else:
            folder = tempfile.mkdtemp(prefix="secudoc-metrics-")
            self._ownFolder = True
        self._metricsFolder = folder

    @defer.inlineCallbacks
    def _open(self) -> Any:
        for _, description in listeners(self.config):
            endpoint = serverFromString(self.reactor, description)
            adoptable(endpoint, _Refuse())  # refuses, before any worker, what a worker could not take
            port = yield endpoint.listen(_Refuse())
            port.stopReading()
            self.ports.append(port)
            self.log.info("opened {description} ({address}) for the workers",
                          description=description, address=port.getHost())

    def _cannotListen(self, f: Failure) -> None:
        self.log.failure("cannot listen", f)
        if self.reactor.running:
            self.reactor.stop()

    def _startWorkers(self, _: Any = None) -> None:
        for number in range(self.count):
            self._spawn(number)

    def _spawn(self, number: int) -> None:
        if not self.running:
            return
        worker = _Worker(self, number)
        fds = {1: 1, 2: 2}
        for i, port in enumerate(self.ports):
            fds[FIRST_FD + i] = port.fileno()
        args = [sys.executable, "-m", "secudoc_gateway.worker", "--config", self.configPath,
                "--listeners", str(len(self.ports)), "--parent", str(os.getpid())]
        env = dict(os.environ, **{MULTIPROCESS_ENV: self._metricsFolder})
        # The transport forgets its pid once the process is reaped.
        worker.pid = self.reactor.spawnProcess(worker, sys.executable, args, env=env, childFDs=fds).pid
        self.workers[number] = worker
        self._started[number] = self.reactor.seconds()
        self.log.info("worker {number} started (pid {pid})", number=number, pid=worker.pid)

    def _ended(self, worker: _Worker, reason: Failure) -> None:
        if self.workers.get(worker.number) is worker:
            del self.workers[worker.number]
        # Its live gauges (open sessions) no longer count; its counters do.
        mark_process_dead(worker.pid, self._metricsFolder)
        if not self.running:
            self.log.info("worker {number} stopped", number=worker.number)
            return
        self.log.error("worker {number} died ({reason}); starting it again",
                       number=worker.number, reason=reason.getErrorMessage())
        quick = self.reactor.seconds() - self._started.get(worker.number, 0) < QUICK_DEATH
        self.reactor.callLater(RESTART_DELAY if quick else 0, self._spawn, worker.number)

    def signalAll(self, name: str) -> None:
        """Send signal ``name`` ("HUP", "TERM", "KILL") to every worker."""
        for worker in list(self.workers.values()):
            try:
                worker.transport.signalProcess(name)
            except ProcessExitedAlready:
                pass

    @defer.inlineCallbacks
    def stopService(self) -> Any:
        super().stopService()
        if self._previousHangup is not None:
            signal.signal(signal.SIGHUP, self._previousHangup)
            self._previousHangup = None
        for port in self.ports:
            # Closes only the parent's copy: the workers accept until they stop.
            yield port.stopListening()
        ended = [w.ended for w in self.workers.values()]
        self.signalAll("TERM")
        kill = self.reactor.callLater(STOP_TIMEOUT, self.signalAll, "KILL")
        yield defer.gatherResults(ended)
        if kill.active():
            kill.cancel()
        if self._ownFolder:
            shutil.rmtree(self._metricsFolder, ignore_errors=True)
