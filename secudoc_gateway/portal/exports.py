"""
The CSV exports of an admin's lists (the download trail, the admin
events), for a spreadsheet or an auditor: RFC 4180, UTF-8 with a byte
order mark (so Excel reads the accents), CRLF lines.  A cell that a
spreadsheet would read as a formula (it starts with ``=``, ``+``,
``-``, ``@``, a tab or a carriage return) is prefixed with ``'``: an
address or a subject is not the tenant's to run.
"""

from __future__ import annotations

import csv
import io
from typing import Any, Iterable, Sequence

from twisted.web.server import Request

from secudoc_gateway.portal.filters import Filters
from secudoc_gateway.web.pages import sendBody

LIMIT = 100000
"""Rows of one export at most."""
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def csvCell(value: Any) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA) else text


def csvFile(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([csvCell(v) for v in row])
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def refusedFilter(request: Request, filters: Filters) -> bool:
    """``True``, after answering 400 with the form's message, when a day of the export's filter was wrong."""
    if not filters.error:
        return False
    sendBody(request, 400, filters.error.encode("utf-8") + b"\n", b"text/plain; charset=utf-8")
    return True


def sendCSV(request: Request, filename: str, body: bytes) -> None:
    """The export as a download named ``filename``."""
    sendBody(request, 200, body, b"text/csv; charset=utf-8",
             {b"Content-Disposition": f'attachment; filename="{filename}"'.encode("ascii")})
