"""
What the gateway writes to people, in Dutch and English (SPEC 6), around
the banner (``banner``): the transfer-mode template, and the messages it
makes itself (separate mode's file message, the sender's confirmation,
the welcome of a new user).

Every value that comes from a message (subject, addresses, file names)
is shown as the banner shows it: one line, no control or bidi
characters, and in HTML escaped to ASCII.

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
import os
import re
from typing import Callable, Optional, Sequence

import idna

from secudoc_gateway.fields import SECUDOC, SECUDOC_STATUS, SECUDOC_TRANSFER, SECUDOC_VERSION
from secudoc_gateway.mime.decode import encodeQuotedPrintable, newBoundary
from secudoc_gateway.mime.notice import Banner, TransferTemplate
from secudoc_gateway.display import shown
from secudoc_gateway.notices.banner import FONT, SMALL_STYLE, TEXT_COLOUR, box, button, escape, paragraph
from secudoc_gateway.notices.texts import formatMoment, humanSize, texts

# -- transfer mode ---------------------------------------------------------

_PRE_STYLE = f"margin:0;white-space:pre-wrap;word-wrap:break-word;{FONT};font-size:14px;color:{TEXT_COLOUR}"
_HEADING_STYLE = f"margin:0 0 8px 0;{FONT};font-size:14px;font-weight:bold;color:{TEXT_COLOUR}"
_LIST_STYLE = "margin:0 0 12px 0;padding-left:20px"
_DOCUMENT_HEAD = (
    "<!DOCTYPE html>\n<html>\n<head>\n"
    '<meta http-equiv="Content-Type" content="text/html; charset=utf-8">\n'
    "</head>\n<body>\n"
)
_DOCUMENT_TAIL = "</body>\n</html>\n"


def transferTemplate(banner: Banner, language: str) -> TransferTemplate:
    phrases = texts(language)
    heading = phrases["message"]
    headingHtml = f'<p style="{_HEADING_STYLE}">{escape(heading)}</p>\n'
    return TransferTemplate(
        text=banner.text + heading + "\n\n",
        # A line break right after <pre> is dropped by HTML parsers (HTML
        # 13.2.6.4.7): this one is, so the text's own first line break stays.
        htmlHead=_DOCUMENT_HEAD + banner.html + headingHtml + f'<pre style="{_PRE_STYLE}">\n',
        htmlTail="</pre>\n" + _DOCUMENT_TAIL,
        htmlInsert=banner.html + headingHtml,
        textHtmlOnly=banner.text + heading + "\n\n" + phrases["html_only"] + "\n",
        textAlone=banner.text.rstrip("\n") + "\n",
        htmlAlone=_DOCUMENT_HEAD + banner.html + _DOCUMENT_TAIL,
    )


# -- header values ---------------------------------------------------------

MAX_LINE = 78  # RFC 5322 2.1.1 "SHOULD"
_WORD_OCTETS = 36  # 48 base64 characters: an encoded-word of 60 (RFC 2047 2: at most 75)
_ATOM_PHRASE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~ -]+")
_UTEXT = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010ffff"
_DOT_ATOM = re.compile(rf"[{_UTEXT}]+(?:\.[{_UTEXT}]+)*")
_DOMAIN_JUNK = re.compile(r"[^A-Za-z0-9.\-\u0080-\U0010ffff]")
_DOMAIN_LITERAL = re.compile(r"\[[!-Z^-~]*\]")
_HOSTNAME_JUNK = re.compile(r"[^A-Za-z0-9.\-]")
_TOKEN_JUNK = re.compile(r"[^A-Za-z0-9_\-]")
_MESSAGE_ID = re.compile(r"<[!-;=?-~]{1,250}@[!-;=?-~]{1,250}>")
_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")
MAX_ADDRESS = 320  # RFC 5321 4.5.3.1: 64 + 1 + 255, with room for quoting


def _encodedWords(value: str) -> list[str]:
    """RFC 2047 B-encoded words, never splitting a character between two."""
    words: list[str] = []
    chunk = ""
    for ch in value:
        if len((chunk + ch).encode("utf-8", "surrogatepass")) > _WORD_OCTETS:
            words.append(chunk)
            chunk = ""
        chunk += ch
    if chunk:
        words.append(chunk)
    return [
        "=?utf-8?b?" + base64.b64encode(word.encode("utf-8", "surrogatepass")).decode("ascii") + "?="
        for word in words
    ]


def _fold(words: list[str], used: int) -> str:
    """Words joined by spaces, folded (RFC 5322 2.2.3) before a line passes ``MAX_LINE``."""
    out = ""
    column = used
    for number, word in enumerate(words):
        if number and column + 1 + len(word) > MAX_LINE:
            out += "\r\n " + word
            column = 1 + len(word)
        elif number:
            out += " " + word
            column += 1 + len(word)
        else:
            out = word
            column += len(word)
    return out


def headerText(value: str, used: int = 0) -> str:
    """
    Unstructured text (RFC 5322 3.2.5) for a field whose name and colon
    take ``used`` columns: cleaned to one line, kept as is when it is
    printable ASCII that no reader could take for an encoded-word, else
    RFC 2047 encoded-words in UTF-8.  Folded, never longer than a line.
    """
    value = shown(value)
    words = value.split(" ") if value else []
    if value.isascii() and "=?" not in value and all(len(word) < MAX_LINE - 12 for word in words):
        return _fold(words, used)
    return _fold(_encodedWords(value), used)


def _phrase(name: str) -> str:
    """A display name (RFC 5322 3.2.5 phrase): atoms, a quoted-string, or encoded-words."""
    name = shown(name)
    if len(name) >= 2 and name.startswith('"') and name.endswith('"'):
        name = shown(name[1:-1].replace('\\"', '"').replace("\\\\", "\\"))
    if not name:
        return ""
    if name.isascii() and "=?" not in name and len(name) < MAX_LINE - 20:
        if _ATOM_PHRASE.fullmatch(name):
            return name
        return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return _fold(_encodedWords(name), 0)


def _domain(domain: str) -> str:
    domain = domain.strip()
    if _DOMAIN_LITERAL.fullmatch(domain):
        return domain
    domain = _DOMAIN_JUNK.sub("", domain)
    domain = re.sub(r"\.{2,}", ".", domain).strip(".-")
    if not domain.isascii():
        try:
            domain = idna.encode(domain, uts46=True).decode("ascii")
        except idna.IDNAError:
            domain = re.sub(r"[^A-Za-z0-9.\-]", "", domain).strip(".-")
    return domain or "invalid"


def addrSpec(address: str) -> str:
    """
    An address (RFC 5322 3.4.1 addr-spec) fit for a header whatever it
    was: the local part quoted unless it is a dot-atom (non-ASCII kept,
    RFC 6532), the domain reduced to what a domain can hold, in its
    A-label form.  Delivery goes by the envelope; this is only shown.
    """
    value = shown(address).strip().strip("<>").strip()
    local, at, domain = value.rpartition("@")
    if not at:
        local, domain = value, ""
    local = local.strip()
    if len(local) >= 2 and local.startswith('"') and local.endswith('"'):
        local = re.sub(r"\\(.)", r"\1", local[1:-1])
    if not _DOT_ATOM.fullmatch(local) or "=?" in local:
        # "=\?" keeps a reader from decoding it as an encoded-word.
        local = '"' + local.replace("\\", "\\\\").replace('"', '\\"').replace("?", "\\?") + '"'
    return _truncated(local + "@" + _domain(domain))


def _truncated(spec: str) -> str:
    """An over-long address: shown cut, still an addr-spec."""
    if len(spec) <= MAX_ADDRESS:
        return spec
    local, _, domain = spec.rpartition("@")
    local = local.strip('"').replace("\\", "").replace("?", "")[: MAX_ADDRESS // 2]
    domain = domain[: MAX_ADDRESS // 2 - 8].strip(".-")
    if not domain or (domain.startswith("[") and not domain.endswith("]")):
        domain = "invalid"
    return '"' + local.replace('"', "") + '"@' + domain


def mailbox(value: str) -> str:
    """
    ``Name <address>`` or a bare address, as a header mailbox (RFC 5322
    3.4): the name cleaned and made a phrase, the address an addr-spec.
    """
    value = shown(value)
    name, bracket, rest = value.rpartition("<")
    if bracket:
        address = rest.split(">", 1)[0]
    else:
        name, address = "", value
    phrase = _phrase(name)
    spec = addrSpec(address)
    return f"{phrase}\r\n <{spec}>" if phrase.startswith("=?") else f"{phrase} <{spec}>" if phrase else spec


def _addressList(addresses: Sequence[str]) -> str:
    specs = [addrSpec(address) for address in addresses]
    if not specs:
        return "undisclosed-recipients:;"
    return ",\r\n ".join(specs)


# -- whole messages ----------------------------------------------------------

KIND_SEPARATE = "separate"
KIND_CONFIRMATION = "confirmation"
KIND_WELCOME = "welcome"


def _hostname(hostname: str) -> str:
    return _HOSTNAME_JUNK.sub("", hostname).strip(".-") or "localhost"


def _date(date: Optional[float]) -> str:
    when = datetime.datetime.now(datetime.timezone.utc) if date is None else \
        datetime.datetime.fromtimestamp(date, datetime.timezone.utc)
    return email.utils.format_datetime(when)


def _field(name: str, value: str) -> str:
    """One field; a last guard that nothing but folding breaks its line."""
    if _UNSAFE.search(value.replace("\r\n ", " ")):
        raise ValueError(f"unsafe value for {name}")
    return f"{name}: {value}\r\n"


def _listHtml(items: Sequence[str]) -> str:
    return f'<ul style="{_LIST_STYLE}">' + "".join(f"<li>{escape(item)}</li>" for item in items) + "</ul>"


def boxDocument(lines: list[str]) -> str:
    """A whole HTML body: ``lines`` in the banner's frame."""
    return _DOCUMENT_HEAD + box(lines) + _DOCUMENT_TAIL


