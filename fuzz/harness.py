"""
What the fuzz targets share: the invariants' checks, the seed corpus
(the shared real-world corpus beside the checkout, turned into SMTP
dialogues for the session target), and the libFuzzer run itself.

A target module defines ``TestOneInput(data)`` (atheris' entry point)
and ``seeds()``; it raises ``InvariantBroken`` when an invariant fails
and lets any other exception escape, which the fuzzer reports as a
crash too.  Inputs that once broke a target are kept under
``fuzz/regressions/<target>/`` and replayed by the test suite.
``run.py`` runs the targets.
"""

from __future__ import annotations

import os
import re
from typing import Iterable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REGRESSIONS = os.path.join(ROOT, "fuzz", "regressions")
CORPUS_CANDIDATES = [os.environ.get("SECUDOC_CORPUS", ""), os.path.join(ROOT, "..", "shared", "corpus"),
                     "/work/shared/corpus"]
MAX_SEED = 64 * 1024
"""Corpus messages larger than this are left out of the seeds: the fuzzer mutates small inputs best."""

_BARE = re.compile(rb"\r(?!\n)|(?<!\r)\n")


class InvariantBroken(AssertionError):
    """A fuzz target found input that breaks what the gateway promises."""


def check(condition: bool, what: str) -> None:
    if not condition:
        raise InvariantBroken(what)


def hasBareLineBreak(data: bytes) -> bool:
    """A CR not before LF, or an LF not after CR (RFC 5321 2.3.8 forbids both on the wire)."""
    return _BARE.search(data) is not None


def toCRLF(data: bytes) -> bytes:
    """Every line break made CRLF."""
    return re.sub(rb"\r\n|\r|\n", b"\r\n", data)


def chunked(data: bytes, seed: int) -> Iterable[bytes]:
    """``data`` cut at points that depend on ``seed``: parsers must not care where."""
    sizes = (1, 2, 3, 7, 64, 1000, 4096, 65536)
    at = 0
    step = seed
    while at < len(data):
        size = sizes[step % len(sizes)]
        step = (step * 31 + 7) & 0xFFFF
        yield data[at:at + size]
        at += size


def corpusMessages() -> list[bytes]:
    """The shared corpus' messages, small enough to seed with; none when the corpus is absent."""
    folder = next((c for c in CORPUS_CANDIDATES if c and os.path.isdir(c)), "")
    out = []
    if folder:
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name)
            if name.endswith(".eml") and os.path.getsize(path) <= MAX_SEED:
                with open(path, "rb") as f:
                    out.append(f.read())
    return out


def regressions(target: str) -> list[tuple[str, bytes]]:
    folder = os.path.join(REGRESSIONS, target)
    out = []
    if os.path.isdir(folder):
        for name in sorted(os.listdir(folder)):
            with open(os.path.join(folder, name), "rb") as f:
                out.append((name, f.read()))
    return out
