"""The configuration (being split into modules: this step moves the file)."""

from secudoc_gateway.config.tenants import *  # noqa: F401,F403
