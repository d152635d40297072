"""
The messages around a download (SPEC 6 and 8): a recipient's
verification code and the sender's notice of a file's first download.
Both are built like the gateway's other messages
(``mails.generatedMessage``: ``X-SecuDoc: 1.0``, quoted-printable
bodies, every value cleaned), from the tenant's ``facility_sender``,
Auto-Submitted so no auto-reply answers them.
"""

from __future__ import annotations

from typing import Optional

from secudoc_gateway.config import Tenant
from secudoc_gateway.display import shown
from secudoc_gateway.notices.banner import escape, paragraph
from secudoc_gateway.notices.mails import addrSpec, boxDocument, generatedMessage, mailbox, transferFields
from secudoc_gateway.notices.texts import formatMoment, formatTime, texts

KIND_CODE = "code"
KIND_DOWNLOAD = "download"


def _mail(hostname: str, tenant: Tenant, to: str, kind: str, subject: str, paragraphs: list[str],
          date: float, transferId: str) -> bytes:
    text = "\n\n".join(paragraphs) + "\n"
    html = boxDocument([paragraph(escape(text)) for text in paragraphs])
    extra = [("Auto-Submitted", "auto-generated")] + transferFields(transferId)
    return generatedMessage(hostname, kind, mailbox(tenant.facility_sender), addrSpec(to), subject, text, html,
                            date, extra)


def codeMail(hostname: str, tenant: Tenant, recipient: str, sender: str, code: str, expires: float,
             date: float, transferId: str, language: Optional[str] = None) -> bytes:
    """
    The six-digit code, to the recipient address that asked for it; valid
    minutes, so only the time.  In the ``language`` of the page that asked
    (the recipient's), else the tenant's.
    """
    t = texts(language or tenant.language)
    return _mail(hostname, tenant, recipient, KIND_CODE, t["code_subject"].format(sender=shown(sender)),
                 [t["code_mail"].format(code=code, time=formatTime(expires)), t["code_ignore"]], date, transferId)


def downloadNotice(hostname: str, tenant: Tenant, sender: str, name: str, recipient: Optional[str], at: float,
                   transferId: str) -> bytes:
    """``download_notification``: the sender learns that a file was downloaded for the first time."""
    t = texts(tenant.language)
    who = shown(recipient) if recipient else t["notify_someone"]
    line = t["notify_mail"].format(who=who, name=shown(name), moment=formatMoment(at, tenant.language))
    return _mail(hostname, tenant, sender, KIND_DOWNLOAD, t["notify_subject"].format(name=shown(name)),
                 [line], at, transferId)
