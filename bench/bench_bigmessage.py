"""
One large message through the gateway, twice:

1. the data path: a 100 MB message the policy passes (``X-SecuDoc-Enabled: 0``)
   received, spooled, parsed and relayed to a sink, next to stock Twisted
   ESMTP only receiving the same message (the anchor, run in the same run);
2. the attachment path: a 100 MiB attachment protected end to end (SMTP in,
   decode, hash, encrypt, store, rewrite, relay), then downloaded, next to
   the single-thread ceiling measured here: base64 decode + sha256 +
   AES-256-GCM (the gateway's own sealing) + write in 1 MiB steps
   (anchors.md), median of ``--runs`` alternating with the gateway.

Both report the gateway's peak RSS against its idle peak (target: within 32 MB).

    .venv/bin/python bench/bench_bigmessage.py [--mib 100] [--runs 3] [--attachment-only]
"""

from __future__ import annotations

import argparse
import base64
import email
import email.policy
import hashlib
import os
import re
import statistics
import sys
import tempfile
import time
import urllib.request

from common import PYTHON, Gateway, Process, freePort, peakRSS, row, sendOne, waitForPort

HERE = os.path.dirname(os.path.abspath(__file__))
BLOCK = 3 * 1024 * 1024  # decoded bytes per generated block (a multiple of 57 and 3)


class Attachment:
    """A big base64 attachment generated block by block, never whole in memory."""

    def __init__(self, mib: int) -> None:
        self.size = mib * 1024 * 1024
        block = os.urandom(BLOCK)
        self.encoded = base64.encodebytes(block).replace(b"\n", b"\r\n")
        self.block = block
        full, rest = divmod(self.size, BLOCK)
        digest = hashlib.sha256()
        for _ in range(full):
            digest.update(block)
        digest.update(block[:rest])
        self.sha256 = digest.hexdigest()
        self.rest = rest

    def chunks(self):
        full = self.size // BLOCK
        for _ in range(full):
            yield self.encoded
        if self.rest:
            yield base64.encodebytes(self.block[: self.rest]).replace(b"\n", b"\r\n")

    @property
    def wireSize(self) -> int:
        return sum(len(c) for c in self.chunks())


