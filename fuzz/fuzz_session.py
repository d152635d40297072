"""
Fuzz target: the ESMTP session (commands, DATA with its dot-stuffing
and terminator, BDAT framing), fed a client's byte stream at arbitrary
split points, driven as the protocol drives it.

Invariants: no exception escapes; every reply is whole lines ending in
CRLF, with no bare CR or LF; message data is only handed out between a
``DataStart`` and its end; a message's data never holds more bytes than
``maxMessageSize`` allows; nothing is handed out after ``Close``.

    .venv/bin/python fuzz/run.py session -max_total_time=60
"""

from __future__ import annotations

import os
import sys
import zlib
from typing import Iterable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fuzz.harness import check, chunked, corpusMessages, hasBareLineBreak  # noqa: E402
from secudoc_gateway import replies  # noqa: E402
from secudoc_gateway.smtp.events import (  # noqa: E402
    NEED_DATA, PAUSED, Close, DataAbort, DataChunk, DataEnd, DataStart, MailFrom, SendReply,
)
from secudoc_gateway.smtp.session import Session, SessionLimits  # noqa: E402

MAX_MESSAGE = 64 * 1024
ACCEPTED = replies.ACCEPTED.withText("Ok fuzz")


def drive(session: Session, state: dict) -> None:
    while True:
        event = session.nextEvent()
        if event is NEED_DATA or event is PAUSED:
            return
        check(not state["closed"], f"{event!r} after Close")
        if isinstance(event, SendReply):
            data = event.data
            check(data.endswith(b"\r\n") and not hasBareLineBreak(data), f"malformed reply {data!r}")
            for line in data[:-2].split(b"\r\n"):
                check(len(line) >= 3 and line[:3].isdigit() and line[3:4] in (b"", b" ", b"-"),
                      f"malformed reply line {line!r}")
        elif isinstance(event, MailFrom):
            # Refuse some senders, as a tenant lookup would.
            if zlib.crc32(event.sender.encode("utf-8", "surrogateescape")) % 5 == 0:
                session.refuseMail(replies.RELAY_DENIED)
            else:
                session.acceptMail()
        elif isinstance(event, DataStart):
            check(state["message"] is None, "DataStart inside a message")
            state["message"] = 0
        elif isinstance(event, DataChunk):
            check(state["message"] is not None, "data outside a message")
            state["message"] += len(event.data)
            check(state["message"] <= MAX_MESSAGE + 2, f"{state['message']} bytes past the size limit")
        elif isinstance(event, DataEnd):
            check(state["message"] is not None, "DataEnd outside a message")
            state["message"] = None
            session.finalReply(ACCEPTED)
        elif isinstance(event, DataAbort):
            state["message"] = None
        elif isinstance(event, Close):
            state["closed"] = True


def TestOneInput(data: bytes) -> None:
    limits = SessionLimits(maxMessageSize=MAX_MESSAGE, maxRecipients=5, maxLineLength=512, maxPending=4096)
    session = Session(hostname="mx.test", limits=limits, tlsAvailable=True)
    state: dict = {"message": None, "closed": False}
    for chunk in chunked(data, zlib.crc32(data)):
        session.receiveData(chunk)
        drive(session, state)
        if state["closed"]:
            break


def dotStuffed(message: bytes) -> bytes:
    lines = message.replace(b"\r\n", b"\n").split(b"\n")
    return b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines) + b".\r\n"


def seeds() -> Iterable[bytes]:
    """Dialogues around the corpus' messages: DATA, BDAT in pieces, pipelined, with errors between."""
    head = b"EHLO client.test\r\nMAIL FROM:<alice@example.test> BODY=8BITMIME SIZE=1000\r\nRCPT TO:<bob@x.test>\r\n"
    yield b"HELO c\r\nNOOP\r\nRSET\r\nVRFY x\r\nHELP\r\nSTARTTLS\r\nQUIT\r\n"
    yield head + b"DATA\r\nSubject: hi\r\n\r\n..dot\r\n.\r\nQUIT\r\n"
    yield head + b"BDAT 5\r\nhello" + b"BDAT 0 LAST\r\nRSET\r\nBDAT 3 LAST\r\nabc"
    for message in corpusMessages()[:80]:
        message = message[:MAX_MESSAGE // 2]
        yield head + b"DATA\r\n" + dotStuffed(message) + b"QUIT\r\n"
        half = len(message) // 2
        yield (head + b"BDAT %d\r\n" % half + message[:half]
               + b"BDAT %d LAST\r\n" % (len(message) - half) + message[half:] + b"QUIT\r\n")

