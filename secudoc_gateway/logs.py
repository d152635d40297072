"""
Where the ``[log]`` section sends the gateway's log: a file, or standard
output, as text or as one JSON object a line (for log shippers).

Theory of operation.  Under twistd, standard output and standard error
are redirected into the log: a ``print`` becomes an event.  An observer
that wrote to ``sys.stdout`` would therefore feed its own lines back into
the log, each time one level deeper.  So the observer writes to its own
file object on a duplicate of file descriptor 1, which twistd does not
touch, and twistd is handed this observer as the application's
``ILogObserver`` (it then writes no text of its own beside ours).
Outside twistd (tests, benches) ``LogService`` adds the observer while
it runs.

Lines carry the event's own named fields and nothing of Twisted's
bookkeeping (``log_*`` keys, legacy ``system``/``isError``); every line
passes ``redact`` on its way out, so a download token that slipped into
a message or a field is never written.
"""

from __future__ import annotations

import datetime
import json
import os
from typing import IO, Any, Iterable, Optional

from twisted.application.service import Service
from twisted.logger import ILogObserver, Logger, LogLevel, formatEvent, globalLogPublisher
from zope.interface import implementer

from secudoc_gateway import links
from secudoc_gateway.replies import Reply

# Keys of events from twisted.python.log (legacy) that are bookkeeping.
_LEGACY_KEYS = frozenset({"message", "isError", "system", "format", "time", "failure", "why", "printed"})


def redact(text: str) -> str:
    """Every ``/t/<token>`` as ``/t/<redacted>`` (the sender's ``/t/sender/<secret>`` too), however spelled."""
    return links.redact(text)


def _timestamp(seconds: float) -> str:
    """RFC 3339 in UTC, milliseconds: ``2026-11-30T00:05:30.123Z``."""
    moment = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _plain(value: Any) -> Any:
    """A JSON value for a field: scalars as they are, sequences as lists, the rest as text."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    return str(value)


def fields(event: dict) -> dict[str, Any]:
    """The event's named fields, without Twisted's bookkeeping."""
    return {
        key: _plain(value)
        for key, value in event.items()
        if not key.startswith("log_") and key not in _LEGACY_KEYS
    }


def _namespace(event: dict) -> str:
    """The logger's name; ``-`` for twisted.python.log's events, which have none."""
    namespace = event.get("log_namespace") or "-"
    return "-" if namespace == "log_legacy" else namespace


def jsonLine(event: dict) -> str:
    level = event.get("log_level", LogLevel.info)
    record: dict[str, Any] = {
        "time": _timestamp(event.get("log_time", 0.0)),
        "level": level.name,
        "message": formatEvent(event),
    }
    namespace = _namespace(event)
    if namespace != "-":
        record["logger"] = namespace
    for key, value in fields(event).items():
        record.setdefault(key, value)
    failure = event.get("log_failure")
    if failure is not None:
        record["error"] = failure.getTraceback()
    return redact(json.dumps(record, ensure_ascii=False, separators=(",", ":"))) + "\n"


def textLine(event: dict) -> str:
    level = event.get("log_level", LogLevel.info)
    text = formatEvent(event)
    failure = event.get("log_failure")
    if failure is not None:
        text = f"{text}\n{failure.getTraceback()}"
    worker = f"worker={event['worker']} " if "worker" in event else ""
    line = f"{_timestamp(event.get('log_time', 0.0))} [{_namespace(event)}#{level.name}] {worker}{text}"
    return redact(line.rstrip("\n").replace("\n", "\n\t")) + "\n"


@implementer(ILogObserver)
class LineObserver:
    """
    Writes each event at ``info`` or above as one line (text) or one
    JSON object; a worker's lines say which worker (``worker=N``).
    """

    def __init__(self, format: str, stream: IO[str], minimum: LogLevel = LogLevel.info,
                 worker: Optional[int] = None) -> None:
        self._line = jsonLine if format == "json" else textLine
        self._stream = stream
        self._minimum = minimum
        self._worker = worker

    def __call__(self, event: dict) -> None:
        if event.get("log_level", LogLevel.info) < self._minimum:
            return
        if self._worker is not None:
            event = dict(event, worker=self._worker)
        self._stream.write(self._line(event))
        self._stream.flush()

    def close(self) -> None:
        self._stream.close()


def openStream(path: str) -> IO[str]:
    """
    ``"-"``: the process's real standard output (a duplicate of fd 1,
    untouched by twistd's redirection of ``sys.stdout``); else the file,
    appended to.
    """
    if path == "-":
        return os.fdopen(os.dup(1), "w", encoding="utf-8", errors="replace")
    return open(path, "a", encoding="utf-8", errors="replace")


class LogService(Service):
    """
    Owns the configured observer.  ``handOver`` gives it to twistd's
    application (then twistd adds and removes it); otherwise it is added
    to the publisher while the service runs.  Outside twistd the default
    (text on standard output) is left to whoever hosts the service.
    """

    def __init__(self, format: str, path: str, publisher: Any = globalLogPublisher,
                 worker: Optional[int] = None) -> None:
        self.format = format
        self.path = path
        self.publisher = publisher
        self.worker = worker
        self._observer: Optional[LineObserver] = None
        self._handedOver = False

    def observer(self) -> LineObserver:
        if self._observer is None:
            self._observer = LineObserver(self.format, openStream(self.path), worker=self.worker)
        return self._observer

    def handOver(self, application: Any) -> None:
        """Make the observer the application's ``ILogObserver``, which twistd uses alone."""
        application.setComponent(ILogObserver, self.observer())
        self._handedOver = True

    def takeOver(self) -> LineObserver:
        """The observer, for a host that begins logging to it alone (a worker process)."""
        self._handedOver = True
        return self.observer()

    def startService(self) -> None:
        super().startService()
        if self._handedOver or (self.path == "-" and self.format == "text"):
            return
        self.publisher.addObserver(self.observer())

    def stopService(self) -> None:
        super().stopService()
        if self._handedOver or self._observer is None:
            return  # twistd still logs its last lines through it
        self.publisher.removeObserver(self._observer)
        self._observer.close()
        self._observer = None


