"""
The S3 backend against boto3 on the same server in the same run (moto
in server mode with signature checking, its own process), and the
gateway's memory under concurrent uploads:

- one 100 MiB attachment over SMTP into S3, against boto3's
  ``upload_fileobj`` of the same bytes (target: at least 1.2x boto3),
  with the CPU seconds moto, the gateway and this client spend on each
  side, and the gateway's S3 writer alone on bytes already in memory
  (what the S3 client costs without the SMTP path before it);
- its download through the link, against boto3's ``download_fileobj``;
- peak RSS during 20 concurrent 50 MB uploads (target: within
  ``memory_budget`` + 32 MB).

    .venv/bin/python bench/bench_s3.py [--size MiB] [--sessions N] [--each MB] [--budget MiB]
"""

from __future__ import annotations

import argparse
import base64
import email
import email.policy
import io
import os
import re
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from typing import Optional

from common import Gateway, peakRSS, resetPeakRSS, row, sendOne

from secudoc_gateway.testing.s3 import KEY_ENV, REGION, SECRET_ENV, MotoProcess  # noqa: E402

MiB = 1024 * 1024
PART_SIZE = 8 * MiB  # the config's default
BOTO3_PART = 8 * MiB  # boto3's default multipart chunk size


def messageChunks(data: bytes) -> list[bytes]:
    """The attachment message (base64, 76-character CRLF lines), in 1 MiB pieces for DATA."""
    encoded = base64.encodebytes(data).replace(b"\n", b"\r\n")
    head = (b"From: alice@example.test\r\nTo: bob@external.test\r\nSubject: big\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/mixed; boundary=b1\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nsee\r\n"
            b"--b1\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
            b"Content-Disposition: attachment; filename=big.bin\r\n\r\n")
    return [head] + [encoded[i:i + MiB] for i in range(0, len(encoded), MiB)] + [b"--b1--\r\n"]


class NullSink(io.RawIOBase):
    def writable(self) -> bool:
        return True

    def write(self, data) -> int:  # type: ignore[override]
        return len(data)


def refused(gateway: Gateway, reply: bytes) -> RuntimeError:
    """What the gateway logged about a message it did not accept (the bench's folder goes at the end)."""
    lines = [line + "\n" for line in gateway.output().splitlines()
             if "S3" in line or "failed" in line or "Error" in line]
    return RuntimeError(f"gateway answered {reply!r}:\n" + "".join(lines[-20:]))


def tokens(folder: str) -> list[str]:
    found = []
    outbox = os.path.join(folder, "outbox", "example", "new")
    for name in sorted(os.listdir(outbox)):
        with open(os.path.join(outbox, name), "rb") as f:
            message = email.message_from_bytes(f.read(), policy=email.policy.default)
        found += re.findall(r"/t/([A-Za-z0-9_-]{43})", message.get_body(("plain",)).get_content())
    return found


def cpuSeconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (all its threads), from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CPUSplit:
    """CPU seconds that moto, the gateway and this client spend on each side of a comparison."""

    def __init__(self, moto: int, gateway: int) -> None:
        self._pids = {"moto": moto, "gateway": gateway, "client": os.getpid()}
        self.totals: dict[str, dict[str, float]] = {}
        self.wall: dict[str, float] = {}

    def measure(self, side: str, step):  # type: ignore[no-untyped-def]
        before = {name: cpuSeconds(pid) for name, pid in self._pids.items()}
        started = time.monotonic()
        result = step()
        self.wall[side] = self.wall.get(side, 0.0) + time.monotonic() - started
        spent = self.totals.setdefault(side, dict.fromkeys(self._pids, 0.0))
        for name, pid in self._pids.items():
            spent[name] += cpuSeconds(pid) - before[name]
        return result

    def line(self, side: str) -> str:
        spent = self.totals[side]
        return (f"{side}: wall {self.wall[side]:.1f} s, CPU s " +
                ", ".join(f"{name} {seconds:.1f}" for name, seconds in spent.items()))


def download(port: int, token: str) -> int:
    size = 0
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/t/{token}/0") as response:
        while True:
            piece = response.read(MiB)
            if not piece:
                return size
            size += len(piece)


