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
        "separate_reference": "Dit hoort bij het bericht \"{subject}\".",
        "confirmation_subject": "Bevestiging: bijlagen beveiligd verstuurd: {subject}",
        "confirmation_subject_none": "Bevestiging: bijlagen beveiligd verstuurd",
        "confirmation_intro": "Uw bericht \"{subject}\" is verstuurd. De bijlagen zijn vervangen door een beveiligde downloadlink.",
        "confirmation_intro_none": "Uw bericht is verstuurd. De bijlagen zijn vervangen door een beveiligde downloadlink.",
        "recipients": "Ontvangers:",
        "files": "Bestanden:",
        "confirmation_expiry": "De ontvangers kunnen de bestanden downloaden tot {date}.",
        "confirmation_no_link": "De downloadlink zelf staat niet in deze bevestiging: alleen de ontvangers krijgen hem.",
        "confirmation_sender_link": "Op deze pagina ziet u wanneer de bestanden zijn gedownload, en kunt u de verzending intrekken:",
        "confirmation_sender_button": "Downloads bekijken of intrekken",
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
        "separate_reference": "This belongs to the message \"{subject}\".",
        "confirmation_subject": "Confirmation: attachments sent securely: {subject}",
        "confirmation_subject_none": "Confirmation: attachments sent securely",
        "confirmation_intro": "Your message \"{subject}\" was sent. Its attachments were replaced by a secure download link.",
        "confirmation_intro_none": "Your message was sent. Its attachments were replaced by a secure download link.",
        "recipients": "Recipients:",
        "files": "Files:",
        "confirmation_expiry": "The recipients can download the files until {date}.",
        "confirmation_no_link": "The download link itself is not in this confirmation: only the recipients get it.",
        "confirmation_sender_link": "On this page you see when the files were downloaded, and you can withdraw the transfer:",
        "confirmation_sender_button": "See downloads or withdraw",
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


# -- transfer mode ---------------------------------------------------------

_PRE_STYLE = (
    "margin:0;white-space:pre-wrap;word-wrap:break-word;"
    "font-family:Arial,Helvetica,sans-serif;font-size:14px;color:#1f2933"
)
_HEADING_STYLE = "margin:0 0 8px 0;font-family:Arial,Helvetica,sans-serif;font-size:14px;font-weight:bold"
_DOCUMENT_HEAD = (
    "<!DOCTYPE html>\n<html>\n<head>\n"
    '<meta http-equiv="Content-Type" content="text/html; charset=utf-8">\n'
    "</head>\n<body>\n"
)
_DOCUMENT_TAIL = "</body>\n</html>\n"


@attrs.frozen
class TransferTemplate:
    """
    The body of ``content_mode = "transfer"`` (SPEC 6) around the
    original text, which the rewriter streams in between: ``text``
    then the decoded text; ``htmlHead``, the text HTML-escaped,
    ``htmlTail``.  A message whose only text body is HTML gets
    ``htmlInsert`` after that body's ``<body>`` tag and ``textHtmlOnly``
    as its plain side; one without any text body ``textAlone`` and
    ``htmlAlone``.  All HTML here is ASCII.
    """

    text: str
    htmlHead: str
    htmlTail: str
    htmlInsert: str
    textHtmlOnly: str
    textAlone: str
    htmlAlone: str


