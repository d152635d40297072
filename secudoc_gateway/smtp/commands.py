"""
The session's command lines: one CRLF-terminated line at a time (RFC
5321 2.3.8, 4.5.3.1.4), checked against the state's row of
``TRANSITIONS`` and handed to its handler, whose arguments ``grammar``
parses.  The handlers for everything but the message's data are here:
HELO/EHLO and the extensions announced (RFC 1869), MAIL and RCPT,
STARTTLS (RFC 3207), and the commands that change nothing.  DATA and
BDAT are handed to ``data``.
"""

from __future__ import annotations

from typing import Callable

from secudoc_gateway import replies
from secudoc_gateway.smtp.data import MessageData
from secudoc_gateway.smtp.events import Close, RcptTo, StartTLS
from secudoc_gateway.smtp.grammar import CONTROL, ArgumentError, helloDomain, parseMail, parseRcpt
from secudoc_gateway.smtp.readers import CRLF
from secudoc_gateway.smtp.states import TRANSITIONS, Machine, SessionLimits


def _senderOf(arg: str, esmtp: bool) -> str:
    """The sender a MAIL command names, for the log of its refusal; ``""`` when it names none."""
    try:
        return parseMail(arg, esmtp).sender
    except ArgumentError:
        return ""


#: Commands that change nothing and are fine in every command state.
_STATELESS = frozenset({"NOOP", "VRFY", "EXPN", "HELP"})

#: SMTP verbs we know and do not offer (RFC 5321 4.2.4: 502, not the 500 of
#: a verb nobody defined): AUTH (RFC 4954; EXO authenticates by its TLS
#: certificate and address), ETRN (RFC 1985), ATRN (RFC 2645), BURL (RFC
#: 4468), and RFC 821's TURN, SEND, SOML and SAML.
_NOT_OFFERED = frozenset({"AUTH", "ETRN", "ATRN", "BURL", "TURN", "SEND", "SOML", "SAML"})

#: An HTTP request line: a browser a web page makes POST to this port (a
#: text/plain form needs no CORS preflight) would have its body's SMTP
#: commands executed after a few 500s for its header lines, so the first
#: one closes the connection, as Postfix's ``smtpd_forbidden_commands``.
#: A verb ending in ``:`` is a header line (``Host:``), the same client.
_HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"})


