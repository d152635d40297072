"""
Shipped helpers for tests and benches, treq-style: ``gateway`` writes a
complete configuration and starts the real service on free ports, and
holds in-memory fakes of the I/O seams; ``smtp`` is an SMTP sink server
that scripts its replies.
"""

from secudoc_gateway.testing.gateway import (
    DEMO_TENANT,
    MemoryStore,
    MemoryWriter,
    RunningGateway,
    startGateway,
    tomlTable,
    tomlValue,
    writeConfig,
)

__all__ = [
    "DEMO_TENANT",
    "MemoryStore",
    "MemoryWriter",
    "RunningGateway",
    "startGateway",
    "tomlTable",
    "tomlValue",
    "writeConfig",
]
