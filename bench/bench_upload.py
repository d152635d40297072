"""
Sending files from the browser (SPEC 9), run by hand (not in make test):
the gateway under twistd, a user signed in by the e-mail link, then

1. one upload of --mib MiB (default 1024) over HTTP on localhost into
   the fs store and into moto S3: MB/s of file bytes, next to the SMTP
   path's rate for the same file bytes in the same run (goal: at least
   0.8 of it), and the gateway's peak RSS over idle (goal: under 64 MB);
2. --concurrent uploads (default 20) of --each MiB (default 50) at once:
   the gateway's peak RSS over idle against ``memory_budget``.

    .venv/bin/python bench/bench_upload.py [--mib 1024] [--concurrent 20] [--each 50] [--store fs|s3]
"""

from __future__ import annotations

import argparse
import http.client
import os
import quopri
import re
import sys
import threading
import time
import urllib.parse

from bench_bigmessage import Attachment, message, stream
from common import ROOT, Gateway, peakRSS, resetPeakRSS, row, sendOne

sys.path.insert(0, ROOT)
BOUNDARY = "benchBoundary0123456789"


class Session:
    """A signed-in browser: the session cookie and the form token, over http.client."""

    def __init__(self, gateway: Gateway) -> None:
        self.port = gateway.webPort
        self.cookies: dict[str, str] = {}
        page = self.request("GET", "/portal/login")
        self.request("POST", "/portal/login", urllib.parse.urlencode(
            {"address": "alice@example.test", "csrf": self.csrf(page)}).encode(), "application/x-www-form-urlencoded")
        outbox = os.path.join(gateway.folder, "outbox", "example", "new")
        path = None
        deadline = time.monotonic() + 30
        while path is None:
            for name in os.listdir(outbox) if os.path.isdir(outbox) else []:
                with open(os.path.join(outbox, name), "rb") as f:
                    # The body is quoted-printable: a soft line break may split the link.
                    found = re.search(rb"(/portal/login/[A-Za-z0-9_-]{43})", quopri.decodestring(f.read()))
                if found:
                    path = found.group(1).decode()
            if time.monotonic() > deadline:
                raise RuntimeError("no login link")
            time.sleep(0.05)
        page = self.request("GET", path)
        self.request("POST", path, urllib.parse.urlencode({"csrf": self.csrf(page)}).encode(),
                     "application/x-www-form-urlencoded")
        self.token = self.csrf(self.request("GET", "/portal/send"))

    @staticmethod
    def csrf(page: bytes) -> str:
        return re.search(rb'name="csrf" value="([^"]*)"', page).group(1).decode()

    def request(self, method: str, path: str, body: bytes = b"", contentType: str = "") -> bytes:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        if contentType:
            headers["Content-Type"] = contentType
        connection.request(method, path, body=body or None, headers=headers)
        response = connection.getresponse()
        for line in response.headers.get_all("Set-Cookie") or []:
            name, _, rest = line.partition("=")
            self.cookies[name] = rest.split(";", 1)[0]
        data = response.read()
        connection.close()
        return data

    def upload(self, attachment: Attachment) -> float:
        """One file of the attachment's plain bytes, streamed; seconds from first byte to the 303."""
        head = "".join(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n' for k, v in (
            ("csrf", self.token), ("recipients", "bob@external.test"), ("subject", "bench"), ("message", "")))
        head += f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n\r\n'
        tail = f"\r\n--{BOUNDARY}--\r\n".encode()
        full, rest = divmod(attachment.size, len(attachment.block))

        def body():
            yield head.encode()
            for _ in range(full):
                yield attachment.block
            yield attachment.block[:rest]
            yield tail

        length = len(head.encode()) + attachment.size + len(tail)
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        started = time.monotonic()
        connection.putrequest("POST", "/portal/send")
        connection.putheader("Cookie", "; ".join(f"{k}={v}" for k, v in self.cookies.items()))
        connection.putheader("Content-Type", f"multipart/form-data; boundary={BOUNDARY}")
        connection.putheader("Content-Length", str(length))
        connection.endheaders()
        for piece in body():
            for at in range(0, len(piece), 1 << 20):
                connection.send(piece[at:at + (1 << 20)])
        response = connection.getresponse()
        response.read()
        seconds = time.monotonic() - started
        connection.close()
        assert response.status == 303, response.status
        return seconds


def run(label: str, storage, args) -> None:
    big = Attachment(args.mib)
    # The SMTP path must take the same file bytes (base64 on the wire) in one message.
    gateway = Gateway("maildir:../outbox/example", storage=storage,
                      smtp={"max_message_size": big.wireSize + (1 << 20)})
    try:
        session = Session(gateway)
        sendOne(gateway.smtpPort, stream(message(Attachment(0))))
        idle = peakRSS(gateway.pid)
        seconds, final = sendOne(gateway.smtpPort, stream(message(big)))
        assert final.startswith(b"250"), final
        smtp = big.size / seconds / 1e6
        smtpPeak = peakRSS(gateway.pid)
        # The upload's own peak: from the resident set it starts with, not under the SMTP path's peak.
        resetPeakRSS(gateway.pid)
        start = peakRSS(gateway.pid)
        http = big.size / session.upload(big) / 1e6
        peak = peakRSS(gateway.pid)
        row(f"{label}: {args.mib} MiB upload over HTTP", f"{http:6.0f} MB/s",
            f"SMTP path, same file bytes: {smtp:5.0f} MB/s -> {http / smtp:4.2f} (goal >= 0.8)")
        row(f"{label}: peak RSS growth (upload)", f"{(peak - start) / 2**20:6.1f} MB",
            f"(SMTP path: {(smtpPeak - idle) / 2**20:.1f} MB over idle; goal under 64 MB)")
        each = Attachment(args.each)
        before = peakRSS(gateway.pid)
        threads = [threading.Thread(target=session.upload, args=(each,)) for _ in range(args.concurrent)]
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = time.monotonic() - started
        peak = peakRSS(gateway.pid)
        row(f"{label}: {args.concurrent} x {args.each} MiB at once",
            f"{args.concurrent * each.size / seconds / 1e6:6.0f} MB/s",
            f"peak RSS over idle {(peak - idle) / 2**20:.1f} MB (before {(before - idle) / 2**20:.1f});"
            f" memory_budget 256 MiB")
    finally:
        gateway.stop()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=1024)
    parser.add_argument("--concurrent", type=int, default=20)
    parser.add_argument("--each", type=int, default=50)
    parser.add_argument("--store", choices=("both", "fs", "s3"), default="both")
    args = parser.parse_args()
    if args.store != "s3":
        run("fs", None, args)
    if args.store != "fs":
        from secudoc_gateway.testing.s3 import sharedServer, testStorage

        sharedServer()
        run("s3 (moto)", testStorage(), args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
