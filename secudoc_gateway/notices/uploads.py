"""
The mail of a transfer sent from the browser (SPEC 9): what a mail
transfer's recipients read in content mode "transfer" (the banner, then
the sender's message under the "Message:" heading, ``transferTemplate``),
as a message the gateway makes: from the tenant's ``facility_sender``
(the gateway sends it, so the tenant's SPF and DKIM hold), with
``Reply-To`` the user, so an answer reaches the person who sent the files.
"""

from __future__ import annotations

import os
from typing import Callable, Optional, Sequence

from secudoc_gateway.display import shown
from secudoc_gateway.mime.notice import Banner
from secudoc_gateway.notices.banner import escape
from secudoc_gateway.notices.mails import _addressList, generatedMessage, mailbox, transferFields, transferTemplate
from secudoc_gateway.notices.texts import texts

KIND_UPLOAD = "upload"


def uploadMail(hostname: str, facilitySender: str, sender: str, recipients: Sequence[str], subject: str,
               message: str, banner: Banner, language: str, date: Optional[float] = None,
               transferId: Optional[str] = None, randomBytes: Callable[[int], bytes] = os.urandom) -> bytes:
    """
    The transfer mail to ``recipients``: ``banner`` (the link, the files,
    until when) and ``message``, the user's text, kept as typed (its
    lines in a ``<pre>``, escaped).
    """
    template = transferTemplate(banner, language)
    newSubject = shown(subject) or texts(language)["upload_subject_none"].format(sender=shown(sender))
    body = message.replace("\r\n", "\n").replace("\r", "\n").rstrip()
    if body:
        text = template.text + body + "\n"
        html = template.htmlHead + escape(body) + template.htmlTail
    else:
        text, html = template.textAlone, template.htmlAlone
    extra = [("Reply-To", mailbox(sender))] + transferFields(transferId)
    return generatedMessage(hostname, KIND_UPLOAD, mailbox(facilitySender), _addressList(recipients), newSubject,
                            text, html, date, extra, randomBytes)
