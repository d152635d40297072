"""
The operator's endpoints: ``/metrics`` for Prometheus and ``/healthz``
for the load balancer (200 only when storage and database answer).

A balancer needs an answer at once, also when a backend hangs, so no
request waits for a check: ``HealthMonitor`` runs the checks every few
seconds in the background and ``/healthz`` says what the latest round
found.  A check that has not answered within its timeout counts as
down, and is not started again while its last call still hangs (a
stuck database would otherwise gather a waiting thread per round).
Each scrape of ``/metrics`` exports the same state as
``secudoc_health_check_up``, so Prometheus alerts on what a balancer
would see without a probe of its own.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from twisted.application.service import Service
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

HEALTH_INTERVAL = 2.0
HEALTH_TIMEOUT = 3.0
FIRST_ANSWER = 0.8
"""How long a request waits for the very first round (just after start) before it says "down"."""

Outcomes = list[tuple[str, Optional[str]]]


class HealthMonitor(Service):
    """The checks, run every ``interval`` seconds; ``current()`` is the latest round's outcome."""

    log = Logger()

    def __init__(self, checks: Sequence[tuple[str, Callable[[], Deferred]]], reactor: Any,
                 interval: float = HEALTH_INTERVAL, timeout: float = HEALTH_TIMEOUT) -> None:
        self._checks = list(checks)
        self._reactor = reactor
        self._interval = interval
        self._timeout = timeout
        self._latest: Optional[Outcomes] = None
        self._waiting: list[Deferred[Outcomes]] = []
        self._hanging: dict[str, Deferred] = {}
        self._loop: Optional[LoopingCall] = None
        self._failed: set[str] = set()
        self._timers: set[Any] = set()

    def startService(self) -> None:
        super().startService()
        self._loop = LoopingCall(self._round)
        self._loop.clock = self._reactor
        self._loop.start(self._interval, now=True).addErrback(
            lambda f: self.log.failure("health checks stopped", f))

    def stopService(self) -> Any:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        for timer in list(self._timers):
            if timer.active():
                timer.cancel()
        self._timers.clear()
        return super().stopService()

    def _one(self, name: str, check: Callable[[], Deferred]) -> Deferred[tuple[str, Optional[str]]]:
        if name in self._hanging:
            return succeed((name, "not answering"))
        answer: Deferred[tuple[str, Optional[str]]] = Deferred()
        call = maybeDeferred(check)
        self._hanging[name] = call

        def settled(result: Any) -> None:
            self._hanging.pop(name, None)
            if not answer.called:
                error = None
                if isinstance(result, Failure):
                    error = result.getErrorMessage() or result.type.__name__
                answer.callback((name, error))

        self._deadline(answer, self._timeout, lambda: (name, f"no answer within {self._timeout:g} s"))
        call.addBoth(settled)
        return answer

    def _deadline(self, d: Deferred, seconds: float, fallback: Callable[[], Any]) -> Deferred:
        """
        ``d`` fires with ``fallback()`` after ``seconds`` unless it fired
        before; what it waits for is left to finish (a hung check is not
        started again until it does), and the timer ends with the service.
        """
        def late() -> None:
            if not d.called:
                d.callback(fallback())

        timer = self._reactor.callLater(seconds, late)
        self._timers.add(timer)

        def stopTimer(result: Any) -> Any:
            self._timers.discard(timer)
            if timer.active():
                timer.cancel()
            return result

        return d.addBoth(stopTimer)

    def _round(self) -> Deferred:
        d = gatherResults([self._one(name, check) for name, check in self._checks])
        return d.addCallback(self._record)

    def _record(self, outcomes: Outcomes) -> None:
        for name, error in outcomes:
            if error is not None and name not in self._failed:
                self.log.warn("health check {name} failed: {error}", name=name, error=error)
            elif error is None and name in self._failed:
                self.log.info("health check {name} passes again", name=name)
        self._failed = {name for name, error in outcomes if error is not None}
        self._latest = outcomes
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            if not d.called:
                d.callback(outcomes)

    def current(self) -> Deferred[Outcomes]:
        """The latest outcome at once; before the first round ends, it or "down" within ``FIRST_ANSWER`` s."""
        if self._latest is not None:
            return succeed(self._latest)
        d: Deferred[Outcomes] = Deferred()
        self._waiting.append(d)
        return self._deadline(d, FIRST_ANSWER, lambda: [(name, "no check finished yet") for name, _ in self._checks])


class HealthResource(Resource):
    """
    ``/healthz``: 200 "ok" or 503 naming what is down, from the monitor's
    latest round.  A check named by ``degraded()`` only degrades the
    gateway: down, it is a line of the 200 answer, not a 503 (clamd when
    no tenant tempfails on a scan error: mail still flows).
    """

    isLeaf = True

    def __init__(self, monitor: HealthMonitor, degraded: Callable[[], frozenset[str]] = frozenset) -> None:
        super().__init__()
        self._monitor = monitor
        self._degraded = degraded

    def render_GET(self, request: Request) -> int:
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-store")

        def done(outcomes: Outcomes) -> None:
            soft = self._degraded()
            failed = [n for n, e in outcomes if e is not None and n not in soft]
            degraded = [n for n, e in outcomes if e is not None and n in soft]
            if failed:
                request.setResponseCode(503)
                body = "".join(f"{n}: down\n" for n in failed + degraded)
            else:
                body = "ok\n" + "".join(f"{n}: down (degraded)\n" for n in degraded)
            request.write(body.encode("utf-8"))
            request.finish()

        self._monitor.current().addCallback(done)
        return NOT_DONE_YET


class MetricsResource(Resource):
    isLeaf = True

    def __init__(self, metrics: Any, monitor: HealthMonitor) -> None:
        super().__init__()
        self._metrics = metrics
        self._monitor = monitor

    def render_GET(self, request: Request) -> int:
        def done(outcomes: Outcomes) -> None:
            for name, error in outcomes:
                self._metrics.healthUp.labels(check=name).set(0 if error else 1)
            request.setHeader(b"Content-Type", CONTENT_TYPE_LATEST.encode("ascii"))
            request.setHeader(b"Cache-Control", b"no-store")
            request.write(generate_latest(self._metrics.exposition))
            request.finish()

        self._monitor.current().addCallback(done)
        return NOT_DONE_YET
