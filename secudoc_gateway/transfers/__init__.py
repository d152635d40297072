"""The records behind the gateway (being split into modules: this step moves the file)."""

from secudoc_gateway.transfers.store import *  # noqa: F401,F403
