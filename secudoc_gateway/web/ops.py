"""
The operator's endpoints: ``/metrics`` for Prometheus and ``/healthz``
for the load balancer (200 only when storage and database answer).
Each scrape of ``/metrics`` runs the same checks first and exports them
as ``secudoc_health_check_up``, so Prometheus alerts on what a balancer
would see without a probe of its own.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request


HEALTH_TIMEOUT = 5.0


class HealthResource(Resource):
    """Each check returns a Deferred that fails when its backend is down."""

    isLeaf = True
    log = Logger()

    def __init__(self, checks: Sequence[tuple[str, Callable[[], Deferred]]], reactor: Any,
                 timeout: float = HEALTH_TIMEOUT) -> None:
        super().__init__()
        self._checks = list(checks)
        self._reactor = reactor
        self._timeout = timeout

    def check(self) -> Deferred:
        """Fires with ``[(name, None or what went wrong)]``, one per check."""

        def one(name: str, check: Callable[[], Deferred]) -> Deferred:
            # A backend that hangs is down: the balancer needs an answer.
            return maybeDeferred(check).addTimeout(self._timeout, self._reactor).addCallbacks(
                lambda _: (name, None),
                lambda f: (name, f.getErrorMessage() or f.type.__name__),
            )

        return gatherResults([one(name, check) for name, check in self._checks])

    def render_GET(self, request: Request) -> int:
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-store")

        def done(outcomes: list) -> None:
            failed = [(n, e) for n, e in outcomes if e is not None]
            if failed:
                request.setResponseCode(503)
                for n, e in failed:
                    self.log.warn("health check {name} failed: {error}", name=n, error=e)
                body = "".join(f"{n}: down\n" for n, _ in failed)
            else:
                body = "ok\n"
            request.write(body.encode("utf-8"))
            request.finish()

        self.check().addCallback(done)
        return NOT_DONE_YET


class MetricsResource(Resource):
    isLeaf = True

    def __init__(self, metrics: Any, health: HealthResource) -> None:
        super().__init__()
        self._metrics = metrics
        self._health = health

    def render_GET(self, request: Request) -> int:
        def done(outcomes: list) -> None:
            for name, error in outcomes:
                self._metrics.healthUp.labels(check=name).set(0 if error else 1)
            request.setHeader(b"Content-Type", CONTENT_TYPE_LATEST.encode("ascii"))
            request.setHeader(b"Cache-Control", b"no-store")
            request.write(generate_latest(self._metrics.exposition))
            request.finish()

        self._health.check().addCallback(done)
        return NOT_DONE_YET

