"""
The ESMTP session's states, the one table of its transitions, its
limits, and the ``Machine`` that owns the current state: it takes the
transitions, queues the events for the owner (replies rendered for the
session, the data events in their order), counts errors and closes, as
h11's ``ConnectionState`` is owned by its ``Connection``.  Every
sub-state is a state of the table: draining a message past the size
limit, draining a BDAT chunk that was refused.
"""

from __future__ import annotations

import enum
from collections import deque
from typing import Optional

import attrs

from secudoc_gateway import replies
from secudoc_gateway.replies import Reply
from secudoc_gateway.smtp.events import Close, DataAbort, DataEnd, DataStart, Event, Refused, SendReply
from secudoc_gateway.smtp.readers import ChunkReader, DotReader


class State(enum.Enum):
    CONNECTED = "connected"  # greeted, no HELO/EHLO yet
    READY = "ready"  # HELO/EHLO done, no transaction
    MAIL_PENDING = "mail-pending"  # MailFrom out, waiting for the owner
    MAIL = "mail"  # sender accepted
    RCPT = "rcpt"  # at least one recipient
    DATA = "data"  # reading DATA's dot-stuffed stream
    DATA_OVERSIZE = "data-oversize"  # DATA past the size limit: drained to its end, then 552
    BDAT = "bdat"  # reading one BDAT chunk
    BDAT_OVERSIZE = "bdat-oversize"  # a BDAT chunk past the size limit: drained to its end, then 552
    BDAT_IDLE = "bdat-idle"  # between BDAT chunks of one message
    FINISHING = "finishing"  # all data in, waiting for the final reply
    # RFC 3030 2: a BDAT chunk refused is read and discarded, then its reply;
    # the session is back where the command found it.
    SKIP_CONNECTED = "skip-connected"
    SKIP_READY = "skip-ready"
    SKIP_MAIL = "skip-mail"
    CLOSED = "closed"


S = State
_HELLO = {"HELO": S.READY, "EHLO": S.READY}

#: Every transition: state -> trigger -> next state.  Triggers in capitals
#: are client commands (a command absent from its state's row gets 503);
#: lower-case ones come from the data stream or the owner.  ``close`` is
#: allowed from every state.
TRANSITIONS: dict[State, dict[str, State]] = {
    S.CONNECTED: {**_HELLO, "RSET": S.CONNECTED, "STARTTLS": S.CONNECTED, "QUIT": S.CLOSED,
                  "skip": S.SKIP_CONNECTED},
    S.READY: {**_HELLO, "RSET": S.READY, "STARTTLS": S.CONNECTED, "MAIL": S.MAIL_PENDING, "QUIT": S.CLOSED,
              "skip": S.SKIP_READY},
    S.MAIL_PENDING: {"accepted": S.MAIL, "refused": S.READY},
    S.MAIL: {**_HELLO, "RSET": S.READY, "RCPT": S.RCPT, "QUIT": S.CLOSED, "skip": S.SKIP_MAIL},
    S.RCPT: {**_HELLO, "RSET": S.READY, "RCPT": S.RCPT, "DATA": S.DATA, "BDAT": S.BDAT, "QUIT": S.CLOSED},
    S.DATA: {"end": S.FINISHING, "oversize": S.DATA_OVERSIZE},
    S.DATA_OVERSIZE: {"end": S.READY},
    S.BDAT: {"chunk": S.BDAT_IDLE, "last": S.FINISHING, "oversize": S.BDAT_OVERSIZE},
    S.BDAT_OVERSIZE: {"end": S.READY},
    S.BDAT_IDLE: {**_HELLO, "RSET": S.READY, "BDAT": S.BDAT, "QUIT": S.CLOSED},
    S.FINISHING: {"replied": S.READY},
    S.SKIP_CONNECTED: {"skipped": S.CONNECTED},
    S.SKIP_READY: {"skipped": S.READY},
    S.SKIP_MAIL: {"skipped": S.MAIL},
    S.CLOSED: {},
}

#: States in which a command line is read and executed.
COMMAND_STATES = frozenset({S.CONNECTED, S.READY, S.MAIL, S.RCPT, S.BDAT_IDLE})
#: States in which the buffer holds a DATA stream, a BDAT chunk, or a refused chunk.
DOT_STATES = frozenset({S.DATA, S.DATA_OVERSIZE})
CHUNK_STATES = frozenset({S.BDAT, S.BDAT_OVERSIZE})
SKIP_STATES = frozenset({S.SKIP_CONNECTED, S.SKIP_READY, S.SKIP_MAIL})
#: States in which the session waits for its owner, not for bytes.
WAITING_STATES = frozenset({S.MAIL_PENDING, S.FINISHING})
#: Replies that count against ``maxErrors``: a client getting these keeps
#: sending things we do not understand or in an order we do not accept.
_ERROR_CODES = frozenset({500, 501, 503, 555})


