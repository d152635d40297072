"""
What the ESMTP session hands its owner: frozen event values (replies to
write, questions to answer, message data, the two things only the owner
can do) and the two sentinels ``nextEvent`` returns when it has none.
Kept apart from the state machine, as h11 keeps ``_events``, so a
reader of the adapter sees the whole vocabulary in one place.
"""

from __future__ import annotations

from typing import Optional, Union

import attrs

from secudoc_gateway.replies import Reply


@attrs.frozen
class SendReply:
    """Write ``data`` (``reply`` rendered for this session) to the client."""

    reply: Reply
    data: bytes


@attrs.frozen
class MailFrom:
    """
    A well-formed MAIL command.  The session waits until the owner calls
    ``acceptMail()`` or ``refuseMail(reply)``.  ``sender`` is ``""`` for
    the null reverse-path.
    """

    sender: str
    body: Optional[str]
    smtputf8: bool
    size: Optional[int]


@attrs.frozen
class RcptTo:
    """A recipient was accepted (already answered with 250)."""

    address: str


@attrs.frozen
class DataStart:
    """
    The first data byte is about to come (DATA's 354, the first BDAT):
    the envelope is complete.  ``kind`` is ``"DATA"`` or ``"BDAT"``.
    """

    kind: str
    sender: str
    recipients: tuple[str, ...]
    body: Optional[str]
    smtputf8: bool
    size: Optional[int]
    helo: str
    tls: bool


@attrs.frozen
class DataChunk:
    """Message bytes: DATA dot-unstuffed without the end marker, BDAT as sent."""

    data: bytes


@attrs.frozen
class DataEnd:
    """All data is in; the session waits for ``finalReply(reply)``."""


@attrs.frozen
class DataAbort:
    """The message is abandoned (over size, RSET, EHLO, close): relay nothing."""


@attrs.frozen
class StartTLS:
    """
    Switch the transport to TLS now, before reading anything more; the
    220 was the event before.  Pipelined input after STARTTLS was
    discarded (RFC 3207 section 4.2, and the command-injection attacks
    that section's rule prevents).
    """


@attrs.frozen
class Refused:
    """
    A sender, a recipient or a message refused (its reply is the next
    event): the facts of the owner's refusal line.  ``command`` is the
    verb the reply answers (``MAIL``, ``RCPT``, ``DATA`` or ``BDAT``: a
    message over size is refused at its end); ``reason`` what the reply
    does not say, if anything.
    """

    command: str
    reply: Reply
    reason: str
    sender: str
    recipients: tuple[str, ...]
    helo: str
    esmtp: bool


@attrs.frozen
class Close:
    """Close the connection after writing what came before."""


Event = Union[SendReply, MailFrom, RcptTo, DataStart, DataChunk, DataEnd, DataAbort, Refused, StartTLS, Close]


class Sentinel:
    """A named marker ``nextEvent`` returns instead of an event."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


NEED_DATA = Sentinel("NEED_DATA")
"""Nothing to do until more bytes come in: ``receiveData``."""
PAUSED = Sentinel("PAUSED")
"""The session waits for the owner: a decision, a final reply, or nothing (closed)."""
