"""
The ESMTP server session as a sans-I/O state machine (RFC 5321, with
PIPELINING RFC 2920, SIZE RFC 1870, 8BITMIME RFC 6152, ENHANCEDSTATUSCODES
RFC 2034, SMTPUTF8 RFC 6531, CHUNKING RFC 3030 and STARTTLS RFC 3207).

Theory of operation, h11 style: the owner feeds the bytes it reads to
``receiveData`` and then calls ``nextEvent`` until it returns
``NEED_DATA`` (give me more bytes) or ``PAUSED`` (I wait for you: a
decision about a sender, the final reply to a message, or nothing more
at all once closed).  Events are frozen values: replies to write,
questions to answer (``MailFrom`` → ``acceptMail``/``refuseMail``,
``DataEnd`` → ``finalReply``), message data, and the two things only
the owner can do (``StartTLS``, ``Close``).

Commands are read one CRLF-terminated line at a time, their arguments
parsed by ``grammar``.  Message data is handled in raw mode by the
``readers``: a DATA stream is scanned for ``CRLF . CRLF`` and
dot-unstuffed over whole chunks; a BDAT chunk is counted off byte-exact.
The events are in ``events``.  Every state transition is in
``states.TRANSITIONS``; handlers validate a command and then ``_go`` to
the state the table names.  The session is built in layers, one job
each: ``states.Machine`` (state, buffer, event queue), ``data.MessageData``
(DATA and BDAT), ``commands.Commands`` (every other command) and
``Session`` here, the owner's side.
"""

from __future__ import annotations

from collections import deque
from typing import Union

from secudoc_gateway import replies
from secudoc_gateway.replies import Reply
from secudoc_gateway.smtp.commands import Commands
from secudoc_gateway.smtp.events import NEED_DATA, PAUSED, Event, Sentinel
from secudoc_gateway.smtp.states import COMMAND_STATES, State

__all__ = ["Session", "State"]

S = State


class Session(Commands):
    """
    One ESMTP server session.  The limits are the constructor's: message
    size (RFC 1870), recipients (RFC 5321 4.5.3.1.8), command line length
    (4.5.3.1.4, raised for extension parameters), errors before 421, and
    how much unprocessed pipelined input is held while the session waits.
    """

    def __init__(
        self,
        hostname: str,
        maxMessageSize: int,
        maxRecipients: int,
        maxLineLength: int = 2048,
        tlsAvailable: bool = False,
        requireTLS: bool = False,
        tlsActive: bool = False,
        maxErrors: int = 10,
        maxPending: int = 1 << 20,
    ) -> None:
        self.hostname = hostname
        self.maxMessageSize = maxMessageSize
        self.maxRecipients = maxRecipients
        self.maxLineLength = maxLineLength
        self.tlsAvailable = tlsAvailable
        self.requireTLS = requireTLS
        self.maxErrors = maxErrors
        self.maxPending = maxPending

        self.tlsActive = tlsActive
        self.esmtp = False
        self.helo = ""
        self.errors = 0
        self._state = S.CONNECTED
        self._buffer = bytearray()
        self._events = deque()
        self._discardLine = False
        self._skip = 0
        self._afterSkip = None
        self._resetTransaction()
        self._send(replies.SERVICE_READY.withText(replies.SERVICE_READY.text.format(hostname=hostname)))

    # --- the owner's side ---------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def receivingData(self) -> bool:
        """True while message data (not commands) is expected."""
        return self._state in (S.DATA, S.BDAT) or self._skip > 0

    @property
    def pendingBytes(self) -> int:
        """Bytes received and not processed yet."""
        return len(self._buffer)

    def receiveData(self, data: bytes) -> None:
        if self._state is not S.CLOSED:
            self._buffer += data

    def nextEvent(self) -> Union[Event, Sentinel]:
        while not self._events:
            if not self._step():
                if self._state in (S.MAIL_PENDING, S.FINISHING) and len(self._buffer) > self.maxPending:
                    self.close(replies.TOO_MUCH_INPUT)
                    continue
                if self._state in (S.MAIL_PENDING, S.FINISHING, S.CLOSED):
                    return PAUSED
                return NEED_DATA
        return self._events.popleft()

    def acceptMail(self) -> None:
        """The owner accepts the sender of the last ``MailFrom``."""
        self._go("accepted")
        self._send(replies.SENDER_OK)

    def refuseMail(self, reply: Reply, reason: str = "") -> None:
        """The owner refuses the sender of the last ``MailFrom`` with ``reply`` (``reason``: for the log)."""
        sender = self.sender
        self._resetTransaction()
        self._go("refused")
        self._refuse("MAIL", reply, reason, sender=sender, recipients=())

    def finalReply(self, reply: Reply) -> None:
        """The answer to the message after ``DataEnd``; the transaction is over."""
        self._resetTransaction()
        self._go("replied")
        self._send(reply)

    def close(self, reply: Reply) -> None:
        """
        End the session with ``reply`` (a 421: timeout, shutdown).  Sent
        with its enhanced code whatever the greeting: a closing reply is
        for logs as much as for the client.
        """
        if self._state is S.CLOSED:
            return
        self._closeWith(reply)

    # --- internals ----------------------------------------------------------

    def _step(self) -> bool:
        """Make progress on the buffer; False when nothing can be done now."""
        state = self._state
        if state is S.DATA:
            return self._dataStep()
        if state is S.BDAT:
            return self._bdatStep()
        if state not in COMMAND_STATES:
            return False
        if self._skip:
            return self._skipStep()
        return self._commandStep()
