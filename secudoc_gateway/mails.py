"""
What the gateway writes to people, in Dutch and English (SPEC 6): the
download banner, the transfer-mode template, and the messages it makes
itself (separate mode's file message, the sender's confirmation, the
welcome of a new user).

Every value that comes from a message (sender, file names) or from the
tenant (disclaimer) is shown with control and bidi characters removed
(``names.cleanName``).  The HTML form is pure ASCII -- values escaped,
non-ASCII as numeric character references -- and its lines are short,
so it can be put into an HTML body in any ASCII-compatible charset and
any transfer encoding without breaking either (RFC 5322 2.1.1 line
limit included).

A message the gateway makes is built here, whole, as bytes: its header
fields from cleaned values only (RFC 2047 encoded-words for any text
that is not plain printable ASCII, addresses re-quoted), its bodies
quoted-printable under a boundary that quoted-printable cannot contain
(RFC 2045 6.7: ``=_`` is never in its output).  No value from a message
can end a field, start one, or close a MIME part.
"""

from __future__ import annotations

import base64
import datetime
import email.utils
import html
import re
import secrets
from typing import Optional, Sequence

import attrs
import idna

from secudoc_gateway.mime.decode import encodeQuotedPrintable
from secudoc_gateway.mime.names import cleanName
from secudoc_gateway.policy import SECUDOC, SECUDOC_STATUS, SECUDOC_TRANSFER, SECUDOC_VERSION

LANGUAGES = ("nl", "en")
MAX_HTML_LINE = 76

_MONTHS = {
    "nl": (
        "januari", "februari", "maart", "april", "mei", "juni",
        "juli", "augustus", "september", "oktober", "november", "december",
    ),
    "en": (
        "January", "February", "March", "April", "May", "June",
        "July", "August", "September", "October", "November", "December",
    ),
}

_TEXTS = {
    "nl": {
        "intro_one": "{sender} heeft u een bestand gestuurd via een beveiligde downloadlink:",
        "intro_many": "{sender} heeft u {count} bestanden gestuurd via een beveiligde downloadlink:",
        "download": "Download",
        "expiry": "Beschikbaar tot {date}.",
        "bytes": "bytes",
        "decimal": ",",
        "message": "Bericht:",
        "html_only": "(De tekst van het bericht staat in de HTML-weergave.)",
        "separate_subject": "Bestanden bij: {subject}",
        "separate_subject_none": "Bestanden",
        "separate_reference": "Deze bestanden horen bij het bericht \"{subject}\".",
        "confirmation_subject": "Bevestiging: bijlagen beveiligd verstuurd: {subject}",
        "confirmation_subject_none": "Bevestiging: bijlagen beveiligd verstuurd",
        "confirmation_intro": "Uw bericht \"{subject}\" is verstuurd. De bijlagen zijn vervangen door een beveiligde downloadlink.",
        "confirmation_intro_none": "Uw bericht is verstuurd. De bijlagen zijn vervangen door een beveiligde downloadlink.",
        "recipients": "Ontvangers:",
        "files": "Bestanden:",
        "confirmation_expiry": "De ontvangers kunnen de bestanden downloaden tot {date}.",
        "confirmation_no_link": "De downloadlink zelf staat niet in deze bevestiging: alleen de ontvangers krijgen hem.",
        "welcome_subject": "Welkom bij SecuDoc",
        "welcome_greeting": "Beste {user},",
        "welcome_1": "U bent toegevoegd als gebruiker van SecuDoc. Bijlagen die u naar ontvangers buiten uw organisatie stuurt, worden voortaan vervangen door een beveiligde downloadlink.",
        "welcome_2": "De ontvangers downloaden de bestanden via die link; u hoeft daarvoor niets te doen. Bijlagen aan collega's binnen uw organisatie blijven gewoon in het bericht.",
    },
    "en": {
        "intro_one": "{sender} sent you a file through a secure download link:",
        "intro_many": "{sender} sent you {count} files through a secure download link:",
        "download": "Download",
        "expiry": "Available until {date}.",
        "bytes": "bytes",
        "decimal": ".",
        "message": "Message:",
        "html_only": "(The text of the message is in its HTML version.)",
        "separate_subject": "Files for: {subject}",
        "separate_subject_none": "Files",
        "separate_reference": "These files belong to the message \"{subject}\".",
        "confirmation_subject": "Confirmation: attachments sent securely: {subject}",
        "confirmation_subject_none": "Confirmation: attachments sent securely",
        "confirmation_intro": "Your message \"{subject}\" was sent. Its attachments were replaced by a secure download link.",
        "confirmation_intro_none": "Your message was sent. Its attachments were replaced by a secure download link.",
        "recipients": "Recipients:",
        "files": "Files:",
        "confirmation_expiry": "The recipients can download the files until {date}.",
        "confirmation_no_link": "The download link itself is not in this confirmation: only the recipients get it.",
        "welcome_subject": "Welcome to SecuDoc",
        "welcome_greeting": "Dear {user},",
        "welcome_1": "You were added as a SecuDoc user. From now on, attachments you send to recipients outside your organisation are replaced by a secure download link.",
        "welcome_2": "The recipients download the files through that link; you need not do anything for it. Attachments to colleagues inside your organisation stay in the message as before.",
    },
}

_SEPARATOR = "_" * 40