class Addresses(tuple):
    """Addresses as a field: ``<a>,<b>`` in a text line, a list in JSON."""

    def __str__(self) -> str:
        return ",".join(f"<{a}>" for a in self)

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


# One line per relay leg, as Postfix logs a delivery: the fields are
# named in JSON, and all in the text of both formats.
SUMMARY = (
    "{queue_id}: tenant={tenant}, from=<{sender}>, to={recipients}, size={size}, leg={leg},"
    " status={status} ({reason}), transfer={transfer_id}, relay={relay} ({reply}), delay={delay}"
)
SENT = "sent"
SKIPPED = "skipped"
DEFERRED = "deferred"
BOUNCED = "bounced"


# One line per refusal, as Postfix's smtpd logs one: ``NOQUEUE`` before
# a message has a queue id (connect, MAIL, RCPT), the queue id at the end
# of the data.  A connect refusal has no envelope yet, a MAIL refusal no
# recipient.  Every field is named in JSON, ``reason`` empty when the
# reply says it all.
NOQUEUE = "NOQUEUE"
CONNECT = "CONNECT"
MAIL = "MAIL"
RCPT = "RCPT"
END_OF_MESSAGE = "END-OF-MESSAGE"
_REJECT = "{queue_id}: reject: {stage} from {client_name}[{client_address}]: {reply}"


def rejectFormat(stage: str, reason: str) -> str:
    """The refusal line's format for ``stage``: the pieces it has, in Postfix's order."""
    line = _REJECT + (" ({reason})" if reason else "") + ";"
    if stage != CONNECT:
        line += " from=<{sender}>"
        if stage != MAIL:
            line += " to={recipients}"
    return line + " proto={proto}" + ("" if stage == CONNECT else " helo=<{helo}>")


def logReject(log: Any, stage: str, client: str, reply: Reply, reason: str = "",
              queueId: str = NOQUEUE, sender: str = "", recipients: tuple[str, ...] = (),
              proto: str = "ESMTP", helo: str = "") -> None:
    """One refusal's line on ``log`` (a twisted ``Logger``); the client's name is unknown (no reverse DNS)."""
    log.info(
        rejectFormat(stage, reason), queue_id=queueId, stage=stage, client_name="unknown", client_address=client,
        reply=reply.line, code=reply.code, reason=reason,
        sender=sender, recipients=Addresses(recipients), proto=proto, helo=helo,
    )


# The one line that ends a start, in one process or with --workers: what
# an operator (or a supervisor's log watch) waits for.
READY = "ready: {listening}; {tenant_count} tenant(s): {tenants}; {workers} worker(s)"


def _address(address: Any) -> str:
    host, port = getattr(address, "host", None), getattr(address, "port", None)
    if host is None or port is None:
        return str(getattr(address, "name", address))
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def logReady(log: Logger, listening: Iterable[tuple[str, Any]], tenants: Iterable[Any], workers: int) -> None:
    """The ready line: each listener (kind and bound address), the tenants, how many workers serve."""
    ids = [t.id for t in tenants]
    log.info(READY, listening=", ".join(f"{kind} {_address(address)}" for kind, address in listening),
             tenant_count=len(ids), tenants=", ".join(ids) or "none", workers=workers)
