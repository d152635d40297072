"""
The SQL database: a connection pool, the schema and its migrations.

Theory of operation.  Every call runs on ``twisted.enterprise.adbapi``'s
thread pool and fires a Deferred in the reactor thread.  SQLite gets a
single connection (``cp_min = cp_max = 1``): SQLite serialises writers
anyway, and one connection makes every interaction in this process run
one after the other, so a read-then-write such as a dedup claim cannot
interleave with another.  Other processes on the same file (several
workers) are kept apart by ``BEGIN IMMEDIATE``, which takes the write
lock before the first read, and by the busy timeout, which waits for it.

The connection runs in autocommit mode (``isolation_level=None``) so the
module opens its transactions itself: ``runTransaction`` begins one, and
adbapi's commit or rollback at the end of the interaction closes it.
DDL is transactional in SQLite, so each migration step is all or nothing.

The schema is an ordered list of steps; ``schema_version`` holds one row
per step applied.  ``open()`` applies the missing ones, each in its own
transaction that re-reads the version under the write lock, so two
processes starting at once apply each step once.
"""

from __future__ import annotations

import os
import sqlite3
import time
from typing import Any, Callable, Optional, Sequence, TypeVar

from twisted.enterprise import adbapi
from twisted.internet import defer
from twisted.internet.defer import Deferred

from secudoc_gateway.errors import ConfigError, GatewayError

T = TypeVar("T")

SQLITE_PREFIX = "sqlite:"
MEMORY = ":memory:"
POSTGRESQL_PREFIXES = ("postgresql:", "postgres:")

# Seconds a connection waits for another process's write lock before
# the statement fails with "database is locked".
BUSY_TIMEOUT = 10.0


# Each step is a tuple of statements applied in one transaction; step i
# (0-based) brings the schema to version i + 1.  Never edit a step that
# has shipped: append a new one.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        # SPEC 7: known users of a tenant.  ``address`` is stored
        # normalised (addresses.addressKey), so lookups are exact.
        """
        CREATE TABLE users (
            tenant TEXT NOT NULL,
            address TEXT NOT NULL,
            created REAL NOT NULL,
            how TEXT NOT NULL CHECK (how IN ('config', 'welcome', 'silent')),
            PRIMARY KEY (tenant, address)
        )
        """,
        # SPEC 7: one row per protected message.  ``id`` is the public
        # transfer id (X-SecuDoc-Transfer); the URL token is stored only
        # as ``token_hash``.  Times are Unix seconds.
        """
        CREATE TABLE transfers (
            id TEXT PRIMARY KEY,
            token_hash TEXT NOT NULL UNIQUE,
            tenant TEXT NOT NULL,
            sender TEXT NOT NULL,
            recipients TEXT NOT NULL,
            subject TEXT NOT NULL,
            created REAL NOT NULL,
            expires REAL NOT NULL,
            message_id TEXT
        )
        """,
        "CREATE INDEX transfers_expires ON transfers (expires)",
        # SPEC 8: ``n`` is the 0-based position in the message, the
        # ``<n>`` of ``/t/<token>/<n>``; ``size`` and ``sha256`` are of
        # the plaintext.
        """
        CREATE TABLE files (
            transfer_id TEXT NOT NULL REFERENCES transfers (id) ON DELETE CASCADE,
            n INTEGER NOT NULL CHECK (n >= 0),
            name TEXT NOT NULL,
            content_type TEXT NOT NULL,
            size INTEGER NOT NULL CHECK (size >= 0),
            sha256 TEXT NOT NULL,
            object_key TEXT NOT NULL,
            PRIMARY KEY (transfer_id, n)
        )
        """,
        # SPEC 8: the audit trail.  No foreign key: the rows outlive the
        # purge of their transfer, and carry the tenant and file name so
        # they still say what was downloaded.  AUTOINCREMENT so an id is
        # never reused.
        """
        CREATE TABLE downloads (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            transfer_id TEXT NOT NULL,
            n INTEGER NOT NULL,
            tenant TEXT,
            name TEXT,
            at REAL NOT NULL,
            client TEXT,
            user_agent TEXT
        )
        """,
        "CREATE INDEX downloads_transfer ON downloads (transfer_id)",
        # SPEC 4: messages relayed (or being relayed), for EXO's resends.
        """
        CREATE TABLE relayed (
            dedup_key TEXT PRIMARY KEY,
            tenant TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('inflight', 'done')),
            created REAL NOT NULL,
            updated REAL NOT NULL
        )
        """,
        "CREATE INDEX relayed_updated ON relayed (updated)",
    ),
    (
        # SPEC 8, the recipient's side.  ``sender_name`` is the From
        # display name shown on the page; ``revoked`` (NULL = live, else
        # Unix time) is set through the sender's link or ``transfers
        # revoke``; ``purged`` marks a tombstone: the files are gone, the
        # row stays so its link says "expired", not "unknown";
        # ``sender_hash`` is the hash of the sender's link secret.
        "ALTER TABLE transfers ADD COLUMN sender_name TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE transfers ADD COLUMN revoked REAL",
        "ALTER TABLE transfers ADD COLUMN purged REAL",
        "ALTER TABLE transfers ADD COLUMN sender_hash TEXT",
        "CREATE UNIQUE INDEX transfers_sender_hash ON transfers (sender_hash)",
        # The verified recipient of a download (NULL without verification).
        "ALTER TABLE downloads ADD COLUMN recipient TEXT",
        # recipient_verification = "email-code": one code per transfer and
        # address asked for, stored as an HMAC keyed by the link's token.
        """
        CREATE TABLE codes (
            transfer_id TEXT NOT NULL REFERENCES transfers (id) ON DELETE CASCADE,
            recipient TEXT NOT NULL,
            code_hash TEXT NOT NULL,
            expires REAL NOT NULL,
            tries INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (transfer_id, recipient)
        )
        """,
        # A right code's browser session, for that transfer only.
        """
        CREATE TABLE sessions (
            secret_hash TEXT PRIMARY KEY,
            transfer_id TEXT NOT NULL REFERENCES transfers (id) ON DELETE CASCADE,
            recipient TEXT NOT NULL,
            expires REAL NOT NULL
        )
        """,
        # Rate limits that hold across worker processes and nodes: one row
        # per counted event, ``scope`` naming what is limited.
        """
        CREATE TABLE attempts (
            scope TEXT NOT NULL,
            at REAL NOT NULL
        )
        """,
        "CREATE INDEX attempts_scope ON attempts (scope, at)",
        "CREATE INDEX attempts_at ON attempts (at)",
        # ``transfers list --since`` and ``audit --since`` read by time.
        "CREATE INDEX transfers_created ON transfers (created)",
        "CREATE INDEX downloads_at ON downloads (at)",
    ),
    (
        # SPEC 7: one object per transfer.  A file is the sealed stream
        # of ``object_length`` bytes at ``object_offset`` in the object
        # ``object_key``; ``key_index`` is its HKDF index (its place
        # among the message's candidates, which ``n`` need not be).
        "ALTER TABLE files ADD COLUMN object_offset INTEGER NOT NULL DEFAULT 0 CHECK (object_offset >= 0)",
        "ALTER TABLE files ADD COLUMN object_length INTEGER NOT NULL DEFAULT 0 CHECK (object_length >= 0)",
        "ALTER TABLE files ADD COLUMN key_index INTEGER NOT NULL DEFAULT 0 CHECK (key_index >= 0)",
    ),
)


