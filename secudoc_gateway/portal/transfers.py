"""
Transfers in the portal (SPEC 9): a person's own list (``/portal/``),
an admin's whole-tenant list with filters (``/portal/transfers``), one
transfer's page (files with sha256, recipients, the download trail
with the verified recipient) and its revoke and extend buttons.

A user sees a transfer only when they sent it (their address, their
tenant); an admin every transfer of their tenant.  Anything else, an
id that exists included, is the same 404 as an id that does not: the
portal never confirms that someone else's transfer exists.  Revoke and
extend go through ``TransferStore``, which records the admin event in
the same transaction.
"""

from __future__ import annotations

from typing import Any, Optional

from secudoc_gateway.addresses import addressKey
from secudoc_gateway.display import shown
from secudoc_gateway.notices.texts import formatMoment, humanSize
from secudoc_gateway.portal.filters import readFilters
from secudoc_gateway.portal.pages import Visit, notFound, page, redirect, refusedForm
from secudoc_gateway.portal.routes import ADMIN_ONLY, SIGNED_IN, Route
from secudoc_gateway.transfers import Transfer
from secudoc_gateway.web.pages import formValue

LIST_LIMIT = 500
# A transfer's state as the lists show it.
LIVE = "live"
EXPIRED = "expired"
REVOKED = "revoked"
UNSENT = "unsent"  # a browser transfer whose mail the relay refused (``portal.send``)


def stateOf(transfer: Transfer, now: float) -> str:
    if transfer.revoked is not None:
        return REVOKED
    return EXPIRED if transfer.purged is not None or transfer.expires <= now else LIVE


def _row(visit: Visit, transfer: Transfer, downloads: int, now: float, unsent: bool = False) -> dict[str, Any]:
    state = UNSENT if unsent and stateOf(transfer, now) == LIVE else stateOf(transfer, now)
    return {
        "id": transfer.id, "href": f"{visit.portal.base}/transfers/{transfer.id}",
        "subject": shown(transfer.subject), "sender": shown(transfer.sender),
        "date": formatMoment(transfer.created, visit.language),
        "recipients": ", ".join(shown(r) for r in transfer.recipients), "files": len(transfer.files),
        "state": state, "state_text": visit.t[f"state_{state}"], "downloads": downloads,
    }


async def _list(visit: Visit, transfers: list[Transfer], title: str, current: str, code: int = 200,
                **values: Any) -> None:
    store = visit.portal.web.transfers
    counts = await store.downloadCounts([t.id for t in transfers])
    unsent = await store.unsentOf([t.id for t in transfers])
    now = visit.portal.web.reactor.seconds()
    page(visit, code, "transfers.html", title,
         rows=[_row(visit, t, counts.get(t.id, 0), now, t.id in unsent) for t in transfers],
         current=current, wide=True, **values)


async def mine(visit: Visit) -> None:
    """The signed-in person's own transfers, newest first (an admin's own too)."""
    assert visit.session is not None
    session = visit.session
    found = await visit.portal.web.transfers.transfers(tenant=session.tenant, sender=session.address,
                                                       limit=LIST_LIMIT)
    await _list(visit, found, visit.t["my_transfers"], "mine", filters=None)


async def tenantWide(visit: Visit) -> None:
    """An admin's view: every transfer of the tenant, by sender, recipient, since a day."""
    assert visit.session is not None
    filters = readFilters(visit, ("sender", "recipient", "since"))
    if filters.error:
        await _list(visit, [], visit.t["all_transfers"], "all", 400, filters=filters.form)
        return
    found = await visit.portal.web.transfers.transfers(
        tenant=visit.session.tenant, sender=filters.address("sender"), recipient=filters.address("recipient"),
        since=filters.since, limit=LIST_LIMIT)
    await _list(visit, found, visit.t["all_transfers"], "all", filters=filters.form)


async def visible(visit: Visit, transferId: str) -> Optional[Transfer]:
    """The transfer if this person may see it, else ``None`` (after answering 404)."""
    session = visit.session
    assert session is not None
    transfer = await visit.portal.web.transfers.transfer(transferId)
    if (transfer is None or transfer.tenant != session.tenant
            or not (session.isAdmin or addressKey(transfer.sender) == addressKey(session.address))):
        notFound(visit)
        return None
    return transfer


