"""
One base error, and kinds that carry their consequence: every problem
of a configuration, or whether a relay failure is permanent.  (A MIME
defect is a parser event with its offset, not an exception.)
"""

from __future__ import annotations

from typing import Optional

from secudoc_gateway.replies import Reply


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
