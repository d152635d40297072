"""
HTML pages from Jinja2 templates (``templates/``) with autoescaping on
for every value, and the headers every ``/t/`` response carries (SPEC
8): no referrer, no caching, no sniffing, no framing, and a content
security policy that lets a page load nothing but its own stylesheet and
the tenant's logo, and post forms only to itself.
"""

from __future__ import annotations

import secrets
from typing import Any, Optional

import jinja2
from twisted.web.server import Request

from secudoc_gateway.crypto import formToken, formTokenValid
from secudoc_gateway.notices.texts import LANGUAGES, negotiate, texts

SECURITY_HEADERS = {
    b"Referrer-Policy": b"no-referrer",
    b"Cache-Control": b"no-store",
    b"X-Content-Type-Options": b"nosniff",
    b"X-Frame-Options": b"DENY",
    # What a response that sets none of its own gets (plain 404s, the
    # framework's error pages, /healthz): nothing loads, nothing frames it.
    b"Content-Security-Policy": b"default-src 'none'; frame-ancestors 'none'; base-uri 'none'",
}
HSTS = {b"Strict-Transport-Security": b"max-age=31536000"}
"""Added to every response when ``public_url`` is https."""
PAGE_CSP = (b"default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self';"
            b" frame-ancestors 'none'; base-uri 'none'")
# Downloads are never rendered on our origin, whatever their type, nor framed.
DOWNLOAD_CSP = b"default-src 'none'; sandbox; frame-ancestors 'none'"

CSRF_COOKIE = b"sd_csrf"
LANGUAGE_COOKIE = b"sd_lang"

_environment = jinja2.Environment(
    loader=jinja2.PackageLoader("secudoc_gateway.web", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
)


def render(template: str, language: str, **context: Any) -> bytes:
    """A whole page; ``t`` in the template is the language's texts."""
    context.setdefault("logo", "")
    context.setdefault("organisation", "")
    context.setdefault("help_contact", "")
    context.setdefault("sender", "")
    context.setdefault("switch", "")
    context.setdefault("wide", False)
    context.setdefault("site", "")
    return _environment.get_template(template).render(lang=language, t=texts(language), **context).encode("utf-8")


def sendBody(request: Request, code: int, body: bytes, contentType: bytes,
             headers: Optional[dict[bytes, bytes]] = None) -> None:
    """Answer with a body held whole (a page, a CSV, our metadata): headers only for HEAD."""
    request.setResponseCode(code)
    request.setHeader(b"Content-Type", contentType)
    for name, value in (headers or {}).items():
        request.setHeader(name, value)
    request.setHeader(b"Content-Length", str(len(body)).encode("ascii"))
    if request.method != b"HEAD":
        request.write(body)
    request.finish()


def sendPage(request: Request, code: int, body: bytes, csp: bytes = PAGE_CSP) -> None:
    """Answer with a rendered page."""
    sendBody(request, code, body, b"text/html; charset=utf-8", {b"Content-Security-Policy": csp})


def setCookie(request: Request, name: bytes, value: str, path: str, secure: bool) -> None:
    """
    HttpOnly, on ``path`` only, Secure when the public URL is https, and
    SameSite=Lax: a link clicked in webmail is a top-level navigation
    from another site, which must still carry the recipient's session
    and language.  Lax never sends them with another site's POST.
    """
    request.addCookie(name, value.encode("ascii"), path=path.encode("ascii"), httpOnly=True,
                      secure=secure, sameSite="lax")


def _nonce(request: Request) -> str:
    """This browser's CSRF nonce from its cookie, if it holds one of our form."""
    current = (request.getCookie(CSRF_COOKIE) or b"").decode("ascii", "replace")
    if len(current) == 43 and current.replace("-", "").replace("_", "").isalnum():
        return current
    return ""


def csrfToken(request: Request, key: bytes, purpose: str, subject: str, path: str, secure: bool) -> str:
    """
    The token of a form that does ``purpose`` to ``subject`` (a transfer
    id): the gateway's signature over both and this browser's random
    nonce, which lives in a cookie made on first use.  The cookie is
    SameSite=Lax, not Strict: a page reached from webmail does not see
    a Strict cookie, would make a new nonce and so break the form of a
    page still open in another tab; Lax gives another site's POST no
    cookie either.
    """
    nonce = _nonce(request)
    if not nonce:
        nonce = secrets.token_urlsafe(32)
        setCookie(request, CSRF_COOKIE, nonce, path, secure)
        request.received_cookies[CSRF_COOKIE] = nonce.encode("ascii")  # a second form on this page
    return formToken(key, purpose, subject, nonce)


def sameOrigin(request: Request, publicOrigin: str) -> bool:
    """
    A post's Origin, when it names one, is ours (under ``no-referrer``
    browsers send "null" even for their own origin): the first check of
    every form's token.
    """
    origin = request.getHeader(b"origin")
    return origin in (None, b"null") or origin.decode("latin-1").rstrip("/") == publicOrigin


def csrfValid(request: Request, publicOrigin: str, key: bytes, purpose: str, subject: str) -> bool:
    """
    A form post from our own page for this ``subject``: the field is our
    signature over the purpose, the subject and the cookie's nonce (a
    pair the client made up, or one signed for another transfer, is
    refused), and the post comes from our origin (``sameOrigin``).
    """
    if not sameOrigin(request, publicOrigin):
        return False
    return formTokenValid(key, purpose, subject, _nonce(request), formValue(request, "csrf", 64) or "")


def pageLanguage(request: Request, default: str, cookiePath: str = "", secure: bool = False) -> str:
    """
    The language of a page: the one picked with the switch (``?lang=``,
    then kept in a cookie on ``cookiePath`` for the rest of the flow:
    forms and redirects need no parameter), else the one the picked
    cookie remembers, else the browser's (Accept-Language, when it
    names Dutch or English), else ``default`` (the tenant's).
    """
    picked = formValue(request, "lang", 2) or ""
    if picked in LANGUAGES:
        if cookiePath and picked != (request.getCookie(LANGUAGE_COOKIE) or b"").decode("ascii", "replace"):
            setCookie(request, LANGUAGE_COOKIE, picked, cookiePath, secure)
        return picked
    remembered = (request.getCookie(LANGUAGE_COOKIE) or b"").decode("ascii", "replace")
    if remembered in LANGUAGES:
        return remembered
    return negotiate((request.getHeader(b"accept-language") or b"").decode("latin-1"), default)


def formValue(request: Request, name: str, limit: int = 320) -> Optional[str]:
    """One field of a posted form, at most ``limit`` characters, else ``None``."""
    args: dict[bytes, list[bytes]] = request.args or {}
    values = args.get(name.encode("ascii"))
    if not values:
        return None
    value = values[0].decode("utf-8", "replace")
    return value[:limit]