def _openSQLite(connection: sqlite3.Connection) -> None:
    """
    Per-connection settings.  WAL lets readers (the web side) go on
    while a writer commits; ``synchronous=NORMAL`` is durable across a
    process crash in WAL mode and skips an fsync per commit; foreign
    keys are off in SQLite unless asked for, and the files cascade
    depends on them.
    """
    connection.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT * 1000)}")
    # Switching a new file to WAL needs an exclusive lock, and SQLite
    # answers "locked" at once, without the busy handler, when another
    # process is creating the schema: wait for it here.
    deadline = time.monotonic() + BUSY_TIMEOUT
    while True:
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as e:
            busy = (e.sqlite_errorcode & 0xFF) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
            if not busy or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
    connection.execute("PRAGMA foreign_keys=ON")
    connection.execute("PRAGMA synchronous=NORMAL")


class Database:
    """
    The gateway's SQL database (SQLite), its schema kept current.

    Use ``Database.fromURL(config url)``, then ``open()`` before anything
    else and ``close()`` at the end.
    """

    dialect = "sqlite"

    def __init__(
        self,
        path: str,
        reactor: Any = None,
        migrations: Sequence[Sequence[str]] = MIGRATIONS,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self.path = path
        self._reactor = reactor
        self._migrations = tuple(tuple(step) for step in migrations)
        self._pool: Optional[adbapi.ConnectionPool] = None

    @classmethod
    def fromURL(cls, url: str, reactor: Any = None) -> "Database":
        """
        ``url`` is the config's ``[database] url`` with relative paths
        already resolved: ``sqlite:/absolute/path``, or ``sqlite::memory:``
        (tests; gone when closed).
        """
        if url.startswith(SQLITE_PREFIX):
            path = url[len(SQLITE_PREFIX) :]
            if path != MEMORY and not os.path.isabs(path):
                raise ConfigError(
                    [f"database.url: the sqlite path must be absolute, got {path!r}"]
                )
            return cls(path, reactor)
        if url.startswith(POSTGRESQL_PREFIXES):
            raise ConfigError(
                [
                    "database.url: PostgreSQL is not supported by this build yet"
                    " (no PostgreSQL driver is installed); use sqlite:PATH"
                ]
            )
        # Only the scheme: the rest of a URL may hold a password.
        scheme = url.partition(":")[0]
        raise ConfigError(
            [
                f"database.url: unknown database kind {scheme!r};"
                " expected sqlite:PATH or postgresql://..."
            ]
        )

    def open(self) -> Deferred[Database]:
        """
        Create the folder and the file when missing, start the pool and
        apply the missing migrations.  Fires with this database.
        """
        if self._pool is not None:
            return defer.fail(GatewayError("database is already open"))
        try:
            folder = os.path.dirname(self.path)
            if folder and self.path != MEMORY:
                os.makedirs(folder, exist_ok=True)
        except OSError as e:
            return defer.fail(e)
        self._pool = adbapi.ConnectionPool(
            "sqlite3",
            self.path,
            timeout=BUSY_TIMEOUT,
            isolation_level=None,
            check_same_thread=False,
            cp_min=1,
            cp_max=1,
            cp_openfun=_openSQLite,
            cp_reactor=self._reactor,
            cp_noisy=False,
        )
        # Started now rather than when the reactor starts, so a command
        # line tool may queue work before ``reactor.run()``.
        self._pool.start()
        d = self._pool.runInteraction(self._migrate, self._migrations, self._reactor.seconds())

        def failed(f: Any) -> Any:
            self.close()
            return f

        d.addCallbacks(lambda _: self, failed)
        return d

    @staticmethod
    def _migrate(txn: Any, migrations: tuple[tuple[str, ...], ...], now: float) -> None:
        # One step per transaction, each under the write lock from its
        # first statement, so a second process waits and then finds it done.
        while True:
            txn.execute("BEGIN IMMEDIATE")
            txn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version"
                " (version INTEGER PRIMARY KEY, applied REAL NOT NULL)"
            )
            txn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version")
            [(current,)] = txn.fetchall()
            if current > len(migrations):
                # A newer build migrated this file: its rows may not mean
                # what this build thinks they mean.
                raise GatewayError(
                    f"database schema version {current} is newer than this build"
                    f" knows ({len(migrations)})"
                )
            if current == len(migrations):
                txn.execute("COMMIT")
                return
            for statement in migrations[current]:
                txn.execute(statement)
            txn.execute(
                "INSERT INTO schema_version (version, applied) VALUES (?, ?)",
                (current + 1, now),
            )
            txn.execute("COMMIT")

    def close(self) -> None:
        """
        Stop the pool: waits for the interaction in progress, then closes
        the connection.  Safe to call twice.
        """
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    def _running(self) -> adbapi.ConnectionPool:
        if self._pool is None:
            raise GatewayError("database is not open")
        return self._pool

    def runInteraction(self, interaction: Callable[..., T], *args: Any, **kw: Any) -> Deferred[T]:
        """``interaction(txn, *args, **kw)`` in autocommit mode, on the pool's thread."""
        try:
            pool = self._running()
        except GatewayError:
            return defer.fail()
        return pool.runInteraction(interaction, *args, **kw)

    def runTransaction(self, interaction: Callable[..., T], *args: Any, **kw: Any) -> Deferred[T]:
        """
        ``interaction(txn, *args, **kw)`` inside one transaction, which
        holds the write lock from its first statement (``BEGIN
        IMMEDIATE``): a read that decides a write sees no other
        process's write in between.  Committed when it returns, rolled
        back when it raises.
        """

        def transaction(txn: Any) -> T:
            txn.execute("BEGIN IMMEDIATE")
            return interaction(txn, *args, **kw)

        return self.runInteraction(transaction)

    def runReadTransaction(
        self, interaction: Callable[..., T], *args: Any, **kw: Any
    ) -> Deferred[T]:
        """
        ``interaction(txn, *args, **kw)`` reading one snapshot (WAL: a
        deferred ``BEGIN`` takes no lock, so it never waits for a writer).
        """

        def transaction(txn: Any) -> T:
            txn.execute("BEGIN")
            return interaction(txn, *args, **kw)

        return self.runInteraction(transaction)

    def runQuery(self, sql: str, params: Sequence[Any] = ()) -> Deferred[list[tuple[Any, ...]]]:
        """All rows of one statement."""

        def query(txn: Any) -> list[tuple[Any, ...]]:
            txn.execute(sql, tuple(params))
            return list(txn.fetchall())

        return self.runInteraction(query)

    def runOperation(self, sql: str, params: Sequence[Any] = ()) -> Deferred[None]:
        """One statement, its rows (if any) discarded."""

        def operation(txn: Any) -> None:
            txn.execute(sql, tuple(params))

        return self.runInteraction(operation)

    def check(self) -> Deferred[None]:
        """Fires when the database answers, fails when it does not (/healthz)."""
        d = self.runQuery("SELECT 1")
        d.addCallback(lambda rows: None)
        return d
