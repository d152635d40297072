"""
The portal's own message (SPEC 9): the one-time login link, built like
the gateway's other messages (``mails.generatedMessage``), from the
tenant's ``facility_sender``, Auto-Submitted so no auto-reply answers
it.  It names no address but the one it goes to: whoever asks for a
link for someone else learns nothing and gives the owner nothing to act
on but a mail to ignore.
"""

from __future__ import annotations

import os
from typing import Callable, Optional

from secudoc_gateway.config import Tenant
from secudoc_gateway.notices.banner import button, escape, paragraph
from secudoc_gateway.notices.mails import addrSpec, boxDocument, generatedMessage, mailbox
from secudoc_gateway.notices.texts import formatTime, texts

KIND_LOGIN = "login"


def loginMail(hostname: str, tenant: Tenant, address: str, link: str, expires: float, date: float,
              language: Optional[str] = None, randomBytes: Callable[[int], bytes] = os.urandom) -> bytes:
    """
    The login ``link`` to ``address``, valid until ``expires`` (minutes
    away, so only the time); in the ``language`` of the page that asked,
    else the tenant's.
    """
    t = texts(language or tenant.language)
    intro = t["login_mail"].format(time=formatTime(expires))
    text = f"{intro}\n\n{link}\n\n{t['login_ignore']}\n"
    html = boxDocument([paragraph(escape(intro)), *button(link, t["login_button"]),
                        paragraph(escape(t["login_ignore"]))])
    return generatedMessage(hostname, KIND_LOGIN, mailbox(tenant.facility_sender), addrSpec(address),
                            t["login_subject"], text, html, date, [("Auto-Submitted", "auto-generated")],
                            randomBytes)
