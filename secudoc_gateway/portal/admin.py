"""
An admin's other pages (SPEC 9): the users (the stored ones with how
each came and their last login, the tenant's ``users`` patterns and
``admins``; add and remove), the whole tenant's download trail with
filters and its CSV, and "test the mail server" (the installation
guide's section 5 check, ``test-relay`` from the browser, with the
remote's reply shown).

Adding and removing a user, and each relay test, is an admin event
written with the change.  A user the tenant file names (its ``users``
patterns, its ``admins``) is the operator's: the page shows them and
removes only stored ones.  The relay test mails only an address in
the tenant's own domains, so the portal is nobody's way to send mail
elsewhere.
"""

from __future__ import annotations

import urllib.parse
from typing import Any, Optional

from twisted.logger import Logger

from secudoc_gateway.addresses import addressKey, isMailbox
from secudoc_gateway.display import shown
from secudoc_gateway.errors import RelayError
from secudoc_gateway.notices.texts import formatMoment
from secudoc_gateway.portal import exports
from secudoc_gateway.portal.filters import Filters, readFilters
from secudoc_gateway.portal.pages import Visit, page, redirect, refusedForm
from secudoc_gateway.portal.routes import ADMIN_ONLY, Route
from secudoc_gateway.relay.probe import probeRelay
from secudoc_gateway.transfers import TrailEntry
from secudoc_gateway.transfers.events import RELAY_TEST, eventTime
from secudoc_gateway.web.pages import formValue

log = Logger()

LIMIT = 1000
TRAIL_COLUMNS = ("when", "transfer", "sender", "subject", "file", "recipient", "client", "user_agent")
REPLY_LIMIT = 500


def _inDomains(visit: Visit, address: str) -> Optional[str]:
    """``address`` normalised when it is one address in the tenant's domains, else ``None``."""
    assert visit.tenant is not None
    address = address.strip()
    if not isMailbox(address):
        return None
    key = addressKey(address)
    return key if key.rpartition("@")[2] in visit.tenant.domains else None


# --- users -------------------------------------------------------------------------------------------------


async def users(visit: Visit, code: int = 200, error: str = "", notice: str = "", typed: str = "") -> None:
    assert visit.session is not None and visit.tenant is not None
    t = visit.t
    store = visit.portal.web.transfers
    tenant = visit.tenant
    found = await store.users(tenant.id)
    logins = await store.lastLogins(tenant.id)
    never = t["never"]
    rows = [{"address": shown(u.address), "how": t.get(f"how_{u.how}", u.how),
             "created": formatMoment(u.created, visit.language),
             "last_login": formatMoment(u.last_login, visit.language) if u.last_login is not None else never}
            for u in found]
    admins = [{"address": shown(a), "last_login": formatMoment(logins[addressKey(a)], visit.language)
               if addressKey(a) in logins else never} for a in tenant.admins]
    page(visit, code, "users.html", t["users_title"], rows=rows, admins=admins,
         patterns=", ".join(tenant.users) or t["none"], error=error, notice=notice, typed=typed,
         action=f"{visit.portal.base}/users", current="users", wide=True)


async def addUser(visit: Visit) -> None:
    if refusedForm(visit, "users"):
        return
    assert visit.session is not None and visit.tenant is not None
    typed = (formValue(visit.request, "address") or "").strip()
    address = _inDomains(visit, typed)
    if address is None:
        await users(visit, 400, visit.t["user_wrong_address"].format(domains=", ".join(visit.tenant.domains)),
                    typed=typed)
        return
    if not await visit.portal.web.transfers.addUser(visit.tenant.id, address, visit.session.address):
        await users(visit, 400, visit.t["user_exists"].format(address=address), typed=typed)
        return
    redirect(visit.request, f"{visit.portal.base}/users?added={urllib.parse.quote(address)}")


async def removeUser(visit: Visit) -> None:
    if refusedForm(visit, "users"):
        return
    assert visit.session is not None and visit.tenant is not None
    address = addressKey((formValue(visit.request, "address") or "").strip())
    await visit.portal.web.transfers.removeUser(visit.tenant.id, address, visit.session.address)
    redirect(visit.request, f"{visit.portal.base}/users?removed={urllib.parse.quote(address)}")


async def usersPage(visit: Visit) -> None:
    added, removed = formValue(visit.request, "added"), formValue(visit.request, "removed")
    notice = (visit.t["user_added"].format(address=added) if added
              else visit.t["user_removed"].format(address=removed) if removed else "")
    await users(visit, notice=notice)


