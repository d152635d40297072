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
``TRANSITIONS``; handlers validate a command and then ``_go`` to the
state the table names.
"""

from __future__ import annotations

import enum
from collections import deque
from typing import Optional, Union

from secudoc_gateway import replies
from secudoc_gateway.replies import Reply
from secudoc_gateway.smtp.events import (
    NEED_DATA,
    PAUSED,
    Close,
    DataAbort,
    DataChunk,
    DataEnd,
    DataStart,
    Event,
    RcptTo,
    SendReply,
    Sentinel,
    StartTLS,
)
from secudoc_gateway.smtp.grammar import CONTROL, ArgumentError, helloDomain, parseBdat, parseMail, parseRcpt
from secudoc_gateway.smtp.readers import CRLF, ChunkReader, DotReader

# --- states and transitions ------------------------------------------------


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
#: Commands that change nothing and are fine in every command state.
_STATELESS = frozenset({"NOOP", "VRFY", "EXPN", "HELP"})
#: Replies that count against ``maxErrors``: a client getting these keeps
#: sending things we do not understand or in an order we do not accept.
_ERROR_CODES = frozenset({500, 501, 503, 555})


class Session:
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
        self._events: deque[Event] = deque()
        self._discardLine = False  # inside an overlong command line
        self._skip = 0  # BDAT bytes to drain for a refused BDAT
        self._afterSkip: Optional[Reply] = None
        self._txOpen: bool
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

    def refuseMail(self, reply: Reply) -> None:
        """The owner refuses the sender of the last ``MailFrom`` with ``reply``."""
        self._resetTransaction()
        self._go("refused")
        self._send(reply)

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

    def _error(self, reply: Reply) -> None:
        self._send(reply)
        if reply.code in _ERROR_CODES:
            self.errors += 1
            if self.errors >= self.maxErrors:
                self._closeWith(replies.TOO_MANY_ERRORS)

    def _resetTransaction(self) -> None:
        self.sender = ""
        self.recipients: list[str] = []
        self.body: Optional[str] = None
        self.smtputf8 = False
        self.declaredSize: Optional[int] = None
        self._txOpen = False  # DataStart sent, neither DataEnd nor DataAbort yet
        self._size = 0  # message bytes so far
        self._oversize = False
        self._dot = DotReader()
        self._chunk = ChunkReader(0, False)

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

    # --- commands -----------------------------------------------------------

    def _commandStep(self) -> bool:
        buf = self._buffer
        end = buf.find(CRLF)
        if self._discardLine:
            if end < 0:
                keep = 1 if buf.endswith(b"\r") else 0
                del buf[: len(buf) - keep]
                return False
            del buf[: end + 2]
            self._discardLine = False
            return True
        if end < 0:
            if len(buf) > self.maxLineLength:
                self._discardLine = True
                self._error(replies.LINE_TOO_LONG)
                return True
            return False
        line = bytes(buf[:end])
        del buf[: end + 2]
        if len(line) + 2 > self.maxLineLength:
            self._error(replies.LINE_TOO_LONG)
        elif CONTROL.search(line):
            # RFC 5321 2.3.8: only CRLF ends a line; a bare CR or LF inside
            # one is not a separator but a stray control character.
            self._error(replies.CONTROL_CHARACTERS)
        else:
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError:
                self._error(replies.PARAM_SYNTAX)
            else:
                self._command(text)
        return True

    def _command(self, text: str) -> None:
        verb, _, arg = text.partition(" ")
        verb = verb.upper()
        handler = self._HANDLERS.get(verb)
        if handler is None:
            self._error(replies.SYNTAX_ERROR)
            return
        if verb in _STATELESS or verb in ("BDAT", "STARTTLS") or verb in TRANSITIONS[self._state]:
            handler(self, arg)
        else:
            self._error(replies.BAD_SEQUENCE)

    def _hello(self, arg: str, esmtp: bool) -> None:
        try:
            domain = helloDomain(arg)
        except ArgumentError as e:
            self._error(e.reply)
            return
        self._go("EHLO" if esmtp else "HELO")
        self._resetTransaction()
        self.helo = domain
        self.esmtp = esmtp
        if not esmtp:
            self._send(replies.HELLO.withText(self.hostname))
            return
        keywords = [
            self.hostname,
            "PIPELINING",
            f"SIZE {self.maxMessageSize}",
            "8BITMIME",
            "ENHANCEDSTATUSCODES",
            "SMTPUTF8",
            "CHUNKING",
        ]
        if self.tlsAvailable and not self.tlsActive:
            keywords.append("STARTTLS")
        self._send(replies.HELLO.withText("\n".join(keywords)))

    def _ehlo(self, arg: str) -> None:
        self._hello(arg, True)

    def _helo(self, arg: str) -> None:
        self._hello(arg, False)

    def _mail(self, arg: str) -> None:
        if self.requireTLS and not self.tlsActive:
            self._send(replies.TLS_REQUIRED)
            return
        try:
            mail = parseMail(arg, self.esmtp)
            if mail.size is not None and mail.size > self.maxMessageSize:  # RFC 1870 6.1
                raise ArgumentError(replies.MESSAGE_TOO_BIG)
        except ArgumentError as e:
            self._error(e.reply)
            return
        self.sender, self.body, self.smtputf8, self.declaredSize = mail.sender, mail.body, mail.smtputf8, mail.size
        self._go("MAIL")
        self._events.append(mail)

    def _rcpt(self, arg: str) -> None:
        try:
            address = parseRcpt(arg, self.smtputf8)
        except ArgumentError as e:
            self._error(e.reply)
            return
        if len(self.recipients) >= self.maxRecipients:
            self._send(replies.TOO_MANY_RECIPIENTS)
            return
        self.recipients.append(address)
        self._go("RCPT")
        self._events.append(RcptTo(address))
        self._send(replies.RECIPIENT_OK)

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
        first = self._state is S.RCPT
        self._go("BDAT")
        self._chunk = ChunkReader(size, last)
        if first:
            self._dataStart("BDAT")
        if not size:
            self._bdatStep()

    def _rset(self, arg: str) -> None:
        if arg.strip(" "):
            self._error(replies.PARAM_SYNTAX)
            return
        self._go("RSET")
        self._resetTransaction()
        self._send(replies.RESET_OK)

    def _noop(self, arg: str) -> None:
        self._send(replies.OK)

    def _vrfy(self, arg: str) -> None:
        if not arg.strip(" "):
            self._error(replies.PARAM_SYNTAX)
            return
        self._send(replies.VRFY_CANNOT)

    def _expn(self, arg: str) -> None:
        self._send(replies.NOT_IMPLEMENTED)

    def _help(self, arg: str) -> None:
        self._send(replies.HELP)

    def _starttls(self, arg: str) -> None:
        if self.tlsActive:
            self._error(replies.TLS_ALREADY)
        elif not self.tlsAvailable:
            self._send(replies.TLS_UNAVAILABLE)
        elif arg.strip(" "):
            self._error(replies.PARAM_SYNTAX)
        elif "STARTTLS" not in TRANSITIONS[self._state]:
            self._error(replies.BAD_SEQUENCE)
        else:
            self._send(replies.READY_TLS)
            self._go("STARTTLS")
            # RFC 3207 4.2: forget everything the client said before TLS,
            # including whatever it pipelined after this command.
            self._buffer.clear()
            self._resetTransaction()
            self.tlsActive = True
            self.esmtp = False
            self.helo = ""
            self._events.append(StartTLS())

    def _quit(self, arg: str) -> None:
        self._send(replies.CLOSING)
        self._go("QUIT")
        self._buffer.clear()
        self._events.append(Close())

    _HANDLERS = {
        "EHLO": _ehlo,
        "HELO": _helo,
        "MAIL": _mail,
        "RCPT": _rcpt,
        "DATA": _data,
        "BDAT": _bdat,
        "RSET": _rset,
        "NOOP": _noop,
        "VRFY": _vrfy,
        "EXPN": _expn,
        "HELP": _help,
        "STARTTLS": _starttls,
        "QUIT": _quit,
    }

    # --- message data -------------------------------------------------------

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
            self._go("oversize")
            self._resetTransaction()
            self._send(replies.MESSAGE_TOO_BIG)
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