def transferTemplate(banner: Banner, language: str) -> TransferTemplate:
    texts = _texts(language)
    heading = texts["message"]
    headingHtml = f'<p style="{_HEADING_STYLE}">{_escape(heading)}</p>\n'
    return TransferTemplate(
        text=banner.text + heading + "\n\n",
        # A line break right after <pre> is dropped by HTML parsers (HTML
        # 13.2.6.4.7): this one is, so the text's own first line break stays.
        htmlHead=_DOCUMENT_HEAD + banner.html + headingHtml + f'<pre style="{_PRE_STYLE}">\n',
        htmlTail="</pre>\n" + _DOCUMENT_TAIL,
        htmlInsert=banner.html + headingHtml,
        textHtmlOnly=banner.text + heading + "\n\n" + texts["html_only"] + "\n",
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
    value = _oneLine(value)
    words = value.split(" ") if value else []
    if value.isascii() and "=?" not in value and all(len(word) < MAX_LINE - 12 for word in words):
        return _fold(words, used)
    return _fold(_encodedWords(value), used)


def _phrase(name: str) -> str:
    """A display name (RFC 5322 3.2.5 phrase): atoms, a quoted-string, or encoded-words."""
    name = _oneLine(name)
    if len(name) >= 2 and name.startswith('"') and name.endswith('"'):
        name = _oneLine(name[1:-1].replace('\\"', '"').replace("\\\\", "\\"))
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
    value = _oneLine(address).strip().strip("<>").strip()
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
    value = _oneLine(value)
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


def _boundary() -> str:
    """``=_`` cannot occur in quoted-printable (RFC 2045 6.7) or base64."""
    return "=_secudoc_" + secrets.token_hex(16)


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


def _paragraphHtml(text: str, style: str = _P_STYLE) -> list[str]:
    return [f'<p style="{style}">', *_wrapText(_escape(text)), "</p>"]


def _listHtml(items: Sequence[str]) -> list[str]:
    lines = [f'<ul style="{_LIST_STYLE}">']
    for item in items:
        lines += ["<li>", *_wrapText(_escape(item)), "</li>"]
    return lines + ["</ul>"]


def _boxHtml(lines: list[str]) -> str:
    return _DOCUMENT_HEAD + "\n".join([f'<div style="{_BOX_STYLE}">', *lines, "</div>"]) + "\n" + _DOCUMENT_TAIL


def _message(
    hostname: str,
    kind: str,
    sender: str,
    to: str,
    subject: str,
    text: str,
    htmlText: str,
    date: Optional[float],
    extra: Sequence[tuple[str, str]] = (),
) -> bytes:
    """
    A complete RFC 5322 message: multipart/alternative (RFC 2046 5.1.4),
    plain text first, both bodies UTF-8 quoted-printable, CRLF lines.
    """
    boundary = _boundary()
    fields = [
        ("From", sender),
        ("To", to),
        ("Subject", headerText(subject, len("Subject: "))),
        ("Date", _date(date)),
        ("Message-ID", f"<{secrets.token_hex(16)}@{_hostname(hostname)}>"),
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


def _transferField(transferId: Optional[str]) -> list[tuple[str, str]]:
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
) -> bytes:
    """
    ``content_mode = "separate"`` (SPEC 6): the banner as a message of
    its own, from the sender to the same recipients, its subject the
    original's with the file notice in front.  ``references``, the
    original's Message-ID, lets readers thread the two (RFC 5322 3.6.4).
    Not Auto-Submitted: it is the sender's own message, in two pieces.
    """
    texts = _texts(language)
    shown = _oneLine(subject)
    newSubject = texts["separate_subject"].format(subject=shown) if shown else texts["separate_subject_none"]
    text = banner.text
    htmlLines = [banner.html.rstrip("\n")]
    if shown:
        reference = texts["separate_reference"].format(subject=shown)
        text += reference + "\n"
        htmlLines += _paragraphHtml(reference, _SMALL_STYLE)
    extra = _transferField(transferId)
    if references and _MESSAGE_ID.fullmatch(references.strip()):
        extra += [("In-Reply-To", references.strip()), ("References", references.strip())]
    htmlText = _DOCUMENT_HEAD + "\n".join(htmlLines) + "\n" + _DOCUMENT_TAIL
    return _message(
        hostname, KIND_SEPARATE, mailbox(sender), _addressList(recipients), newSubject, text, htmlText, date, extra,
    )


def confirmationMail(
    hostname: str,
    facilitySender: str,
    sender: str,
    recipients: Sequence[str],
    files: Sequence[tuple[str, int]],
    expiry: datetime.date,
    subject: str,
    language: str,
    date: Optional[float] = None,
    transferId: Optional[str] = None,
    senderLink: str = "",
) -> bytes:
    """
    ``confirmation_mail = true`` (SPEC 6): the sender learns that the
    message went out protected, to whom, with which files, until when.
    The download link is deliberately absent: it is the recipients'
    secret (the token is the file key, SPEC 7), the sender does not need
    it, and a confirmation is more often forwarded or auto-filed than a
    message.  ``senderLink``, a second secret that opens no file, leads
    to the downloads and the button that withdraws the transfer.
    Auto-Submitted (RFC 3834 5) keeps out-of-office replies from it.
    """
    texts = _texts(language)
    shown = _oneLine(subject)
    newSubject = texts["confirmation_subject"].format(subject=shown) if shown else texts["confirmation_subject_none"]
    intro = texts["confirmation_intro"].format(subject=shown) if shown else texts["confirmation_intro_none"]
    shownRecipients = [_oneLine(r) for r in recipients]
    shownFiles = [f"{_oneLine(name)} ({humanSize(size, language)})" for name, size in files]
    expiryLine = texts["confirmation_expiry"].format(date=formatDate(expiry, language))
    textLines = [intro, "", texts["recipients"]]
    textLines += [f"- {r}" for r in shownRecipients]
    textLines += ["", texts["files"]]
    textLines += [f"- {f}" for f in shownFiles]
    textLines += ["", expiryLine]
    if senderLink:
        textLines += ["", texts["confirmation_sender_link"], senderLink, ""]
    textLines += [texts["confirmation_no_link"]]
    text = "\n".join(line.rstrip() for line in textLines) + "\n"
    htmlLines = _paragraphHtml(intro) + _paragraphHtml(texts["recipients"]) + _listHtml(shownRecipients)
    htmlLines += _paragraphHtml(texts["files"]) + _listHtml(shownFiles)
    htmlLines += _paragraphHtml(expiryLine)
    if senderLink:
        htmlLines += _paragraphHtml(texts["confirmation_sender_link"])
        htmlLines += [f'<p style="{_P_STYLE}"><a href="{_escape(senderLink)}" style="{_LINK_STYLE}">'
                      f"{_escape(texts['confirmation_sender_button'])}</a></p>"]
    htmlLines += _paragraphHtml(texts["confirmation_no_link"], _SMALL_STYLE)
    extra = [("Auto-Submitted", "auto-generated")] + _transferField(transferId)
    return _message(
        hostname, KIND_CONFIRMATION, mailbox(facilitySender), addrSpec(sender), newSubject, text,
        _boxHtml(htmlLines), date, extra,
    )


def welcomeMail(hostname: str, facilitySender: str, user: str, language: str, date: Optional[float] = None) -> bytes:
    """
    ``auto_create_users = "welcome"`` (SPEC 5 rule 7): a new user
    learns what will happen to the attachments they send outside.
    """
    texts = _texts(language)
    greeting = texts["welcome_greeting"].format(user=_oneLine(user))
    paragraphs = [greeting, texts["welcome_1"], texts["welcome_2"]]
    text = "\n\n".join(paragraphs) + "\n"
    htmlLines = [line for paragraph in paragraphs for line in _paragraphHtml(paragraph)]
    return _message(
        hostname, KIND_WELCOME, mailbox(facilitySender), addrSpec(user), texts["welcome_subject"], text,
        _boxHtml(htmlLines), date, [("Auto-Submitted", "auto-generated")],
    )