def _maxDays(visit: Visit) -> int:
    assert visit.tenant is not None
    return visit.tenant.link_expiry_days


async def one(visit: Visit, id: str, code: int = 200, error: str = "") -> None:
    transfer = await visible(visit, id)
    if transfer is None:
        return
    t = visit.t
    language = visit.language
    now = visit.portal.web.reactor.seconds()
    state = stateOf(transfer, now)
    sent = await visit.portal.web.transfers.browserSend(transfer.id)
    unsent = sent is not None and sent.state == UNSENT and state == LIVE
    if unsent:
        state = UNSENT
    names = {f.n: shown(f.name) for f in transfer.files}
    downloads = [
        {"when": formatMoment(d.at, language), "file": shown(d.name or names.get(d.n, str(d.n))),
         "who": shown(d.recipient) if d.recipient else t["unverified"], "client": shown(d.client or "")}
        for d in await visit.portal.web.transfers.downloads(transfer.id)
    ]
    base = f"{visit.portal.base}/transfers/{transfer.id}"
    page(visit, code, "transfer.html", f"{t['transfer']} {transfer.id}", wide=True,
         current="all" if visit.session is not None and visit.session.isAdmin
         and addressKey(transfer.sender) != addressKey(visit.session.address) else "mine",
         transfer={"id": transfer.id, "subject": shown(transfer.subject), "sender": shown(transfer.sender),
                   "created": formatMoment(transfer.created, language),
                   "expires": formatMoment(transfer.expires, language),
                   "revoked": formatMoment(transfer.revoked, language) if transfer.revoked is not None else "",
                   "state": state, "state_text": t[f"state_{state}"]},
         recipients=[shown(r) for r in transfer.recipients],
         pending={shown(r) for r in sent.pending} if unsent and sent is not None else set(),
         files=[{"name": names[f.n], "size": humanSize(f.size, language), "sha256": f.sha256}
                for f in transfer.files],
         downloads=downloads, can_revoke=state == LIVE,
         unsent=t["unsent_body"].format(error=shown(sent.error) or "-") if unsent and sent is not None else "",
         resend_action=f"{base}/resend", delete_action=f"{base}/delete",
         withheld=[t["send_withheld"].format(name=shown(w.name), signature=shown(w.signature))
                   for w in transfer.withheld],
         can_extend=transfer.revoked is None and transfer.purged is None,
         revoke_action=f"{base}/revoke", extend_action=f"{base}/extend", max_days=_maxDays(visit),
         error=error, back=f"{visit.portal.base}/")


async def acting(visit: Visit, id: str) -> Optional[Transfer]:
    """The transfer a post acts on, once its token is right and the transfer is this person's to see."""
    if refusedForm(visit, f"transfers/{id}"):
        return None
    return await visible(visit, id)


async def revoke(visit: Visit, id: str) -> None:
    transfer = await acting(visit, id)
    if transfer is None:
        return
    assert visit.session is not None
    await visit.portal.web.transfers.revoke(transfer.id, by=visit.session.address)
    redirect(visit.request, f"{visit.portal.base}/transfers/{transfer.id}")


async def extend(visit: Visit, id: str) -> None:
    """Up to the tenant's ``link_expiry_days`` more, from the expiry (or now, once it passed)."""
    transfer = await acting(visit, id)
    if transfer is None:
        return
    assert visit.session is not None
    text = (formValue(visit.request, "days", 6) or "").strip()
    days = int(text) if text.isdigit() else 0
    if not 1 <= days <= _maxDays(visit) or transfer.revoked is not None or transfer.purged is not None:
        await one(visit, id, 400, visit.t["extend_wrong"].format(days=_maxDays(visit)))
        return
    await visit.portal.web.transfers.extend(transfer.id, days, by=visit.session.address)
    redirect(visit.request, f"{visit.portal.base}/transfers/{transfer.id}")


ROUTES = (
    Route("GET", "", mine, SIGNED_IN),
    Route("GET", "transfers", tenantWide, ADMIN_ONLY),
    Route("GET", "transfers/{id}", one, SIGNED_IN),
    Route("POST", "transfers/{id}/revoke", revoke, SIGNED_IN),
    Route("POST", "transfers/{id}/extend", extend, SIGNED_IN),
)
