"""
Tests for secudoc_gateway.transfers, against a real SQLite file and
again against a real PostgreSQL database; time comes from a
``task.Clock``.
"""

from __future__ import annotations

import os
import sqlite3
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import defer, task
from twisted.trial.unittest import SynchronousTestCase, TestCase

import psycopg

from secudoc_gateway.config import DatabaseConfig
from secudoc_gateway.db import Database
from secudoc_gateway.purge import purgeExpired
from secudoc_gateway.testing import freshPostgreSQL
from secudoc_gateway.transfers import (
    DEDUP_WINDOW,
    DONE,
    INFLIGHT,
    INFLIGHT_TIMEOUT,
    NEW,
    PURGE_CLAIM_TIMEOUT,
    Download,
    StoredFile,
    Transfer,
    TransferStore,
)

DAY = 24 * 60 * 60
START = 1_700_000_000.0


def makeTransfer(id: str = "T1", created: float = START, days: int = 14, **kw: Any) -> Transfer:
    files = (
        StoredFile(0, "offerte.pdf", "application/pdf", 20480, "a" * 64, id, 0, 20530, 0),
        StoredFile(
            1, "Überblick – 2024.xlsx", "application/vnd.ms-excel", 1, "b" * 64, id, 20530, 50, 2
        ),
    )
    values: dict[str, Any] = dict(
        id=id,
        token_hash=f"hash-{id}",
        tenant="example",
        sender="alice@example.test",
        recipients=["bob@external.test", "eve@other.test"],
        subject="Offerte",
        created=created,
        expires=created + days * DAY,
        files=files,
        message_id="<m1@example.test>",
    )
    values.update(kw)
    return Transfer(**values)


class StoreTestCase(TestCase):
    """A fresh database file and a store on a ``task.Clock`` per test."""

    integrityError: type = sqlite3.IntegrityError

    def newDatabase(self) -> Database:
        return Database(os.path.join(os.path.abspath(self.mktemp()), "gateway.sqlite3"))

    @defer.inlineCallbacks
    def setUp(self) -> Any:
        self.db = self.newDatabase()
        self.addCleanup(self.db.close)
        yield self.db.open()
        self.clock = task.Clock()
        self.clock.advance(START)
        self.store = TransferStore(self.db, self.clock)

    def count(self, table: str) -> Any:
        d = self.db.runQuery(f"SELECT COUNT(*) FROM {table}")
        d.addCallback(lambda rows: rows[0][0])
        return d


