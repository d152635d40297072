"""
The values of the records: a transfer, its files and its downloads, and
how a transfer is read from its rows.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Optional

import attrs


@attrs.frozen
class StoredFile:
    """
    One file of a transfer: ``n`` is its 0-based place in the message.
    Its sealed stream is ``object_length`` bytes at ``object_offset`` in
    the transfer's object ``object_key``, under the key HKDF derives for
    ``key_index``.
    """

    n: int
    name: str
    content_type: str
    size: int
    sha256: str
    object_key: str
    object_offset: int
    object_length: int
    key_index: int
    scan: Optional[str] = None
    """The malware verdict (``scan.ScanResult``: clean, skipped, error); ``None``: scanning was off."""

    @property
    def unscanned(self) -> bool:
        """Stored without clamd's judgement (SPEC 10: the page says so)."""
        return self.scan in ("skipped", "error")


@attrs.frozen
class WithheldFile:
    """
    A file of the message found infected and withheld (``on_malware =
    "strip"``): no bytes, no link; its name and the signature clamd
    found, for the page that says which file and why.
    """

    name: str
    signature: str


def _files(files: Iterable[StoredFile]) -> tuple[StoredFile, ...]:
    return tuple(files)


def _withheld(files: Iterable[WithheldFile]) -> tuple[WithheldFile, ...]:
    return tuple(files)


def _strings(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(values)


@attrs.frozen
class Transfer:
    """
    One protected message's files (SPEC 7).  ``token_hash`` is the only
    trace of the URL token; ``created`` and ``expires`` are Unix seconds.
    """

    id: str
    token_hash: str
    tenant: str
    sender: str
    recipients: tuple[str, ...] = attrs.field(converter=_strings)
    subject: str
    created: float
    expires: float
    files: tuple[StoredFile, ...] = attrs.field(default=(), converter=_files)
    message_id: Optional[str] = None
    sender_name: str = ""
    sender_hash: Optional[str] = None
    revoked: Optional[float] = None
    purged: Optional[float] = None
    withheld: tuple[WithheldFile, ...] = attrs.field(default=(), converter=_withheld)


@attrs.frozen
class Download:
    """
    One row of the audit trail (SPEC 8).  ``tenant`` and ``name`` are
    copied from the transfer when recorded, so the row still says what
    was downloaded after the transfer is purged.
    """

    id: int
    transfer_id: str
    n: int
    tenant: Optional[str]
    name: Optional[str]
    at: float
    client: Optional[str]
    user_agent: Optional[str]
    recipient: Optional[str] = None


FILE_COLUMNS = "n, name, content_type, size, sha256, object_key, object_offset, object_length, key_index, scan"
TRANSFER_COLUMNS = (
    "id, token_hash, tenant, sender, recipients, subject, created, expires, message_id,"
    " sender_name, sender_hash, revoked, purged"
)


def transferFromRow(txn: Any, row: tuple[Any, ...]) -> Transfer:
    (id, tokenHash, tenant, sender, recipients, subject, created, expires, messageId,
     senderName, senderHash, revoked, purged) = row
    txn.execute(
        f"SELECT {FILE_COLUMNS} FROM files"
        " WHERE transfer_id = ? ORDER BY n",
        (id,),
    )
    files = tuple(StoredFile(*fileRow) for fileRow in txn.fetchall())
    txn.execute("SELECT name, signature FROM withheld WHERE transfer_id = ? ORDER BY n", (id,))
    withheld = tuple(WithheldFile(*fileRow) for fileRow in txn.fetchall())
    return Transfer(
        id=id,
        token_hash=tokenHash,
        tenant=tenant,
        sender=sender,
        recipients=json.loads(recipients),
        subject=subject,
        created=created,
        expires=expires,
        files=files,
        message_id=messageId,
        sender_name=senderName,
        sender_hash=senderHash,
        revoked=revoked,
        purged=purged,
        withheld=withheld,
    )


def insertTransfer(txn: Any, transfer: Transfer) -> None:
    """The rows of ``transfer``, its files and its withheld files (in the caller's transaction)."""
    txn.execute(
        f"INSERT INTO transfers ({TRANSFER_COLUMNS})"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            transfer.id,
            transfer.token_hash,
            transfer.tenant,
            transfer.sender,
            json.dumps(list(transfer.recipients), ensure_ascii=False),
            transfer.subject,
            transfer.created,
            transfer.expires,
            transfer.message_id,
            transfer.sender_name,
            transfer.sender_hash,
            transfer.revoked,
            transfer.purged,
        ),
    )
    txn.executemany(
        f"INSERT INTO files (transfer_id, {FILE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(transfer.id, *attrs.astuple(f)) for f in transfer.files],
    )
    txn.executemany(
        "INSERT INTO withheld (transfer_id, n, name, signature) VALUES (?, ?, ?, ?)",
        [(transfer.id, n, w.name, w.signature) for n, w in enumerate(transfer.withheld)],
    )