def message(attachment: Attachment, extra: bytes = b"") -> list:
    head = (
        b"From: alice@example.test\r\nTo: bob@external.test\r\nSubject: big\r\n" + extra +
        b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=BOUNDARY\r\n\r\n"
        b"--BOUNDARY\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe big file.\r\n"
        b"--BOUNDARY\r\nContent-Type: application/octet-stream; name=big.bin\r\n"
        b"Content-Disposition: attachment; filename=big.bin\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    )
    return [head, attachment.chunks(), b"--BOUNDARY--\r\n"]


def stream(parts: list):
    for part in parts:
        if isinstance(part, bytes):
            yield part
        else:
            yield from part


def ceiling(attachment: Attachment) -> float:
    """base64 decode + sha256 + AES-256-GCM + write, 1 MiB steps, one fsync, one thread: wire MB/s."""
    from secudoc_gateway.crypto import Encryptor

    chunk = 1024 * 1024 // 78 * 78  # whole lines
    encryptor = Encryptor(os.urandom(32))
    with tempfile.NamedTemporaryFile(dir=HERE) as f:
        started = time.monotonic()
        digest = hashlib.sha256()
        wire = 0
        import binascii

        for encoded in attachment.chunks():
            for at in range(0, len(encoded), chunk):
                piece = encoded[at: at + chunk]
                wire += len(piece)
                data = binascii.a2b_base64(piece)
                digest.update(data)
                f.write(encryptor.feed(data))
        f.write(encryptor.finish())
        f.flush()
        os.fsync(f.fileno())
        return wire / (time.monotonic() - started) / 1e6


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3, help="of the attachment path, alternating with the ceiling")
    parser.add_argument("--attachment-only", action="store_true", help="skip the data path (1.)")
    args = parser.parse_args()
    attachment = Attachment(args.mib)
    wire = attachment.wireSize
    sinkPort = freePort()
    sink = Process([PYTHON, os.path.join(HERE, "sink.py"), str(sinkPort)])
    waitForPort(sinkPort)
    anchorPort = freePort()
    anchor = Process([PYTHON, os.path.join(HERE, "twisted_anchor.py"), str(anchorPort)])
    waitForPort(anchorPort)
    gateway = Gateway(f"smtp://127.0.0.1:{sinkPort}")
    try:
        small = Attachment(0)
        sendOne(gateway.smtpPort, stream(message(small, b"X-SecuDoc-Enabled: 0\r\n")))
        idle = peakRSS(gateway.pid)

        if not args.attachment_only:
            print(f"1. data path: one {wire / 1e6:.0f} MB message, passed through and relayed to a sink")
            seconds, final = sendOne(gateway.smtpPort, stream(message(attachment, b"X-SecuDoc-Enabled: 0\r\n")))
            assert final.startswith(b"250"), final
            peak = peakRSS(gateway.pid)
            sendOne(anchorPort, [b"Subject: warm-up\r\n\r\nx\r\n"])
            anchorIdle = peakRSS(anchor.pid)
            aseconds, afinal = sendOne(anchorPort, stream(message(attachment)))
            assert afinal.startswith(b"250"), afinal
            ours, theirs = wire / seconds / 1e6, wire / aseconds / 1e6
            row("secudoc-gateway (receive + relay)", f"{ours:6.0f} MB/s",
                f"stock Twisted ESMTP receiving only: {theirs:5.0f} MB/s -> x{ours / theirs:4.2f} (target x2.5)")
            row("gateway peak RSS over idle", f"{(peak - idle) / 2**20:6.1f} MB",
                f"idle peak {idle / 2**20:.0f} MB; Twisted anchor grew {(peakRSS(anchor.pid) - anchorIdle) / 2**20:.0f} MB")

        gateway.stop()
        # The protected message goes to a maildir so its link can be read back.
        gateway = Gateway("maildir:../outbox/example")
        sendOne(gateway.smtpPort, stream(message(small, b"X-SecuDoc-Enabled: 0\r\n")))
        idle = peakRSS(gateway.pid)
        print(f"2. attachment path: one {args.mib} MiB attachment ({wire / 1e6:.0f} MB base64) protected end to end")
        limits, rates = [], []
        load = os.getloadavg()[0]
        for _ in range(args.runs):
            limits.append(ceiling(attachment))
            seconds, final = sendOne(gateway.smtpPort, stream(message(attachment)))
            assert final.startswith(b"250"), final
            rates.append(wire / seconds / 1e6)
        peak = peakRSS(gateway.pid)
        ours, limit = statistics.median(rates), statistics.median(limits)
        row("secudoc-gateway attachment (SMTP -> store)", f"{ours:6.0f} MB/s",
            f"ceiling here (b64 decode+sha256+AES-GCM+write, one thread): {limit:5.0f} MB/s -> {ours / limit:4.2f}"
            f" (target 0.95); runs {', '.join(f'{r:.0f}' for r in rates)} / {', '.join(f'{c:.0f}' for c in limits)};"
            f" load {load:.1f} -> {os.getloadavg()[0]:.1f}")
        outbox = os.path.join(gateway.folder, "outbox", "example", "new")
        newest = max((os.path.join(outbox, n) for n in os.listdir(outbox)), key=os.path.getmtime)
        with open(newest, "rb") as f:
            relayed = f.read()
        text = email.message_from_bytes(relayed, policy=email.policy.default).get_body(("plain",)).get_content()
        token = re.search(r"/t/([A-Za-z0-9_-]{43})", text).group(1)
        started = time.monotonic()
        digest = hashlib.sha256()
        with urllib.request.urlopen(f"http://127.0.0.1:{gateway.webPort}/t/{token}/0") as response:
            while True:
                piece = response.read(1 << 20)
                if not piece:
                    break
                digest.update(piece)
        dseconds = time.monotonic() - started
        assert digest.hexdigest() == attachment.sha256, "download differs"
        row("download (decrypt + HTTP), sha256 verified", f"{attachment.size / dseconds / 1e6:6.0f} MB/s")
        peak = max(peak, peakRSS(gateway.pid))
        row("gateway peak RSS over idle", f"{(peak - idle) / 2**20:6.1f} MB", "target: within 32 MB")
    finally:
        gateway.stop()
        anchor.stop()
        sink.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
