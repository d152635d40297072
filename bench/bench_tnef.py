"""
A winmail.dat with one big file inside, protected end to end: the TNEF
part is opened as it streams (SMTP in, base64 decode, TNEF reader,
hash, encrypt, store), the file downloaded and checked.  Reports the
rate and the gateway's peak RSS over idle (target: within 32 MB, as for
a plain attachment).

    .venv/bin/python bench/bench_tnef.py [--mib 100]
"""

from __future__ import annotations

import argparse
import base64
import email
import email.policy
import hashlib
import os
import re
import struct
import sys
import time
import urllib.request

from common import Gateway, peakRSS, row, sendOne

BLOCK = 3 * 1024 * 1024  # a multiple of 57: base64 lines end inside no block


def tnefChunks(size: int, block: bytes):
    """The TNEF stream of one attachment of ``size`` bytes (repeats of ``block``), piece by piece."""
    full, rest = divmod(size, len(block))
    checksum = (sum(block) * full + sum(block[:rest])) & 0xFFFF

    def attribute(level: int, attributeId: int, data: bytes) -> bytes:
        return struct.pack("<BII", level, attributeId, len(data)) + data + struct.pack("<H", sum(data) & 0xFFFF)

    yield struct.pack("<IH", 0x223E9F78, 1) + attribute(2, 0x00069002, bytes(14)) + attribute(2, 0x00018010, b"BIG.BIN\0")
    yield struct.pack("<BII", 2, 0x0006800F, size)
    for _ in range(full):
        yield block
    yield block[:rest] + struct.pack("<H", checksum)


def base64Stream(chunks):
    """Any byte pieces as base64 lines (CRLF), in blocks of whole 57-byte lines."""
    carry = b""
    for chunk in chunks:
        carry += chunk
        cut = len(carry) // 57 * 57
        if cut:
            yield base64.encodebytes(carry[:cut]).replace(b"\n", b"\r\n")
            carry = carry[cut:]
    if carry:
        yield base64.encodebytes(carry).replace(b"\n", b"\r\n")


def message(size: int, block: bytes):
    yield (b"From: alice@example.test\r\nTo: bob@external.test\r\nSubject: big\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: multipart/mixed; boundary=BOUNDARY\r\n\r\n"
           b"--BOUNDARY\r\nContent-Type: text/plain\r\n\r\nThe big file.\r\n"
           b"--BOUNDARY\r\nContent-Type: application/ms-tnef; name=winmail.dat\r\n"
           b"Content-Transfer-Encoding: base64\r\n\r\n")
    yield from base64Stream(tnefChunks(size, block))
    yield b"--BOUNDARY--\r\n"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=100)
    args = parser.parse_args()
    size = args.mib << 20
    block = os.urandom(BLOCK)
    full, rest = divmod(size, BLOCK)
    digest = hashlib.sha256()
    for _ in range(full):
        digest.update(block)
    digest.update(block[:rest])
    # Encoded before the clock starts: the client must not be what is measured.
    pieces = list(message(size, block))
    wire = sum(len(piece) for piece in pieces)
    gateway = Gateway("maildir:../outbox/example")
    try:
        sendOne(gateway.smtpPort, [b"From: alice@example.test\r\nX-SecuDoc-Enabled: 0\r\n\r\nwarm-up\r\n"])
        idle = peakRSS(gateway.pid)
        print(f"one {args.mib} MiB file inside winmail.dat ({wire / 1e6:.0f} MB on the wire), protected end to end")
        seconds, final = sendOne(gateway.smtpPort, pieces)
        assert final.startswith(b"250"), final
        peak = peakRSS(gateway.pid)
        row("secudoc-gateway TNEF (SMTP -> open -> store)", f"{wire / seconds / 1e6:6.0f} MB/s")
        outbox = os.path.join(gateway.folder, "outbox", "example", "new")
        newest = max((os.path.join(outbox, n) for n in os.listdir(outbox)), key=os.path.getmtime)
        with open(newest, "rb") as f:
            text = email.message_from_bytes(f.read(), policy=email.policy.default).get_body(("plain",)).get_content()
        assert "BIG.BIN" in text and "winmail.dat" not in text, text[:400]
        token = re.search(r"/t/([A-Za-z0-9_-]{43})", text).group(1)
        check = hashlib.sha256()
        with urllib.request.urlopen(f"http://127.0.0.1:{gateway.webPort}/t/{token}/0") as response:
            while piece := response.read(1 << 20):
                check.update(piece)
        assert check.digest() == digest.digest(), "download differs"
        row("download, sha256 verified", "ok")
        row("gateway peak RSS over idle", f"{(peak - idle) / 2**20:6.1f} MB", "target: within 32 MB")
    finally:
        gateway.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
