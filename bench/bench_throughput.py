"""
Pass-through throughput: N messages over C parallel connections through
the gateway (relaying to Postfix's smtp-sink), for 2 KB and 100 KB
messages, next to Postfix 3.7 relaying the same load to the same sink
in the same run (the anchor "Postfix, plain relay, queue on disk").

    .venv/bin/python bench/bench_throughput.py [--messages N] [--sessions C]
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import statistics
import sys
import tempfile
import time

from common import Gateway, PostfixRelay, SMTPSink, have, row, smtpSource

SIZES = [("2 KB", 2048), ("100 KB", 102400)]
ANCHORS_MD = {"2 KB": "684 msg/s", "100 KB": "420 msg/s"}


def attachmentMessage(folder: str) -> str:
    """
    anchors.md's attachment test message: 89 KB multipart/mixed, a short
    text part and a 64 KiB random application/octet-stream in base64.
    No Message-ID: every copy is a new message, not a resend.
    """
    data = base64.encodebytes(os.urandom(65536)).replace(b"\n", b"\r\n")
    message = (
        b"From: alice@example.test\r\nTo: bob@external.test\r\nSubject: report\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=BOUNDARY\r\n\r\n--BOUNDARY\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n\r\nThe report is attached.\r\n--BOUNDARY\r\n"
        b"Content-Type: application/octet-stream; name=report.bin\r\n"
        b"Content-Disposition: attachment; filename=report.bin\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + data + b"--BOUNDARY--\r\n"
    )
    path = os.path.join(folder, "attachment.eml")
    with open(path, "wb") as f:
        f.write(message)
    return path


def measure(port: int, sink: SMTPSink, sessions: int, messages: int, size: int, file: str = "") -> float:
    """Seconds until the sink has counted every message."""
    before = sink.count()
    started = time.monotonic()
    smtpSource(port, sessions, messages, size, file=file)
    return sink.waitFor(before + messages) - started


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3, help="median of this many runs (anchors.md: 3)")
    args = parser.parse_args()
    if not (have("smtp-source") and have("smtp-sink")):
        print("needs Postfix's smtp-source and smtp-sink (Debian package postfix)")
        return 1
    sink = SMTPSink()
    gateway = Gateway(f"smtp://127.0.0.1:{sink.port}")
    postfix = PostfixRelay(sink.port)
    try:
        smtpSource(gateway.smtpPort, 2, 20, 2048)  # warm up
        sink.waitFor(20)
        print(f"pass-through, {args.messages} messages over {args.sessions} connections "
              f"(smtp-source -> relay -> smtp-sink), median of {args.runs} runs")
        for label, size in SIZES:
            n = args.messages if size < 10000 else max(args.messages // 4, 100)
            seconds = statistics.median(
                measure(gateway.smtpPort, sink, args.sessions, n, size) for _ in range(args.runs))
            ours = f"{n / seconds:7.0f} msg/s"
            mb = f"{n * size / seconds / 1e6:6.1f} MB/s"
            if postfix.reason:
                anchor = f"Postfix not run ({postfix.reason}); anchors.md: {ANCHORS_MD[label]}"
            else:
                pseconds = statistics.median(
                    measure(postfix.port, sink, args.sessions, n, size) for _ in range(args.runs))
                anchor = (f"Postfix here: {n / pseconds:5.0f} msg/s "
                          f"({n * size / pseconds / 1e6:5.1f} MB/s) -> x{pseconds / seconds:4.2f}")
            row(f"secudoc-gateway {label}", f"{ours} {mb}", anchor)
        folder = tempfile.mkdtemp()
        message = attachmentMessage(folder)
        n = max(args.messages // 4, 100)
        seconds = statistics.median(
            measure(gateway.smtpPort, sink, args.sessions, n, 0, message) for _ in range(args.runs))
        anchor = "MIMEDefang (anchors.md, not run here): 107-136 msg/s"
        if not postfix.reason:
            pseconds = statistics.median(
                measure(postfix.port, sink, args.sessions, n, 0, message) for _ in range(args.runs))
            anchor = f"Postfix relay only, here: {n / pseconds:5.0f} msg/s -> x{pseconds / seconds:4.2f}; " + anchor
        row("secudoc-gateway 89 KB attachment, protected", f"{n / seconds:7.0f} msg/s", anchor)
        shutil.rmtree(folder)
    finally:
        gateway.stop()
        postfix.stop()
        sink.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
