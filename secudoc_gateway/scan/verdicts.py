"""
What clamd said of one file, and what the gateway makes of it (SPEC 10),
as plain values: the scanner's Deferreds fire with them, the database,
``transfers show``, the metrics and the trace read them.
"""

from __future__ import annotations

import enum
from typing import Iterable

import attrs


class ScanResult(enum.StrEnum):
    """A file's verdict: the ``scan`` column and the metric's ``result`` label."""

    CLEAN = "clean"
    INFECTED = "infected"
    SKIPPED = "skipped"  # over max_file_size or clamd's stream limit: stored unscanned
    ERROR = "error"  # clamd down, refusing or past the timeout


SEVERITY = (ScanResult.CLEAN, ScanResult.SKIPPED, ScanResult.ERROR, ScanResult.INFECTED)


@attrs.frozen
class Verdict:
    """
    ``signature``: the name clamd found (infected only); ``reason``: why
    a file is skipped or in error, for the log; ``seconds``: from the
    file's last byte to the verdict (what the reply waited for it).
    """

    result: ScanResult
    signature: str = ""
    reason: str = ""
    seconds: float = 0.0


@attrs.frozen
class FileVerdict:
    """One file of a message and its verdict: the per-message summary the trace reads."""

    name: str
    verdict: Verdict

    @property
    def result(self) -> ScanResult:
        return self.verdict.result


def worst(verdicts: Iterable[FileVerdict]) -> str:
    """
    The message's verdict in one word, its worst file's (infected >
    error > skipped > clean); ``""`` when nothing was scanned.
    """
    results = [v.result for v in verdicts]
    return str(max(results, key=SEVERITY.index)) if results else ""