def generatedMessage(
    hostname: str,
    kind: str,
    sender: str,
    to: str,
    subject: str,
    text: str,
    htmlText: str,
    date: Optional[float],
    extra: Sequence[tuple[str, str]] = (),
    randomBytes: Callable[[int], bytes] = os.urandom,
) -> bytes:
    """
    A complete RFC 5322 message: multipart/alternative (RFC 2046 5.1.4),
    plain text first, both bodies UTF-8 quoted-printable, CRLF lines.
    ``date`` is Unix time (None: now); the boundary and the Message-ID
    are drawn from ``randomBytes``.
    """
    boundary = newBoundary(randomBytes)
    fields = [
        ("From", sender),
        ("To", to),
        ("Subject", headerText(subject, len("Subject: "))),
        ("Date", _date(date)),
        ("Message-ID", f"<{randomBytes(16).hex()}@{_hostname(hostname)}>"),
        ("MIME-Version", "1.0"),
        (SECUDOC, SECUDOC_VERSION),
        (SECUDOC_STATUS, f"generated; kind={kind}"),
        *extra,
        ("Content-Type", f'multipart/alternative; boundary="{boundary}"'),
    ]
    head = "".join(_field(name, value) for name, value in fields)
    delimiter = f"--{boundary}\r\n"

    def part(subtype: str, body: str) -> str:
        encoded = encodeQuotedPrintable(body.encode("utf-8", "surrogatepass")).decode("ascii")
        return (
            delimiter
            + f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
            + "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
            + encoded
            + "\r\n"
        )

    body = part("plain", text) + part("html", htmlText) + f"--{boundary}--\r\n"
    # Header values are ASCII but for an RFC 6532 address; bodies are ASCII.
    return (head + "\r\n" + body).encode("utf-8", "surrogateescape")


