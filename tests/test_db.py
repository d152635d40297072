"""
Tests for secudoc_gateway.db, against real SQLite files and a real
PostgreSQL server, on the real reactor's thread machinery.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
from typing import Any

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase, TestCase

import attrs
import psycopg

from secudoc_gateway.config import DatabaseConfig
from secudoc_gateway.db import Database
from secudoc_gateway.schema import MIGRATIONS
from secudoc_gateway.dialect import POSTGRESQL, SQLITE, postgresqlConnectArguments
from secudoc_gateway.errors import ConfigError, GatewayError
from secudoc_gateway.testing import freshPostgreSQL


def tempPath(case: Any, *parts: str) -> str:
    """An absolute path in a fresh folder of the test's own."""
    return os.path.join(os.path.abspath(case.mktemp()), *parts)


class FromURLTests(SynchronousTestCase):
    """``Database.fromURL`` reads ``[database] url``."""

    def test_sqlite(self) -> None:
        path = tempPath(self, "gateway.sqlite3")
        db = Database.fromURL("sqlite:" + path)
        self.assertEqual(db.path, path)
        self.assertIs(db.dialect, SQLITE)

    def test_postgresql(self) -> None:
        """Either scheme is PostgreSQL; the password comes from the environment."""
        for url in ("postgresql://gateway@db.example/gateway", "postgres://db/gateway"):
            self.assertIs(Database.fromURL(url).dialect, POSTGRESQL)
        self.patch(os, "environ", {"DB_SECRET": "s3cret"})
        config = DatabaseConfig("postgresql://gateway@db.example/gateway", password_env="DB_SECRET")
        db = Database.fromConfig(config)
        self.assertEqual(db._connectArguments["password"], "s3cret")
        self.assertTrue(db._connectArguments["autocommit"])
        e = self.assertRaises(ConfigError, Database.fromConfig, attrs.evolve(config, password_env="NOT_SET"))
        self.assertEqual(e.problems, ["database.password_env: NOT_SET is not set in the environment"])

    def test_relativeSQLite(self) -> None:
        """The config resolves relative paths; one left relative is a bug."""
        e = self.assertRaises(ConfigError, Database.fromURL, "sqlite:var/gateway.sqlite3")
        self.assertIn("database.url", e.problems[0])
        self.assertIn("absolute", e.problems[0])
        self.assertRaises(ConfigError, Database.fromURL, "sqlite:")

    def test_unknownScheme(self) -> None:
        """Named by its scheme only: the rest may hold a password."""
        e = self.assertRaises(ConfigError, Database.fromURL, "mysql://u:secret@db/gateway")
        self.assertIn("database.url", e.problems[0])
        self.assertIn("'mysql'", e.problems[0])
        self.assertNotIn("secret", e.problems[0])


