"""
Throughput of the framed AES-256-GCM stream (secudoc_gateway.crypto),
next to a plain SHA-256 over the same bytes in the same run: the
pipeline hashes every attachment anyway (SPEC 7, sha256 of the
plaintext), so SHA-256 is the yardstick for "is encryption the
bottleneck".

    PYTHONPATH=. .venv/bin/python bench/bench_crypto.py [--size BYTES] [--chunk BYTES]

Input is fed in ``--chunk`` pieces, as the MIME decoder hands them over.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time
from typing import Callable

from secudoc_gateway import crypto


def rate(nbytes: int, seconds: float) -> str:
    return f"{nbytes / seconds / 1e6:9.1f} MB/s"


def timed(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=100_000_000, help="bytes of plaintext")
    parser.add_argument("--chunk", type=int, default=64 * 1024, help="bytes per feed() call")
    args = parser.parse_args()

    # One random MiB repeated: realistic (incompressible) bytes without
    # the benchmark itself holding the plaintext twice.
    block = os.urandom(2**20)
    pieces: list[bytes] = []
    left = args.size
    while left > 0:
        for i in range(0, len(block), args.chunk):
            piece = block[i : i + min(args.chunk, left)]
            if not piece:
                break
            pieces.append(piece)
            left -= len(piece)
            if left <= 0:
                break
    size = sum(len(p) for p in pieces)
    key = crypto.fileKey(crypto.newToken(), crypto.newTransferId(), 0)

    print(f"{size:,} bytes in {args.chunk:,}-byte pieces")

    def sha() -> None:
        h = hashlib.sha256()
        for p in pieces:
            h.update(p)
        h.digest()

    print(f"{'sha256 (reference)':<28}{rate(size, timed(sha))}")

    for frameSize in (64 * 1024, 256 * 1024):
        def encrypt() -> int:
            # Output is counted, not kept: keeping 100 MB would time page faults.
            enc = crypto.Encryptor(key, frameSize)
            total = 0
            for p in pieces:
                total += len(enc.feed(p))
            return total + len(enc.finish())

        enc = crypto.Encryptor(key, frameSize)
        sealed = [enc.feed(p) for p in pieces] + [enc.finish()]
        assert sum(len(c) for c in sealed) == crypto.ciphertextSize(size, frameSize)

        def decrypt() -> None:
            dec = crypto.Decryptor(key)
            total = 0
            for c in sealed:
                total += len(dec.feed(c))
            total += len(dec.finish())
            assert total == size

        tEnc = timed(encrypt)
        tDec = timed(decrypt)
        label = f"{frameSize // 1024} KiB frames"
        print(f"{label + ' encrypt':<28}{rate(size, tEnc)}")
        print(f"{label + ' decrypt':<28}{rate(size, tDec)}")
        print(f"{label + ' round trip':<28}{rate(size, tEnc + tDec)}")
        del sealed


if __name__ == "__main__":
    main()
