"""
One base error, and kinds that carry their consequence: an SMTP reply,
a byte offset, or whether a relay failure is permanent.
"""

from __future__ import annotations

from typing import Optional

from secudoc_gateway.smtp.replies import Reply


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""


class ConfigError(GatewayError):
    """
    Configuration problems, each as ``FILE: key: what is wrong``.

    ``problems`` holds every line so all can be reported at once.
    """

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


class ReplyError(GatewayError):
    """An error whose consequence is an SMTP reply to the client."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(f"{reply.code} {reply.enhanced} {reply.text}")
        self.reply = reply


class ParseDefect(GatewayError):
    """A MIME message past a limit or unparseable, at a byte offset."""

    def __init__(self, reason: str, offset: int) -> None:
        super().__init__(f"{reason} at byte {offset}")
        self.reason = reason
        self.offset = offset


class RelayError(GatewayError):
    """
    The relay target did not take the message.

    ``permanent`` is true only for a 5xx to RCPT or to the data: the
    one case a tenant's mail may bounce. ``kind`` names the stage for
    metrics: connect, tls, greeting, ehlo, mail, rcpt, data, protocol.
    ``reply`` is the remote's reply when there was one.
    """

    def __init__(
        self, kind: str, message: str, permanent: bool = False, reply: Optional[Reply] = None
    ) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message
        self.permanent = permanent
        self.reply = reply


class StorageError(GatewayError):
    """The object store failed; the message gets a 451."""


class ObjectNotFound(StorageError, KeyError):
    """
    The object store has no object under the key.  A ``KeyError`` too,
    as for a missing mapping key; shared by every backend.
    """

    def __str__(self) -> str:
        return Exception.__str__(self)


class ProducerStopped(StorageError):
    """An object store's producer was stopped before the object was sent."""