class TransferTests(StoreTestCase):
    @defer.inlineCallbacks
    def test_roundTrip(self) -> Any:
        transfer = makeTransfer()
        yield self.store.createTransfer(transfer)
        found = yield self.store.lookup("hash-T1")
        self.assertEqual(found, transfer)
        self.assertIsInstance(found.recipients, tuple)

    @defer.inlineCallbacks
    def test_filesInMessageOrder(self) -> Any:
        """Files come back ordered by ``n``, whatever order they were given in."""
        files = tuple(
            StoredFile(n, f"f{n}", "application/octet-stream", n, "c" * 64, "T1", n * 100, n + 49, n)
            for n in (2, 0, 11, 1)
        )
        yield self.store.createTransfer(makeTransfer(files=files, message_id=None))
        found = yield self.store.lookup("hash-T1")
        self.assertEqual([f.n for f in found.files], [0, 1, 2, 11])
        self.assertIsNone(found.message_id)

    @defer.inlineCallbacks
    def test_unknownToken(self) -> Any:
        yield self.store.createTransfer(makeTransfer())
        found = yield self.store.lookup("hash-T2")
        self.assertIsNone(found)

    @defer.inlineCallbacks
    def test_allOrNothing(self) -> Any:
        """A transfer whose files cannot be stored leaves no row."""
        bad = makeTransfer(
            files=(
                StoredFile(0, "a", "text/plain", 1, "d" * 64, "k", 0, 50, 0),
                StoredFile(0, "b", "text/plain", 1, "d" * 64, "k", 50, 50, 1),
            )
        )
        yield self.assertFailure(self.store.createTransfer(bad), self.integrityError)
        self.assertEqual((yield self.count("transfers")), 0)
        self.assertEqual((yield self.count("files")), 0)

    @defer.inlineCallbacks
    def test_duplicates(self) -> Any:
        """The public id and the token hash are each unique."""
        yield self.store.createTransfer(makeTransfer())
        again = makeTransfer(token_hash="other")
        yield self.assertFailure(self.store.createTransfer(again), self.integrityError)
        sameToken = makeTransfer(id="T2", token_hash="hash-T1")
        yield self.assertFailure(self.store.createTransfer(sameToken), self.integrityError)
        self.assertEqual((yield self.count("transfers")), 1)

    @defer.inlineCallbacks
    def test_deleteCascades(self) -> Any:
        yield self.store.createTransfer(makeTransfer("T1"))
        yield self.store.createTransfer(makeTransfer("T2"))
        self.assertEqual((yield self.count("files")), 4)
        deleted = yield self.store.deleteTransfer("T1")
        self.assertTrue(deleted)
        self.assertEqual((yield self.count("files")), 2)
        self.assertIsNone((yield self.store.lookup("hash-T1")))
        self.assertIsNotNone((yield self.store.lookup("hash-T2")))
        again = yield self.store.deleteTransfer("T1")
        self.assertFalse(again)

    @defer.inlineCallbacks
    def test_expired(self) -> Any:
        """
        Expired means ``expires <= now``; soonest expired first, at most
        ``limit``; the clock is the default ``now``.
        """
        yield self.store.createTransfer(makeTransfer("T1", days=2))
        yield self.store.createTransfer(makeTransfer("T2", days=1))
        yield self.store.createTransfer(makeTransfer("T3", days=3))
        self.assertEqual((yield self.store.expiredTransfers()), [])
        self.assertEqual((yield self.store.expiredTransfers(START + DAY - 1)), [])
        expired = yield self.store.expiredTransfers(START + DAY)
        self.assertEqual([t.id for t in expired], ["T2"])
        self.assertEqual(expired[0], makeTransfer("T2", days=1))
        self.clock.advance(2 * DAY)
        expired = yield self.store.expiredTransfers()
        self.assertEqual([t.id for t in expired], ["T2", "T1"])
        expired = yield self.store.expiredTransfers(START + 10 * DAY, limit=2)
        self.assertEqual([t.id for t in expired], ["T2", "T1"])

    @defer.inlineCallbacks
    def test_purgeLoop(self) -> Any:
        """The purge's loop: ask, delete, ask again until none is left."""
        for i in range(5):
            yield self.store.createTransfer(makeTransfer(f"T{i}", days=1))
        self.clock.advance(DAY)
        rounds = 0
        while True:
            expired = yield self.store.expiredTransfers(limit=2)
            if not expired:
                break
            rounds += 1
            for transfer in expired:
                yield self.store.deleteTransfer(transfer.id)
        self.assertEqual(rounds, 3)
        self.assertEqual((yield self.count("transfers")), 0)
        self.assertEqual((yield self.count("files")), 0)


