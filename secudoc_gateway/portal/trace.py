"""
The message trace for a tenant's admins (SPEC 7 and 9): the rows
``secudoc-gateway trace`` shows the operator, the tenant's own only,
newest first, by sender, recipient, Message-ID and day.  It answers the
installation guide's section 12 question, "did my test mail reach the
gateway and what did it do with it", without asking the operator.
"""

from __future__ import annotations

from secudoc_gateway.addresses import addressKey
from secudoc_gateway.display import shown
from secudoc_gateway.notices.texts import formatMoment
from secudoc_gateway.portal.pages import Visit, page
from secudoc_gateway.portal.routes import ADMIN_ONLY, Route
from secudoc_gateway.portal.transfers import parseDay
from secudoc_gateway.web.pages import formValue

LIMIT = 500


async def trace(visit: Visit) -> None:
    assert visit.session is not None
    t = visit.t
    filters = {name: (formValue(visit.request, name, 320 if name != "since" else 10) or "").strip()
               for name in ("sender", "recipient", "message_id", "since")}
    since = parseDay(filters["since"]) if filters["since"] else None
    filters["error"] = t["bad_date"] if filters["since"] and since is None else ""
    entries = [] if filters["error"] else await visit.portal.web.transfers.traceEntries(
        tenant=visit.session.tenant, sender=addressKey(filters["sender"]) if filters["sender"] else None,
        recipient=filters["recipient"] or None, messageId=filters["message_id"] or None, since=since, limit=LIMIT)
    rows = [{"when": formatMoment(e.at, visit.language), "sender": shown(e.sender),
             "recipients": ", ".join(shown(r) for r in e.recipients), "decision": e.decision,
             "reason": shown(e.reason), "transfer": e.transfer_id or "",
             "href": f"{visit.portal.base}/transfers/{e.transfer_id}" if e.transfer_id else "",
             "reply": shown(f"{e.reply_code} {e.reply_text}"), "scan": e.scan or "",
             "message_id": shown(e.message_id or "")} for e in reversed(entries)]
    page(visit, 400 if filters["error"] else 200, "trace.html", t["trace_title"], rows=rows, filters=filters,
         action=f"{visit.portal.base}/trace", current="trace", wide=True)


ROUTES = (Route("GET", "trace", trace, ADMIN_ONLY),)
