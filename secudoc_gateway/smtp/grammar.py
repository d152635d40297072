"""
The syntax of an SMTP command line's arguments (RFC 5321 4.1, with
RFC 1870 SIZE, RFC 6152 BODY, RFC 6531 SMTPUTF8 and RFC 3030 BDAT):
paths, mailboxes, parameters.  Pure functions of the text; each failure
raises ``ArgumentError`` carrying the reply to give, so the session
only decides what a well-formed command does in its state and limits.
"""

from __future__ import annotations

import re
from typing import Optional

from secudoc_gateway import replies
from secudoc_gateway.replies import Reply
from secudoc_gateway.smtp.events import MailFrom

CONTROL = re.compile(rb"[\x00-\x1f\x7f]")
"""Bytes no command line may hold: RFC 5321 2.3.8 ends a line with CRLF only."""

# RFC 5321 4.1.2 (and RFC 6531 3.3 for UTF-8): Mailbox = Local-part "@" ( Domain / address-literal )
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010ffff]"
_DOT_ATOM = rf"{_ATEXT}+(?:\.{_ATEXT}+)*"
_QUOTED = r'"(?:[^"\\]|\\.)*"'
_LABEL = r"[A-Za-z0-9_\u0080-\U0010ffff](?:[A-Za-z0-9_\-\u0080-\U0010ffff]*[A-Za-z0-9_\u0080-\U0010ffff])?"
_DOMAIN = rf"(?:{_LABEL}(?:\.{_LABEL})*\.?|\[[^\[\]\\ ]+\])"
_MAILBOX = re.compile(rf"(?:{_DOT_ATOM}|{_QUOTED})@{_DOMAIN}")
_SOURCE_ROUTE = re.compile(rf"@{_DOMAIN}(?:,@{_DOMAIN})*:")
_SIZE_VALUE = re.compile(r"[0-9]{1,20}")
_BDAT_ARGS = re.compile(r"([0-9]{1,20})(?: +(LAST))? *", re.IGNORECASE)


class ArgumentError(Exception):
    """A malformed argument; carries the reply to give."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply)
        self.reply = reply


def _parsePath(text: str, prefix: str) -> tuple[str, str]:
    """
    ``FROM:<path> params`` → (mailbox, params).  Optional space after the
    colon is tolerated; angle brackets are required (RFC 5321 4.1.2).
    """
    if not text[: len(prefix)].upper() == prefix:
        raise ArgumentError(replies.PARAM_SYNTAX)
    rest = text[len(prefix) :].lstrip(" ")
    if not rest.startswith("<"):
        raise ArgumentError(replies.PARAM_SYNTAX)
    # find the closing '>' outside a quoted local part
    i, quoted = 1, False
    while i < len(rest):
        c = rest[i]
        if quoted and c == "\\":
            i += 2
            continue
        if c == '"':
            quoted = not quoted
        elif c == ">" and not quoted:
            break
        i += 1
    else:
        raise ArgumentError(replies.PARAM_SYNTAX)
    path, params = rest[1:i], rest[i + 1 :]
    if params and not params.startswith(" "):
        raise ArgumentError(replies.PARAM_SYNTAX)
    route = _SOURCE_ROUTE.match(path)
    if route:  # RFC 5321 4.1.2: accept and ignore a source route
        path = path[route.end() :]
    return path, params.strip(" ")


def _params(text: str) -> dict[str, Optional[str]]:
    """``KEY=VALUE KEY`` → {KEY: VALUE or None}; keywords upper-cased."""
    out: dict[str, Optional[str]] = {}
    for item in text.split():
        key, eq, value = item.partition("=")
        key = key.upper()
        if not key or key in out or (eq and not value):
            raise ArgumentError(replies.PARAM_SYNTAX)
        out[key] = value if eq else None
    return out


def helloDomain(arg: str) -> str:
    """HELO's and EHLO's one argument, the client's name for itself."""
    domain = arg.strip(" ")
    if not domain or " " in domain:
        raise ArgumentError(replies.PARAM_SYNTAX)
    return domain


def parseMail(arg: str, esmtp: bool) -> MailFrom:
    """
    MAIL's argument: the reverse-path and the parameters we advertise
    (none after HELO).  Only syntax: the size limit is the session's.
    """
    sender, rest = _parsePath(arg, "FROM:")
    params = _params(rest)
    if params and not esmtp:
        raise ArgumentError(replies.PARAM_NOT_IMPLEMENTED)
    smtputf8 = False
    body = size = None
    for key, value in params.items():
        if key == "SIZE":
            if value is None or not _SIZE_VALUE.fullmatch(value):
                raise ArgumentError(replies.PARAM_SYNTAX)
            size = int(value)
        elif key == "BODY":
            body = (value or "").upper()
            if body == "BINARYMIME":  # RFC 3030 3: not advertised
                raise ArgumentError(replies.PARAM_NOT_IMPLEMENTED)
            if body not in ("7BIT", "8BITMIME"):
                raise ArgumentError(replies.PARAM_SYNTAX)
        elif key == "SMTPUTF8":
            if value is not None:
                raise ArgumentError(replies.PARAM_SYNTAX)
            smtputf8 = True
        else:
            raise ArgumentError(replies.PARAM_NOT_IMPLEMENTED)
    if sender and not _MAILBOX.fullmatch(sender):
        raise ArgumentError(replies.PARAM_SYNTAX)
    if not sender.isascii() and not smtputf8:  # RFC 6531 3.4
        raise ArgumentError(replies.SMTPUTF8_REQUIRED)
    return MailFrom(sender, body, smtputf8, size)


def parseRcpt(arg: str, smtputf8: bool) -> str:
    """RCPT's argument: the forward-path, which may be UTF-8 only after MAIL ... SMTPUTF8."""
    address, rest = _parsePath(arg, "TO:")
    if rest:  # no DSN (RFC 3461) advertised, so no parameter is known
        raise ArgumentError(replies.PARAM_NOT_IMPLEMENTED)
    if not (_MAILBOX.fullmatch(address) or address.lower() == "postmaster"):
        raise ArgumentError(replies.PARAM_SYNTAX)
    if not address.isascii() and not smtputf8:
        raise ArgumentError(replies.SMTPUTF8_REQUIRED)
    return address


def parseBdat(arg: str) -> Optional[tuple[int, bool]]:
    """BDAT's ``chunk-size [LAST]`` (RFC 3030 2) → (size, last), or None when malformed."""
    match = _BDAT_ARGS.fullmatch(arg)
    if match is None:
        return None
    return int(match.group(1)), match.group(2) is not None
