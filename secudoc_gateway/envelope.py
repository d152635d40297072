"""The SMTP envelope of one transaction, as handed from ingress to relay."""

from __future__ import annotations

from typing import Optional

import attrs

from secudoc_gateway.config.values import Tenant


@attrs.frozen
class Envelope:
    """
    Who sent what to whom, and how it arrived.

    ``sender`` is ``""`` for the null reverse-path.  ``body`` is the
    MAIL ``BODY=`` value (``"8BITMIME"``, ``"7BIT"`` or ``None``) and
    ``smtputf8`` whether MAIL carried ``SMTPUTF8``: both are passed on
    to the relay target.  ``tenant`` is the tenant picked at MAIL (the
    config's ``Tenant``), ``None`` for a null sender until the headers
    name one.
    """

    sender: str
    recipients: tuple[str, ...] = ()
    body: Optional[str] = None
    smtputf8: bool = False
    size: Optional[int] = None
    peer: str = ""
    helo: str = ""
    tls: bool = False
    tenant: Optional[Tenant] = None
