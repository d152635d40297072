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
passed on to every worker; on SIGTERM (or Ctrl-C's SIGINT) the parent
waits for the workers to finish their transactions (their own grace
period) before it exits; a worker whose parent dies stops too.

Signals: a terminal's Ctrl-C reaches the whole process group, parent
and workers at once, and the parent then sends each worker SIGTERM.  So
a worker ignores SIGINT (its parent decides when it stops) and every
process stops once for however many signals arrive.  Each worker tells
the parent on a pipe when it serves; the parent logs the one "ready"
line once every worker does.
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
from secudoc_gateway.logs import LogService, logReady
from secudoc_gateway.metrics import MULTIPROCESS_ENV

# A worker that dies sooner than this after its start waits RESTART_DELAY
# before the next start, so a worker that cannot start does not spin.
QUICK_DEATH = 10.0
RESTART_DELAY = 2.0
# On SIGTERM: the workers' grace period (tap.DRAIN_GRACE_SECONDS) and some
# time to close, then they are killed.
STOP_TIMEOUT = 75.0
FIRST_FD = 3
READY = b"ready\n"


def stopOnce(reactor: Any, stopOn: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT),
             ignore: tuple[int, ...] = ()) -> None:
    """
    From now on only the first of ``stopOn`` reaches Twisted's handler
    (which stops the reactor and has twistd exit by that signal); later
    ones are logged and dropped.  Twisted stops the reactor again for
    each signal, and Ctrl-C then the parent's SIGTERM was a critical
    traceback ("Can't stop reactor that isn't running").  ``ignore`` are
    ignored.  Call it once the reactor runs, after Twisted installed its
    handlers.
    """
    log = Logger()
    stopping: list[int] = []

    def wrap(previous: Any) -> Any:
        def handler(signum: int, frame: Any) -> None:
            if stopping:
                reactor.callFromThread(log.info, "received {signal} while stopping", signal=signal.Signals(signum).name)
                return
            stopping.append(signum)
            if callable(previous):
                previous(signum, frame)
            else:  # no handler of Twisted's (a reactor run without them): stop all the same
                reactor.callFromThread(reactor.stop)

        return handler

    for signum in stopOn:
        signal.signal(signum, wrap(signal.getsignal(signum)))
    for signum in ignore:
        signal.signal(signum, signal.SIG_IGN)


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
        self._said = b""

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        # Only the ready pipe is read; the worker writes READY once it serves.
        self._said += data
        if self._said[:len(READY)] == READY:
            self._said = b"-"
            self.supervisor._serving(self)

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
        self._servingNumbers: set[int] = set()
        self._announced = False
        self._metricsFolder = ""
        self._ownFolder = False
        self._previousHangup: Any = None

    def startService(self) -> None:
        super().startService()
        self._prepareMetrics()
        self._previousHangup = signal.signal(
            signal.SIGHUP, lambda signum, frame: self.reactor.callFromThread(self.signalAll, "HUP"))
        self.reactor.callWhenRunning(stopOnce, self.reactor)
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
        fds: dict[int, Any] = {1: 1, 2: 2}
        for i, port in enumerate(self.ports):
            fds[FIRST_FD + i] = port.fileno()
        readyFD = FIRST_FD + len(self.ports)
        fds[readyFD] = "r"
        args = [sys.executable, "-m", "secudoc_gateway.worker", "--config", self.configPath,
                "--listeners", str(len(self.ports)), "--parent", str(os.getpid()),
                "--number", str(number), "--ready-fd", str(readyFD)]
        env = dict(os.environ, **{MULTIPROCESS_ENV: self._metricsFolder})
        # The transport forgets its pid once the process is reaped.
        worker.pid = self.reactor.spawnProcess(worker, sys.executable, args, env=env, childFDs=fds).pid
        self.workers[number] = worker
        self._started[number] = self.reactor.seconds()
        self.log.info("worker {number} started (pid {pid})", number=number, pid=worker.pid)

    def _serving(self, worker: _Worker) -> None:
        """A worker serves: once all do, the start's one ready line; later, a restarted one's line."""
        if self._announced:
            self.log.info("worker {number} serving again (pid {pid})", number=worker.number, pid=worker.pid)
            return
        self._servingNumbers.add(worker.number)
        if len(self._servingNumbers) == self.count:
            self._announced = True
            logReady(self.log, [(kind, port.getHost()) for (kind, _), port in zip(listeners(self.config), self.ports)],
                     self.config.tenants, self.count)

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
