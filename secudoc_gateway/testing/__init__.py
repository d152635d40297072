"""
Shipped helpers for tests and benches, treq-style: ``gateway`` writes a
complete configuration and starts the real service on free ports, and
holds in-memory fakes of the I/O seams; ``smtp`` is an SMTP sink server
that scripts its replies; ``s3`` and ``postgres`` start the real
servers the tests run against (moto with signature checking, a
throwaway PostgreSQL cluster), once per run.
"""

from secudoc_gateway.testing.gateway import (
    DEMO_TENANT,
    GatewayProcess,
    MemoryStore,
    MemoryWriter,
    RunningGateway,
    freshPostgreSQL,
    startGateway,
    testDatabase,
    tomlTable,
    tomlValue,
    writeConfig,
)

__all__ = [
    "DEMO_TENANT",
    "GatewayProcess",
    "MemoryStore",
    "MemoryWriter",
    "RunningGateway",
    "freshPostgreSQL",
    "startGateway",
    "testDatabase",
    "tomlTable",
    "tomlValue",
    "writeConfig",
]
