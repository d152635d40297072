"""
The admin events page (SPEC 7 and 9): a tenant's logins, revokes,
extends and setting changes, newest first, filtered by day, and the
same rows as CSV (``/portal/events.csv``, ``exports``) for a
spreadsheet or an auditor.
"""

from __future__ import annotations

from secudoc_gateway.display import shown
from secudoc_gateway.notices.texts import formatMoment
from secudoc_gateway.portal import exports
from secudoc_gateway.portal.filters import DAYS, Filters, readFilters
from secudoc_gateway.portal.pages import Visit, page
from secudoc_gateway.portal.routes import ADMIN_ONLY, Route
from secudoc_gateway.transfers import AdminEvent
from secudoc_gateway.transfers.events import eventTime

LIMIT = 1000
CSV_COLUMNS = ("when", "who", "what", "subject", "old", "new")


async def _events(visit: Visit, filters: Filters, limit: int) -> list[AdminEvent]:
    assert visit.session is not None
    return await visit.portal.web.transfers.events(visit.session.tenant, filters.since, filters.until, limit)


async def listing(visit: Visit) -> None:
    filters = readFilters(visit, DAYS)
    events = [] if filters.error else await _events(visit, filters, LIMIT)
    t = visit.t
    rows = [{"when": formatMoment(e.at, visit.language), "who": shown(e.who), "what": t.get(f"what_{e.what}", e.what),
             "subject": shown(e.subject), "old": shown(e.old or ""), "new": shown(e.new or "")} for e in events]
    page(visit, 400 if filters.error else 200, "events.html", t["admin_events"], rows=rows, filters=filters.form,
         csv=f"{visit.portal.base}/events.csv{filters.query()}", current="events", wide=True)


def eventsCSV(events: list[AdminEvent]) -> bytes:
    return exports.csvFile(CSV_COLUMNS, ((eventTime(e.at), e.who, e.what, e.subject, e.old, e.new) for e in events))


async def export(visit: Visit) -> None:
    filters = readFilters(visit, DAYS)
    if exports.refusedFilter(visit.request, filters):
        return
    exports.sendCSV(visit.request, "admin-events.csv", eventsCSV(await _events(visit, filters, exports.LIMIT)))


ROUTES = (
    Route("GET", "events", listing, ADMIN_ONLY),
    Route("GET", "events.csv", export, ADMIN_ONLY),
)