class RevocationTests(StoreTestCase):
    @defer.inlineCallbacks
    def test_revokeKeepsTheFirstTime(self) -> Any:
        yield self.store.createTransfer(makeTransfer())
        self.assertTrue((yield self.store.revoke("T1")))
        self.clock.advance(60)
        self.assertTrue((yield self.store.revoke("T1")))
        found = yield self.store.transfer("T1")
        self.assertEqual(found.revoked, START)
        self.assertFalse((yield self.store.revoke("nope")))

    @defer.inlineCallbacks
    def test_extend(self) -> Any:
        """From the expiry while live, from now once expired."""
        yield self.store.createTransfer(makeTransfer(days=1))
        self.assertTrue((yield self.store.extend("T1", 2)))
        self.assertEqual((yield self.store.transfer("T1")).expires, START + 3 * 86400)
        self.clock.advance(10 * 86400)
        yield self.store.extend("T1", 1)
        self.assertEqual((yield self.store.transfer("T1")).expires, START + 11 * 86400)
        self.assertFalse((yield self.store.extend("nope", 1)))

    @defer.inlineCallbacks
    def test_extendRefused(self) -> Any:
        """Never a revoked transfer, a purged one, nor one a purge has claimed (its objects are going)."""
        for id in ("T1", "T2", "T3"):
            yield self.store.createTransfer(makeTransfer(id, days=1))
        yield self.store.revoke("T1")
        yield self.store.tombstone("T2")
        self.clock.advance(2 * 86400)
        yield self.store.claimExpired()
        for id in ("T1", "T2", "T3"):
            self.assertFalse((yield self.store.extend(id, 1)), id)
        self.assertEqual((yield self.store.transfer("T3")).expires, START + 86400)
        self.clock.advance(PURGE_CLAIM_TIMEOUT)  # a claim whose purge died lapses
        self.assertTrue((yield self.store.extend("T3", 1)))

    @defer.inlineCallbacks
    def test_listNewestFirst(self) -> Any:
        yield self.store.createTransfer(makeTransfer("T1", created=START))
        yield self.store.createTransfer(makeTransfer("T2", created=START + 10, sender="Bob@example.test"))
        self.assertEqual([t.id for t in (yield self.store.transfers())], ["T2", "T1"])
        self.assertEqual([t.id for t in (yield self.store.transfers(sender="bob@EXAMPLE.test"))], ["T2"])
        self.assertEqual([t.id for t in (yield self.store.transfers(since=START + 5))], ["T2"])
        self.assertEqual((yield self.store.transfers(tenant="other")), [])


class DownloadTests(StoreTestCase):
    @defer.inlineCallbacks
    def test_record(self) -> Any:
        yield self.store.createTransfer(makeTransfer())
        yield self.store.recordDownload("T1", 1, "192.0.2.7", "Mozilla/5.0")
        self.clock.advance(60)
        yield self.store.recordDownload("T1", 0, "2001:db8::1", None)
        downloads = yield self.store.downloads("T1")
        self.assertEqual(
            [(d.n, d.tenant, d.name, d.at, d.client, d.user_agent) for d in downloads],
            [
                (1, "example", "Überblick – 2024.xlsx", START, "192.0.2.7", "Mozilla/5.0"),
                (0, "example", "offerte.pdf", START + 60, "2001:db8::1", None),
            ],
        )
        self.assertTrue(all(isinstance(d, Download) for d in downloads))
        self.assertLess(downloads[0].id, downloads[1].id)

    @defer.inlineCallbacks
    def test_keptAfterPurge(self) -> Any:
        """The audit trail outlives the transfer, still naming tenant and file."""
        yield self.store.createTransfer(makeTransfer())
        yield self.store.recordDownload("T1", 0, "192.0.2.7", "curl/8")
        yield self.store.deleteTransfer("T1")
        [download] = yield self.store.downloads("T1")
        self.assertEqual((download.tenant, download.name), ("example", "offerte.pdf"))

    @defer.inlineCallbacks
    def test_afterPurge(self) -> Any:
        """A download finishing after its transfer was purged is still recorded."""
        yield self.store.recordDownload("gone", 3, "192.0.2.7", "curl/8")
        [download] = yield self.store.downloads("gone")
        self.assertEqual(
            (download.transfer_id, download.n, download.tenant, download.name),
            ("gone", 3, None, None),
        )

    @defer.inlineCallbacks
    def test_perTransfer(self) -> Any:
        yield self.store.createTransfer(makeTransfer("T1"))
        yield self.store.createTransfer(makeTransfer("T2"))
        yield self.store.recordDownload("T1", 0, "192.0.2.7", "a")
        yield self.store.recordDownload("T2", 0, "192.0.2.8", "b")
        downloads = yield self.store.downloads("T2")
        self.assertEqual([d.client for d in downloads], ["192.0.2.8"])


