"""
Object stores (``IObjectStore``): ``fs`` (files under a folder) and
``s3`` (any S3-compatible API), picked by ``[storage] backend``.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Optional

from secudoc_gateway.interfaces import IObjectStore
from secudoc_gateway.spool import MemoryBudget


def storeFor(config: Any, reactor: Any, budget: MemoryBudget,
             environ: Optional[Mapping[str, str]] = None) -> IObjectStore:
    """
    The store ``config`` (a loaded ``Config``) asks for.  S3 credentials
    come from the environment variables the config names; check-config
    has already said when one is missing.
    """
    storage = config.storage
    if storage.backend == "fs":
        from secudoc_gateway.storage.fs import FilesystemStore

        return FilesystemStore(storage.path, reactor)
    from secudoc_gateway.storage.s3 import S3Store
    from secudoc_gateway.storage.s3client import S3Settings

    environ = os.environ if environ is None else environ
    settings = S3Settings(
        endpoint=storage.endpoint, bucket=storage.bucket, region=storage.region,
        access_key=environ.get(storage.access_key_id_env, ""),
        secret_key=environ.get(storage.secret_access_key_env, ""),
        prefix=storage.prefix, addressing=storage.addressing, ca_file=storage.ca_file,
        part_size=storage.part_size,
    )
    return S3Store(settings, reactor, budget)

