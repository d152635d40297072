"""
Protected messages per second on the fs store, this checkout against an
earlier revision in the same run: anchors.md's attachment message (89 KB,
a 64 KiB attachment), and the same 64 KiB cut into several attachments.
The default earlier revision stores one object per file; this checkout
stores one object per transfer.

    .venv/bin/python bench/bench_protected.py [--before REV] [--messages N] [--runs R] [--workers W]

Alternating the two revisions run by run is what makes a lever's figure
hold on a shared machine (issue 21: ``--before`` the lever's parent,
``--messages 4000 --runs 3 --workers 2``); the load average is printed.
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile

from bench_throughput import attachmentMessage, measure
from common import ROOT, Gateway, SMTPSink, have, profile, profileTop, row, smtpSource

BEFORE = "eb3af37"


def checkout(revision: str, folder: str) -> str:
    """The tree of ``revision`` in ``folder`` (no worktree: ``git archive``)."""
    archive = subprocess.run(["git", "-C", ROOT, "archive", revision], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", folder], input=archive, check=True)
    return folder


def manyAttachments(folder: str, files: int) -> str:
    """The same 64 KiB of random data cut into ``files`` attachments: where one object per file costs most."""
    data = os.urandom(65536)
    size = len(data) // files
    parts = b"".join(
        b"--BOUNDARY\r\nContent-Type: application/octet-stream\r\n"
        + f"Content-Disposition: attachment; filename=part{n}.bin\r\n".encode()
        + b"Content-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(data[n * size:(n + 1) * size]).replace(b"\n", b"\r\n")
        for n in range(files))
    message = (b"From: alice@example.test\r\nTo: bob@external.test\r\nSubject: parts\r\nMIME-Version: 1.0\r\n"
               b"Content-Type: multipart/mixed; boundary=BOUNDARY\r\n\r\n--BOUNDARY\r\n"
               b"Content-Type: text/plain\r\n\r\nThe parts are attached.\r\n" + parts + b"--BOUNDARY--\r\n")
    path = os.path.join(folder, f"attachments-{files}.eml")
    with open(path, "wb") as f:
        f.write(message)
    return path


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", default=BEFORE, help="the revision to compare with")
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--files", type=int, default=10, help="attachments of the second message")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--profile", default="", metavar="PATH",
                        help="then one more run of each revision under py-spy; its top printed, the stacks in PATH.*")
    parser.add_argument("--only-one", action="store_true", help="only anchors.md's message, not the many-part one")
    args = parser.parse_args()
    if not (have("smtp-source") and have("smtp-sink")):
        print("needs Postfix's smtp-source and smtp-sink (Debian package postfix)")
        return 1
    folder = tempfile.mkdtemp(prefix="secudoc-before-")
    sink = SMTPSink()
    gateways = {}
    try:
        gateways["now"] = Gateway(f"smtp://127.0.0.1:{sink.port}", workers=args.workers)
        gateways[args.before] = Gateway(f"smtp://127.0.0.1:{sink.port}", root=checkout(args.before, folder),
                                        workers=args.workers)
        messages = {"89 KB, one 64 KiB attachment": attachmentMessage(folder),
                    f"the same 64 KiB as {args.files} attachments": manyAttachments(folder, args.files)}
        if args.only_one:
            del messages[f"the same 64 KiB as {args.files} attachments"]
        for gateway in gateways.values():
            for message in messages.values():
                smtpSource(gateway.smtpPort, 2, 20, 0, file=message)  # warm up
        sink.waitFor(40 * len(messages))
        load = os.getloadavg()[0]
        print(f"protected, fs store, {args.messages} messages over {args.sessions} connections, "
              f"--workers {args.workers}, median of {args.runs} runs alternating")
        for label, message in messages.items():
            seconds: dict[str, list[float]] = {name: [] for name in gateways}
            for _ in range(args.runs):
                for name, gateway in gateways.items():
                    seconds[name].append(measure(gateway.smtpPort, sink, args.sessions, args.messages, 0, message))
            rates = {name: args.messages / statistics.median(s) for name, s in seconds.items()}
            row(f"{label}: this checkout", f"{rates['now']:7.0f} msg/s",
                f"{args.before}, here: {rates[args.before]:5.0f} msg/s "
                f"-> x{rates['now'] / rates[args.before]:4.2f}; each run: "
                + ", ".join(f"{name} {args.messages / s:.0f}" for name, ss in seconds.items() for s in ss))
        print(f"load average before {load:.2f}, after {os.getloadavg()[0]:.2f}")
        if args.profile:
            message = next(iter(messages.values()))
            for name, gateway in gateways.items():
                path = f"{args.profile}-{name}"
                spies = profile(gateway.pids()[1:] or gateway.pids(), path, 600)
                measure(gateway.smtpPort, sink, args.sessions, args.messages, 0, message)
                for spy in spies:
                    spy.send_signal(signal.SIGINT)
                    spy.wait()
                print(f"py-spy, {name}, one run of {args.messages}:\n" + profileTop(path))
    finally:
        for gateway in gateways.values():
            gateway.stop()
        sink.stop()
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
