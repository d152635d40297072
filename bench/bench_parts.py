"""
Hostile part counts (issue 7): four concurrent messages of about 330 KB,
each with 4,900 attachment parts of four bytes, through the gateway under
twistd.  Prints the gateway's RSS growth (peak and after the messages
ended, against idle) and how long each message took to be answered.

Targets: peak RSS growth under 200 MB, every message answered within
60 s, and the memory given back once they ended.

    .venv/bin/python bench/bench_parts.py [--parts 4900] [--messages 4] [--protected] [--rounds N]
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import os
import time

from common import Gateway, peakRSS, resetPeakRSS, row, sendOne


def currentRSS(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def manyParts(parts: int, tag: int, protected: bool = False) -> bytes:
    """
    A multipart/mixed message of ``parts`` four-byte attachments; with
    ``protected``, one more of 64 KiB makes the message protected, so
    every tiny part is stored too.
    """
    big = b""
    if protected:
        data = base64.encodebytes(os.urandom(65536)).replace(b"\n", b"\r\n")
        big = b"--B\r\nContent-Type: application/pdf; name=big.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n" + data
    head = (
        b"From: alice@example.test\r\nTo: bob@external.test\r\nSubject: parts %d\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n" % tag
    )
    part = b"--B\r\nContent-Type: application/octet-stream; name=a.bin\r\n\r\nAAAA\r\n"
    return head + big + part * parts + b"--B--\r\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", type=int, default=4900)
    parser.add_argument("--messages", type=int, default=4)
    parser.add_argument("--protected", action="store_true", help="add a big attachment: every part is stored")
    parser.add_argument("--rounds", type=int, default=1,
                        help="send the batch again: RSS that does not grow after the first round was given back")
    args = parser.parse_args()
    gateway = Gateway("maildir:../outbox/example")
    try:
        # One small message first: the idle figure includes what every message needs once.
        sendOne(gateway.smtpPort, [manyParts(2, 0)])
        time.sleep(0.5)
        idle = currentRSS(gateway.pid)
        resetPeakRSS(gateway.pid)
        messages = [manyParts(args.parts, i + 1, args.protected) for i in range(args.messages)]
        print(f"{args.messages} concurrent {'protected ' if args.protected else ''}messages of "
              f"{len(messages[0]):,} bytes, {args.parts} parts each")
        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(args.messages) as pool:
            results = list(pool.map(lambda m: sendOne(gateway.smtpPort, [m]), messages))
        wall = time.monotonic() - started
        peak = peakRSS(gateway.pid)
        time.sleep(1.0)
        after = currentRSS(gateway.pid)
        for i, (seconds, reply) in enumerate(results):
            row(f"message {i + 1}: answered after", f"{seconds:.1f} s", reply.decode().strip()[:40])
        row("all answered after", f"{wall:.1f} s", "target < 60 s each")
        row("idle RSS", f"{idle / 1e6:.0f} MB")
        row("peak RSS growth", f"{(peak - idle) / 1e6:.0f} MB", "target < 200 MB")
        row("RSS growth after the messages ended", f"{(after - idle) / 1e6:.0f} MB")
        for round in range(2, args.rounds + 1):
            with concurrent.futures.ThreadPoolExecutor(args.messages) as pool:
                replies = [reply for _, reply in pool.map(lambda m: sendOne(gateway.smtpPort, [m]), messages)]
            time.sleep(1.0)
            row(f"round {round}: RSS growth after it", f"{(currentRSS(gateway.pid) - idle) / 1e6:.0f} MB",
                replies[0].decode().strip()[:24])
    finally:
        gateway.stop()


if __name__ == "__main__":
    main()
