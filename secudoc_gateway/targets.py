"""
Relay targets (SPEC 3): the one reader of a tenant's ``relay`` value,
used by the configuration to check it and by the relay to open it, so
the two can never disagree on what a value means.
"""

from __future__ import annotations

import urllib.parse
from typing import Union

import attrs

MAILDIR_PREFIX = "maildir:"


@attrs.frozen
class MaildirTarget:
    path: str


@attrs.frozen
class SMTPTarget:
    host: str
    port: int


RelayTarget = Union[MaildirTarget, SMTPTarget]


def parseRelayTarget(value: str) -> RelayTarget:
    """
    ``maildir:PATH`` or ``smtp://HOST:PORT``; ``ValueError`` saying what
    is wrong otherwise.  The port is required, as SPEC 3 writes the
    form: EXO's inbound connector listens on 25, but a target is named
    whole, so a typo cannot silently pick a port.
    """
    if value.startswith(MAILDIR_PREFIX):
        path = value[len(MAILDIR_PREFIX) :]
        if not path:
            raise ValueError("maildir: needs a path")
        return MaildirTarget(path)
    parts = urllib.parse.urlsplit(value)
    try:
        port = parts.port
    except ValueError:
        port = None
    if (
        parts.scheme != "smtp"
        or not parts.hostname
        or port is None
        or parts.username is not None
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
    ):
        raise ValueError(f'must be "maildir:PATH" or "smtp://HOST:PORT", not "{value}"')
    return SMTPTarget(parts.hostname, port)
