"""
Fuzz target: the MIME parser with the attachment extractor and the
link-mode planner, the path a protected message takes, fed arbitrary
bytes at arbitrary split points.

Invariants: no exception escapes; a message the parser accepts is
complete; no byte is lost -- each attachment's stored file decrypts to
exactly its decoded body (an attached message to its raw bytes), every
other leaf's body is in the plan as a range of the spool, and every
field of the top header block is in the output (but the gateway's own,
and Content-* and MIME-Version, which the plan may rewrite).  So the
original is rebuilt from the plan plus the stored files, up to the
header blocks of the parts taken out.

    .venv/bin/python fuzz/run.py mime -max_total_time=60
"""

from __future__ import annotations

import hashlib
import os
import sys
import zlib
from typing import Any, Iterable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet.defer import Deferred, ensureDeferred  # noqa: E402
from twisted.python.failure import Failure  # noqa: E402

from fuzz.harness import check, chunked, corpusMessages  # noqa: E402
from secudoc_gateway import crypto  # noqa: E402
from secudoc_gateway.ingress.extractor import Extractor  # noqa: E402
from secudoc_gateway.fields import GATEWAY_HEADERS  # noqa: E402
from secudoc_gateway.mime.decode import IdentityDecoder, decoderFor  # noqa: E402
from secudoc_gateway.mime.parser import BodyData, Defect, MIMEParser, PartEnd, PartStart  # noqa: E402
from secudoc_gateway.mime.headerblock import isContentField  # noqa: E402
from secudoc_gateway.mime.headers import isFieldName  # noqa: E402
from secudoc_gateway.mime.rewrite import linkModePlan  # noqa: E402
from secudoc_gateway.mime.structure import LEAF, MESSAGE, Structure  # noqa: E402
from secudoc_gateway.outgoing import OutgoingMessage, SpoolRange, Transformed  # noqa: E402
from secudoc_gateway.spool import MemoryBudget, Spool  # noqa: E402
from secudoc_gateway.notices.banner import bannerFor  # noqa: E402
from secudoc_gateway.testing import MemoryStore  # noqa: E402

STAMP = b"Received: from c by gw; Fri, 14 Mar 2025 10:00:00 +0000\r\nX-SecuDoc: 1.0\r\nX-SecuDoc-Status: protected\r\n"
BANNER = bannerFor("en", "alice@example.test", [("a.pdf", 1000)], "https://gw.test/t/TOKEN",
                   1741957500.0, "", senderName="Alice")
MAX_LEN = 16384
"""Longer inputs mostly cost time: the structures worth finding fit in 16 KiB."""


class _Producer:
    """The SMTP client the extractor would pause: the in-memory store never lags."""

    def pauseProducing(self) -> None:
        """Nothing to pause."""

    def resumeProducing(self) -> None:
        """Nothing to resume."""

    def stopProducing(self) -> None:
        """Nothing to stop."""


def resultOf(d: Deferred) -> Any:
    """What ``d`` fired with: everything here is synchronous (an in-memory store)."""
    box: list = []
    d.addBoth(box.append)
    check(bool(box), "a Deferred of the in-memory path did not fire")
    if isinstance(box[0], Failure):
        box[0].raiseException()
    return box[0]


def decoded(part: Any, raw: bytes) -> bytes:
    decoder = decoderFor(part.headers.transferEncoding) or IdentityDecoder()
    return decoder.feed(raw) + decoder.close()


def parse(data: bytes) -> Any:
    """Spool, parse and extract as a transaction does; ``None`` when the parser refuses the message."""
    budget = MemoryBudget(1 << 30)
    spool = Spool(budget)
    structure = Structure()
    store = MemoryStore()
    extractor = Extractor(store, _Producer(), spool, structure, "FUZZ")
    parser = MIMEParser(30, 300, 65536)

    def handle(events: list) -> bool:
        extractor.window(*parser.window)
        for event in events:
            structure.add(event)
            if isinstance(event, PartStart):
                extractor.partStart(event)
            elif isinstance(event, BodyData):
                extractor.bodyData(event)
            elif isinstance(event, PartEnd):
                extractor.partEnd(event)
            elif isinstance(event, Defect) and event.fatal:
                extractor.stop()
                return False
        extractor.passed(parser.consumed)
        return True

    for chunk in chunked(data, zlib.crc32(data)):
        spool.write(chunk)
        if not handle(parser.feed(chunk)):
            return None
    if not handle(parser.close()):
        return None
    check(structure.complete, "an accepted message is not completely parsed")
    return spool, structure, store, extractor


def TestOneInput(data: bytes) -> None:
    parsed = parse(data)
    if parsed is None:
        return
    spool, structure, store, extractor = parsed
    files = resultOf(ensureDeferred(extractor.attachments()))
    resultOf(ensureDeferred(extractor.commit()))
    for candidate in files:
        if candidate.name is not None:
            continue  # a file inside a TNEF part: its bytes are what the TNEF reader found
        part = structure[candidate.path]
        assert extractor.object is not None
        offset, length = candidate.span
        sealed = store.objects[extractor.object.key][offset:offset + length]
        decryptor = crypto.Decryptor(crypto.fileKey(extractor.token, extractor.transferId, candidate.slot))
        plain = decryptor.feed(sealed) + decryptor.finish()
        body = data[part.bodyStart:part.bodyEnd]
        check(plain == (body if candidate.kind == MESSAGE else decoded(part, body)),
              f"stored file {candidate.path} is not the part's body")
        check(candidate.size == len(plain) and candidate.sha256 == hashlib.sha256(plain).hexdigest(),
              f"size or hash of {candidate.path} wrong")
    stored = {c.path for c in files}
    plan = linkModePlan(structure, stored, BANNER, STAMP, len(data))
    ranges = [s.range if isinstance(s, Transformed) else s for s in plan if not isinstance(s, bytes)]
    for part in structure.parts:
        if part.kind != LEAF or any(part.path[:n] in stored for n in range(len(part.path) + 1)):
            continue
        check(_covered(ranges, part.bodyStart, part.bodyEnd), f"the body of kept part {part.path} is not in the plan")
    out = _unbroken(b"".join(OutgoingMessage(spool, plan).chunks()))
    for name, value in structure.root.headers.fields:
        # The gateway's own fields go, Content-* and MIME-Version may be rewritten, X-MS-Has-Attach
        # goes with the last attachment (SPEC 6), an mbox "From " line is no field.
        lower = name.lower()
        if (isFieldName(name) and lower not in GATEWAY_HEADERS
                and lower not in ("mime-version", "x-ms-has-attach")
                and not isContentField(lower)):
            check(_unbroken(value) in out, f"top header field {name!r} lost")


def _unbroken(data: bytes) -> bytes:
    """Without line breaks: the output's line endings follow the message's first line."""
    return data.replace(b"\r", b"").replace(b"\n", b"")


def _covered(ranges: list[SpoolRange], start: int, end: int) -> bool:
    """``[start, end)`` lies within the union of ``ranges`` (an empty range always does)."""
    at = start
    for r in sorted(ranges, key=lambda r: r.start):
        if r.start <= at < r.end:
            at = r.end
        if at >= end:
            return True
    return at >= end


def seeds() -> Iterable[bytes]:
    yield (b"From: a@example.test\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
           b"Content-Type: text/plain\r\n\r\nhi\r\n--b\r\nContent-Type: application/pdf; name=a.pdf\r\n"
           b"Content-Transfer-Encoding: base64\r\n\r\nAAAA\r\n--b--\r\n")
    yield from corpusMessages()

