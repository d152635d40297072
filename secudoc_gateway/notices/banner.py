"""
The banner (SPEC 6): what a recipient sees first in a protected message,
in Dutch and English, as text and as HTML, and the HTML building blocks
the gateway's own messages share with it.

A careful recipient decides in a glance whether a message with a link
instead of attachments is phishing.  So the banner says who sent it
(display name and address), for which organisation, why the files come
as a link, what the files are, until when the link works (date and
time in Amsterdam, the zone named: ``texts.formatMoment``), the
tenant's disclaimer and whom to ask.

Every value that comes from a message (sender, file names) or from the
tenant (organisation, disclaimer, help contact) is shown with control
and bidi characters removed, on one line (``display.shown``).  The HTML is pure
ASCII -- values escaped, non-ASCII as numeric character references --
with no markup inside a word: it goes into a body that is, or is made,
quoted-printable or base64, so no line of it needs breaking.  Its
layout is tables with inline styles and fixed colours: the HTML engine
of Outlook on Windows (Word's) ignores style sheets, ``max-width`` and
padding on links, Gmail drops ``<style>``; a table of ``width="100%"``
with a ``max-width`` fits a phone in Gmail and Apple Mail as well.
"""

from __future__ import annotations

import html
import re
from typing import Sequence

from secudoc_gateway.display import shown
from secudoc_gateway.mime.notice import Banner
from secudoc_gateway.notices.texts import formatMoment, humanSize, texts

SEPARATOR = "_" * 40

FONT = "font-family:Arial,Helvetica,sans-serif"
TEXT_COLOUR = "#1f2933"
LINK_COLOUR = "#0b5cad"
BOX_STYLE = (
    f"padding:16px 20px;border:1px solid #c5d0dc;background-color:#f4f7fa;{FONT};"
    f"font-size:14px;line-height:20px;color:{TEXT_COLOUR}"
)
P_STYLE = "margin:0 0 12px 0"
SMALL_STYLE = "margin:0 0 8px 0;font-size:12px;line-height:17px;color:#52606d"
LINK_STYLE = f"color:{LINK_COLOUR};text-decoration:underline"
_BREAK = "word-wrap:break-word;overflow-wrap:anywhere"  # long names and links wrap on a phone
_CELL_STYLE = (
    f"padding:3px 0;border-bottom:1px solid #dde3ea;{FONT};font-size:14px;line-height:20px;"
    f"color:{TEXT_COLOUR};{_BREAK}"
)
_SIZE_STYLE = _CELL_STYLE + ";padding-left:16px;white-space:nowrap;color:#52606d"
_BUTTON_CELL = f"padding:10px 22px;background-color:{LINK_COLOUR};border-radius:4px"
_BUTTON_LINK = f"{FONT};font-size:15px;font-weight:bold;line-height:20px;color:#ffffff;text-decoration:none"
_EMAIL = re.compile(r"[^\s@<>\"]+@[^\s@<>\"]+\.[^\s@<>\"]+")
_WEB = re.compile(r"https?://[^\s<>\"]+", re.IGNORECASE)


def escape(value: str) -> str:
    """HTML-escaped, ASCII only (HTML 13.1.4 numeric character references)."""
    return html.escape(value, quote=True).encode("ascii", "xmlcharrefreplace").decode("ascii")


def paragraph(escaped: str, style: str = P_STYLE) -> str:
    return f'<p style="{style}">{escaped}</p>'


def link(url: str, escapedText: str) -> str:
    return f'<a href="{escape(url)}" target="_blank" style="{LINK_STYLE}">{escapedText}</a>'


def button(url: str, label: str) -> list[str]:
    """
    A link that looks like a button everywhere: the colour sits on a
    table cell, which Outlook's Word engine paints (it ignores padding
    and background on a link).
    """
    return [
        '<table role="presentation" cellpadding="0" cellspacing="0" border="0" style="margin:0 0 12px 0">',
        f'<tr><td bgcolor="{LINK_COLOUR}" style="{_BUTTON_CELL}">'
        f'<a href="{escape(url)}" target="_blank" style="{_BUTTON_LINK}">{escape(label)}</a></td></tr>',
        "</table>",
    ]


