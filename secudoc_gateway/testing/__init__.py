"""
Shipped helpers for tests and benches, treq-style: ``gateway`` writes a
complete configuration and starts the real service on free ports;
``fakes`` holds in-memory fakes of the I/O seams (a relay, the ingress
and its transactions, an object store); ``smtp`` is an SMTP sink server
that scripts its replies; ``s3`` and ``postgres`` start the real
servers the tests run against (moto with signature checking, a
throwaway PostgreSQL cluster), once per run.
"""

from secudoc_gateway.testing.fakes import (
    HANG,
    FakeIngress,
    FakeRelay,
    FakeTransaction,
    MemoryStore,
    MemoryWriter,
    Sent,
)
from secudoc_gateway.testing.gateway import (
    DEMO_TENANT,
    ROOT,
    TWISTD,
    GatewayProcess,
    RunningGateway,
    envelopeFor,
    freshPostgreSQL,
    ingressOn,
    startGateway,
    testDatabase,
    tomlTable,
    tomlValue,
    writeConfig,
)

__all__ = [
    "DEMO_TENANT",
    "HANG",
    "TWISTD",
    "FakeIngress",
    "FakeRelay",
    "FakeTransaction",
    "GatewayProcess",
    "MemoryStore",
    "MemoryWriter",
    "ROOT",
    "RunningGateway",
    "Sent",
    "envelopeFor",
    "freshPostgreSQL",
    "ingressOn",
    "startGateway",
    "testDatabase",
    "tomlTable",
    "tomlValue",
    "writeConfig",
]
