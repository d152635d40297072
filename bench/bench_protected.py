"""
Protected messages per second on the fs store, this checkout against an
earlier revision in the same run (anchors.md's attachment message: 89 KB,
a 64 KiB attachment).  The default earlier revision stores one object per
file; this checkout stores one object per transfer.

    .venv/bin/python bench/bench_protected.py [--before REV] [--messages N] [--runs R]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile

from bench_throughput import attachmentMessage, measure
from common import ROOT, Gateway, SMTPSink, have, row, smtpSource

BEFORE = "eb3af37"


def checkout(revision: str, folder: str) -> str:
    """The tree of ``revision`` in ``folder`` (no worktree: ``git archive``)."""
    archive = subprocess.run(["git", "-C", ROOT, "archive", revision], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", folder], input=archive, check=True)
    return folder


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", default=BEFORE, help="the revision to compare with")
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if not (have("smtp-source") and have("smtp-sink")):
        print("needs Postfix's smtp-source and smtp-sink (Debian package postfix)")
        return 1
    folder = tempfile.mkdtemp(prefix="secudoc-before-")
    sink = SMTPSink()
    gateways = {}
    try:
        gateways["now"] = Gateway(f"smtp://127.0.0.1:{sink.port}")
        gateways[args.before] = Gateway(f"smtp://127.0.0.1:{sink.port}", root=checkout(args.before, folder))
        message = attachmentMessage(folder)
        for gateway in gateways.values():
            smtpSource(gateway.smtpPort, 2, 20, 0, file=message)  # warm up
        sink.waitFor(40)
        print(f"protected, fs store, {args.messages} attachment messages over {args.sessions} connections, "
              f"median of {args.runs} runs alternating")
        seconds: dict[str, list[float]] = {name: [] for name in gateways}
        for _ in range(args.runs):
            for name, gateway in gateways.items():
                seconds[name].append(measure(gateway.smtpPort, sink, args.sessions, args.messages, 0, message))
        rates = {name: args.messages / statistics.median(s) for name, s in seconds.items()}
        row("one object per transfer (this checkout)", f"{rates['now']:7.0f} msg/s",
            f"{args.before} (one object per file), here: {rates[args.before]:5.0f} msg/s "
            f"-> x{rates['now'] / rates[args.before]:4.2f}")
    finally:
        for gateway in gateways.values():
            gateway.stop()
        sink.stop()
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
