"""
The session's command lines: one CRLF-terminated line at a time (RFC
5321 2.3.8, 4.5.3.1.4), checked against the state's row of
``TRANSITIONS`` and handed to its handler, whose arguments ``grammar``
parses.  The handlers for everything but the message's data are here:
HELO/EHLO and the extensions announced (RFC 1869), MAIL and RCPT,
STARTTLS (RFC 3207), and the commands that change nothing.
"""

from __future__ import annotations

from typing import Callable, ClassVar

from secudoc_gateway import replies
from secudoc_gateway.smtp.data import MessageData
from secudoc_gateway.smtp.events import Close, RcptTo, StartTLS
from secudoc_gateway.smtp.grammar import CONTROL, ArgumentError, helloDomain, parseMail, parseRcpt
from secudoc_gateway.smtp.readers import CRLF
from secudoc_gateway.smtp.states import TRANSITIONS

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


class Commands(MessageData):
    """The command half of the session (module docstring)."""

    _discardLine: bool  # inside an overlong command line

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
        if verb in _HTTP_METHODS or verb.endswith(":"):
            self._closeWith(replies.NOT_SMTP)
            return
        if verb in _NOT_OFFERED:
            self._send(replies.NOT_IMPLEMENTED)
            return
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

    _HANDLERS: ClassVar[dict[str, Callable[["Commands", str], None]]] = {
        "EHLO": _ehlo,
        "HELO": _helo,
        "MAIL": _mail,
        "RCPT": _rcpt,
        "DATA": MessageData._data,
        "BDAT": MessageData._bdat,
        "RSET": _rset,
        "NOOP": _noop,
        "VRFY": _vrfy,
        "EXPN": _expn,
        "HELP": _help,
        "STARTTLS": _starttls,
        "QUIT": _quit,
    }