class UserTests(StoreTestCase):
    @defer.inlineCallbacks
    def test_create(self) -> Any:
        known = yield self.store.isKnownUser("example", "alice@example.test")
        self.assertFalse(known)
        created = yield self.store.createUser("example", "alice@example.test", "welcome")
        self.assertTrue(created)
        created = yield self.store.createUser("example", "alice@example.test", "silent")
        self.assertFalse(created)
        known = yield self.store.isKnownUser("example", "alice@example.test")
        self.assertTrue(known)
        rows = yield self.db.runQuery("SELECT tenant, address, created, how FROM users")
        self.assertEqual(rows, [("example", "alice@example.test", START, "welcome")])

    @defer.inlineCallbacks
    def test_caseInsensitive(self) -> Any:
        """The whole address is compared without case (see addresses.addressKey)."""
        yield self.store.createUser("example", "Alice.Smith@Example.TEST", "config")
        for address in (
            "alice.smith@example.test",
            "ALICE.SMITH@EXAMPLE.TEST",
            " alice.smith@example.test.",
        ):
            known = yield self.store.isKnownUser("example", address)
            self.assertTrue(known, address)
        created = yield self.store.createUser("example", "ALICE.smith@example.test", "silent")
        self.assertFalse(created)

    @defer.inlineCallbacks
    def test_internationalDomain(self) -> Any:
        """A domain matches in its U-label and A-label forms (SPEC 3)."""
        yield self.store.createUser("example", "jan@bücher.example", "config")
        known = yield self.store.isKnownUser("example", "jan@xn--bcher-kva.example")
        self.assertTrue(known)

    @defer.inlineCallbacks
    def test_perTenant(self) -> Any:
        yield self.store.createUser("example", "alice@example.test", "config")
        known = yield self.store.isKnownUser("other", "alice@example.test")
        self.assertFalse(known)
        created = yield self.store.createUser("other", "alice@example.test", "config")
        self.assertTrue(created)

    @defer.inlineCallbacks
    def test_raceCreatesOnce(self) -> Any:
        """Of two messages creating one user at once, one gets ``True`` (one welcome)."""
        results = yield defer.gatherResults(
            [self.store.createUser("example", "bob@example.test", "welcome") for _ in range(5)]
        )
        self.assertEqual(sorted(results), [False, False, False, False, True])

    def test_badHow(self) -> None:
        self.assertRaises(ValueError, self.store.createUser, "example", "a@example.test", "magic")


class DedupKeyTests(SynchronousTestCase):
    key = staticmethod(TransferStore.dedupKey)

    def test_shape(self) -> None:
        key = self.key("example", "<m@x>", "a@example.test", ["b@x.test"], "protected")
        self.assertEqual(len(key), 64)
        int(key, 16)

    def test_canonical(self) -> None:
        """Recipient order, repeats and case, and address case do not matter."""
        one = self.key("example", "<m@x>", "Alice@Example.test", ["b@x.test", "C@y.test"], "p")
        two = self.key(
            "example", " <m@x> ", "alice@example.TEST", ["c@Y.test", "B@x.test", "b@x.test"], "p"
        )
        self.assertEqual(one, two)

    def test_distinct(self) -> None:
        """Every field takes part, and fields cannot run into each other."""
        base = ("example", "<m@x>", "a@example.test", ("b@x.test",), "protected")
        changed = [
            ("other", "<m@x>", "a@example.test", ("b@x.test",), "protected"),
            ("example", "<M@x>", "a@example.test", ("b@x.test",), "protected"),
            ("example", "<m@x>", "z@example.test", ("b@x.test",), "protected"),
            ("example", "<m@x>", "a@example.test", ("b@x.test", "c@x.test"), "protected"),
            ("example", "<m@x>", "a@example.test", (), "protected"),
            ("example", "<m@x>", "a@example.test", ("b@x.test",), "internal"),
            ("example", "<m@x>", "", ("b@x.test",), "protected"),
            ("exampl", "e<m@x>", "a@example.test", ("b@x.test",), "protected"),
        ]
        keys = {self.key(*base)} | {self.key(*values) for values in changed}
        self.assertEqual(len(keys), 1 + len(changed))

    def test_noMessageId(self) -> None:
        """A message with no id has no key: it is never a duplicate (SPEC 4)."""
        self.assertRaises(ValueError, self.key, "example", "", "a@x", ["b@y"], "p")
        self.assertRaises(ValueError, self.key, "example", "  ", "a@x", ["b@y"], "p")

    @given(
        st.lists(st.emails(), min_size=1, max_size=6),
        st.randoms(use_true_random=False),
    )
    def test_recipientOrder(self, recipients: list[str], random: Any) -> None:
        shuffled = [r.upper() if random.random() < 0.5 else r for r in recipients]
        random.shuffle(shuffled)
        self.assertEqual(
            self.key("example", "<m@x>", "a@x", recipients, "p"),
            self.key("example", "<m@x>", "a@x", shuffled, "p"),
        )


