"""
A big attached message (``message/rfc822``, say a forwarded mail with
its own attachment) protected end to end, this checkout against an
earlier revision in the same run: seconds from DATA to the final reply
and the gateway's peak RSS above idle.  The earlier default revision
read an attached message back from the spool when it ended, with the
client paused; this checkout stores it as it arrives.

    .venv/bin/python bench/bench_attached.py [--before REV] [--mib 50] [--runs 3]
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import statistics
import sys
import tempfile

from bench_protected import checkout
from common import Gateway, SMTPSink, have, peakRSS, resetPeakRSS, row, sendOne

BEFORE = "c1200a3"
BLOCK = 3 * 1024 * 1024


def chunks(mib: int) -> list[bytes]:
    """The message in pieces: the attached message's base64 body is one block repeated."""
    encoded = base64.encodebytes(os.urandom(BLOCK)).replace(b"\n", b"\r\n")
    head = (b"From: alice@example.test\r\nTo: bob@external.test\r\nSubject: forwarded\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/mixed; boundary=OUTER\r\n\r\n--OUTER\r\nContent-Type: text/plain\r\n\r\n"
            b"See the message attached.\r\n--OUTER\r\nContent-Type: message/rfc822\r\n"
            b"Content-Disposition: attachment; filename=forwarded.eml\r\n\r\n"
            b"From: carol@example.test\r\nSubject: the report\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/mixed; boundary=INNER\r\n\r\n--INNER\r\nContent-Type: text/plain\r\n\r\n"
            b"Attached.\r\n--INNER\r\nContent-Type: application/octet-stream; name=report.bin\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n")
    return [head] + [encoded] * (mib * 1024 * 1024 // BLOCK) + [b"--INNER--\r\n\r\n--OUTER--\r\n"]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", default=BEFORE, help="the revision to compare with")
    parser.add_argument("--mib", type=int, default=48, help="decoded size of the attached message's file")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if not have("smtp-sink"):
        print("needs Postfix's smtp-sink (Debian package postfix)")
        return 1
    folder = tempfile.mkdtemp(prefix="secudoc-before-")
    sink = SMTPSink()
    gateways = {}
    message = chunks(args.mib)
    try:
        gateways["now"] = Gateway(f"smtp://127.0.0.1:{sink.port}")
        gateways[args.before] = Gateway(f"smtp://127.0.0.1:{sink.port}", root=checkout(args.before, folder))
        seconds: dict[str, list[float]] = {name: [] for name in gateways}
        growth: dict[str, int] = {}
        idle = {name: peakRSS(gateway.pid) for name, gateway in gateways.items()}
        for _ in range(args.runs):
            for name, gateway in gateways.items():
                resetPeakRSS(gateway.pid)
                elapsed, reply = sendOne(gateway.smtpPort, message)
                if not reply.startswith(b"250"):
                    raise RuntimeError(f"{name}: {reply!r}")
                seconds[name].append(elapsed)
                growth[name] = max(growth.get(name, 0), peakRSS(gateway.pid) - idle[name])
        size = sum(map(len, message)) / 2 ** 20
        print(f"one {size:.0f} MiB message with an attached message, protected on the fs store, "
              f"median of {args.runs} runs alternating")
        now, before = statistics.median(seconds["now"]), statistics.median(seconds[args.before])
        row("DATA to final reply", f"{now:6.2f} s",
            f"{args.before} (read back from the spool), here: {before:6.2f} s -> x{before / now:4.2f}")
        row("peak RSS above idle", f"{growth['now'] / 2 ** 20:6.0f} MiB",
            f"{args.before}: {growth[args.before] / 2 ** 20:.0f} MiB")
    finally:
        for gateway in gateways.values():
            gateway.stop()
        sink.stop()
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
