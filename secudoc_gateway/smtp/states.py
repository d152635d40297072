"""
The ESMTP session's states, the one table of its transitions, and the
``Machine`` underneath the session: its fields and the few moves every
part of it makes (take a transition, queue a reply, count an error,
close, forget a transaction), as h11 keeps its ``_state`` apart from
the connection.  The command handlers (``commands``) and the message
data (``data``) build on it; ``session`` is the owner's face.
"""

from __future__ import annotations

import enum
from collections import deque
from typing import Optional

from secudoc_gateway import replies
from secudoc_gateway.replies import Reply
from secudoc_gateway.smtp.events import Close, DataAbort, Event, Refused, SendReply
from secudoc_gateway.smtp.readers import ChunkReader, DotReader


class State(enum.Enum):
    CONNECTED = "connected"  # greeted, no HELO/EHLO yet
    READY = "ready"  # HELO/EHLO done, no transaction
    MAIL_PENDING = "mail-pending"  # MailFrom out, waiting for the owner
    MAIL = "mail"  # sender accepted
    RCPT = "rcpt"  # at least one recipient
    DATA = "data"  # reading DATA's dot-stuffed stream
    BDAT = "bdat"  # reading one BDAT chunk
    BDAT_IDLE = "bdat-idle"  # between BDAT chunks of one message
    FINISHING = "finishing"  # all data in, waiting for the final reply
    CLOSED = "closed"


S = State
_HELLO = {"HELO": S.READY, "EHLO": S.READY}

#: Every transition: state -> trigger -> next state.  Triggers in capitals
#: are client commands (a command absent from its state's row gets 503);
#: lower-case ones come from the data stream or the owner.  ``close`` is
#: allowed from every state.
TRANSITIONS: dict[State, dict[str, State]] = {
    S.CONNECTED: {**_HELLO, "RSET": S.CONNECTED, "STARTTLS": S.CONNECTED, "QUIT": S.CLOSED},
    S.READY: {**_HELLO, "RSET": S.READY, "STARTTLS": S.CONNECTED, "MAIL": S.MAIL_PENDING, "QUIT": S.CLOSED},
    S.MAIL_PENDING: {"accepted": S.MAIL, "refused": S.READY},
    S.MAIL: {**_HELLO, "RSET": S.READY, "RCPT": S.RCPT, "QUIT": S.CLOSED},
    S.RCPT: {**_HELLO, "RSET": S.READY, "RCPT": S.RCPT, "DATA": S.DATA, "BDAT": S.BDAT, "QUIT": S.CLOSED},
    S.DATA: {"end": S.FINISHING, "oversize": S.READY},
    S.BDAT: {"chunk": S.BDAT_IDLE, "last": S.FINISHING, "oversize": S.READY},
    S.BDAT_IDLE: {**_HELLO, "RSET": S.READY, "BDAT": S.BDAT, "QUIT": S.CLOSED},
    S.FINISHING: {"replied": S.READY},
    S.CLOSED: {},
}

#: States in which a command line is read and executed.
COMMAND_STATES = frozenset({S.CONNECTED, S.READY, S.MAIL, S.RCPT, S.BDAT_IDLE})
#: Replies that count against ``maxErrors``: a client getting these keeps
#: sending things we do not understand or in an order we do not accept.
_ERROR_CODES = frozenset({500, 501, 503, 555})


class Machine:
    """
    What every part of the session shares: the limits and facts the
    ``Session`` constructor sets, the unprocessed input, the queue of
    events for the owner, the current state and the transaction's.
    """

    hostname: str
    maxMessageSize: int
    maxRecipients: int
    maxLineLength: int
    tlsAvailable: bool
    requireTLS: bool
    maxErrors: int
    maxPending: int
    tlsActive: bool
    esmtp: bool
    helo: str
    errors: int

    _state: State
    _buffer: bytearray
    _events: deque[Event]

    # The transaction's, set by _resetTransaction.
    sender: str
    recipients: list[str]
    body: Optional[str]
    smtputf8: bool
    declaredSize: Optional[int]
    _txOpen: bool  # DataStart sent, neither DataEnd nor DataAbort yet
    _size: int  # message bytes so far
    _oversize: bool
    _dot: DotReader
    _chunk: ChunkReader

    def _go(self, trigger: str) -> None:
        """Take the transition ``trigger`` names from the current state."""
        new = TRANSITIONS[self._state][trigger]
        if self._txOpen and new in (S.READY, S.CONNECTED, S.CLOSED):
            self._txOpen = False
            self._events.append(DataAbort())
        self._state = new

    def _closeWith(self, reply: Reply) -> None:
        self._send(reply, enhanced=True)
        if self._txOpen:
            self._txOpen = False
            self._events.append(DataAbort())
        self._state = S.CLOSED
        self._buffer.clear()
        self._events.append(Close())

    def _send(self, reply: Reply, enhanced: Optional[bool] = None) -> None:
        self._events.append(SendReply(reply, reply.toBytes(self.esmtp if enhanced is None else enhanced)))

    def _refuse(self, command: str, reply: Reply, reason: str = "", sender: Optional[str] = None,
                recipients: Optional[tuple[str, ...]] = None) -> None:
        """Refuse what ``command`` asked with ``reply``, telling the owner what was refused first."""
        self._events.append(Refused(
            command, reply, reason, self.sender if sender is None else sender,
            tuple(self.recipients) if recipients is None else recipients, self.helo, self.esmtp))
        self._send(reply)

    def _error(self, reply: Reply) -> None:
        self._send(reply)
        if reply.code in _ERROR_CODES:
            self.errors += 1
            if self.errors >= self.maxErrors:
                self._closeWith(replies.TOO_MANY_ERRORS)

    def _resetTransaction(self) -> None:
        self.sender = ""
        self.recipients = []
        self.body = None
        self.smtputf8 = False
        self.declaredSize = None
        self._txOpen = False
        self._size = 0
        self._oversize = False
        self._dot = DotReader()
        self._chunk = ChunkReader(0, False)
