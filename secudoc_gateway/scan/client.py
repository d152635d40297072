"""
The clamd client on Twisted: one connection per file, its bytes sent
(``INSTREAM``) as the sink decodes them, while they are also stored.

Theory of operation
-------------------

``Scanner`` is the gateway's: it knows where clamd listens and opens a
``FileScan`` per file through a message's ``MessageScans`` (at most
``MAX_SCANS`` files of one message talk to clamd at once: the others
wait for a slot, their bytes queued).  A ``FileScan`` is fed the file's
plain bytes as they come; while it cannot send them (connecting,
waiting for a slot, clamd's socket full) it keeps them and ``feed``
returns a Deferred that fires once they are out, so the extractor
pauses the SMTP client as it does for a slow store: memory stays
bounded whatever the file's size.  Those Deferreds never fail: a scan
that goes wrong says so in its verdict, and the file is stored all the
same (``on_scan_error`` decides at the end).  ``verdict`` fires once,
with clean, infected, skipped (over ``max_file_size`` or clamd's own
limit) or error (clamd down, gone, or silent for ``timeout`` seconds).
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet.defer import Deferred, DeferredSemaphore, succeed
from twisted.internet.endpoints import HostnameEndpoint, UNIXClientEndpoint
from twisted.internet.interfaces import IPushProducer, IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from secudoc_gateway.config.values import ScanConfig
from secudoc_gateway.errors import GatewayError
from secudoc_gateway.scan.protocol import END, INSTREAM, PING, PONG, ReplyReader, frames, verdictOf
from secudoc_gateway.scan.verdicts import ScanResult, Verdict

MAX_SCANS = 4
"""Files of one message scanned at once (the rest wait for a slot)."""


class ClamdError(GatewayError):
    """clamd did not answer as it should (the health check's failure)."""


def endpointFor(reactor: Any, clamd: str, timeout: float) -> IStreamClientEndpoint:
    """``[scan] clamd`` (``unix:PATH`` or ``tcp:HOST:PORT``, checked by the config) as an endpoint."""
    kind, _, rest = clamd.partition(":")
    if kind == "unix":
        return UNIXClientEndpoint(reactor, rest, timeout=int(max(timeout, 1)))
    host, _, port = rest.rpartition(":")
    return HostnameEndpoint(reactor, host.strip("[]"), int(port), timeout=timeout)


class _Connection(Protocol):
    """One connection to clamd: moves bytes between its owner and the socket, reads the reply."""

    def __init__(self, owner: Any) -> None:
        self.owner = owner
        self.reader = ReplyReader()

    @property
    def wire(self) -> Any:
        """The transport: a TCP or UNIX one, a producer's consumer."""
        return self.transport

    def connectionMade(self) -> None:
        self.owner.connected(self)

    def dataReceived(self, data: bytes) -> None:
        reply = self.reader.feed(data)
        if reply is not None:
            self.owner.answered(reply)
            self.wire.loseConnection()

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:
        reply = self.reader.close()
        if reply is not None:
            self.owner.answered(reply)
        self.owner.lost(reason)


class _Factory(Factory):
    def __init__(self, owner: Any) -> None:
        self.owner = owner

    def buildProtocol(self, addr: Any) -> _Connection:
        return _Connection(self.owner)


class Scanner:
    """The gateway's way to clamd (``[scan]``): scans for a message, and the health check."""

    def __init__(self, config: ScanConfig, reactor: Any) -> None:
        self.config = config
        self.reactor = reactor

    def endpoint(self) -> IStreamClientEndpoint:
        return endpointFor(self.reactor, self.config.clamd, self.config.timeout)

    def message(self) -> "MessageScans":
        return MessageScans(self)

    def check(self) -> Deferred:
        """``/healthz``: clamd answers PING with PONG (ClamdError otherwise)."""
        ping = _Ping()
        self.endpoint().connect(_Factory(ping)).addErrback(ping.failed)
        return ping.done


class _Ping:
    def __init__(self) -> None:
        self.done: Deferred = Deferred()

    def connected(self, connection: _Connection) -> None:
        connection.wire.write(PING)

    def answered(self, reply: bytes) -> None:
        if not self.done.called:
            if reply.strip() == PONG:
                self.done.callback(None)
            else:
                self.done.errback(ClamdError(f"clamd answered {reply[:80]!r} to PING"))

    def lost(self, reason: Failure) -> None:
        self.failed(reason)

    def failed(self, reason: Failure) -> None:
        if not self.done.called:
            self.done.errback(ClamdError(f"clamd: {reason.getErrorMessage()}"))


class MessageScans:
    """The scans of one message's files, at most ``MAX_SCANS`` talking to clamd at once."""

    def __init__(self, scanner: Scanner) -> None:
        self.scanner = scanner
        self.slots = DeferredSemaphore(MAX_SCANS)
        self.files: dict[int, FileScan] = {}  # by the file's slot in the message

    def open(self, slot: int) -> "FileScan":
        scan = self.files[slot] = FileScan(self.scanner, self.slots)
        return scan

    def drop(self, slot: int) -> None:
        """The file is no attachment after all: its scan ends, unheard."""
        scan = self.files.pop(slot, None)
        if scan is not None:
            scan.abort()

    def verdict(self, slot: int) -> Deferred[Verdict]:
        """Fires with the file's ``Verdict`` (error when it was never scanned)."""
        scan = self.files.get(slot)
        if scan is None:
            return succeed(Verdict(ScanResult.ERROR, reason="not scanned"))
        return scan.result()

    def abort(self) -> None:
        """The message is over: every scan still running ends, unheard."""
        for scan in self.files.values():
            scan.abort()


@implementer(IPushProducer)
class FileScan:
    """One file's scan (module docstring): ``feed``, ``finish``, then ``result()``."""

    def __init__(self, scanner: Scanner, slots: DeferredSemaphore) -> None:
        self.scanner = scanner
        self.reactor = scanner.reactor
        self.timeout = scanner.config.timeout
        self.maxSize = scanner.config.max_file_size
        self.slots = slots
        self.size = 0
        self._verdict: Optional[Verdict] = None
        self._waiters: list[Deferred] = []  # for the verdict
        self._drained: list[Deferred] = []  # for the queue to be sent
        self._queue: list[bytes] = []
        self._connection: Optional[_Connection] = None
        self._paused = False
        self._finished: Optional[float] = None  # when the last byte was fed
        self._slot = False
        self._timer: Any = None
        slots.acquire().addCallback(self._start)

    # -- fed by the sink -----------------------------------------------------

    def feed(self, data: bytes) -> Optional[Deferred]:
        """Send ``data`` on; a Deferred (never failing) while it waits to be sent."""
        if self._verdict is not None or not data:
            return None
        self.size += len(data)
        if self.size > self.maxSize:
            self._settle(Verdict(ScanResult.SKIPPED, reason="over [scan] max_file_size"))
            return None
        self._queue += frames(data)
        return self._flush()

    def finish(self) -> None:
        """The file's last byte was fed: end the stream, the verdict follows."""
        if self._verdict is not None or self._finished is not None:
            return
        self._finished = self.reactor.seconds()
        self._queue.append(END)
        self._flush()

    def result(self) -> Deferred:
        if self._verdict is not None:
            return succeed(self._verdict)
        d: Deferred = Deferred()
        self._waiters.append(d)
        return d

    def abort(self) -> None:
        if self._verdict is None:
            self._settle(Verdict(ScanResult.ERROR, reason="scan abandoned"))

    # -- the connection ----------------------------------------------------

    def _start(self, _: Any) -> None:
        self._slot = True
        if self._verdict is not None:
            self._release()
            return
        self._arm()
        self.scanner.endpoint().connect(_Factory(self)).addErrback(self._unreachable)

    def _unreachable(self, reason: Failure) -> None:
        if self._verdict is None:
            self._settle(Verdict(ScanResult.ERROR, reason=f"clamd unreachable: {reason.getErrorMessage()}"))

    def connected(self, connection: _Connection) -> None:
        if self._verdict is not None:
            connection.wire.abortConnection()
            return
        self._connection = connection
        connection.wire.registerProducer(self, True)
        connection.wire.write(INSTREAM)
        self._flush()

    def answered(self, reply: bytes) -> None:
        if self._verdict is None:
            self._settle(verdictOf(reply))

    def lost(self, reason: Failure) -> None:
        self._connection = None
        if self._verdict is None:
            self._settle(Verdict(ScanResult.ERROR, reason=f"clamd closed the connection: {reason.getErrorMessage()}"))

    # IPushProducer: clamd's socket is full (pause) or drained (resume).
    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        self._flush()

    def stopProducing(self) -> None:
        self._paused = True

    # -- inside ------------------------------------------------------------

    def _flush(self) -> Optional[Deferred]:
        """Send what is queued while clamd takes it; a Deferred while bytes still wait."""
        connection = self._connection
        if connection is not None and not self._paused and self._queue:
            connection.wire.writeSequence(self._queue)
            self._queue = []
            self._arm()
        if not self._queue:
            self._wake()
            return None
        d: Deferred = Deferred()
        self._drained.append(d)
        return d

    def _wake(self) -> None:
        drained, self._drained = self._drained, []
        for d in drained:
            d.callback(None)

    def _arm(self) -> None:
        """clamd has ``timeout`` seconds from the last progress (and from the last byte) to answer."""
        if self._timer is not None and self._timer.active():
            self._timer.reset(self.timeout)
        else:
            self._timer = self.reactor.callLater(self.timeout, self._late)

    def _late(self) -> None:
        if self._verdict is None:
            self._settle(Verdict(ScanResult.ERROR, reason=f"no verdict within {self.timeout:g} s"))

    def _settle(self, verdict: Verdict) -> None:
        seconds = self.reactor.seconds() - self._finished if self._finished is not None else 0.0
        self._verdict = verdict = Verdict(verdict.result, verdict.signature, verdict.reason, seconds)
        self._queue = []
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.wire.unregisterProducer()
            connection.wire.abortConnection()
        self._release()
        self._wake()
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(verdict)

    def _release(self) -> None:
        if self._slot:
            self._slot = False
            self.slots.release()