class DedupTests(StoreTestCase):
    key = TransferStore.dedupKey("example", "<m@x>", "a@example.test", ["b@x.test"], "protected")

    def state(self) -> Any:
        d = self.db.runQuery(
            "SELECT tenant, state, created, updated FROM relayed WHERE dedup_key = ?", (self.key,)
        )
        d.addCallback(lambda rows: rows[0] if rows else None)
        return d

    @defer.inlineCallbacks
    def test_relayed(self) -> Any:
        """new -> inflight while relaying -> done for 24 hours -> new."""
        self.assertEqual((yield self.store.claim(self.key, "example")), NEW)
        self.assertEqual((yield self.state()), ("example", "inflight", START, START))
        self.assertEqual((yield self.store.claim(self.key)), INFLIGHT)
        self.clock.advance(30)
        yield self.store.markDone(self.key)
        self.assertEqual((yield self.state()), ("example", "done", START, START + 30))
        self.assertEqual((yield self.store.claim(self.key)), DONE)
        # The window runs from when the relay was accepted.
        self.clock.advance(DEDUP_WINDOW - 1)
        self.assertEqual((yield self.store.claim(self.key)), DONE)
        self.clock.advance(1)
        self.assertEqual((yield self.store.claim(self.key, "example")), NEW)
        now = START + 30 + DEDUP_WINDOW
        self.assertEqual((yield self.state()), ("example", "inflight", now, now))
        self.assertEqual((yield self.store.claim(self.key)), INFLIGHT)

    @defer.inlineCallbacks
    def test_staleInflight(self) -> Any:
        """A claim its process never finished (a crash) expires."""
        self.assertEqual((yield self.store.claim(self.key)), NEW)
        self.clock.advance(INFLIGHT_TIMEOUT - 1)
        self.assertEqual((yield self.store.claim(self.key)), INFLIGHT)
        self.clock.advance(1)
        self.assertEqual((yield self.store.claim(self.key)), NEW)
        self.assertEqual((yield self.store.claim(self.key)), INFLIGHT)

    @defer.inlineCallbacks
    def test_release(self) -> Any:
        """A failed relay releases its claim: EXO's retry relays."""
        self.assertEqual((yield self.store.claim(self.key)), NEW)
        yield self.store.release(self.key)
        self.assertIsNone((yield self.state()))
        self.assertEqual((yield self.store.claim(self.key)), NEW)

    @defer.inlineCallbacks
    def test_releaseKeepsDone(self) -> Any:
        yield self.store.claim(self.key)
        yield self.store.markDone(self.key)
        yield self.store.release(self.key)
        self.assertEqual((yield self.store.claim(self.key)), DONE)

    @defer.inlineCallbacks
    def test_markDoneWithoutClaim(self) -> Any:
        yield self.store.markDone(self.key, "example")
        self.assertEqual((yield self.state()), ("example", "done", START, START))
        self.assertEqual((yield self.store.claim(self.key)), DONE)

    @defer.inlineCallbacks
    def test_legs(self) -> Any:
        """Each leg is its own record: a retry relays only the missing leg."""
        internal = TransferStore.dedupKey(
            "example", "<m@x>", "a@example.test", ["c@example.test"], "internal"
        )
        self.assertEqual((yield self.store.claim(self.key)), NEW)
        self.assertEqual((yield self.store.claim(internal)), NEW)
        yield self.store.markDone(internal)
        yield self.store.release(self.key)
        self.assertEqual((yield self.store.claim(internal)), DONE)
        self.assertEqual((yield self.store.claim(self.key)), NEW)

    @defer.inlineCallbacks
    def test_copiesAtOnce(self) -> Any:
        """Of copies claimed together exactly one relays."""
        results = yield defer.gatherResults([self.store.claim(self.key) for _ in range(4)])
        self.assertEqual(sorted(results), [INFLIGHT, INFLIGHT, INFLIGHT, NEW])

    @defer.inlineCallbacks
    def test_purge(self) -> Any:
        """Rows a dedup window old go; younger ones stay."""
        old = TransferStore.dedupKey("example", "<old@x>", "a@x", ["b@y"], "p")
        yield self.store.claim(old)
        yield self.store.markDone(old)
        self.clock.advance(DAY / 2)
        yield self.store.claim(self.key)
        purged = yield self.store.purgeDedup(START + DAY - 1)
        self.assertEqual(purged, 0)
        self.clock.advance(DAY / 2)
        purged = yield self.store.purgeDedup()
        self.assertEqual(purged, 1)
        self.assertEqual((yield self.count("relayed")), 1)
        self.assertEqual((yield self.store.claim(old)), NEW)
        purged = yield self.store.purgeDedup(START + 10 * DAY)
        self.assertEqual(purged, 2)
        self.assertEqual((yield self.count("relayed")), 0)