def storeAlone(endpoint: str, key: str, secret: str, bucket: str, size: int, runs: int) -> list[float]:
    """
    Seconds the gateway's S3 writer takes for ``size`` MiB already in
    memory, 1 MiB writes (no SMTP, MIME, decoding or sealing): what the
    S3 client itself costs.  Runs a reactor, so in a process of its own.
    """
    from twisted.internet import reactor
    from twisted.internet.defer import ensureDeferred

    from secudoc_gateway.spool import MemoryBudget
    from secudoc_gateway.storage.s3 import S3Store
    from secudoc_gateway.storage.s3client import S3Settings

    store = S3Store(S3Settings(endpoint=endpoint, bucket=bucket, region=REGION, access_key=key, secret_key=secret,
                               part_size=PART_SIZE), reactor, MemoryBudget(256 * MiB))
    data = os.urandom(size * MiB)
    seconds: list[float] = []

    async def upload() -> None:
        try:
            for run in range(runs):
                started = time.monotonic()
                writer = store.writer(f"alone-{run}")
                for at in range(0, len(data), MiB):
                    await writer.write(data[at:at + MiB])
                await writer.finish()
                seconds.append(time.monotonic() - started)
        finally:
            await store.close()
            reactor.stop()

    reactor.callWhenRunning(lambda: ensureDeferred(upload()))
    reactor.run()
    return seconds


def sampleRSS(pid: int, timeline: list[tuple[float, int]], stop: threading.Event) -> None:
    """The process's resident set every 0.1 s until ``stop``."""
    while not stop.wait(0.1):
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    timeline.append((time.monotonic(), int(line.split()[1]) * 1024))