def transferFields(transferId: Optional[str]) -> list[tuple[str, str]]:
    """The X-SecuDoc-Transfer field of a message about a transfer, if it has an id."""
    cleaned = _TOKEN_JUNK.sub("", transferId or "")
    return [(SECUDOC_TRANSFER, cleaned)] if cleaned else []


def separateMessage(
    hostname: str,
    sender: str,
    recipients: Sequence[str],
    subject: str,
    banner: Banner,
    language: str,
    date: Optional[float] = None,
    transferId: Optional[str] = None,
    references: Optional[str] = None,
    randomBytes: Callable[[int], bytes] = os.urandom,
) -> bytes:
    """
    ``content_mode = "separate"`` (SPEC 6): the banner as a message of
    its own, from the sender to the same recipients, its subject the
    original's with the file notice in front.  ``references``, the
    original's Message-ID, lets readers thread the two (RFC 5322 3.6.4).
    Not Auto-Submitted: it is the sender's own message, in two pieces.
    """
    phrases = texts(language)
    line = shown(subject)
    newSubject = phrases["separate_subject"].format(subject=line) if line else phrases["separate_subject_none"]
    text = banner.text
    htmlLines = [banner.html.rstrip("\n")]
    if line:
        reference = phrases["separate_reference"].format(subject=line)
        text += reference + "\n"
        htmlLines.append(paragraph(escape(reference), SMALL_STYLE))
    extra = transferFields(transferId)
    if references and _MESSAGE_ID.fullmatch(references.strip()):
        extra += [("In-Reply-To", references.strip()), ("References", references.strip())]
    htmlText = _DOCUMENT_HEAD + "\n".join(htmlLines) + "\n" + _DOCUMENT_TAIL
    return generatedMessage(
        hostname, KIND_SEPARATE, mailbox(sender), _addressList(recipients), newSubject, text, htmlText, date, extra,
        randomBytes,
    )


