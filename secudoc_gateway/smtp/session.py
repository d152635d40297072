"""
The ESMTP server session as a sans-I/O state machine (RFC 5321, with
PIPELINING RFC 2920, SIZE RFC 1870, 8BITMIME RFC 6152, ENHANCEDSTATUSCODES
RFC 2034, SMTPUTF8 RFC 6531, CHUNKING RFC 3030 and STARTTLS RFC 3207).

Theory of operation, h11 style: the owner feeds the bytes it reads to
``receiveData`` and then calls ``nextEvent`` until it returns
``NEED_DATA`` (give me more bytes) or ``PAUSED`` (I wait for you: a
decision about a sender, the final reply to a message, or nothing more
at all once closed).  Events are frozen values: replies to write (each
refusal of a sender, recipient or message told first: ``Refused``),
questions to answer (``MailFrom`` → ``acceptMail``/``refuseMail``,
``DataEnd`` → ``finalReply``), message data, and the two things only
the owner can do (``StartTLS``, ``Close``).

Commands are read one CRLF-terminated line at a time, their arguments
parsed by ``grammar``.  Message data is handled in raw mode by the
``readers``: a DATA stream is scanned for ``CRLF . CRLF`` and
dot-unstuffed over whole chunks; a BDAT chunk is counted off byte-exact.
The events are in ``events``.  Every state, sub-states included
(draining a message over size, a refused BDAT chunk), and every
transition is in ``states.TRANSITIONS``; handlers validate a command
and then ``go`` to the state the table names.  The session is made of
collaborators, one job each, as h11's ``Connection`` owns its
``ConnectionState``: a ``states.Machine`` (the state, the unprocessed
input, the mail transaction, the event queue), ``data.MessageData``
(DATA and BDAT) and ``commands.Commands`` (every other command), all
under one frozen ``SessionLimits``; ``Session`` here is the owner's side.
"""

from __future__ import annotations

from typing import Union

from secudoc_gateway import replies
from secudoc_gateway.replies import Reply
from secudoc_gateway.smtp.commands import Commands
from secudoc_gateway.smtp.data import MessageData
from secudoc_gateway.smtp.events import NEED_DATA, PAUSED, Event, Sentinel
from secudoc_gateway.smtp.states import (
    CHUNK_STATES, COMMAND_STATES, DOT_STATES, SKIP_STATES, WAITING_STATES, Machine, SessionLimits, State,
)

__all__ = ["Session", "SessionLimits", "State"]

S = State
_RECEIVING = DOT_STATES | CHUNK_STATES | SKIP_STATES


class Session:
    """
    One ESMTP server session, its limits (``SessionLimits``) given to the
    constructor with what the listener offers: STARTTLS, and whether a
    sender must use it first.
    """

    def __init__(self, hostname: str, limits: SessionLimits, tlsAvailable: bool = False,
                 requireTLS: bool = False, tlsActive: bool = False) -> None:
        self.hostname = hostname
        self.limits = limits
        self._machine = machine = Machine(limits, tlsActive)
        self._data = MessageData(machine, limits, requireTLS)
        self._commands = Commands(machine, limits, self._data, hostname, tlsAvailable, requireTLS)
        machine.send(replies.SERVICE_READY.withText(replies.SERVICE_READY.text.format(hostname=hostname)))

    # --- the owner's side ---------------------------------------------------

    @property
    def state(self) -> State:
        return self._machine.state

    @property
    def tlsActive(self) -> bool:
        return self._machine.tlsActive

    @property
    def receivingData(self) -> bool:
        """True while message data (not commands) is expected."""
        return self._machine.state in _RECEIVING

    @property
    def pendingBytes(self) -> int:
        """Bytes received and not processed yet."""
        return len(self._machine.buffer)

    def receiveData(self, data: bytes) -> None:
        if self._machine.state is not S.CLOSED:
            self._machine.buffer += data

    def nextEvent(self) -> Union[Event, Sentinel]:
        m = self._machine
        while not m.events:
            if not self._step():
                if m.state in WAITING_STATES and len(m.buffer) > self.limits.maxPending:
                    self.close(replies.TOO_MUCH_INPUT)
                    continue
                if m.state in WAITING_STATES or m.state is S.CLOSED:
                    return PAUSED
                return NEED_DATA
        return m.events.popleft()

    def acceptMail(self) -> None:
        """The owner accepts the sender of the last ``MailFrom``."""
        self._machine.go("accepted")
        self._machine.send(replies.SENDER_OK)

    def refuseMail(self, reply: Reply, reason: str = "") -> None:
        """The owner refuses the sender of the last ``MailFrom`` with ``reply`` (``reason``: for the log)."""
        m = self._machine
        sender = m.transaction.sender
        m.resetTransaction()
        m.go("refused")
        m.refuse("MAIL", reply, reason, sender, ())

    def finalReply(self, reply: Reply) -> None:
        """The answer to the message after ``DataEnd``; the transaction is over."""
        m = self._machine
        m.resetTransaction()
        m.go("replied")
        m.send(reply)

    def close(self, reply: Reply) -> None:
        """
        End the session with ``reply`` (a 421: timeout, shutdown).  Sent
        with its enhanced code whatever the greeting: a closing reply is
        for logs as much as for the client.
        """
        if self._machine.state is S.CLOSED:
            return
        self._machine.closeWith(reply)

    # --- internals ----------------------------------------------------------

    def _step(self) -> bool:
        """Make progress on the buffer; False when nothing can be done now."""
        state = self._machine.state
        if state in DOT_STATES:
            return self._data.dataStep()
        if state in CHUNK_STATES:
            return self._data.bdatStep()
        if state in SKIP_STATES:
            return self._data.skipStep()
        if state in COMMAND_STATES:
            return self._commands.step()
        return False