def box(lines: Sequence[str]) -> str:
    """Content in the banner's frame: one cell of a full-width table."""
    return "\n".join([
        '<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0"'
        ' style="width:100%;max-width:640px;border-collapse:collapse;margin:0 0 16px 0">',
        f'<tr><td style="{BOX_STYLE}">',
        *lines,
        "</td></tr>",
        "</table>",
    ]) + "\n"


def fileTable(files: Sequence[tuple[str, str]]) -> list[str]:
    """Names and sizes, one row each, the size in a column of its own."""
    rows = [
        f'<tr><td style="{_CELL_STYLE}">{escape(name)}</td>'
        f'<td align="right" style="{_SIZE_STYLE}">{escape(size)}</td></tr>'
        for name, size in files
    ]
    return [
        '<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0"'
        ' style="border-collapse:collapse;margin:0 0 14px 0">',
        *rows,
        "</table>",
    ]


def contactHtml(contact: str) -> str:
    """A help contact, linked when it is an address or a web address."""
    if _WEB.fullmatch(contact):
        return link(contact, escape(contact))
    if _EMAIL.fullmatch(contact):
        return link("mailto:" + contact, escape(contact))
    return escape(contact)


def disclaimerLines(disclaimer: str) -> list[str]:
    lines = [shown(line) for line in disclaimer.replace("\r\n", "\n").split("\n")]
    return [line for line in lines if line]


def bannerFor(
    language: str,
    sender: str,
    files: Sequence[tuple[str, int]],
    url: str,
    expires: float,
    disclaimer: str = "",
    *,
    senderName: str = "",
    organisation: str = "",
    helpContact: str = "",
    withheld: Sequence[str] = (),
) -> Banner:
    """
    The banner of one transfer: who (``senderName`` and the address
    ``sender``, for ``organisation``) sent what, why as a link, where
    (``url``), until when (``expires``, Unix time), and whom to ask;
    the files ``withheld`` because malware was found in them (SPEC 10).
    """
    phrases = texts(language)
    name, address = shown(senderName), shown(sender)
    organisation, contact = shown(organisation), shown(helpContact)
    listed = [(shown(file), humanSize(size, language)) for file, size in files]
    key = ("intro_one" if len(listed) == 1 else "intro_many") + ("_org" if organisation else "")
    expiry = phrases["expires"].format(moment=formatMoment(expires, language))
    notes = disclaimerLines(disclaimer)
    helpText = phrases["help"].format(contact=contact) if contact else ""
    stripped = [phrases["withheld"].format(name=shown(file)) for file in withheld]

    senderText = f"{name} <{address}>" if name and address else name or address
    textLines = [
        phrases[key].format(sender=senderText, organisation=organisation, count=len(listed)),
        phrases["why_text"],
        "",
        *(f"- {file} ({size})" for file, size in listed),
        "",
        *stripped,
        *([""] if stripped else []),
        f"{phrases['button']}: {url}",
        expiry,
    ]
    if notes or helpText:
        textLines += ["", *notes] + ([helpText] if helpText else [])
    textLines += [SEPARATOR, ""]
    text = "\n".join(line.rstrip() for line in textLines) + "\n"

    if name and address:
        senderHtml = f"<strong>{escape(name)}</strong> ({escape(address)})"
    else:
        senderHtml = f"<strong>{escape(name or address)}</strong>"
    intro = escape(phrases[key]).format(
        sender=senderHtml, organisation=f"<strong>{escape(organisation)}</strong>", count=len(listed))
    htmlLines = [
        paragraph(intro, "margin:0 0 8px 0;font-size:15px;line-height:21px"),
        paragraph(escape(phrases["why_html"])),
        *fileTable(listed),
        *(paragraph(escape(line), "margin:0 0 12px 0;font-weight:bold") for line in stripped),
        *button(url, phrases["button"]),
        paragraph(escape(expiry), "margin:0 0 8px 0;font-weight:bold"),
        paragraph(f"{escape(phrases['fallback'])} {link(url, escape(url))}", f"{SMALL_STYLE};{_BREAK}"),
    ]
    if notes:
        htmlLines.append(paragraph("<br>".join(escape(line) for line in notes), SMALL_STYLE))
    if contact:
        htmlLines.append(paragraph(escape(phrases["help"]).format(contact=contactHtml(contact)), SMALL_STYLE))
    return Banner(text=text, html=box(htmlLines))
