"""
Every word the gateway shows or mails, in Dutch and English, in one
table (banner, the gateway's own messages, the web pages, and the
portal's words from ``portaltexts``), and the few
rules that pick among them: the language of a page that belongs to no
tenant (Accept-Language, RFC 9110 12.5.4, else ``[web] language``),
singular or plural, sizes as Outlook shows them, and dates and times as
a Dutch organisation's recipients read them: Europe/Amsterdam, the zone
named, the same in the banner, the mails and the pages.
"""

from __future__ import annotations

import datetime
import zoneinfo
from typing import Optional

from secudoc_gateway.config.values import LANGUAGES
from secudoc_gateway.notices.portaltexts import PORTAL_TEXTS

# The tzdata package brings the zone where the system has no zone files.
ZONE = zoneinfo.ZoneInfo("Europe/Amsterdam")

MONTHS = {
    "nl": (
        "januari", "februari", "maart", "april", "mei", "juni",
        "juli", "augustus", "september", "oktober", "november", "december",
    ),
    "en": (
        "January", "February", "March", "April", "May", "June",
        "July", "August", "September", "October", "November", "December",
    ),
}

_CORE: dict[str, dict[str, str]] = {
    "nl": {
        # shared by the banner, the mails and the pages
        "intro_one": "{sender} heeft u een bestand gestuurd.",
        "intro_many": "{sender} heeft u {count} bestanden gestuurd.",
        "expires": "Beschikbaar tot {moment}.",
        "sender_expires": "De ontvangers kunnen de bestanden downloaden tot {moment}.",
        "help": "Vragen? Neem contact op met {contact}.",
        "recipients": "Ontvangers",
        "files": "Bestanden",
        "moment": "{date} om {time}",
        "bytes": "bytes",
        "decimal": ",",
        # the banner (SPEC 6)
        "intro_one_org": "{sender} van {organisation} heeft u een bestand gestuurd.",
        "intro_many_org": "{sender} van {organisation} heeft u {count} bestanden gestuurd.",
        "why_text": "Om de bijlagen te beschermen zijn ze niet meegestuurd, maar beveiligd opgeslagen."
                    " U downloadt ze via de link hieronder.",
        "why_html": "Om de bijlagen te beschermen zijn ze niet meegestuurd, maar beveiligd opgeslagen."
                    " U downloadt ze via de knop hieronder.",
        "button": "Bestanden downloaden",
        "fallback": "Werkt de knop niet? Open dan deze link:",
        # the gateway's own messages (SPEC 5 and 6)
        "message": "Bericht:",
        "html_only": "(De tekst van het bericht staat in de HTML-weergave.)",
        "separate_subject": "Bestanden bij: {subject}",
        "separate_subject_none": "Bestanden",
        "separate_reference": "Dit hoort bij het bericht \"{subject}\".",
        "confirmation_subject": "Bevestiging: bijlagen beveiligd verstuurd: {subject}",
        "confirmation_subject_none": "Bevestiging: bijlagen beveiligd verstuurd",
        "confirmation_intro": "Uw bericht \"{subject}\" is verstuurd. De bijlagen zijn vervangen door een beveiligde downloadlink.",
        "confirmation_intro_none": "Uw bericht is verstuurd. De bijlagen zijn vervangen door een beveiligde downloadlink.",
        "confirmation_no_link": "De downloadlink zelf staat niet in deze bevestiging: alleen de ontvangers krijgen hem.",
        "sender_link": "Bekijk wie de bestanden heeft gedownload, of trek de verzending in:",
        "sender_button": "Downloads bekijken",
        "welcome_subject": "Welkom bij SecuDoc",
        "welcome_greeting": "Beste {user},",
        "welcome_1": "U bent toegevoegd als gebruiker van SecuDoc. Bijlagen die u naar ontvangers buiten uw organisatie stuurt, worden voortaan vervangen door een beveiligde downloadlink.",
        "welcome_2": "De ontvangers downloaden de bestanden via die link; u hoeft daarvoor niets te doen. Bijlagen aan collega's binnen uw organisatie blijven gewoon in het bericht.",
        "code_subject": "Uw code voor de bestanden van {sender}",
        "code_mail": "Uw code is {code}. Vul hem in op de downloadpagina; hij is geldig tot {time}.",
        "code_ignore": "Hebt u geen code aangevraagd? Dan kunt u dit bericht negeren.",
        "notify_subject": "Gedownload: {name}",
        "notify_mail": "{who} heeft {name} gedownload op {moment}.",
        "notify_someone": "Een ontvanger",
        # the pages (SPEC 8)
        "site": "Beveiligde bestanden",
        "why": "De bijlagen van het bericht zijn versleuteld opgeslagen en alleen via deze pagina te downloaden.",
        "from": "Afzender",
        "organisation": "Organisatie",
        "subject": "Onderwerp",
        "files_one": "1 bestand",
        "files_many": "{count} bestanden",
        "download_file": "{name} downloaden",
        "download_all": "Alle bestanden downloaden (ZIP, {size})",
        "zip_name": "bestanden.zip",
        "help_sender": "Vragen? Neem contact op met de afzender, {sender}.",
        "logo": "Logo van {organisation}",
        "unknown_title": "Deze link is onbekend",
        "unknown_body": "Controleer of u de hele link uit het bericht hebt gebruikt. Werkt hij nog steeds niet, vraag de afzender dan om de bestanden opnieuw te sturen.",
        "expired_title": "Deze link is verlopen",
        "expired_body": "De bestanden zijn niet meer beschikbaar. Vraag {sender} om ze opnieuw te sturen.",
        "revoked_title": "Deze bestanden zijn ingetrokken",
        "revoked_body": "De afzender heeft deze bestanden ingetrokken. Vraag {sender} om meer informatie.",
        "verify_title": "Bevestig uw e-mailadres",
        "verify_intro": "Om de bestanden van {sender} te openen, sturen we u een code. Vul het e-mailadres in waarop u het bericht hebt ontvangen.",
        "address_label": "E-mailadres",
        "send_code": "Code versturen",
        "code_title": "Vul uw code in",
        "code_intro": "Als {address} een ontvanger van deze bestanden is, hebben we daar een code van zes cijfers naartoe gestuurd. De code is 15 minuten geldig.",
        "code_label": "Code van zes cijfers",
        "confirm": "Bevestigen",
        "other_address": "Ander e-mailadres of een nieuwe code",
        "code_wrong": "Deze code klopt niet. Controleer de code en probeer het opnieuw.",
        "code_expired": "Deze code is verlopen. Vraag een nieuwe code aan.",
        "code_exhausted": "De code is te vaak verkeerd ingevuld. Vraag een nieuwe code aan.",
        "too_many": "Te veel pogingen. Probeer het over een uur opnieuw.",
        "form_expired": "Het formulier was verlopen. Probeer het opnieuw.",
        "error": "Fout",
        "sender_title": "Uw verzending",
        "downloads": "Downloads",
        "no_downloads": "Nog niet gedownload.",
        "when": "Wanneer",
        "file": "Bestand",
        "who": "Ontvanger",
        "unverified": "niet geverifieerd",
        "all_files": "alle bestanden (ZIP)",
        "revoke": "Verzending intrekken",
        "revoke_intro": "Na intrekken kunnen de ontvangers de bestanden niet meer downloaden. Dit kan niet ongedaan worden gemaakt.",
        "revoked_on": "U hebt deze verzending ingetrokken op {moment}.",
        "expired_on": "Deze verzending is verlopen op {moment}.",
        "language_nav": "Taal",
        "other_language": "en",
        "other_language_name": "English",
        "unavailable_title": "Het bestand is nu niet beschikbaar",
        "unavailable_body": "Door een storing kunnen we dit bestand op dit moment niet ophalen. Probeer het later opnieuw.",
        # malware scanning (SPEC 10)
        "withheld": "{name} is niet meegestuurd: er is malware in gevonden.",
        "withheld_heading": "Tegengehouden",
        "withheld_page": "{name}: tegengehouden, er is malware in gevonden ({signature}).",
        "unscanned": "niet op malware gescand",
    },
    "en": {
        # shared by the banner, the mails and the pages
        "intro_one": "{sender} sent you a file.",
        "intro_many": "{sender} sent you {count} files.",
        "expires": "Available until {moment}.",
        "sender_expires": "The recipients can download the files until {moment}.",
        "help": "Questions? Contact {contact}.",
        "recipients": "Recipients",
        "files": "Files",
        "moment": "{date} at {time}",
        "bytes": "bytes",
        "decimal": ".",
        # the banner (SPEC 6)
        "intro_one_org": "{sender} of {organisation} sent you a file.",
        "intro_many_org": "{sender} of {organisation} sent you {count} files.",
        "why_text": "To protect the attachments, they were not sent with this message but stored securely."
                    " You download them with the link below.",
        "why_html": "To protect the attachments, they were not sent with this message but stored securely."
                    " You download them with the button below.",
        "button": "Download files",
        "fallback": "Does the button not work? Open this link:",
        # the gateway's own messages (SPEC 5 and 6)
        "message": "Message:",
        "html_only": "(The text of the message is in its HTML version.)",
        "separate_subject": "Files for: {subject}",
        "separate_subject_none": "Files",
        "separate_reference": "This belongs to the message \"{subject}\".",
        "confirmation_subject": "Confirmation: attachments sent securely: {subject}",
        "confirmation_subject_none": "Confirmation: attachments sent securely",
        "confirmation_intro": "Your message \"{subject}\" was sent. Its attachments were replaced by a secure download link.",
        "confirmation_intro_none": "Your message was sent. Its attachments were replaced by a secure download link.",
        "confirmation_no_link": "The download link itself is not in this confirmation: only the recipients get it.",
        "sender_link": "See who downloaded the files, or withdraw the transfer:",
        "sender_button": "View downloads",
        "welcome_subject": "Welcome to SecuDoc",
        "welcome_greeting": "Dear {user},",
        "welcome_1": "You were added as a SecuDoc user. From now on, attachments you send to recipients outside your organisation are replaced by a secure download link.",
        "welcome_2": "The recipients download the files through that link; you need not do anything for it. Attachments to colleagues inside your organisation stay in the message as before.",
        "code_subject": "Your code for the files from {sender}",
        "code_mail": "Your code is {code}. Enter it on the download page; it is valid until {time}.",
        "code_ignore": "Did you not ask for a code? Then you can ignore this message.",
        "notify_subject": "Downloaded: {name}",
        "notify_mail": "{who} downloaded {name} on {moment}.",
        "notify_someone": "A recipient",
        # the pages (SPEC 8)
        "site": "Secure files",
        "why": "The message's attachments are stored encrypted and can only be downloaded from this page.",
        "from": "From",
        "organisation": "Organisation",
        "subject": "Subject",
        "files_one": "1 file",
        "files_many": "{count} files",
        "download_file": "Download {name}",
        "download_all": "Download all files (ZIP, {size})",
        "zip_name": "files.zip",
        "help_sender": "Questions? Contact the sender, {sender}.",
        "logo": "Logo of {organisation}",
        "unknown_title": "This link is not known",
        "unknown_body": "Check that you used the whole link from the message. If it still does not work, ask the sender to send the files again.",
        "expired_title": "This link has expired",
        "expired_body": "The files are no longer available. Ask {sender} to send them again.",
        "revoked_title": "These files were withdrawn",
        "revoked_body": "The sender withdrew these files. Ask {sender} for more information.",
        "verify_title": "Confirm your e-mail address",
        "verify_intro": "To open the files from {sender}, we send you a code. Enter the e-mail address at which you received the message.",
        "address_label": "E-mail address",
        "send_code": "Send code",
        "code_title": "Enter your code",
        "code_intro": "If {address} is a recipient of these files, we sent a six-digit code there. The code is valid for 15 minutes.",
        "code_label": "Six-digit code",
        "confirm": "Confirm",
        "other_address": "Another e-mail address or a new code",
        "code_wrong": "This code is not right. Check the code and try again.",
        "code_expired": "This code has expired. Ask for a new code.",
        "code_exhausted": "The code was entered wrongly too often. Ask for a new code.",
        "too_many": "Too many attempts. Try again in an hour.",
        "form_expired": "The form had expired. Please try again.",
        "error": "Error",
        "sender_title": "Your transfer",
        "downloads": "Downloads",
        "no_downloads": "Not downloaded yet.",
        "when": "When",
        "file": "File",
        "who": "Recipient",
        "unverified": "not verified",
        "all_files": "all files (ZIP)",
        "revoke": "Withdraw transfer",
        "revoke_intro": "Once withdrawn, the recipients can no longer download the files. This cannot be undone.",
        "revoked_on": "You withdrew this transfer on {moment}.",
        "expired_on": "This transfer expired on {moment}.",
        "language_nav": "Language",
        "other_language": "nl",
        "other_language_name": "Nederlands",
        "unavailable_title": "The file is not available right now",
        "unavailable_body": "Because of a fault we cannot fetch this file at the moment. Please try again later.",
        # malware scanning (SPEC 10)
        "withheld": "{name} was withheld: malware was found in it.",
        "withheld_heading": "Withheld",
        "withheld_page": "{name}: withheld, malware was found in it ({signature}).",
        "unscanned": "not scanned for malware",
    },
}