def concurrent(args: argparse.Namespace, storage: Optional[dict], env: dict) -> None:
    """The RSS row: ``--sessions`` uploads of ``--each`` MB at once into ``storage`` (None: the fs store)."""
    budget = args.budget * MiB
    gateway = Gateway("maildir:../outbox/example", storage=storage, env=env, smtp={"memory_budget": budget})
    try:
        each = messageChunks(os.urandom(args.each * 1000 * 1000))
        sendOne(gateway.smtpPort, messageChunks(os.urandom(65536)))  # warm up
        idle = peakRSS(gateway.pid)
        resetPeakRSS(gateway.pid)
        replies: list[bytes] = []

        def one() -> None:
            replies.append(sendOne(gateway.smtpPort, each)[1])

        threads = [threading.Thread(target=one) for _ in range(args.sessions)]
        timeline: list[tuple[float, int]] = []
        sampling = threading.Event()
        sampler = threading.Thread(target=sampleRSS, args=(gateway.pid, timeline, sampling))
        started = time.monotonic()
        sampler.start()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
        sampling.set()
        sampler.join()
        if args.timeline:
            print("   RSS above idle over time (s: MiB): " + ", ".join(
                f"{at - started:.1f}: {(rss - idle) / MiB:.0f}" for at, rss in timeline[::max(1, len(timeline) // 40)]))
        peak = peakRSS(gateway.pid)
        if sum(r.startswith(b"250") for r in replies) != args.sessions:
            raise refused(gateway, b" ".join(r for r in replies if not r.startswith(b"250")))
        row(f"peak RSS, {args.sessions} x {args.each} MB at once, {'fs' if storage is None else 's3'} store"
            f" ({elapsed:.0f} s)",
            f"{peak / MiB:6.0f} MiB", f"idle {idle / MiB:.0f} MiB; above idle {(peak - idle) / MiB:.0f} MiB "
            f"against memory_budget {args.budget} MiB + 32 MB = {args.budget + 32 * 1e6 / MiB:.0f} MiB")
    finally:
        gateway.stop()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=100, help="MiB of the single attachment")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--each", type=int, default=50, help="MB of each concurrent attachment")
    parser.add_argument("--budget", type=int, default=64, help="memory_budget in MiB for the RSS run")
    parser.add_argument("--no-concurrent", action="store_true", help="skip the RSS run of --sessions uploads at once")
    parser.add_argument("--only-concurrent", action="store_true", help="only the RSS run of --sessions uploads at once")
    parser.add_argument("--timeline", action="store_true", help="print the RSS run's resident set over time")
    parser.add_argument("--concurrent-store", choices=("s3", "fs"), default="s3", help="the store of the RSS run")
    parser.add_argument("--store-alone", nargs=4, metavar=("ENDPOINT", "KEY", "SECRET", "BUCKET"),
                        help="(internal) time the S3 writer alone, print its seconds")
    args = parser.parse_args()
    if args.store_alone:
        print(" ".join(str(s) for s in storeAlone(*args.store_alone, size=args.size, runs=args.runs)))
        return 0

    import boto3
    from boto3.s3.transfer import TransferConfig

    moto = MotoProcess()
    gateway = None
    try:
        server = moto.bootstrap()
        env = {KEY_ENV: server.key, SECRET_ENV: server.secret}
        s3 = boto3.client("s3", region_name=REGION, endpoint_url=server.endpoint,
                          aws_access_key_id=server.key, aws_secret_access_key=server.secret)
        transfer = TransferConfig(multipart_chunksize=BOTO3_PART)

        def storage(bucket: str) -> dict:
            s3.create_bucket(Bucket=bucket)
            return {"backend": "s3", "endpoint": server.endpoint, "bucket": bucket, "region": REGION,
                    "access_key_id_env": KEY_ENV, "secret_access_key_env": SECRET_ENV, "part_size": PART_SIZE}

        if not args.only_concurrent:
            data = os.urandom(args.size * MiB)
            chunks = messageChunks(data)
            gateway = Gateway("maildir:../outbox/example", storage=storage("gateway"), env=env)
            print(f"S3 (moto, signature checking), one {args.size} MiB attachment, median of {args.runs} runs,"
                  f" load average {os.getloadavg()[0]:.1f}")
            cpu = CPUSplit(moto.popen.pid, gateway.pid)
            ours, theirs = [], []
            for _ in range(args.runs):
                seconds, reply = cpu.measure("gateway up", lambda: sendOne(gateway.smtpPort, chunks))
                if not reply.startswith(b"250"):
                    raise refused(gateway, reply)
                ours.append(seconds)
                started = time.monotonic()
                cpu.measure("boto3 up", lambda: s3.upload_fileobj(io.BytesIO(data), "gateway", "boto3-anchor",
                                                                  Config=transfer))
                theirs.append(time.monotonic() - started)
            mine, anchor = statistics.median(ours), statistics.median(theirs)
            row(f"upload: SMTP in, S3 out ({args.size} MiB file)", f"{args.size / mine:6.1f} MiB/s",
                f"boto3 upload_fileobj here: {args.size / anchor:6.1f} MiB/s -> x{anchor / mine:4.2f} (target 1.2); runs "
                f"{', '.join(f'{args.size / s:.0f}' for s in ours)} / {', '.join(f'{args.size / s:.0f}' for s in theirs)}")
            print("   " + cpu.line("gateway up") + "\n   " + cpu.line("boto3 up"))
            alone = subprocess.run(
                [sys.executable, __file__, "--store-alone", server.endpoint, server.key, server.secret, "gateway",
                 "--size", str(args.size), "--runs", str(args.runs)], check=True, capture_output=True, text=True)
            seconds = [float(s) for s in alone.stdout.split()]
            row(f"  the S3 writer alone ({args.size} MiB in memory)", f"{args.size / statistics.median(seconds):6.1f} MiB/s",
                f"x{anchor / statistics.median(seconds):4.2f} boto3 (no SMTP, MIME, decoding or sealing); runs "
                f"{', '.join(f'{args.size / s:.0f}' for s in seconds)}")
            token = tokens(gateway.folder)[0]
            ours, theirs = [], []
            for _ in range(args.runs):
                started = time.monotonic()
                if cpu.measure("gateway down", lambda: download(gateway.webPort, token)) != len(data):
                    raise RuntimeError("short download")
                ours.append(time.monotonic() - started)
                started = time.monotonic()
                cpu.measure("boto3 down", lambda: s3.download_fileobj("gateway", "boto3-anchor", NullSink(),
                                                                      Config=transfer))
                theirs.append(time.monotonic() - started)
            mine, anchor = statistics.median(ours), statistics.median(theirs)
            row(f"download: S3 ranged GET, decrypted ({args.size} MiB)", f"{args.size / mine:6.1f} MiB/s",
                f"boto3 download_fileobj here: {args.size / anchor:6.1f} MiB/s -> x{anchor / mine:4.2f} (target 3)")
            print("   " + cpu.line("gateway down") + "\n   " + cpu.line("boto3 down"))
            gateway.stop()
        if args.no_concurrent:
            return 0

        concurrent(args, storage("concurrent") if args.concurrent_store == "s3" else None, env)
    finally:
        if gateway is not None:
            gateway.stop()
        moto.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
