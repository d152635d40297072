"""
The SQL database: a connection pool and the migrations of the schema
(``schema``) applied at open, on SQLite (one node) or PostgreSQL
(several nodes and worker processes).

Theory of operation.  Every call runs on ``twisted.enterprise.adbapi``'s
thread pool and fires a Deferred in the reactor thread.  SQLite gets a
single connection (``cp_min = cp_max = 1``): SQLite serialises writers
anyway, and one connection makes every interaction in this process run
one after the other.  Other processes on the same file (several
workers) are kept apart by ``BEGIN IMMEDIATE``, which takes the write
lock before the first read, and by the busy timeout, which waits for it.
PostgreSQL gets ``pool_size`` connections (psycopg 3); its claims lock
the rows they decide on, so they hold across nodes.

Connections run in autocommit mode so the module opens its
transactions itself: ``runTransaction`` begins one, and adbapi's commit
or rollback at the end of the interaction closes it.  DDL is
transactional in both databases, so each migration step is all or
nothing.  What differs between the two is in ``dialect``.

The message path's writes (a dedup claim, a transfer, a trace row) go
through ``runBatched``: group commit.  While a batch of them runs, the
next ones queue; the queue then goes as one transaction, each write in
a savepoint of its own, so one that fails is undone alone and the
others commit.  The batch takes one trip to the database thread, one
commit, and writes the pages its writes share once (with two workers on
one SQLite file a 2 KB message spent a quarter of its time on these
writes before).  No write's Deferred fires before the commit that holds
it, so the contract does not move: rows are in before the relay is
asked to take the message that needs them.  A write that must survive
a power cut, not only a crash of the process (a transfer, before its
link is relayed), says ``durable``: its batch commits with
``synchronous=FULL`` on SQLite, one fsync of the log for all of it
(PostgreSQL commits so always).  The others (dedup records, trace rows)
stay at ``NORMAL``: a power cut may cost the last trace rows, or a
duplicate when EXO resends a message whose reply it never got.  SQLite
runs one batch at a time (it has one connection), PostgreSQL as many as
the pool has connections.

The schema is an ordered list of steps; ``schema_version`` holds one row
per step applied.  ``open()`` applies the missing ones, each in its own
transaction that re-reads the version under a lock (SQLite's write
lock, PostgreSQL's advisory lock), so nodes starting at once apply each
step once.
"""

from __future__ import annotations

import os
import sqlite3
import time
from typing import Any, Callable, Optional, Sequence, TypeVar

from twisted.enterprise import adbapi
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from secudoc_gateway.dialect import POSTGRESQL, SQLITE, Dialect, postgresqlConnectArguments
from secudoc_gateway.errors import ConfigError, GatewayError
from secudoc_gateway.schema import MIGRATIONS

T = TypeVar("T")

SQLITE_PREFIX = "sqlite:"
MEMORY = ":memory:"
POSTGRESQL_PREFIXES = ("postgresql:", "postgres:")

# Seconds a connection waits for another process's write lock before
# the statement fails with "database is locked".
BUSY_TIMEOUT = 10.0
DEFAULT_POOL_SIZE = 10
# Seconds an interaction may take before its caller gets a TimeoutError
# (so a message waiting on it gets 451): a database host that hangs,
# rather than refusing, must not hold mail until the client gives up.
INTERACTION_TIMEOUT = 30.0