_BOX_STYLE = (
    "margin:0 0 16px 0;padding:12px 16px;border:1px solid #c5d0dc;"
    "background-color:#f4f7fa;font-family:Arial,Helvetica,sans-serif;"
    "font-size:14px;line-height:1.4;color:#1f2933"
)
_P_STYLE = "margin:0 0 8px 0"
_LIST_STYLE = "margin:0 0 8px 0;padding-left:20px"
_LINK_STYLE = "color:#0b5cad;font-weight:bold"
_SMALL_STYLE = "margin:0 0 8px 0;font-size:12px;color:#52606d"


@attrs.frozen
class Banner:
    """``text`` goes on top of a text/plain body, ``html`` after ``<body>``."""

    text: str
    html: str


def _texts(language: str) -> dict[str, str]:
    return _TEXTS[language if language in _TEXTS else "en"]


def humanSize(size: int, language: str = "nl") -> str:
    """
    A size as Outlook and Explorer show it (units of 1024, "KB"), in the
    language's decimal separator: "1,2 MB", "340 KB", "512 bytes".
    """
    texts = _texts(language)
    if size < 1024:
        return f"{size} {texts['bytes']}"
    if size < 1024 * 1024:
        return f"{-(-size // 1024)} KB"
    for unit, scale in (("MB", 1024**2), ("GB", 1024**3), ("TB", 1024**4)):
        if size < 1024 * scale or unit == "TB":
            return f"{size / scale:.1f}".replace(".", texts["decimal"]) + f" {unit}"
    raise AssertionError("unreachable")


def formatDate(day: datetime.date, language: str = "nl") -> str:
    """'14 maart 2025' / '14 March 2025': unambiguous in either country."""
    months = _MONTHS[language if language in _MONTHS else "en"]
    return f"{day.day} {months[day.month - 1]} {day.year}"


def _oneLine(value: str) -> str:
    return " ".join(cleanName(value.replace("\r", " ").replace("\n", " ").replace("\t", " ")).split())


def _escape(value: str) -> str:
    """HTML-escaped, ASCII only (HTML 13.1.4 numeric character references)."""
    return html.escape(value, quote=True).encode("ascii", "xmlcharrefreplace").decode("ascii")


def _wrapText(escaped: str) -> list[str]:
    """
    An escaped text run as lines of at most ``MAX_HTML_LINE``, broken
    where it renders as nothing: inside an empty comment, never within
    a character reference.
    """
    pieces = []
    start = 0
    while len(escaped) - start > MAX_HTML_LINE:
        cut = start + MAX_HTML_LINE - 4
        amp = escaped.rfind("&", start, cut)
        if amp > start and escaped.find(";", amp, cut) < 0:
            cut = amp
        pieces.append(escaped[start:cut] + "<!--")
        start = cut
    pieces.append(escaped[start:])
    return [pieces[0]] + ["-->" + piece for piece in pieces[1:]]


def bannerFor(
    language: str,
    sender: str,
    files: Sequence[tuple[str, int]],
    link: str,
    expiry: datetime.date,
    disclaimer: str = "",
) -> Banner:
    """The banner of one transfer: who sent what, where, until when."""
    texts = _texts(language)
    senderText = _oneLine(sender)
    names = [(_oneLine(name), humanSize(size, language)) for name, size in files]
    introKey = "intro_one" if len(names) == 1 else "intro_many"
    dateText = formatDate(expiry, language)
    intro = texts[introKey]
    disclaimerLines = [
        " ".join(cleanName(line).split()) for line in disclaimer.replace("\r\n", "\n").split("\n")
    ]
    disclaimerLines = [line for line in disclaimerLines if line]

    textLines = [intro.format(sender=senderText, count=len(names)), ""]
    textLines += [f"- {name} ({size})" for name, size in names]
    textLines += ["", f"{texts['download']}: {link}", texts["expiry"].format(date=dateText)]
    if disclaimerLines:
        textLines += [""] + disclaimerLines
    textLines += [_SEPARATOR, ""]
    text = "\n".join(line.rstrip() for line in textLines) + "\n"

    # Tags on lines of their own, text runs wrapped: no line grows with a name.
    htmlLines = [f'<div style="{_BOX_STYLE}">', f'<p style="{_P_STYLE}">']
    htmlLines += _wrapText(intro.format(sender=_escape(senderText), count=len(names)))
    htmlLines += ["</p>", f'<ul style="{_LIST_STYLE}">']
    for name, size in names:
        htmlLines += ["<li>", *_wrapText(f"{_escape(name)} ({_escape(size)})"), "</li>"]
    htmlLines += [
        "</ul>",
        f'<p style="{_P_STYLE}"><a href="{_escape(link)}" style="{_LINK_STYLE}">'
        f"{_escape(texts['download'])}</a></p>",
        f'<p style="{_SMALL_STYLE}">{_escape(texts["expiry"].format(date=dateText))}</p>',
    ]
    if disclaimerLines:
        htmlLines.append(f'<p style="{_SMALL_STYLE}">')
        for number, line in enumerate(disclaimerLines):
            htmlLines += (["<br>"] if number else []) + _wrapText(_escape(line))
        htmlLines.append("</p>")
    htmlLines.append("</div>")
    return Banner(text=text, html="\n".join(htmlLines) + "\n")