class DatabaseTests(TestCase):
    """Opening, migrating, querying and closing a real SQLite file."""

    def setUp(self) -> None:
        self.path = tempPath(self, "var", "db", "gateway.sqlite3")

    @defer.inlineCallbacks
    def openDatabase(self, migrations: Any = MIGRATIONS) -> Any:
        db = Database(self.path, migrations=migrations)
        self.addCleanup(db.close)
        yield db.open()
        return db

    @defer.inlineCallbacks
    def test_createsFolder(self) -> Any:
        """The database's folder is created when missing (SPEC 3)."""
        self.assertFalse(os.path.exists(os.path.dirname(self.path)))
        db = yield self.openDatabase()
        self.assertTrue(os.path.isfile(self.path))
        self.assertEqual(db.path, self.path)

    @defer.inlineCallbacks
    def test_pragmas(self) -> Any:
        """WAL, foreign keys, synchronous NORMAL and a busy timeout."""
        db = yield self.openDatabase()
        mode = yield db.runQuery("PRAGMA journal_mode")
        self.assertEqual(mode, [("wal",)])
        keys = yield db.runQuery("PRAGMA foreign_keys")
        self.assertEqual(keys, [(1,)])
        sync = yield db.runQuery("PRAGMA synchronous")
        self.assertEqual(sync, [(1,)])  # NORMAL
        timeout = yield db.runQuery("PRAGMA busy_timeout")
        self.assertEqual(timeout, [(10000,)])
        db.close()
        # WAL is a property of the file: another client sees it too.
        other = sqlite3.connect(self.path)
        try:
            self.assertEqual(other.execute("PRAGMA journal_mode").fetchall(), [("wal",)])
        finally:
            other.close()

    @defer.inlineCallbacks
    def test_schema(self) -> Any:
        db = yield self.openDatabase()
        rows = yield db.runQuery(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            " ORDER BY name"
        )
        self.assertEqual(
            [name for (name,) in rows],
            ["admin_events", "attempts", "browser_sends", "codes", "downloads", "files", "gateway_secrets",
             "message_trace", "message_trace_recipients", "portal_login_links", "portal_sessions", "relayed",
             "saml_assertions", "saml_metadata", "saml_requests", "schema_version", "sessions", "tenant_settings",
             "tenant_settings_version", "transfers", "users", "withheld"],
        )
        versions = yield db.runQuery("SELECT version FROM schema_version ORDER BY version")
        self.assertEqual(versions, [(v,) for v in range(1, len(MIGRATIONS) + 1)])

    @defer.inlineCallbacks
    def test_reopen(self) -> Any:
        """Migrations run once: reopening keeps the rows and the version."""
        db = yield self.openDatabase()
        yield db.runOperation(
            "INSERT INTO users (tenant, address, created, how) VALUES (?, ?, ?, ?)",
            ("example", "alice@example.test", 1.0, "config"),
        )
        applied = yield db.runQuery("SELECT version, applied FROM schema_version ORDER BY version")
        db.close()
        db = yield self.openDatabase()
        versions = yield db.runQuery("SELECT version, applied FROM schema_version ORDER BY version")
        self.assertEqual(versions, applied)
        self.assertEqual([v for v, _ in versions], list(range(1, len(MIGRATIONS) + 1)))
        users = yield db.runQuery("SELECT address FROM users")
        self.assertEqual(users, [("alice@example.test",)])

    @defer.inlineCallbacks
    def test_newStep(self) -> Any:
        """
        A build with one more step applies only that step; the first
        would fail if it ran twice (CREATE TABLE without IF NOT EXISTS).
        """
        first = ("CREATE TABLE a (x INTEGER)",)
        second = ("CREATE TABLE b (y INTEGER)", "INSERT INTO b VALUES (7)")
        db = yield self.openDatabase([first])
        yield db.runOperation("INSERT INTO a VALUES (1)")
        db.close()
        db = yield self.openDatabase([first, second])
        versions = yield db.runQuery("SELECT version FROM schema_version ORDER BY version")
        self.assertEqual(versions, [(1,), (2,)])
        a = yield db.runQuery("SELECT x FROM a")
        b = yield db.runQuery("SELECT y FROM b")
        self.assertEqual((a, b), ([(1,)], [(7,)]))

    @defer.inlineCallbacks
    def test_failedStepRollsBack(self) -> Any:
        """A step is one transaction: a failing statement undoes the step."""
        first = ("CREATE TABLE a (x INTEGER)",)
        broken = ("CREATE TABLE b (y INTEGER)", "INSERT INTO nowhere VALUES (1)")
        db = yield self.openDatabase([first])
        db.close()
        db = Database(self.path, migrations=[first, broken])
        self.addCleanup(db.close)
        yield self.assertFailure(db.open(), sqlite3.OperationalError)
        # The failed open closed its pool; look with a plain client.
        other = sqlite3.connect(self.path)
        try:
            tables = other.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
            ).fetchall()
            versions = other.execute("SELECT version FROM schema_version").fetchall()
        finally:
            other.close()
        self.assertEqual(tables, [("a",), ("schema_version",)])
        self.assertEqual(versions, [(1,)])

    @defer.inlineCallbacks
    def test_newerSchema(self) -> Any:
        """A file migrated by a newer build is refused, not misread."""
        steps = [("CREATE TABLE a (x INTEGER)",), ("CREATE TABLE b (y INTEGER)",)]
        db = yield self.openDatabase(steps)
        db.close()
        db = Database(self.path, migrations=steps[:1])
        self.addCleanup(db.close)
        e = yield self.assertFailure(db.open(), GatewayError)
        self.assertIn("newer", str(e))

    @defer.inlineCallbacks
    def test_twoOpenAtOnce(self) -> Any:
        """
        Two clients opening a new file at once (two workers starting)
        apply each step once: the second waits for the write lock and
        then finds the step done.
        """
        first = Database(self.path)
        second = Database(self.path)
        self.addCleanup(first.close)
        self.addCleanup(second.close)
        yield defer.gatherResults([first.open(), second.open()], consumeErrors=True)
        for db in (first, second):
            versions = yield db.runQuery("SELECT version FROM schema_version ORDER BY version")
            self.assertEqual(versions, [(v,) for v in range(1, len(MIGRATIONS) + 1)])

    @defer.inlineCallbacks
    def test_runInteraction(self) -> Any:
        """An interaction that raises leaves nothing behind."""
        db = yield self.openDatabase()

        def broken(txn: Any) -> None:
            txn.execute(
                "INSERT INTO users (tenant, address, created, how)"
                " VALUES ('t', 'a@b', 0, 'config')"
            )
            raise RuntimeError("boom")

        yield self.assertFailure(db.runTransaction(broken), RuntimeError)
        rows = yield db.runQuery("SELECT COUNT(*) FROM users")
        self.assertEqual(rows, [(0,)])

        def count(txn: Any, table: str) -> int:
            txn.execute(f"SELECT COUNT(*) FROM {table}")
            return int(txn.fetchone()[0])

        n = yield db.runInteraction(count, "users")
        self.assertEqual(n, 0)
        yield db.runOperation(
            "INSERT INTO users (tenant, address, created, how) VALUES ('t', 'a@b', 0, 'config')"
        )
        n = yield db.runReadTransaction(count, "users")
        self.assertEqual(n, 1)

        def write(txn: Any) -> None:
            txn.execute("DELETE FROM users")
            raise RuntimeError("boom")

        yield self.assertFailure(db.runReadTransaction(write), RuntimeError)
        n = yield db.runReadTransaction(count, "users")
        self.assertEqual(n, 1)

    @defer.inlineCallbacks
    def test_check(self) -> Any:
        """``check`` answers while open and fails once closed (/healthz)."""
        db = yield self.openDatabase()
        result = yield db.check()
        self.assertIsNone(result)
        db.close()
        yield self.assertFailure(db.check(), GatewayError)
        yield self.assertFailure(db.runQuery("SELECT 1"), GatewayError)

    @defer.inlineCallbacks
    def test_memory(self) -> Any:
        """``sqlite::memory:`` works: the pool's one connection holds it."""
        db = Database.fromURL("sqlite::memory:")
        self.addCleanup(db.close)
        yield db.open()
        yield db.runOperation(
            "INSERT INTO users (tenant, address, created, how) VALUES ('t', 'a@b', 0, 'config')"
        )
        rows = yield db.runQuery("SELECT address FROM users")
        self.assertEqual(rows, [("a@b",)])

    @defer.inlineCallbacks
    def test_openTwice(self) -> Any:
        db = yield self.openDatabase()
        yield self.assertFailure(db.open(), GatewayError)

    @defer.inlineCallbacks
    def test_unwritableFolder(self) -> Any:
        """A folder that cannot be made fails ``open``, with no pool left."""
        blocker = tempPath(self, "file")
        os.makedirs(os.path.dirname(blocker))
        with open(blocker, "w"):
            pass
        db = Database(os.path.join(blocker, "gateway.sqlite3"))
        yield self.assertFailure(db.open(), OSError)
        yield self.assertFailure(db.check(), GatewayError)

    @defer.inlineCallbacks
    def test_closeStopsThreads(self) -> Any:
        """``close`` stops the pool's thread and may be called twice."""

        def poolThreads() -> set[threading.Thread]:
            # adbapi's pool is unnamed; the reactor's own pool is named.
            return {
                t
                for t in threading.enumerate()
                if t.name.startswith("PoolThread-") and "reactor" not in t.name
            }

        before = poolThreads()
        db = Database(self.path)
        yield db.open()
        yield db.check()
        self.assertEqual(len(poolThreads() - before), 1)
        db.close()
        db.close()
        self.assertEqual(poolThreads() - before, set())


