"""
The records behind the gateway, on one ``TransferStore``: ``records``
holds the values (a transfer, its files, its downloads), ``store`` the
transfers and the download audit trail, ``users`` the known users,
``events`` the admin events, ``dedup`` the messages already relayed,
``trace`` the message trace.  Importers use the names below.
"""

from secudoc_gateway.transfers.dedup import DEDUP_WINDOW, DONE, INFLIGHT, INFLIGHT_TIMEOUT, NEW
from secudoc_gateway.transfers.events import OPERATOR, AdminEvent
from secudoc_gateway.transfers.records import Download, StoredFile, Transfer, WithheldFile
from secudoc_gateway.transfers.store import PURGE_CLAIM_TIMEOUT, TrailEntry, TransferStore
from secudoc_gateway.transfers.trace import TraceEntry
from secudoc_gateway.transfers.users import USER_SOURCES, User

__all__ = [
    "DEDUP_WINDOW",
    "DONE",
    "INFLIGHT",
    "INFLIGHT_TIMEOUT",
    "NEW",
    "OPERATOR",
    "PURGE_CLAIM_TIMEOUT",
    "USER_SOURCES",
    "AdminEvent",
    "Download",
    "StoredFile",
    "TraceEntry",
    "Transfer",
    "TrailEntry",
    "TransferStore",
    "User",
    "WithheldFile",
]
