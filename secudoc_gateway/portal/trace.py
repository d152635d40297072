"""
The message trace for a tenant's admins (SPEC 7 and 9): the rows
``secudoc-gateway trace`` shows the operator, the tenant's own only,
newest first, by sender, recipient, Message-ID and day.  It answers the
installation guide's section 12 question, "did my test mail reach the
gateway and what did it do with it", without asking the operator.
"""

from __future__ import annotations

from secudoc_gateway.display import shown
from secudoc_gateway.notices.texts import formatMoment
from secudoc_gateway.portal.pages import Visit, page
from secudoc_gateway.portal.routes import ADMIN_ONLY, Route
from secudoc_gateway.portal.filters import readFilters

LIMIT = 500


async def trace(visit: Visit) -> None:
    assert visit.session is not None
    t = visit.t
    filters = readFilters(visit, ("sender", "recipient", "message_id", "since"))
    entries = [] if filters.error else await visit.portal.web.transfers.traceEntries(
        tenant=visit.session.tenant, sender=filters.address("sender"), recipient=filters.text("recipient"),
        messageId=filters.text("message_id"), since=filters.since, limit=LIMIT)
    rows = [{"when": formatMoment(e.at, visit.language), "sender": shown(e.sender),
             "recipients": ", ".join(shown(r) for r in e.recipients), "decision": e.decision,
             "reason": shown(e.reason), "transfer": e.transfer_id or "",
             "href": f"{visit.portal.base}/transfers/{e.transfer_id}" if e.transfer_id else "",
             "reply": shown(e.reply), "scan": e.scan or "",
             "message_id": shown(e.message_id or "")} for e in reversed(entries)]
    page(visit, 400 if filters.error else 200, "trace.html", t["trace_title"], rows=rows, filters=filters.form,
         action=f"{visit.portal.base}/trace", current="trace", wide=True)


ROUTES = (Route("GET", "trace", trace, ADMIN_ONLY),)