class PostgreSQLTests(TestCase):
    """The same schema on a fresh database of the test PostgreSQL cluster."""

    def setUp(self) -> None:
        self.config = DatabaseConfig(**freshPostgreSQL())

    def database(self) -> Database:
        db = Database.fromConfig(self.config)
        self.addCleanup(db.close)
        return db

    @defer.inlineCallbacks
    def test_nodesStartingAtOnce(self) -> Any:
        """Three nodes migrating one new database at once apply each step once (advisory lock)."""
        nodes = [self.database() for _ in range(3)]
        yield defer.gatherResults([db.open() for db in nodes], consumeErrors=True)
        versions = yield nodes[2].runQuery("SELECT version FROM schema_version ORDER BY version")
        self.assertEqual(versions, [(n + 1,) for n in range(len(MIGRATIONS))])
        tables = yield nodes[0].runQuery(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            " ORDER BY table_name")
        self.assertEqual([name for (name,) in tables],
                         ["admin_events", "attempts", "browser_sends", "codes", "downloads", "files", "gateway_secrets",
                          "message_trace", "message_trace_recipients", "portal_login_links", "portal_sessions",
                          "relayed", "saml_assertions", "saml_metadata", "saml_requests", "schema_version", "sessions",
                          "tenant_settings", "tenant_settings_version", "transfers", "users", "withheld"])

    @defer.inlineCallbacks
    def test_types(self) -> Any:
        """
        Times keep their fractions (REAL is a double, as in SQLite),
        download ids count up, and a literal % survives the placeholders.
        """
        db = self.database()
        yield db.open()
        for _ in range(2):
            yield db.runOperation("INSERT INTO downloads (transfer_id, n, at, client) VALUES (?, ?, ?, ?)",
                                  ("T1", 0, 1_700_000_000.123456, "100%"))
        rows = yield db.runQuery("SELECT id, at, client FROM downloads WHERE client LIKE '%\\%' ESCAPE '\\'"
                                 " ORDER BY id")
        self.assertEqual(rows, [(1, 1_700_000_000.123456, "100%"), (2, 1_700_000_000.123456, "100%")])

    @defer.inlineCallbacks
    def test_wrongPassword(self) -> Any:
        """A refused login fails ``open`` and leaves no pool."""
        self.patch(os, "environ", dict(os.environ, WRONG="not-the-password"))
        db = Database.fromConfig(attrs.evolve(self.config, password_env="WRONG"))
        yield self.assertFailure(db.open(), psycopg.OperationalError)
        yield self.assertFailure(db.check(), GatewayError)

    @defer.inlineCallbacks
    def test_hungServer(self) -> Any:
        """
        A server that stops answering (its process stopped, the TCP
        connection still up) fails an interaction with a timeout rather
        than holding it; once it answers again, so does the database.
        The process is the one backend serving this test's only
        connection (the run's cluster goes on serving everyone else).
        """
        password = os.environ[self.config.password_env]
        db = Database(dialect=POSTGRESQL, connectArguments=postgresqlConnectArguments(self.config.url, password),
                      timeout=1.0, poolSize=1)
        self.addCleanup(db.close)
        yield db.open()
        [(backend,)] = yield db.runQuery("SELECT pg_backend_pid()")
        os.kill(backend, signal.SIGSTOP)
        self.addCleanup(os.kill, backend, signal.SIGCONT)
        yield self.assertFailure(db.runQuery("SELECT 1"), defer.TimeoutError)
        os.kill(backend, signal.SIGCONT)
        yield db.check()


