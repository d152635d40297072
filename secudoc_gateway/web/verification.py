"""
``recipient_verification = "email-code"`` (SPEC 8): the page asks for
the recipient's address; ``POST /t/<token>/code`` mails a six-digit
code to an address the transfer was sent to; ``POST /t/<token>/verify``
checks it and opens a session for that transfer only.

- A stranger's address gets exactly the answer a recipient's gets (the
  code page), and a code is stored for it too, one that is never sent:
  tries and limits count the same, and the mail goes out after the
  answer, so neither the page nor its timing tells them apart.
- Only POST sends or checks codes: a link scanner's GET never uses up a
  limit or mails anyone.
- Forms carry a CSRF token the gateway signed for this transfer and
  step over the browser's nonce cookie (``pages.csrfToken``), and
  Origin must be ours.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import ensureDeferred
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from secudoc_gateway.access import EXHAUSTED, EXPIRED, RIGHT, newCode
from secudoc_gateway.crypto import codeHash
from secudoc_gateway.crypto import newToken
from secudoc_gateway.notices.downloads import codeMail
from secudoc_gateway.notices.texts import texts
from secudoc_gateway.addresses import addressKey
from secudoc_gateway.web.context import SESSION_COOKIE, WebContext, chrome, failed, log
from secudoc_gateway.web.pages import csrfToken, csrfValid, formValue, render, sendPage, setCookie

CODE = b"code"
VERIFY = b"verify"


async def _csrf(context: WebContext, request: Request, visit: Any, step: bytes, base: str) -> str:
    return csrfToken(request, await context.access.formKey(), step.decode("ascii"), visit.transfer.id, base,
                     context.secureCookies)


async def addressPage(context: WebContext, request: Request, visit: Any, base: str, code: int = 200,
                      error: str = "", address: str = "") -> None:
    """The first step: which address are you?"""
    language = visit.language
    body = render("address.html", language, title=texts(language)["verify_title"], action=f"{base}/code",
                  csrf=await _csrf(context, request, visit, CODE, base), error=error, address=address,
                  switch=base, **chrome(context, visit.transfer, visit.token))
    sendPage(request, code, body)


async def codePage(context: WebContext, request: Request, visit: Any, base: str, address: str, code: int = 200,
                   error: str = "") -> None:
    """The second step: the code that went to ``address`` (if it is a recipient's)."""
    language = visit.language
    body = render("code.html", language, title=texts(language)["code_title"], action=f"{base}/verify",
                  restart=base, csrf=await _csrf(context, request, visit, VERIFY, base), error=error,
                  address=address, switch=base, **chrome(context, visit.transfer, visit.token))
    sendPage(request, code, body)


def _client(request: Request) -> str:
    client = request.getClientAddress()
    return str(getattr(client, "host", client))


class FormResource(Resource):
    """``POST /t/<token>/code`` and ``POST /t/<token>/verify``; GET goes back to the page."""

    isLeaf = True

    def __init__(self, context: WebContext, token: str, step: bytes,
                 openVisit: Callable[..., Any], basePath: Callable[[WebContext, str], str]) -> None:
        super().__init__()
        self.context = context
        self.token = token
        self.step = step
        self.openVisit = openVisit
        self.base = basePath(context, token)

    def render_GET(self, request: Request) -> bytes:
        request.setResponseCode(303)
        request.setHeader(b"Location", self.base.encode("ascii"))
        return b""

    render_HEAD = render_GET

    def render_POST(self, request: Request) -> int:
        handler = self._code if self.step == CODE else self._verify
        ensureDeferred(self._post(request, handler)).addErrback(failed, request)
        return NOT_DONE_YET

    async def _post(self, request: Request, handler: Callable[..., Any]) -> None:
        visit = await self.openVisit(self.context, request, self.token)
        if visit is None:
            return
        if not visit.needsCode:
            request.setResponseCode(303)
            request.setHeader(b"Location", self.base.encode("ascii"))
            request.finish()
            return
        t = texts(visit.language)
        if not csrfValid(request, self.context.publicOrigin, await self.context.access.formKey(),
                         self.step.decode("ascii"), visit.transfer.id):
            await addressPage(self.context, request, visit, self.base, 403, t["form_expired"])
            return
        address = addressKey(formValue(request, "address") or "")
        await handler(request, visit, address, t)

    async def _code(self, request: Request, visit: Any, address: str, t: dict[str, str]) -> None:
        context = self.context
        transfer = visit.transfer
        if not await context.access.allow(context.access.limits.forCodes(transfer.id, _client(request))):
            await addressPage(context, request, visit, self.base, 429, t["too_many"], address)
            return
        code = newCode()
        known = address in {addressKey(r) for r in transfer.recipients}
        # A stranger's address gets a code too, one nobody is ever sent.
        await context.access.storeCode(transfer.id, address,
                                       codeHash(self.token, transfer.id, address, code if known else newCode()))
        await codePage(context, request, visit, self.base, address)
        if known:
            now = context.reactor.seconds()
            mail = codeMail(context.hostname, visit.tenant, address, transfer.sender, code,
                            now + context.access.limits.codeSeconds, now, transfer.id, visit.language)
            context.mailer(visit.tenant, address, mail).addErrback(
                lambda f: log.failure("verification code for {id} not sent", f, id=transfer.id))

    async def _verify(self, request: Request, visit: Any, address: str, t: dict[str, str]) -> None:
        context = self.context
        transfer = visit.transfer
        code = "".join(c for c in (formValue(request, "code", 32) or "") if c.isdigit())
        if not await context.access.allow(context.access.limits.forTries(transfer.id, _client(request))):
            await codePage(context, request, visit, self.base, address, 429, t["too_many"])
            return
        outcome = await context.access.checkCode(transfer.id, address,
                                                 codeHash(self.token, transfer.id, address, code))
        if outcome == RIGHT:
            secret = newToken()
            await context.access.openSession(secret, transfer.id, address, transfer.expires)
            setCookie(request, SESSION_COOKIE, secret, self.base, context.secureCookies)
            request.setResponseCode(303)
            request.setHeader(b"Location", self.base.encode("ascii"))
            request.finish()
        elif outcome == EXPIRED:
            await addressPage(context, request, visit, self.base, 400, t["code_expired"], address)
        elif outcome == EXHAUSTED:
            await addressPage(context, request, visit, self.base, 429, t["code_exhausted"], address)
        else:
            await codePage(context, request, visit, self.base, address, 400, t["code_wrong"])
