"""
Malware scanning (SPEC 10), run by hand: the gateway with scanning off
and on (clamd with the tests' own signatures, tests/clamav), in the same
run.

1. protected messages per second, anchors.md's 89 KB attachment message
   (goal: scanning on at least 0.7 of the unscanned rate);
2. one 100 MiB attachment protected: seconds from the end of the data to
   the final reply, and the gateway's peak RSS over idle, off and on
   (goal: no memory growth, no more time than clamd's own).  clamd's own
   time for a file of that size (clamdscan-like INSTREAM from memory,
   measured here) is printed beside it, and the part of it after the
   last byte (clamd scans the stream once it has it whole).  The bench's
   clamd keeps no cache of clean files' hashes (``DisableCache``): with
   it, clamd would answer the same bytes the second time from the cache,
   without scanning them, and one of the two figures would be no measure.

    .venv/bin/python bench/bench_scan.py [--messages N] [--runs R] [--mib 100]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import struct
import sys
import tempfile
import time

from bench_bigmessage import Attachment, message, stream
from bench_throughput import attachmentMessage, measure
from common import ROOT, Gateway, SMTPSink, have, peakRSS, row, sendOne, smtpSource

sys.path.insert(0, ROOT)
from secudoc_gateway.testing.clamd import Clamd  # noqa: E402

DATABASE = os.path.join(ROOT, "tests", "clamav")


def clamdSeconds(clamd: Clamd, attachment: Attachment) -> tuple[float, float]:
    """clamd's own time for the file's bytes: INSTREAM from memory, start to verdict and last byte to verdict."""
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(clamd.socket)
        started = time.monotonic()
        s.sendall(b"zINSTREAM\0")
        full, rest = divmod(attachment.size, len(attachment.block))
        for piece in [attachment.block] * full + [attachment.block[:rest]]:
            for at in range(0, len(piece), 1 << 20):
                chunk = piece[at:at + (1 << 20)]
                s.sendall(struct.pack(">I", len(chunk)) + chunk)
        s.sendall(struct.pack(">I", 0))
        sent = time.monotonic()
        reply = s.recv(200)
        assert reply.startswith(b"stream: OK"), reply
        return time.monotonic() - started, time.monotonic() - sent


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--mib", type=int, default=100)
    parser.add_argument("--big-only", action="store_true", help="only the 100 MiB attachment")
    args = parser.parse_args()
    if not (have("smtp-source") and have("smtp-sink")):
        print("needs Postfix's smtp-source and smtp-sink (Debian package postfix)")
        return 1
    folder = tempfile.mkdtemp(prefix="secudoc-scan-")
    # The whole 100 MiB goes to clamd: its stream and file limits above that.
    size = (args.mib + 16) * 1024 * 1024
    clamd = Clamd(DATABASE, streamMaxLength=size, cache=False).start()
    sink = SMTPSink()
    scan = {"clamd": clamd.address, "max_file_size": size}
    gateways: dict[str, Gateway] = {}
    try:
        gateways["off"] = Gateway(f"smtp://127.0.0.1:{sink.port}")
        gateways["on"] = Gateway(f"smtp://127.0.0.1:{sink.port}", scan=scan)
        eml = attachmentMessage(folder)
        for gateway in gateways.values() if not args.big_only else ():
            smtpSource(gateway.smtpPort, 2, 20, 0, file=eml)  # warm up
        if args.big_only:
            args.runs = 0
        else:
            sink.waitFor(40)
        print(f"1. protected, fs store, {args.messages} messages of 89 KB over {args.sessions} connections, "
              f"median of {args.runs} runs alternating")
        seconds: dict[str, list[float]] = {name: [] for name in gateways}
        for _ in range(args.runs):
            for name, gateway in gateways.items():
                seconds[name].append(measure(gateway.smtpPort, sink, args.sessions, args.messages, 0, eml))
        rates = {name: args.messages / statistics.median(s or [1]) for name, s in seconds.items()}
        row("scanning on (clamd, test database)", f"{rates['on']:7.0f} msg/s",
            f"off: {rates['off']:5.0f} msg/s -> x{rates['on'] / rates['off']:4.2f} (goal x0.70)")
        for gateway in gateways.values():
            gateway.stop()
        gateways.clear()

        attachment = Attachment(args.mib)
        small = Attachment(0)
        print(f"2. one {args.mib} MiB attachment protected (to a maildir): end of data to reply, peak RSS over idle")
        results = {}
        for name in ("off", "on"):
            gateway = gateways[name] = Gateway("maildir:outbox/example", scan=scan if name == "on" else None)
            sendOne(gateway.smtpPort, stream(message(small)))
            idle = peakRSS(gateway.pid)
            started = time.monotonic()
            _, final = sendOne(gateway.smtpPort, stream(message(attachment)))
            total = time.monotonic() - started
            assert final.startswith(b"250"), final
            results[name] = (total, (peakRSS(gateway.pid) - idle) / 2**20)
            gateway.stop()
            del gateways[name]
        own, after = clamdSeconds(clamd, attachment)
        (offTotal, offRSS), (onTotal, onRSS) = results["off"], results["on"]
        row("scanning on: DATA to final reply", f"{onTotal:6.2f} s",
            f"off: {offTotal:.2f} s; added {onTotal - offTotal:.2f} s; "
            f"clamd's own INSTREAM of it: {own:.2f} s ({after:.2f} s after the last byte)")
        row("scanning on: peak RSS over idle", f"{onRSS:6.1f} MB", f"off: {offRSS:.1f} MB")
    finally:
        for gateway in gateways.values():
            gateway.stop()
        sink.stop()
        clamd.destroy()
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
