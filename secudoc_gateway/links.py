"""
The ``/t/`` links, built in one place: the recipient's page
(``<public_url>/t/<token>``), what hangs below it (a file, the ZIP, the
logo), and the sender's page (``/t/sender/<secret>``); and the portal's
(``<public_url>/portal/...``) and its SAML service provider's
(``<public_url>/saml/<tenant>/...``).  A ``public_url``
with a path (a proxy's prefix, ``https://host/secudoc``) keeps that path
in every link and in every path a page refers to.

``redact`` is the other side of the same fact: a secret follows a ``t``
path segment, so whatever names that segment is redacted, in any form a
client can spell it (``/%74/``, ``/T/``, ``//t//``, ``%2F`` for a slash,
percent signs themselves encoded), in a path that routes nowhere too
(SPEC 8: tokens never appear in logs).
"""

from __future__ import annotations

import re
import urllib.parse

PREFIX = "t"
SENDER = "sender"
LOGO = "logo"
ZIP = "all.zip"
# Names below a secret that the pages link to (``code``/``verify``: the
# verification forms, ``revoke``: the sender's button).  Only these and a
# file's number are kept after ``<redacted>``, so a log still says what
# was asked without repeating anything a client made up.
_TAILS = frozenset({LOGO, ZIP, "code", "verify", "revoke"})

REDACTED = "<redacted>"


def _base(publicURL: str) -> str:
    """The public URL's own path, without a trailing slash: ``""`` or ``"/secudoc"``."""
    return urllib.parse.urlsplit(publicURL).path.rstrip("/")


def transferPath(publicURL: str, token: str, *below: str) -> str:
    """The path of a transfer's page, or of ``below`` it (``"0"``, ``ZIP``, ``LOGO``)."""
    return "/".join((_base(publicURL), PREFIX, token, *below))


def senderPath(publicURL: str, secret: str, *below: str) -> str:
    """The path of the sender's page, or of ``below`` it (``"revoke"``)."""
    return "/".join((_base(publicURL), PREFIX, SENDER, secret, *below))


PORTAL = "portal"


def portalPath(publicURL: str, *below: str) -> str:
    """The path of the portal (``/portal``), or of a page ``below`` it (``"login"``, ``"transfers"``)."""
    return "/".join((_base(publicURL), PORTAL, *below))


def portalURL(publicURL: str, *below: str) -> str:
    """A portal link a mail carries: its login page, a one-time login link."""
    return publicURL.rstrip("/") + portalPath("", *below)


SAML = "saml"


def samlPath(publicURL: str, tenant: str, *below: str) -> str:
    """The path of a tenant's SAML service provider (``/saml/<tenant>``) or of ``below`` it (``"acs"``)."""
    return "/".join((_base(publicURL), SAML, tenant, *below))


def samlURL(publicURL: str, tenant: str, *below: str) -> str:
    """A SAML URL the IdP knows: our entity id (the metadata's URL), the ACS, the Sign-on URL."""
    return publicURL.rstrip("/") + samlPath("", tenant, *below)


def transferURL(publicURL: str, token: str) -> str:
    """The download link a protected message carries."""
    return publicURL.rstrip("/") + transferPath("", token)


def senderURL(publicURL: str, secret: str) -> str:
    """The sender's link a confirmation mail carries."""
    return publicURL.rstrip("/") + senderPath("", secret)


def _spelled(text: str) -> str:
    """
    A pattern for ``text`` (matched ignoring case) with any of its
    characters percent-encoded, once or more (``%74``, ``%54``, ``%2574``).
    """
    return "".join(
        f"(?:{re.escape(c)}|%(?:25)*(?:{'|'.join(sorted({f'{ord(c.lower()):02x}', f'{ord(c.upper()):02x}'}))}))"
        for c in text)


# One slash or more, each maybe percent-encoded (``%2f``, ``%252f``, ...).
_SLASHES = rf"(?:{_spelled('/')})+"
# The prefix segment, then everything up to the end of the path: a space,
# a quote, the query, or the end of the text; ``\xNN`` is a byte as a
# log escapes it (``\\xNN`` once more in JSON).  ``<redacted>`` itself is
# part of a path, so a line redacted twice (the access log's formatter,
# then the log's own pass) still says it once.
_SECRET_PATH = re.compile(
    rf"{_SLASHES}{_spelled(PREFIX)}{_SLASHES}"
    rf"(?P<rest>(?:{re.escape(REDACTED)}|[^\s?#\"'<>\\]|\\{{1,2}}x[0-9a-f]{{2}})*)",
    re.IGNORECASE)
_SEGMENT_SEPARATOR = re.compile(_SLASHES, re.IGNORECASE)


def _redacted(match: re.Match) -> str:
    segments = [s for s in _SEGMENT_SEPARATOR.split(match.group("rest")) if s]
    head = ""
    if len(segments) > 1 and segments[0] == SENDER:
        head, segments = f"{SENDER}/", segments[1:]
    tail = ""
    if len(segments) > 1 and (segments[-1] in _TAILS or (segments[-1].isdigit() and len(segments[-1]) < 10)):
        tail = "/" + segments[-1]
    return f"/{PREFIX}/{head}{REDACTED}{tail}"


def redact(text: str) -> str:
    """
    ``text`` with the secret of every ``/t/...`` path replaced:
    ``/t/<redacted>``, ``/t/<redacted>/0``, ``/t/sender/<redacted>``.
    """
    return _SECRET_PATH.sub(_redacted, text)
