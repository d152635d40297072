"""
A message's data: the DATA and BDAT commands (RFC 5321 4.1.1.4, RFC
3030), the raw-mode steps that take the message bytes off the buffer
through the ``readers``, the size limit counted over them (RFC 1870),
and the draining of BDAT chunks refused before they arrive.  Kept apart
from the other commands because this is where the session stops reading
lines: every byte here is the client's message, never a command.

Which of these the buffer holds is the ``Machine``'s state: DATA or
BDAT, each with its ``_OVERSIZE`` state once the message is past the
limit (drained without being held, 552 at its end), or a ``SKIP_``
state while a refused chunk is drained.
"""

from __future__ import annotations

from secudoc_gateway import replies
from secudoc_gateway.smtp.events import DataChunk
from secudoc_gateway.smtp.grammar import parseBdat
from secudoc_gateway.smtp.readers import ChunkReader, DotReader
from secudoc_gateway.smtp.states import TRANSITIONS, Machine, SessionLimits, State

_OVERSIZE = frozenset({State.DATA_OVERSIZE, State.BDAT_OVERSIZE})


class MessageData:
    """The DATA and BDAT half of a session, on its ``Machine`` (module docstring)."""

    def __init__(self, machine: Machine, limits: SessionLimits, requireTLS: bool) -> None:
        self.machine = machine
        self.limits = limits
        self.requireTLS = requireTLS
        self._skip = ChunkReader(0, True)  # the refused BDAT chunk being drained

    # --- the commands -------------------------------------------------------

    def data(self, arg: str) -> None:
        m = self.machine
        if arg.strip(" "):
            m.error(replies.PARAM_SYNTAX)
            return
        m.go("DATA")
        m.transaction.dot = DotReader()
        m.startData("DATA", m.transaction)
        m.send(replies.START_DATA)

    def bdat(self, arg: str) -> None:
        m = self.machine
        parsed = parseBdat(arg)
        if parsed is None:
            # Without a size the chunk cannot be skipped; reading on would
            # execute message bytes as commands.
            m.closeWith(replies.BDAT_SYNTAX)
            return
        size, last = parsed
        if "BDAT" not in TRANSITIONS[m.state]:
            # RFC 3030 2: chunks pipelined after a failed one are read and discarded.
            m.go("skip")
            self._skip = ChunkReader(size, last)
            if not size:
                self.skipStep()
            return
        first = m.state is State.RCPT
        m.go("BDAT")
        m.transaction.chunk = ChunkReader(size, last)
        if first:
            m.startData("BDAT", m.transaction)
        if not size:
            self.bdatStep()

    # --- the bytes ----------------------------------------------------------

    def _count(self, data: bytes) -> None:
        """Emit ``data`` as message bytes unless the message is over size."""
        m = self.machine
        if m.state in _OVERSIZE or not data:
            return
        m.transaction.size += len(data)
        if m.transaction.size > self.limits.maxMessageSize:
            # Drain the rest without holding it; the reply comes at the end.
            m.go("oversize")
            m.abortData()
        else:
            m.events.append(DataChunk(data))

    def dataStep(self) -> bool:
        """DATA: the unstuffed bytes up to the end marker (``DotReader``)."""
        m = self.machine
        dot = m.transaction.dot
        data = dot.read(m.buffer)
        if data is None:
            return False
        self._count(data)
        if dot.done:
            self._end("end")
        return True

    def bdatStep(self) -> bool:
        """RFC 3030 2: exactly the announced octets, taken as they are."""
        m = self.machine
        chunk = m.transaction.chunk
        if chunk.left:
            data = chunk.read(m.buffer)
            if data is None:
                return False
            self._count(data)
            if chunk.left:
                return True
        if m.state is State.BDAT_OVERSIZE:
            self._end("end")
        elif chunk.last:
            self._end("last")
        else:
            m.go("chunk")
            m.send(replies.BDAT_RECEIVED.withText(replies.BDAT_RECEIVED.text.format(size=chunk.size)))
        return True

    def _end(self, trigger: str) -> None:
        """All data is in: ``DataEnd`` by ``trigger``, or the over-size reply."""
        m = self.machine
        if m.state in _OVERSIZE:
            command = "DATA" if m.state is State.DATA_OVERSIZE else "BDAT"
            refused = m.transaction
            m.go("end")
            m.resetTransaction()
            m.refuse(command, replies.MESSAGE_TOO_BIG, f"over max_message_size {self.limits.maxMessageSize}",
                     refused.sender, tuple(refused.recipients))
        else:
            m.go(trigger)
            m.endData()

    def skipStep(self) -> bool:
        """Drain a refused BDAT chunk, then give its reply."""
        m = self.machine
        if self._skip.left:
            if not self._skip.discard(m.buffer):
                return False
            if self._skip.left:
                return True
        m.go("skipped")
        m.error(replies.TLS_REQUIRED if self.requireTLS and not m.tlsActive else replies.BAD_SEQUENCE)
        return True