# --- the download trail -------------------------------------------------------------------------------------


_TRAIL_FILTERS = ("sender", "recipient", "since", "until")


async def _trail(visit: Visit, filters: Filters, limit: int) -> list[TrailEntry]:
    assert visit.session is not None
    return await visit.portal.web.transfers.trail(
        visit.session.tenant, sender=filters.address("sender"), recipient=filters.address("recipient"),
        since=filters.since, until=filters.until, limit=limit)


async def downloads(visit: Visit) -> None:
    filters = readFilters(visit, _TRAIL_FILTERS)
    entries = [] if filters.error else await _trail(visit, filters, LIMIT)
    t = visit.t
    rows = [{"when": formatMoment(e.download.at, visit.language), "transfer": e.download.transfer_id,
             "href": f"{visit.portal.base}/transfers/{e.download.transfer_id}",
             "sender": shown(e.sender or ""), "file": shown(e.download.name or str(e.download.n)),
             "recipient": shown(e.download.recipient) if e.download.recipient else t["unverified"],
             "client": shown(e.download.client or "")} for e in entries]
    page(visit, 400 if filters.error else 200, "downloads.html", t["downloads_title"], rows=rows,
         filters=filters.form, action=f"{visit.portal.base}/downloads",
         csv=f"{visit.portal.base}/downloads.csv{filters.query()}", current="downloads", wide=True)


def trailCSV(entries: list[TrailEntry]) -> bytes:
    return exports.csvFile(TRAIL_COLUMNS, ((eventTime(e.download.at), e.download.transfer_id, e.sender, e.subject,
                                            e.download.name, e.download.recipient, e.download.client,
                                            e.download.user_agent) for e in entries))


async def downloadsCSV(visit: Visit) -> None:
    filters = readFilters(visit, _TRAIL_FILTERS)
    if exports.refusedFilter(visit.request, filters):
        return
    exports.sendCSV(visit.request, "downloads.csv", trailCSV(await _trail(visit, filters, exports.LIMIT)))


# --- test the mail server -----------------------------------------------------------------------------------


def _relayPage(visit: Visit, code: int = 200, to: str = "", error: str = "", result: Optional[dict[str, Any]] = None
               ) -> None:
    assert visit.session is not None and visit.tenant is not None
    t = visit.t
    page(visit, code, "relay_test.html", t["relay_test"], intro=t["relay_test_intro"].format(relay=visit.tenant.relay),
         to=to or visit.session.address, error=error, result=result, action=f"{visit.portal.base}/relay-test",
         current="relay-test")


async def relayForm(visit: Visit) -> None:
    _relayPage(visit)


async def relayTest(visit: Visit) -> None:
    if refusedForm(visit, "relay-test"):
        return
    assert visit.session is not None and visit.tenant is not None
    typed = (formValue(visit.request, "to") or "").strip()
    to = _inDomains(visit, typed)
    if to is None:
        _relayPage(visit, 400, typed, visit.t["user_wrong_address"].format(domains=", ".join(visit.tenant.domains)))
        return
    web = visit.portal.web
    try:
        reply = str(await probeRelay(visit.tenant, web.hostname, web.reactor, to))
        ok = True
    except RelayError as e:
        reply = f"{e} ({e.reply.line})" if e.reply else str(e)
        ok = False
    reply = reply[:REPLY_LIMIT]
    await web.transfers.recordEvent(visit.tenant.id, visit.session.address, RELAY_TEST, to, None,
                                    ("ok: " if ok else "failed: ") + reply)
    _relayPage(visit, 200 if ok else 502, to,
               result={"ok": ok, "text": visit.t["relay_test_ok" if ok else "relay_test_failed"],
                       "reply": shown(reply)})


ROUTES = (
    Route("GET", "users", usersPage, ADMIN_ONLY),
    Route("POST", "users/add", addUser, ADMIN_ONLY),
    Route("POST", "users/remove", removeUser, ADMIN_ONLY),
    Route("GET", "downloads", downloads, ADMIN_ONLY),
    Route("GET", "downloads.csv", downloadsCSV, ADMIN_ONLY),
    Route("GET", "relay-test", relayForm, ADMIN_ONLY),
    Route("POST", "relay-test", relayTest, ADMIN_ONLY),
)