class GroupCommit:
    """``runBatched``: writes queued while a batch runs share the next transaction, each undone alone."""

    postgresql = False

    @defer.inlineCallbacks
    def batchDatabase(self) -> Any:
        """An open database running one batch at a time (PostgreSQL: a pool of one)."""
        if self.postgresql:
            db = Database.fromConfig(attrs.evolve(DatabaseConfig(**freshPostgreSQL()), pool_size=1))
        else:
            db = Database(tempPath(self, "gateway.sqlite3"))
        self.addCleanup(db.close)
        yield db.open()
        return db

    @defer.inlineCallbacks
    def test_groupCommit(self) -> Any:
        db = yield self.batchDatabase()
        seen: list[Any] = []

        def insert(txn: Any, address: str) -> str:
            seen.append(txn)
            txn.execute("INSERT INTO users (tenant, address, created, how) VALUES ('t', ?, 0, 'config')", (address,))
            txn.execute("SELECT COUNT(*) FROM users")
            return f"{address} {txn.fetchone()[0]}"

        results = yield defer.gatherResults([db.runBatched(insert, f"u{n}@example.test") for n in range(4)])
        # The first went alone; the three queued meanwhile shared one transaction, in order.
        self.assertEqual(results, [f"u{n}@example.test {n + 1}" for n in range(4)])
        self.assertIsNot(seen[0], seen[1])
        self.assertTrue(seen[1] is seen[2] is seen[3])

    @defer.inlineCallbacks
    def test_oneFailsAlone(self) -> Any:
        """A write that raises is undone and fails; the others in its batch commit."""
        db = yield self.batchDatabase()

        def insert(txn: Any, address: str, fail: bool = False) -> None:
            txn.execute("INSERT INTO users (tenant, address, created, how) VALUES ('t', ?, 0, 'config')", (address,))
            if fail:
                txn.execute("INSERT INTO users (tenant, address, created, how) VALUES ('t', ?, 0, 'config')",
                            (address,))  # the primary key: a database error, not only ours

        first = db.runBatched(insert, "a@example.test")
        batch = [db.runBatched(insert, "b@example.test"), db.runBatched(insert, "c@example.test", True),
                 db.runBatched(insert, "d@example.test")]
        yield first
        yield batch[0]
        yield self.assertFailure(batch[1], sqlite3.IntegrityError, psycopg.errors.UniqueViolation)
        yield batch[2]
        rows = yield db.runQuery("SELECT address FROM users ORDER BY address")
        self.assertEqual(rows, [("a@example.test",), ("b@example.test",), ("d@example.test",)])

    @defer.inlineCallbacks
    def test_closed(self) -> Any:
        """A batch that cannot run fails every write in it."""
        db = yield self.batchDatabase()
        db.close()
        for d in [db.runBatched(lambda txn: None) for _ in range(3)]:
            yield self.assertFailure(d, GatewayError)


class SQLiteGroupCommitTests(GroupCommit, TestCase):
    @defer.inlineCallbacks
    def test_durable(self) -> Any:
        """
        On SQLite a batch holding a ``durable`` write commits with
        ``synchronous=FULL`` (an fsync of the log), the others with NORMAL.
        """
        db = yield self.batchDatabase()

        def mode(txn: Any) -> int:
            txn.execute("PRAGMA synchronous")
            return int(txn.fetchone()[0])

        first = db.runBatched(mode)
        together = [db.runBatched(mode), db.runBatched(mode, durable=True)]
        self.assertEqual((yield first), 1)
        modes = yield defer.gatherResults(together)
        self.assertEqual(modes, [2, 2])
        self.assertEqual((yield db.runBatched(mode)), 1)


class PostgreSQLGroupCommitTests(GroupCommit, TestCase):
    """Every PostgreSQL commit is durable: ``durable`` (a SQLite pragma) has nothing to show here."""

    postgresql = True
