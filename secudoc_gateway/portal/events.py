"""
The admin events page (SPEC 7 and 9): a tenant's logins, revokes,
extends and setting changes, newest first, filtered by day, and the
same rows as CSV (``/portal/events.csv``) for a spreadsheet or an
auditor.  A CSV cell that a spreadsheet would read as a formula (it
starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return) is
prefixed with ``'``: an address or a subject is not the tenant's to
run.
"""

from __future__ import annotations

import csv
import io
import urllib.parse
from typing import Any, Optional

from secudoc_gateway.display import shown
from secudoc_gateway.notices.texts import formatMoment
from secudoc_gateway.portal.pages import Visit, page
from secudoc_gateway.portal.routes import ADMIN_ONLY, Route
from secudoc_gateway.portal.transfers import parseDay
from secudoc_gateway.transfers import AdminEvent
from secudoc_gateway.transfers.events import eventTime
from secudoc_gateway.web.pages import formValue

LIMIT = 1000
CSV_LIMIT = 100000
CSV_COLUMNS = ("when", "who", "what", "subject", "old", "new")
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _range(visit: Visit) -> tuple[dict[str, str], Optional[float], Optional[float]]:
    """The day filter's fields as typed, and the range they mean (an error names a wrong one)."""
    sinceText = (formValue(visit.request, "since", 10) or "").strip()
    untilText = (formValue(visit.request, "until", 10) or "").strip()
    since = parseDay(sinceText) if sinceText else None
    until = parseDay(untilText, after=True) if untilText else None
    wrong = (sinceText and since is None) or (untilText and until is None)
    return {"since": sinceText, "until": untilText, "error": visit.t["bad_date"] if wrong else ""}, since, until


async def _events(visit: Visit, since: Optional[float], until: Optional[float], limit: int) -> list[AdminEvent]:
    assert visit.session is not None
    return await visit.portal.web.transfers.events(visit.session.tenant, since, until, limit)


async def listing(visit: Visit) -> None:
    filters, since, until = _range(visit)
    events = [] if filters["error"] else await _events(visit, since, until, LIMIT)
    t = visit.t
    rows = [{"when": formatMoment(e.at, visit.language), "who": shown(e.who), "what": t.get(f"what_{e.what}", e.what),
             "subject": shown(e.subject), "old": shown(e.old or ""), "new": shown(e.new or "")} for e in events]
    query = urllib.parse.urlencode([(k, filters[k]) for k in ("since", "until") if filters[k]])
    page(visit, 400 if filters["error"] else 200, "events.html", t["admin_events"], rows=rows, filters=filters,
         csv=f"{visit.portal.base}/events.csv" + (f"?{query}" if query else ""), current="events", wide=True)


def csvCell(value: Any) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA) else text


def eventsCSV(events: list[AdminEvent]) -> bytes:
    """RFC 4180 CSV, UTF-8 with a byte order mark (so Excel reads the accents), CRLF lines."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for e in events:
        writer.writerow([csvCell(v) for v in (eventTime(e.at), e.who, e.what, e.subject, e.old, e.new)])
    return ("\ufeff" + out.getvalue()).encode("utf-8")


async def export(visit: Visit) -> None:
    filters, since, until = _range(visit)
    request = visit.request
    if filters["error"]:
        request.setResponseCode(400)
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        request.write(filters["error"].encode("utf-8") + b"\n")
        request.finish()
        return
    body = eventsCSV(await _events(visit, since, until, CSV_LIMIT))
    request.setHeader(b"Content-Type", b"text/csv; charset=utf-8")
    request.setHeader(b"Content-Disposition", b'attachment; filename="admin-events.csv"')
    request.setHeader(b"Content-Length", str(len(body)).encode("ascii"))
    if request.method != b"HEAD":
        request.write(body)
    request.finish()


ROUTES = (
    Route("GET", "events", listing, ADMIN_ONLY),
    Route("GET", "events.csv", export, ADMIN_ONLY),
)
