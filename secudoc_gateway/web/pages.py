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

from secudoc_gateway.notices.texts import texts

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
    return _environment.get_template(template).render(lang=language, t=texts(language), **context).encode("utf-8")


def sendPage(request: Request, code: int, body: bytes) -> None:
    """Answer with a rendered page (headers only for HEAD)."""
    request.setResponseCode(code)
    request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
    request.setHeader(b"Content-Security-Policy", PAGE_CSP)
    request.setHeader(b"Content-Length", str(len(body)).encode("ascii"))
    if request.method != b"HEAD":
        request.write(body)
    request.finish()


def setCookie(request: Request, name: bytes, value: str, path: str, secure: bool) -> None:
    """HttpOnly, SameSite=Strict, on ``path`` only; Secure when the public URL is https."""
    request.addCookie(name, value.encode("ascii"), path=path.encode("ascii"), httpOnly=True,
                      secure=secure, sameSite="strict")


def csrfToken(request: Request, path: str, secure: bool) -> str:
    """
    The form token of this browser (double-submit: the same random
    value in a SameSite=Strict cookie and in the form), made on first use.
    """
    current = (request.getCookie(CSRF_COOKIE) or b"").decode("ascii", "replace")
    if len(current) == 43 and current.replace("-", "").replace("_", "").isalnum():
        return current
    token = secrets.token_urlsafe(32)
    setCookie(request, CSRF_COOKIE, token, path, secure)
    return token


def csrfValid(request: Request, publicOrigin: str) -> bool:
    """
    A form post from our own page: the field equals the cookie, and
    Origin, when it names one, is ours (under ``no-referrer`` browsers
    send "null" even for their own origin).
    """
    origin = request.getHeader(b"origin")
    if origin not in (None, b"null") and origin.decode("latin-1").rstrip("/") != publicOrigin:
        return False
    cookie = request.getCookie(CSRF_COOKIE) or b""
    field = formValue(request, "csrf") or ""
    return bool(cookie) and secrets.compare_digest(cookie, field.encode("utf-8", "replace"))


def formValue(request: Request, name: str, limit: int = 320) -> Optional[str]:
    """One field of a posted form, at most ``limit`` characters, else ``None``."""
    args: dict[bytes, list[bytes]] = request.args or {}
    values = args.get(name.encode("ascii"))
    if not values:
        return None
    value = values[0].decode("utf-8", "replace")
    return value[:limit]
