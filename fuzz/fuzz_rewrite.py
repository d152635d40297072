"""
Fuzz target: the rewrite, what leaves the gateway.  The input, its
line breaks made CRLF as on the SMTP wire, is parsed and its
attachments extracted; then the protected message is planned in each
content mode (link with the banner, separate, transfer) and streamed.
The raw input also goes through the relay's DATA encoder.

Invariants: no exception escapes; a message that came in without bare
CR or LF goes out without them, in every mode; the DATA encoding of
any bytes has no bare CR or LF, and undoing its dot-stuffing gives the
message back with its line breaks made CRLF, its end-of-data marker only
at the end (no smuggling).

    .venv/bin/python fuzz/run.py rewrite -max_total_time=60
"""

from __future__ import annotations

import os
import sys
import zlib
from typing import Iterable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet.defer import ensureDeferred  # noqa: E402

from fuzz.fuzz_mime import BANNER, STAMP, parse, resultOf  # noqa: E402
from fuzz.harness import check, chunked, corpusMessages, hasBareLineBreak, toCRLF  # noqa: E402
from secudoc_gateway.mime.rewrite import linkModePlan, transferModePlan  # noqa: E402
from secudoc_gateway.outgoing import OutgoingMessage  # noqa: E402
from secudoc_gateway.notices.mails import transferTemplate  # noqa: E402
from secudoc_gateway.relay.client import DataEncoder  # noqa: E402


MAX_LEN = 16384
"""Longer inputs mostly cost time: the structures worth finding fit in 16 KiB."""


def checkDataEncoding(data: bytes) -> None:
    encoder = DataEncoder()
    wire = b"".join(encoder.feed(chunk) for chunk in chunked(data, zlib.crc32(data))) + encoder.finish()
    check(not hasBareLineBreak(wire), "bare CR or LF in DATA content")
    check(wire.find(b"\r\n.\r\n") in (len(wire) - 5, -1) and (wire == b".\r\n" or wire.endswith(b"\r\n.\r\n")),
          "the end-of-data marker is not where the message ends")
    lines = wire[:-3].split(b"\r\n")
    unstuffed = b"\r\n".join(line[1:] if line.startswith(b".") else line for line in lines)
    expected = toCRLF(data)
    if expected and not expected.endswith(b"\r\n"):
        expected += b"\r\n"
    check(unstuffed == expected, "DATA content does not give the message back")


def TestOneInput(data: bytes) -> None:
    checkDataEncoding(data)
    message = toCRLF(data)
    parsed = parse(message)
    if parsed is None:
        return
    spool, structure, store, extractor = parsed
    files = resultOf(ensureDeferred(extractor.attachments()))
    removed = {c.path for c in files}
    plans = {
        "link": linkModePlan(structure, removed, BANNER, STAMP, len(message)),
        "separate": linkModePlan(structure, removed, None, STAMP, len(message)),
        "transfer": transferModePlan(structure, removed, BANNER, STAMP, len(message), transferTemplate(BANNER, "nl")),
    }
    for mode, plan in plans.items():
        out = b"".join(OutgoingMessage(spool, plan).chunks())
        check(not hasBareLineBreak(out), f"bare CR or LF in the {mode} mode output")


def seeds() -> Iterable[bytes]:
    yield (b"From: a@example.test\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\n"
           b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
           b"hi=20there=\r\n\r\n--b\r\nContent-Type: text/html\r\n\r\n<html><body>hi</body></html>\r\n--b--\r\n")
    yield from corpusMessages()