def _merged(*tables: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """One table per language; a key two tables both define would hide a text, so it stops the import."""
    merged: dict[str, dict[str, str]] = {}
    for language in LANGUAGES:
        merged[language] = {}
        for table in tables:
            twice = merged[language].keys() & table[language].keys()
            assert not twice, f"texts defined twice: {sorted(twice)}"
            merged[language].update(table[language])
    return merged


TEXTS = _merged(_CORE, PORTAL_TEXTS)


def texts(language: str) -> dict[str, str]:
    return TEXTS[language if language in TEXTS else "en"]


def plural(language: str, count: int, one: str, many: str, **values: object) -> str:
    """The ``one`` text for exactly one, else ``many`` (both languages count alike)."""
    return texts(language)[one if count == 1 else many].format(count=count, **values)


def negotiate(acceptLanguage: Optional[str], default: str) -> str:
    """
    The first of our languages the browser ranks highest (RFC 9110
    12.5.4 weights; ``nl-BE`` counts as ``nl``), else ``default``.
    """
    best: tuple[float, int, str] = (0.0, 0, default)
    for place, item in enumerate((acceptLanguage or "").split(",")):
        tag, _, params = item.strip().partition(";")
        primary = tag.strip().lower().split("-")[0]
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if primary in LANGUAGES and quality > 0 and (quality, -place) > best[:2]:
            best = (quality, -place, primary)
    return best[2]


def humanSize(size: int, language: str = "nl") -> str:
    """
    A size as Outlook and Explorer show it (units of 1024, "KB"), in the
    language's decimal separator: "1,2 MB", "340 KB", "512 bytes".
    """
    phrases = texts(language)
    if size < 1024:
        return f"{size} {phrases['bytes']}"
    if size < 1024 * 1024:
        return f"{-(-size // 1024)} KB"
    for unit, scale in (("MB", 1024**2), ("GB", 1024**3), ("TB", 1024**4)):
        if size < 1024 * scale or unit == "TB":
            return f"{size / scale:.1f}".replace(".", phrases["decimal"]) + f" {unit}"
    raise AssertionError("unreachable")


def formatDate(day: datetime.date, language: str = "nl") -> str:
    """'14 maart 2025' / '14 March 2025': unambiguous in either country."""
    months = MONTHS[language if language in MONTHS else "en"]
    return f"{day.day} {months[day.month - 1]} {day.year}"


def formatTime(timestamp: float) -> str:
    """The time of day of a Unix time, the zone named: '14:05 CET', '14:05 CEST'."""
    moment = datetime.datetime.fromtimestamp(timestamp, ZONE)
    return f"{moment:%H:%M} {moment.tzname()}"


def formatMoment(timestamp: float, language: str = "nl") -> str:
    """
    A Unix time as every text shows it: '14 maart 2025 om 14:05 CET',
    '14 March 2025 at 14:05 CET', whatever the machine's own zone.
    """
    day = datetime.datetime.fromtimestamp(timestamp, ZONE).date()
    return texts(language)["moment"].format(date=formatDate(day, language), time=formatTime(timestamp))
