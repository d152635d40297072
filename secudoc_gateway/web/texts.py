"""
Every word the web side shows or mails, in Dutch and English, and the
few rules that pick among them: the language of a page that belongs to
no tenant (Accept-Language, RFC 9110 12.5.4, else ``[web] language``),
singular or plural, and dates and times as a Dutch organisation's
recipients read them (Europe/Amsterdam, the zone named).
"""

from __future__ import annotations

import datetime
import zoneinfo
from typing import Optional

from secudoc_gateway.mails import formatDate

LANGUAGES = ("nl", "en")

try:
    ZONE: datetime.tzinfo = zoneinfo.ZoneInfo("Europe/Amsterdam")
except zoneinfo.ZoneInfoNotFoundError:  # a system without tzdata
    ZONE = datetime.timezone.utc

TEXTS: dict[str, dict[str, str]] = {
    "nl": {
        "site": "Beveiligde bestanden",
        "intro_one": "{sender} heeft u een bestand gestuurd.",
        "intro_many": "{sender} heeft u {count} bestanden gestuurd.",
        "why": "De bijlagen van het bericht zijn versleuteld opgeslagen en alleen via deze pagina te downloaden.",
        "from": "Afzender",
        "organisation": "Organisatie",
        "subject": "Onderwerp",
        "files_one": "1 bestand",
        "files_many": "{count} bestanden",
        "download_file": "{name} downloaden",
        "download_all": "Alle bestanden downloaden (ZIP, {size})",
        "zip_name": "bestanden.zip",
        "expires": "Beschikbaar tot {date} om {time}.",
        "help": "Vragen? Neem contact op met {contact}.",
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
        "code_subject": "Uw code voor de bestanden van {sender}",
        "code_mail": "Uw code is {code}. Vul hem in op de downloadpagina; hij is geldig tot {time}.",
        "code_ignore": "Hebt u geen code aangevraagd? Dan kunt u dit bericht negeren.",
        "notify_subject": "Gedownload: {name}",
        "notify_mail": "{who} heeft {name} gedownload op {date} om {time}.",
        "notify_someone": "Een ontvanger",
        "sender_title": "Uw verzending",
        "recipients": "Ontvangers",
        "files": "Bestanden",
        "downloads": "Downloads",
        "no_downloads": "Nog niet gedownload.",
        "when": "Wanneer",
        "file": "Bestand",
        "who": "Ontvanger",
        "unverified": "niet geverifieerd",
        "all_files": "alle bestanden (ZIP)",
        "revoke": "Verzending intrekken",
        "revoke_intro": "Na intrekken kunnen de ontvangers de bestanden niet meer downloaden. Dit kan niet ongedaan worden gemaakt.",
        "revoked_on": "U hebt deze verzending ingetrokken op {date} om {time}.",
        "expired_on": "Deze verzending is verlopen op {date} om {time}.",
        "sender_expires": "De ontvangers kunnen de bestanden downloaden tot {date} om {time}.",
        "date_time": "{date} om {time}",
    },
    "en": {
        "site": "Secure files",
        "intro_one": "{sender} sent you a file.",
        "intro_many": "{sender} sent you {count} files.",
        "why": "The message's attachments are stored encrypted and can only be downloaded from this page.",
        "from": "From",
        "organisation": "Organisation",
        "subject": "Subject",
        "files_one": "1 file",
        "files_many": "{count} files",
        "download_file": "Download {name}",
        "download_all": "Download all files (ZIP, {size})",
        "zip_name": "files.zip",
        "expires": "Available until {date} at {time}.",
        "help": "Questions? Contact {contact}.",
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
        "code_subject": "Your code for the files from {sender}",
        "code_mail": "Your code is {code}. Enter it on the download page; it is valid until {time}.",
        "code_ignore": "Did you not ask for a code? Then you can ignore this message.",
        "notify_subject": "Downloaded: {name}",
        "notify_mail": "{who} downloaded {name} on {date} at {time}.",
        "notify_someone": "A recipient",
        "sender_title": "Your transfer",
        "recipients": "Recipients",
        "files": "Files",
        "downloads": "Downloads",
        "no_downloads": "Not downloaded yet.",
        "when": "When",
        "file": "File",
        "who": "Recipient",
        "unverified": "not verified",
        "all_files": "all files (ZIP)",
        "revoke": "Withdraw transfer",
        "revoke_intro": "Once withdrawn, the recipients can no longer download the files. This cannot be undone.",
        "revoked_on": "You withdrew this transfer on {date} at {time}.",
        "expired_on": "This transfer expired on {date} at {time}.",
        "sender_expires": "The recipients can download the files until {date} at {time}.",
        "date_time": "{date} at {time}",
    },
}


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


def when(timestamp: float, language: str) -> tuple[str, str]:
    """(date, time) of a Unix time: "14 maart 2025", "15:30 CET"."""
    moment = datetime.datetime.fromtimestamp(timestamp, ZONE)
    return formatDate(moment.date(), language), f"{moment:%H:%M} {moment.tzname()}"


def dateTime(timestamp: float, language: str) -> str:
    date, time = when(timestamp, language)
    return texts(language)["date_time"].format(date=date, time=time)
