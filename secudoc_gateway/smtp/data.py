"""
A message's data: the DATA and BDAT commands (RFC 5321 4.1.1.4, RFC
3030), the raw-mode steps that take the message bytes off the buffer
through the ``readers``, the size limit counted over them (RFC 1870),
and the draining of BDAT chunks refused before they arrive.  Kept apart
from the other commands because this is where the session stops reading
lines: every byte here is the client's message, never a command.
"""

from __future__ import annotations

from typing import Optional

from secudoc_gateway import replies
from secudoc_gateway.replies import Reply
from secudoc_gateway.smtp.events import DataAbort, DataChunk, DataEnd, DataStart
from secudoc_gateway.smtp.grammar import parseBdat
from secudoc_gateway.smtp.readers import ChunkReader, DotReader
from secudoc_gateway.smtp.states import TRANSITIONS, Machine, State


class MessageData(Machine):
    """The DATA and BDAT half of the session (module docstring)."""

    _skip: int  # BDAT bytes to drain for a refused BDAT
    _afterSkip: Optional[Reply]

    # --- the commands -------------------------------------------------------

    def _dataStart(self, kind: str) -> None:
        self._txOpen = True
        self._events.append(
            DataStart(
                kind,
                self.sender,
                tuple(self.recipients),
                self.body,
                self.smtputf8,
                self.declaredSize,
                self.helo,
                self.tlsActive,
            )
        )

    def _data(self, arg: str) -> None:
        if arg.strip(" "):
            self._error(replies.PARAM_SYNTAX)
            return
        self._go("DATA")
        self._dot = DotReader()
        self._dataStart("DATA")
        self._send(replies.START_DATA)

    def _bdat(self, arg: str) -> None:
        parsed = parseBdat(arg)
        if parsed is None:
            # Without a size the chunk cannot be skipped; reading on would
            # execute message bytes as commands.
            self._closeWith(replies.BDAT_SYNTAX)
            return
        size, last = parsed
        if "BDAT" not in TRANSITIONS[self._state]:
            reply = replies.TLS_REQUIRED if self.requireTLS and not self.tlsActive else replies.BAD_SEQUENCE
            # RFC 3030 2: chunks pipelined after a failed one are read and discarded.
            self._skip, self._afterSkip = size, reply
            if not size:
                self._skipStep()
            return
        first = self._state is State.RCPT
        self._go("BDAT")
        self._chunk = ChunkReader(size, last)
        if first:
            self._dataStart("BDAT")
        if not size:
            self._bdatStep()

    # --- the bytes ----------------------------------------------------------

    def _count(self, data: bytes) -> None:
        """Emit ``data`` as message bytes unless the message is over size."""
        if self._oversize or not data:
            return
        self._size += len(data)
        if self._size > self.maxMessageSize:
            # Drain the rest without holding it; the reply comes at the end.
            self._oversize = True
            self._txOpen = False
            self._events.append(DataAbort())
        else:
            self._events.append(DataChunk(data))

    def _dataStep(self) -> bool:
        """DATA: the unstuffed bytes up to the end marker (``DotReader``)."""
        data = self._dot.read(self._buffer)
        if data is None:
            return False
        self._count(data)
        if self._dot.done:
            self._end("end")
        return True

    def _bdatStep(self) -> bool:
        """RFC 3030 2: exactly the announced octets, taken as they are."""
        chunk = self._chunk
        if chunk.left:
            data = chunk.read(self._buffer)
            if data is None:
                return False
            self._count(data)
            if chunk.left:
                return True
        if chunk.last or self._oversize:
            self._end("last")
        else:
            self._go("chunk")
            self._send(replies.BDAT_RECEIVED.withText(replies.BDAT_RECEIVED.text.format(size=chunk.size)))
        return True

    def _end(self, trigger: str) -> None:
        """All data is in: ``DataEnd`` by ``trigger``, or the over-size reply."""
        if self._oversize:
            command = "DATA" if trigger == "end" else "BDAT"
            self._go("oversize")
            refused = (self.sender, tuple(self.recipients))
            self._resetTransaction()
            self._refuse(command, replies.MESSAGE_TOO_BIG, f"over max_message_size {self.maxMessageSize}", *refused)
        else:
            self._txOpen = False
            self._go(trigger)
            self._events.append(DataEnd())

    def _skipStep(self) -> bool:
        """Drain a refused BDAT chunk, then give its reply."""
        if self._skip:
            if not self._buffer:
                return False
            take = min(self._skip, len(self._buffer))
            del self._buffer[:take]
            self._skip -= take
            if self._skip:
                return True
        reply, self._afterSkip = self._afterSkip, None
        if reply is not None:
            self._error(reply)
        return True