class Commands:
    """The command half of a session, on its ``Machine`` (module docstring)."""

    def __init__(self, machine: Machine, limits: SessionLimits, data: MessageData, hostname: str,
                 tlsAvailable: bool, requireTLS: bool) -> None:
        self.machine = machine
        self.limits = limits
        self.hostname = hostname
        self.tlsAvailable = tlsAvailable
        self.requireTLS = requireTLS
        # The line reader's own state, as DotReader has one: inside an
        # overlong line, whatever command state the session is in.
        self._discardLine = False
        self._handlers: dict[str, Callable[[str], None]] = {
            "EHLO": self._ehlo,
            "HELO": self._helo,
            "MAIL": self._mail,
            "RCPT": self._rcpt,
            "DATA": data.data,
            "BDAT": data.bdat,
            "RSET": self._rset,
            "NOOP": self._noop,
            "VRFY": self._vrfy,
            "EXPN": self._expn,
            "HELP": self._help,
            "STARTTLS": self._starttls,
            "QUIT": self._quit,
        }

    def step(self) -> bool:
        """Read and execute one command line; False when no whole line is in."""
        m = self.machine
        buf = m.buffer
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
            if len(buf) > self.limits.maxLineLength:
                self._discardLine = True
                m.error(replies.LINE_TOO_LONG)
                return True
            return False
        line = bytes(buf[:end])
        del buf[: end + 2]
        if len(line) + 2 > self.limits.maxLineLength:
            m.error(replies.LINE_TOO_LONG)
        elif CONTROL.search(line):
            # RFC 5321 2.3.8: only CRLF ends a line; a bare CR or LF inside
            # one is not a separator but a stray control character.
            m.error(replies.CONTROL_CHARACTERS)
        else:
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError:
                m.error(replies.PARAM_SYNTAX)
            else:
                self._command(text)
        return True

    def _command(self, text: str) -> None:
        verb, _, arg = text.partition(" ")
        verb = verb.upper()
        if verb in _HTTP_METHODS or verb.endswith(":"):
            self.machine.closeWith(replies.NOT_SMTP)
            return
        if verb in _NOT_OFFERED:
            self.machine.send(replies.NOT_IMPLEMENTED)
            return
        handler = self._handlers.get(verb)
        if handler is None:
            self.machine.error(replies.SYNTAX_ERROR)
            return
        if verb in _STATELESS or verb in ("BDAT", "STARTTLS") or verb in TRANSITIONS[self.machine.state]:
            handler(arg)
        else:
            self.machine.error(replies.BAD_SEQUENCE)

    def _hello(self, arg: str, esmtp: bool) -> None:
        m = self.machine
        try:
            domain = helloDomain(arg)
        except ArgumentError as e:
            m.error(e.reply)
            return
        m.go("EHLO" if esmtp else "HELO")
        m.resetTransaction()
        m.helo = domain
        m.esmtp = esmtp
        if not esmtp:
            m.send(replies.HELLO.withText(self.hostname))
            return
        keywords = [
            self.hostname,
            "PIPELINING",
            f"SIZE {self.limits.maxMessageSize}",
            "8BITMIME",
            "ENHANCEDSTATUSCODES",
            "SMTPUTF8",
            "CHUNKING",
        ]
        if self.tlsAvailable and not m.tlsActive:
            keywords.append("STARTTLS")
        m.send(replies.HELLO.withText("\n".join(keywords)))

    def _ehlo(self, arg: str) -> None:
        self._hello(arg, True)

    def _helo(self, arg: str) -> None:
        self._hello(arg, False)

    def _mail(self, arg: str) -> None:
        m = self.machine
        if self.requireTLS and not m.tlsActive:
            m.refuse("MAIL", replies.TLS_REQUIRED, "", _senderOf(arg, m.esmtp), ())
            return
        try:
            mail = parseMail(arg, m.esmtp)
        except ArgumentError as e:
            m.error(e.reply)
            return
        if mail.size is not None and mail.size > self.limits.maxMessageSize:  # RFC 1870 6.1
            m.refuse("MAIL", replies.MESSAGE_TOO_BIG,
                     f"SIZE={mail.size} over max_message_size {self.limits.maxMessageSize}", mail.sender, ())
            return
        tx = m.transaction
        tx.sender, tx.body, tx.smtputf8, tx.declaredSize = mail.sender, mail.body, mail.smtputf8, mail.size
        m.go("MAIL")
        m.events.append(mail)

    def _rcpt(self, arg: str) -> None:
        m = self.machine
        tx = m.transaction
        try:
            address = parseRcpt(arg, tx.smtputf8)
        except ArgumentError as e:
            m.error(e.reply)
            return
        if len(tx.recipients) >= self.limits.maxRecipients:
            m.refuse("RCPT", replies.TOO_MANY_RECIPIENTS, f"max_recipients {self.limits.maxRecipients} reached",
                     tx.sender, (address,))
            return
        tx.recipients.append(address)
        m.go("RCPT")
        m.events.append(RcptTo(address))
        m.send(replies.RECIPIENT_OK)

    def _rset(self, arg: str) -> None:
        m = self.machine
        if arg.strip(" "):
            m.error(replies.PARAM_SYNTAX)
            return
        m.go("RSET")
        m.resetTransaction()
        m.send(replies.RESET_OK)

    def _noop(self, arg: str) -> None:
        self.machine.send(replies.OK)

    def _vrfy(self, arg: str) -> None:
        if not arg.strip(" "):
            self.machine.error(replies.PARAM_SYNTAX)
            return
        self.machine.send(replies.VRFY_CANNOT)

    def _expn(self, arg: str) -> None:
        self.machine.send(replies.NOT_IMPLEMENTED)

    def _help(self, arg: str) -> None:
        self.machine.send(replies.HELP)

    def _starttls(self, arg: str) -> None:
        m = self.machine
        if m.tlsActive:
            m.error(replies.TLS_ALREADY)
        elif not self.tlsAvailable:
            m.send(replies.TLS_UNAVAILABLE)
        elif arg.strip(" "):
            m.error(replies.PARAM_SYNTAX)
        elif "STARTTLS" not in TRANSITIONS[m.state]:
            m.error(replies.BAD_SEQUENCE)
        else:
            m.send(replies.READY_TLS)
            m.go("STARTTLS")
            # RFC 3207 4.2: forget everything the client said before TLS,
            # including whatever it pipelined after this command.
            m.buffer.clear()
            m.resetTransaction()
            m.tlsActive = True
            m.esmtp = False
            m.helo = ""
            m.events.append(StartTLS())

    def _quit(self, arg: str) -> None:
        m = self.machine
        m.send(replies.CLOSING)
        m.go("QUIT")
        m.buffer.clear()
        m.events.append(Close())