class RecipientSideTests(StoreTestCase):
    @defer.inlineCallbacks
    def test_tombstone(self) -> Any:
        """Purged: files, subject and recipients go; hash, tenant, sender and dates stay."""
        yield self.store.createTransfer(makeTransfer(sender_name="Alice", sender_hash="s1"))
        self.assertTrue((yield self.store.tombstone("T1")))
        self.assertFalse((yield self.store.tombstone("T1")))
        transfer = yield self.store.lookup("hash-T1")
        self.assertEqual((transfer.tenant, transfer.sender, transfer.sender_name, transfer.files, transfer.subject,
                          transfer.recipients, transfer.purged, transfer.expires),
                         ("example", "alice@example.test", "Alice", (), "", (), START, START + 14 * DAY))
        self.assertEqual((yield self.count("files")), 0)
        self.clock.advance(20 * DAY)
        self.assertEqual((yield self.store.expiredTransfers()), [])
        self.assertEqual((yield self.store.lookupSender("s1")).id, "T1")

    @defer.inlineCallbacks
    def test_revoke(self) -> Any:
        yield self.store.createTransfer(makeTransfer())
        self.assertEqual((yield self.store.expiredTransfers()), [])
        self.clock.advance(5)
        self.assertTrue((yield self.store.revoke("T1")))
        self.assertEqual((yield self.store.lookup("hash-T1")).revoked, START + 5)
        # A withdrawn transfer's files go at the next purge.
        self.assertEqual([t.id for t in (yield self.store.expiredTransfers())], ["T1"])

    @defer.inlineCallbacks
    def test_firstDownload(self) -> Any:
        yield self.store.createTransfer(makeTransfer())
        firsts = yield defer.gatherResults([self.store.recordDownload("T1", n, "192.0.2.7", "x", "bob@external.test")
                                            for n in (0, 0, 1, 0)])
        self.assertEqual(firsts, [True, False, True, False])
        downloads = yield self.store.downloads("T1")
        self.assertEqual({d.recipient for d in downloads}, {"bob@external.test"})