@attrs.frozen
class SessionLimits:
    """
    Every limit of one session: message size (RFC 1870), recipients
    (RFC 5321 4.5.3.1.8), command line length (4.5.3.1.4, raised for
    extension parameters), errors before 421, and how much unprocessed
    pipelined input is held while the session waits for its owner.
    """

    maxMessageSize: int
    maxRecipients: int
    maxLineLength: int = 2048
    maxErrors: int = 10
    maxPending: int = 1 << 20


@attrs.define
class MailTransaction:
    """
    The mail transaction under way (RFC 5321 3.3): its envelope as the
    commands gave it, and its message data as far as it came.
    """

    sender: str = ""
    recipients: list[str] = attrs.Factory(list)
    body: Optional[str] = None
    smtputf8: bool = False
    declaredSize: Optional[int] = None
    size: int = 0  # message bytes so far
    dot: DotReader = attrs.Factory(DotReader)
    chunk: ChunkReader = attrs.Factory(lambda: ChunkReader(0, False))


class Machine:
    """
    The session's state, the input not processed yet (``buffer``), the
    mail transaction under way, and the events it owes its owner.  A message's
    data events are kept in order here: each ``DataStart`` is followed by
    ``DataEnd`` or ``DataAbort``, the latter whenever a transition leaves
    the message behind.  ``esmtp`` (EHLO, not HELO) decides how replies
    are rendered; ``helo`` and ``tlsActive`` are facts of the session the
    events carry.
    """

    def __init__(self, limits: SessionLimits, tlsActive: bool = False) -> None:
        self.limits = limits
        self.state = S.CONNECTED
        self.buffer = bytearray()
        self.transaction = MailTransaction()
        self.events: deque[Event] = deque()
        self.esmtp = False
        self.helo = ""
        self.tlsActive = tlsActive
        self.errors = 0
        self.dataOpen = False  # DataStart sent, neither DataEnd nor DataAbort yet

    def go(self, trigger: str) -> None:
        """Take the transition ``trigger`` names from the current state."""
        new = TRANSITIONS[self.state][trigger]
        if self.dataOpen and new in (S.READY, S.CONNECTED, S.CLOSED):
            self.abortData()
        self.state = new

    def resetTransaction(self) -> None:
        """Forget the mail transaction (RSET, EHLO, the message answered or refused)."""
        self.transaction = MailTransaction()

    def send(self, reply: Reply, enhanced: Optional[bool] = None) -> None:
        self.events.append(SendReply(reply, reply.toBytes(self.esmtp if enhanced is None else enhanced)))

    def error(self, reply: Reply) -> None:
        """A reply that may count against ``maxErrors`` (then 421 and closed)."""
        self.send(reply)
        if reply.code in _ERROR_CODES:
            self.errors += 1
            if self.errors >= self.limits.maxErrors:
                self.closeWith(replies.TOO_MANY_ERRORS)

    def refuse(self, command: str, reply: Reply, reason: str, sender: str, recipients: tuple[str, ...]) -> None:
        """Refuse what ``command`` asked with ``reply``, telling the owner what was refused first."""
        self.events.append(Refused(command, reply, reason, sender, recipients, self.helo, self.esmtp))
        self.send(reply)

    def closeWith(self, reply: Reply) -> None:
        """
        End the session with ``reply``, sent with its enhanced code
        whatever the greeting: a closing reply is for logs as much as
        for the client.
        """
        self.send(reply, enhanced=True)
        if self.dataOpen:
            self.abortData()
        self.state = S.CLOSED
        self.buffer.clear()
        self.events.append(Close())

    def startData(self, kind: str, transaction: MailTransaction) -> None:
        self.dataOpen = True
        self.events.append(DataStart(
            kind, transaction.sender, tuple(transaction.recipients), transaction.body, transaction.smtputf8,
            transaction.declaredSize, self.helo, self.tlsActive,
        ))

    def endData(self) -> None:
        self.dataOpen = False
        self.events.append(DataEnd())

    def abortData(self) -> None:
        self.dataOpen = False
        self.events.append(DataAbort())