def confirmationMail(
    hostname: str,
    facilitySender: str,
    sender: str,
    recipients: Sequence[str],
    files: Sequence[tuple[str, int]],
    expires: float,
    subject: str,
    language: str,
    date: Optional[float] = None,
    transferId: Optional[str] = None,
    senderLink: Optional[str] = None,
    randomBytes: Callable[[int], bytes] = os.urandom,
) -> bytes:
    """
    ``confirmation_mail = true`` (SPEC 6): the sender learns that the
    message went out protected, to whom, with which files, until when
    (``expires``, Unix time).  The download link is deliberately absent:
    it is the recipients' secret (the token is the file key, SPEC 7),
    the sender does not need it, and a confirmation is more often
    forwarded or auto-filed than a message.  ``senderLink``, the
    sender's own secret link (downloads, revocation), is shown when
    given.  Auto-Submitted (RFC 3834 5) keeps out-of-office replies
    from it.
    """
    phrases = texts(language)
    line = shown(subject)
    newSubject = (
        phrases["confirmation_subject"].format(subject=line) if line else phrases["confirmation_subject_none"]
    )
    intro = phrases["confirmation_intro"].format(subject=line) if line else phrases["confirmation_intro_none"]
    shownRecipients = [shown(r) for r in recipients]
    shownFiles = [f"{shown(name)} ({humanSize(size, language)})" for name, size in files]
    expiryLine = phrases["sender_expires"].format(moment=formatMoment(expires, language))
    recipientsHeading, filesHeading = phrases["recipients"] + ":", phrases["files"] + ":"
    textLines = [intro, "", recipientsHeading]
    textLines += [f"- {r}" for r in shownRecipients]
    textLines += ["", filesHeading]
    textLines += [f"- {f}" for f in shownFiles]
    textLines += ["", expiryLine, phrases["confirmation_no_link"]]
    htmlLines = [
        paragraph(escape(intro)),
        paragraph(escape(recipientsHeading), "margin:0 0 4px 0;font-weight:bold"),
        _listHtml(shownRecipients),
        paragraph(escape(filesHeading), "margin:0 0 4px 0;font-weight:bold"),
        _listHtml(shownFiles),
        paragraph(escape(expiryLine)),
    ]
    if senderLink:
        textLines += ["", phrases["sender_link"], senderLink]
        htmlLines += [paragraph(escape(phrases["sender_link"])), *button(senderLink, phrases["sender_button"])]
    htmlLines.append(paragraph(escape(phrases["confirmation_no_link"]), SMALL_STYLE))
    text = "\n".join(line.rstrip() for line in textLines) + "\n"
    extra = [("Auto-Submitted", "auto-generated")] + transferFields(transferId)
    return generatedMessage(
        hostname, KIND_CONFIRMATION, mailbox(facilitySender), addrSpec(sender), newSubject, text,
        boxDocument(htmlLines), date, extra, randomBytes,
    )


def welcomeMail(hostname: str, facilitySender: str, user: str, language: str, date: Optional[float] = None,
                randomBytes: Callable[[int], bytes] = os.urandom, portalLink: str = "") -> bytes:
    """
    ``auto_create_users = "welcome"`` (SPEC 5 rule 7): a new user
    learns what will happen to the attachments they send outside, and
    (``portalLink``, the portal's login page, when it is on) where to
    see their transfers (SPEC 9).
    """
    phrases = texts(language)
    greeting = phrases["welcome_greeting"].format(user=shown(user))
    paragraphs = [greeting, phrases["welcome_1"], phrases["welcome_2"]]
    htmlLines = [paragraph(escape(line)) for line in paragraphs]
    if portalLink:
        paragraphs.append(phrases["welcome_portal"] + "\n" + portalLink)
        htmlLines += [paragraph(escape(phrases["welcome_portal"])), *button(portalLink, phrases["portal"])]
    text = "\n\n".join(paragraphs) + "\n"
    return generatedMessage(
        hostname, KIND_WELCOME, mailbox(facilitySender), addrSpec(user), phrases["welcome_subject"], text,
        boxDocument(htmlLines), date, [("Auto-Submitted", "auto-generated")], randomBytes,
    )