def _openSQLite(connection: sqlite3.Connection) -> None:
    """
    Per-connection settings.  WAL lets readers (the web side) go on
    while a writer commits; ``synchronous=NORMAL`` is durable across a
    process crash in WAL mode and skips an fsync per commit (a
    ``runBatched`` write that must survive a power cut too asks for
    ``FULL``); foreign keys are off in SQLite unless asked for, and the
    files cascade depends on them.
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


class _PostgreSQLConnection(adbapi.Connection):
    """
    adbapi's connection wrapper, quiet about a lost server: a connection
    that broke is dropped without a "Rollback failed" traceback (the
    interaction's own error already says what happened), and the next
    interaction on this thread connects afresh.  That is how the
    gateway recovers by itself after the database restarts.
    """

    def rollback(self) -> None:
        if self._connection.closed:
            self._pool.disconnect(self._connection)
            return
        self._connection.rollback()


class _Cursor:
    """
    The cursor an interaction gets: statements go through the dialect
    (placeholders), and ``dialect`` lets a query ask what it may say.
    """

    def __init__(self, txn: Any, dialect: Dialect) -> None:
        self._txn = txn
        self.dialect = dialect

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._txn.execute(self.dialect.statement(sql), tuple(params))

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._txn.executemany(self.dialect.statement(sql), [tuple(row) for row in rows])

    def fetchone(self) -> Optional[tuple[Any, ...]]:
        return self._txn.fetchone()

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self._txn.fetchall()

    @property
    def rowcount(self) -> int:
        return int(self._txn.rowcount)


class Database:
    """
    The gateway's SQL database, its schema kept current.

    Use ``Database.fromConfig(config.database)``, then ``open()`` before
    anything else and ``close()`` at the end.
    """

    def __init__(
        self,
        path: str = "",
        reactor: Any = None,
        migrations: Sequence[Sequence[str]] = MIGRATIONS,
        dialect: Dialect = SQLITE,
        connectArguments: Optional[dict[str, Any]] = None,
        poolSize: int = DEFAULT_POOL_SIZE,
        timeout: float = INTERACTION_TIMEOUT,
    ) -> None:
        """
        ``path`` is the SQLite file; for PostgreSQL, ``connectArguments``
        are psycopg.connect's keywords instead.
        """
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self.path = path
        self.dialect = dialect
        self._connectArguments = connectArguments or {}
        self._poolSize = poolSize
        self._timeout = timeout
        self._reactor = reactor
        self._migrations = tuple(tuple(step) for step in migrations)
        self._pool: Optional[adbapi.ConnectionPool] = None
        self._queued: list[tuple[Callable[..., Any], tuple[Any, ...], bool, Deferred[Any]]] = []
        self._batches = 0  # batches running now

    @classmethod
    def fromConfig(cls, config: Any, reactor: Any = None) -> "Database":
        """From the config's ``[database]`` (a ``DatabaseConfig``)."""
        password = None
        if config.password_env:
            password = os.environ.get(config.password_env)
            if password is None:
                raise ConfigError([f"database.password_env: {config.password_env}"
                                   " is not set in the environment"])
        return cls.fromURL(config.url, reactor, password=password, poolSize=config.pool_size)

    @classmethod
    def fromURL(cls, url: str, reactor: Any = None, password: Optional[str] = None,
                poolSize: int = DEFAULT_POOL_SIZE) -> "Database":
        """
        ``url`` is the config's ``[database] url`` with relative paths
        already resolved: ``sqlite:/absolute/path``, ``sqlite::memory:``
        (tests; gone when closed) or ``postgresql://user@host:port/db``.
        """
        if url.startswith(SQLITE_PREFIX):
            path = url[len(SQLITE_PREFIX) :]
            if path != MEMORY and not os.path.isabs(path):
                raise ConfigError(
                    [f"database.url: the sqlite path must be absolute, got {path!r}"]
                )
            return cls(path, reactor)
        if url.startswith(POSTGRESQL_PREFIXES):
            return cls(reactor=reactor, dialect=POSTGRESQL, poolSize=poolSize,
                       connectArguments=postgresqlConnectArguments(url, password))
        # Only the scheme: the rest of a URL may hold a password.
        scheme = url.partition(":")[0]
        raise ConfigError(
            [
                f"database.url: unknown database kind {scheme!r};"
                " expected sqlite:PATH or postgresql://..."
            ]
        )

    def _newPool(self) -> adbapi.ConnectionPool:
        common = dict(cp_reactor=self._reactor, cp_noisy=False)
        if self.dialect is SQLITE:
            folder = os.path.dirname(self.path)
            if folder and self.path != MEMORY:
                os.makedirs(folder, exist_ok=True)
            return adbapi.ConnectionPool(
                "sqlite3",
                self.path,
                timeout=BUSY_TIMEOUT,
                isolation_level=None,
                check_same_thread=False,
                cp_min=1,
                cp_max=1,
                cp_openfun=_openSQLite,
                **common,
            )
        pool = adbapi.ConnectionPool("psycopg", cp_min=1, cp_max=self._poolSize,
                                     **self._connectArguments, **common)
        pool.connectionFactory = _PostgreSQLConnection
        return pool

    def open(self) -> Deferred[Database]:
        """
        Create the SQLite folder and file when missing, start the pool
        and apply the missing migrations.  Fires with this database.
        """
        if self._pool is not None:
            return defer.fail(GatewayError("database is already open"))
        try:
            self._pool = self._newPool()
        except OSError as e:
            return defer.fail(e)
        # Started now rather than when the reactor starts, so a command
        # line tool may queue work before ``reactor.run()``.
        self._pool.start()
        # No timeout: another node may hold the migration lock for long.
        d = self._run(self._migrate, self._migrations, self._reactor.seconds())

        def failed(f: Any) -> Any:
            self.close()
            return f

        return d.addCallbacks(lambda _: self, failed)

    @staticmethod
    def _migrate(txn: _Cursor, migrations: tuple[tuple[str, ...], ...], now: float) -> None:
        # One step per transaction, each under the migration lock from
        # its first statement, so a second node waits and then finds it done.
        dialect = txn.dialect
        while True:
            txn.execute(dialect.beginWrite)
            if dialect.migrationLock:
                txn.execute(dialect.migrationLock)
            txn.execute(dialect.schema(
                "CREATE TABLE IF NOT EXISTS schema_version"
                " (version INTEGER PRIMARY KEY, applied REAL NOT NULL)"
            ))
            txn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version")
            [(current,)] = txn.fetchall()
            if current > len(migrations):
                # A newer build migrated this database: its rows may not
                # mean what this build thinks they mean.
                raise GatewayError(
                    f"database schema version {current} is newer than this build"
                    f" knows ({len(migrations)})"
                )
            if current == len(migrations):
                txn.execute("COMMIT")
                return
            for statement in migrations[current]:
                txn.execute(dialect.schema(statement))
            txn.execute(
                "INSERT INTO schema_version (version, applied) VALUES (?, ?)",
                (current + 1, now),
            )
            txn.execute("COMMIT")

    def close(self) -> None:
        """
        Stop the pool: waits for the interactions in progress, then
        closes the connections.  Safe to call twice.
        """
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    def _run(self, interaction: Callable[..., T], *args: Any, **kw: Any) -> Deferred[T]:
        if self._pool is None:
            return defer.fail(GatewayError("database is not open"))
        dialect = self.dialect
        return self._pool.runInteraction(lambda txn: interaction(_Cursor(txn, dialect), *args, **kw))

    def runInteraction(self, interaction: Callable[..., T], *args: Any, **kw: Any) -> Deferred[T]:
        """
        ``interaction(cursor, *args, **kw)`` in autocommit mode, on the
        pool's thread; fails with ``TimeoutError`` when the database has
        not answered within the timeout (the thread still waits for it).
        """
        return self._run(interaction, *args, **kw).addTimeout(self._timeout, self._reactor)

    def runTransaction(self, interaction: Callable[..., T], *args: Any, **kw: Any) -> Deferred[T]:
        """
        ``interaction(cursor, *args, **kw)`` inside one transaction whose
        reads may decide its writes (SQLite: it holds the write lock from
        its first statement; PostgreSQL: the statements lock the rows
        they claim).  Committed when it returns, rolled back when it raises.
        """

        def transaction(txn: _Cursor) -> T:
            txn.execute(txn.dialect.beginWrite)
            return interaction(txn, *args, **kw)

        return self.runInteraction(transaction)

    def runBatched(self, interaction: Callable[..., T], *args: Any, durable: bool = False) -> Deferred[T]:
        """
        ``runTransaction`` for the message path's short writes, group
        committed (module docstring): ``interaction(cursor, *args)`` runs
        in the next batch, after the ones queued before it, and sees
        their writes.  Its Deferred fires once the batch is committed,
        and with ``durable`` once it would survive a power cut; with its
        own exception when it raised (its writes undone, the others'
        kept), with the batch's failure when the batch could not commit.
        """
        done: Deferred[T] = Deferred()
        self._queued.append((interaction, args, durable, done))
        self._nextBatch()
        return done

    def _nextBatch(self) -> None:
        limit = 1 if self.dialect is SQLITE else self._poolSize
        if not self._queued or self._batches >= limit:
            return
        batch, self._queued = self._queued, []
        self._batches += 1

        durable = any(d for _, _, d, _ in batch)

        def run(txn: _Cursor) -> list[Any]:
            if txn.dialect is SQLITE:
                txn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            txn.execute(txn.dialect.beginWrite)
            if len(batch) == 1:
                interaction, args, _, _ = batch[0]
                return [interaction(txn, *args)]
            results = []
            for interaction, args, _, _ in batch:
                txn.execute("SAVEPOINT write")
                try:
                    results.append(interaction(txn, *args))
                except Exception:
                    results.append(Failure())
                    txn.execute("ROLLBACK TO SAVEPOINT write")
                txn.execute("RELEASE SAVEPOINT write")
            return results

        def ran(outcome: Any) -> None:
            self._batches -= 1
            self._nextBatch()  # the writes queued meanwhile go now, while these callbacks run
            for (_, _, _, done), result in zip(batch, outcome if isinstance(outcome, list) else
                                                       [outcome] * len(batch)):
                if isinstance(result, Failure):
                    done.errback(result)
                else:
                    done.callback(result)

        self.runInteraction(run).addBoth(ran)

    def runReadTransaction(
        self, interaction: Callable[..., T], *args: Any, **kw: Any
    ) -> Deferred[T]:
        """
        ``interaction(cursor, *args, **kw)`` reading one snapshot; it never
        waits for a writer.
        """

        def transaction(txn: _Cursor) -> T:
            txn.execute(txn.dialect.beginRead)
            return interaction(txn, *args, **kw)

        return self.runInteraction(transaction)

    def runQuery(self, sql: str, params: Sequence[Any] = ()) -> Deferred[list[tuple[Any, ...]]]:
        """All rows of one statement."""

        def query(txn: _Cursor) -> list[tuple[Any, ...]]:
            txn.execute(sql, params)
            return list(txn.fetchall())

        return self.runInteraction(query)

    def runOperation(self, sql: str, params: Sequence[Any] = ()) -> Deferred[None]:
        """One statement, its rows (if any) discarded."""

        def operation(txn: _Cursor) -> None:
            txn.execute(sql, params)

        return self.runInteraction(operation)

    def check(self) -> Deferred[None]:
        """
        Fires when the database answers as a message needs it, fails when
        it does not (/healthz): a transaction (on SQLite the write lock)
        that reads a table, so a database some other holder locked counts
        as down, not only one that is unreachable.
        """
        return self.runTransaction(
            lambda txn: txn.execute("SELECT version FROM schema_version ORDER BY version LIMIT 1"))
