"""
The Maildir relay target, for the demo and tests (SPEC section 3).

Writing a message is blocking work (the copy from the spool, the fsync,
the rename), so it runs in the reactor's thread pool, never in the
reactor thread: a slow disk must not stall every SMTP session and web
request.  One delivery at a time per relay, in the order they were
asked for (a FIFO lock), so the folder's names keep the order of the
sends; the deliveries waiting are the transactions in flight, each of
which waits for its own, so the queue is bounded as they are.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from typing import Any, Optional

from twisted.internet import defer
from twisted.internet.defer import Deferred, DeferredLock
from twisted.internet.threads import deferToThreadPool
from zope.interface import implementer

from secudoc_gateway.errors import RelayError
from secudoc_gateway.interfaces import IMessageSource, IRelay

# How much of the message start is held to find its line-end style.
_LINE_END_WINDOW = 65536


@implementer(IRelay)
class MaildirRelay:
    """
    Writes each message into a Maildir (tmp, fsync, rename into new),
    after the envelope as header lines (SPEC section 3).  The envelope
    lines end like the message's first line (CRLF or LF; LF when the
    message has no line end), so the file keeps one line-end style.
    Each write runs in ``reactor``'s thread pool, one at a time.
    """

    def __init__(self, path: str, reactor: Any = None) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self.path = path
        self._reactor = reactor
        self._turn = DeferredLock()
        self._host = socket.gethostname().replace("/", "\\057").replace(":", "\\072")

    def _uniqueName(self) -> str:
        # Microseconds zero-padded, so names sort in the order written
        # (as far as the wall clock goes forward).
        now = time.time_ns() // 1000
        seconds, micros = divmod(now, 1_000_000)
        return f"{seconds}.M{micros:06d}P{os.getpid()}R{secrets.token_hex(8)}.{self._host}"

    def close(self) -> Deferred:
        """Nothing to close; here so the gateway can close any relay alike."""
        return defer.succeed(None)

    closeIdle = close

    def send(self, envelope: Any, message: IMessageSource) -> Deferred:
        return self._turn.run(deferToThreadPool, self._reactor, self._reactor.getThreadPool(),
                              self._deliver, envelope, message)

    def _deliver(self, envelope: Any, message: IMessageSource) -> str:
        addresses = [envelope.sender, *envelope.recipients]
        if any(c in a for a in addresses for c in "\r\n"):
            raise RelayError("maildir", "line break in an envelope address")
        name = self._uniqueName()
        tmp = os.path.join(self.path, "tmp", name)
        new = os.path.join(self.path, "new", name)
        try:
            for sub in ("tmp", "new", "cur"):
                os.makedirs(os.path.join(self.path, sub), exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as e:
            raise RelayError("maildir", f"cannot create {tmp}: {e}")
        envelopeLines = [f"Return-Path: <{envelope.sender}>"] + [
            f"X-Envelope-To: {r}" for r in envelope.recipients
        ]
        try:
            with os.fdopen(fd, "wb") as f:
                # Hold the start of the message until its first line end
                # shows the style (bounded: a first line is short).
                start: Optional[list[bytes]] = []
                held = 0
                for chunk in message.chunks():
                    if start is None:
                        f.write(chunk)
                        continue
                    start.append(chunk)
                    held += len(chunk)
                    if b"\n" in chunk or held >= _LINE_END_WINDOW:
                        f.write(_headed(envelopeLines, start))
                        start = None
                if start is not None:
                    f.write(_headed(envelopeLines, start))
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, new)
        except Exception as e:
            try:
                os.unlink(tmp)
            except OSError:
                pass  # never made, or already gone: the RelayError below says what failed
            raise RelayError("maildir", f"cannot write {tmp}: {e}")
        return f"maildir {name}"


def _lineEnd(chunk: bytes) -> bytes:
    at = chunk.find(b"\n")
    return b"\r\n" if at > 0 and chunk[at - 1 : at] == b"\r" else b"\n"


def _headed(envelopeLines: list[str], start: list[bytes]) -> bytes:
    """The envelope lines, ending like the message's first line, then the held start."""
    head = b"".join(start)
    end = _lineEnd(head)
    return b"".join(line.encode("utf-8") + end for line in envelopeLines) + head


__all__ = ["MaildirRelay"]