class PurgeClaimTests(StoreTestCase):
    @defer.inlineCallbacks
    def test_claimOnce(self) -> Any:
        """A claimed transfer is not handed to another purge until its claim lapses."""
        for i in range(3):
            yield self.store.createTransfer(makeTransfer(f"T{i}", days=1))
        self.clock.advance(DAY)
        first = yield self.store.claimExpired(limit=2)
        second = yield self.store.claimExpired(limit=2)
        self.assertEqual(([t.id for t in first], [t.id for t in second]), (["T0", "T1"], ["T2"]))
        self.assertEqual((yield self.store.claimExpired()), [])
        self.assertEqual(first[0], makeTransfer("T0", days=1))
        self.clock.advance(PURGE_CLAIM_TIMEOUT)
        again = yield self.store.claimExpired()
        self.assertEqual([t.id for t in again], ["T0", "T1", "T2"])

    @defer.inlineCallbacks
    def test_twoNodes(self) -> Any:
        """
        Two purges on two pools (two nodes) at once: every expired
        transfer is deleted exactly once, the live one stays.
        """
        other = self.otherNode()
        self.addCleanup(other.close)
        yield other.open()
        otherStore = TransferStore(other, self.clock)
        for i in range(40):
            yield self.store.createTransfer(makeTransfer(f"T{i:02}", days=1))
        yield self.store.createTransfer(makeTransfer("live", days=30))
        self.clock.advance(DAY)
        deleted: list[str] = []

        class Store:
            def delete(self, key: str) -> Any:
                deleted.append(key)
                return defer.succeed(None)

        counts = yield defer.gatherResults([
            defer.ensureDeferred(purgeExpired(store, Store(), self.clock.seconds(), batch=3))
            for store in (self.store, otherStore, self.store, otherStore)
        ])
        self.assertEqual(sum(c.total for c in counts), 40)
        self.assertEqual(sorted(deleted), sorted(f"T{i:02}" for i in range(40)))  # one object each
        self.assertEqual(len((yield self.store.transfers())), 1)  # the rest are tombstones
        self.assertIsNotNone((yield self.store.lookup("hash-live")))

    def otherNode(self) -> Database:
        return Database(self.db.path)


class PostgreSQLStore:
    """The same tests on a fresh database of the test PostgreSQL cluster."""

    integrityError = psycopg.IntegrityError

    def newDatabase(self) -> Database:
        self.databaseConfig = DatabaseConfig(**freshPostgreSQL())
        return Database.fromConfig(self.databaseConfig)

    def otherNode(self) -> Database:
        return Database.fromConfig(self.databaseConfig)


class TransferTestsPostgreSQL(PostgreSQLStore, TransferTests):
    """TransferTests, on a fresh PostgreSQL database."""


class DownloadTestsPostgreSQL(PostgreSQLStore, DownloadTests):
    """DownloadTests, on a fresh PostgreSQL database."""


class UserTestsPostgreSQL(PostgreSQLStore, UserTests):
    """UserTests, on a fresh PostgreSQL database."""


class DedupTestsPostgreSQL(PostgreSQLStore, DedupTests):
    @defer.inlineCallbacks
    def test_twoNodes(self) -> Any:
        """Copies claimed at once through two pools (two nodes): one relays."""
        other = Database.fromConfig(self.databaseConfig)
        self.addCleanup(other.close)
        yield other.open()
        stores = [self.store, TransferStore(other, self.clock)]
        for n in range(20):
            key = TransferStore.dedupKey("example", f"<m{n}@x>", "a@x", ["b@y"], "protected")
            results = yield defer.gatherResults([stores[i % 2].claim(key) for i in range(6)])
            self.assertEqual(sorted(results), [INFLIGHT] * 5 + [NEW])


class PurgeClaimTestsPostgreSQL(PostgreSQLStore, PurgeClaimTests):
    """PurgeClaimTests, on a fresh PostgreSQL database."""
