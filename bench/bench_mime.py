"""
Throughput of the attachment path's parsing half: a ~100 MB message
with one base64 attachment, fed in 64 KiB chunks through MIMEParser and
Base64Decoder into sha256, next to the ceiling measured in the same run
(binascii.a2b_base64 + sha256 over the same chunks, no parsing).

    PYTHONPATH=. .venv/bin/python bench/bench_mime.py [MiB] [chunk KiB]
"""

from __future__ import annotations

import binascii
import hashlib
import os
import sys
import time

from secudoc_gateway.mime.decode import Base64Decoder, encodeBase64Lines
from secudoc_gateway.mime.parser import BodyData, MIMEParser, PartStart


def makeMessage(mebibytes: int) -> tuple[bytes, bytes]:
    """The message and the sha256 of its attachment."""
    block = os.urandom(57 * 18396)  # ~1 MiB, a whole number of base64 lines
    encoded = encodeBase64Lines(block)
    repeats = max(1, mebibytes * 1048576 // len(block))
    digest = hashlib.sha256()
    for _ in range(repeats):
        digest.update(block)
    head = (
        b"From: alice@example.test\r\nTo: bob@external.test\r\nSubject: bench\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="=_bench_boundary"\r\n\r\n'
        b"--=_bench_boundary\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        b"See attachment.\r\n"
        b"--=_bench_boundary\r\nContent-Type: application/octet-stream\r\n"
        b'Content-Disposition: attachment; filename="data.bin"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n"
    )
    tail = b"\r\n--=_bench_boundary--\r\n"
    return head + encoded * repeats + tail, digest.digest()


def parseAndDecode(message: bytes, chunkSize: int) -> bytes:
    parser = MIMEParser()
    decoders: dict[tuple[int, ...], Base64Decoder] = {}
    digest = hashlib.sha256()
    view = memoryview(message)
    for start in range(0, len(message), chunkSize):
        for event in parser.feed(view[start : start + chunkSize]):
            if isinstance(event, PartStart) and event.headers.transferEncoding == "base64":
                decoders[event.path] = Base64Decoder()
            elif isinstance(event, BodyData) and event.path in decoders:
                digest.update(decoders[event.path].feed(event.data))
    parser.close()
    for decoder in decoders.values():
        digest.update(decoder.close())
    return digest.digest()


def ceiling(message: bytes, chunkSize: int) -> bytes:
    """Decode + hash only the body, in chunks cut at line ends (no carry)."""
    start = message.index(b"base64\r\n\r\n") + 10
    end = message.rindex(b"\r\n--=_bench_boundary--")
    step = chunkSize // 78 * 78
    digest = hashlib.sha256()
    view = memoryview(message)
    for position in range(start, end, step):
        digest.update(binascii.a2b_base64(view[position : min(position + step, end)]))
    return digest.digest()


def main(argv: list[str]) -> None:
    mebibytes = int(argv[1]) if len(argv) > 1 else 100
    chunkSize = (int(argv[2]) if len(argv) > 2 else 64) * 1024
    message, expected = makeMessage(mebibytes)
    megabytes = len(message) / 1e6
    results = {}
    for name, function in (("ceiling", ceiling), ("parser+decoder", parseAndDecode)):
        best = None
        for _ in range(3):
            began = time.perf_counter()
            digest = function(message, chunkSize)
            elapsed = time.perf_counter() - began
            best = elapsed if best is None else min(best, elapsed)
        if digest != expected:
            raise SystemExit(f"{name}: decoded attachment does not match")
        results[name] = megabytes / best
    print(f"message: {megabytes:.1f} MB on the wire, chunks of {chunkSize // 1024} KiB")
    print(f"ceiling (a2b_base64 + sha256):  {results['ceiling']:8.1f} MB/s")
    print(f"MIMEParser + Base64Decoder:     {results['parser+decoder']:8.1f} MB/s"
          f"  ({100 * results['parser+decoder'] / results['ceiling']:.0f}% of ceiling)")


if __name__ == "__main__":
    main(sys.argv)
