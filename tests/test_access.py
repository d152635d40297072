"""Codes, sessions and rate limits (secudoc_gateway.access) on a real SQLite file and a ``task.Clock``."""

from __future__ import annotations

import os
from typing import Any

from twisted.internet import defer, task
from twisted.trial.unittest import SynchronousTestCase, TestCase

from secudoc_gateway.access import (
    EXHAUSTED, EXPIRED, RIGHT, WRONG, AccessStore, Limit, newCode,
)
from secudoc_gateway.crypto import codeHash, secretHash
from secudoc_gateway.db import Database
from secudoc_gateway.transfers import TransferStore
from tests import test_transfers

START = test_transfers.START


class HashTests(SynchronousTestCase):
    def test_codes(self) -> None:
        codes = {newCode() for _ in range(200)}
        self.assertTrue(all(len(c) == 6 and c.isdigit() for c in codes))
        self.assertGreater(len(codes), 150)

    def test_codeHashNeedsTheToken(self) -> None:
        one = codeHash("token-a", "T1", "bob@x.test", "123456")
        self.assertEqual(one, codeHash("token-a", "T1", "bob@x.test", "123456"))
        for other in (codeHash("token-b", "T1", "bob@x.test", "123456"), codeHash("token-a", "T2", "bob@x.test", "123456"),
                      codeHash("token-a", "T1", "eve@x.test", "123456"), codeHash("token-a", "T1", "bob@x.test", "123457")):
            self.assertNotEqual(one, other)
        self.assertNotIn("123456", one)
        self.assertNotEqual(secretHash("s"), "s")


class AccessTests(TestCase):
    @defer.inlineCallbacks
    def setUp(self) -> Any:
        self.db = Database(os.path.join(os.path.abspath(self.mktemp()), "gateway.sqlite3"))
        self.addCleanup(self.db.close)
        yield self.db.open()
        self.clock = task.Clock()
        self.clock.advance(START)
        self.access = AccessStore(self.db, self.clock)
        yield TransferStore(self.db, self.clock).createTransfer(test_transfers.makeTransfer())

    @defer.inlineCallbacks
    def test_limits(self) -> Any:
        limits = [Limit("a", 2, 60), Limit("b", 3, 60)]
        answers = []
        for _ in range(3):
            answers.append((yield self.access.allow(limits)))
        self.assertEqual(answers, [True, True, False])
        # The refused event counted nowhere: "b" still has room for one.
        self.assertTrue((yield self.access.allow([Limit("b", 3, 60)])))
        self.assertFalse((yield self.access.allow([Limit("b", 3, 60)])))
        self.clock.advance(61)
        self.assertTrue((yield self.access.allow(limits)))

    @defer.inlineCallbacks
    def test_codeTries(self) -> Any:
        right = codeHash("tok", "T1", "bob@external.test", "123456")
        wrong = codeHash("tok", "T1", "bob@external.test", "654321")
        yield self.access.storeCode("T1", "bob@external.test", right)
        outcomes = []
        for _ in range(5):
            outcomes.append((yield self.access.checkCode("T1", "bob@external.test", wrong)))
        self.assertEqual(outcomes, [WRONG] * 5)
        self.assertEqual((yield self.access.checkCode("T1", "bob@external.test", right)), EXHAUSTED)
        # A new code brings fresh tries; a right one is used up.
        yield self.access.storeCode("T1", "bob@external.test", right)
        self.assertEqual((yield self.access.checkCode("T1", "bob@external.test", right)), RIGHT)
        self.assertEqual((yield self.access.checkCode("T1", "bob@external.test", right)), WRONG)
        self.assertEqual((yield self.access.checkCode("T1", "nobody@x.test", right)), WRONG)

    @defer.inlineCallbacks
    def test_codeExpires(self) -> Any:
        right = codeHash("tok", "T1", "bob@external.test", "123456")
        yield self.access.storeCode("T1", "bob@external.test", right)
        self.clock.advance(15 * 60)
        self.assertEqual((yield self.access.checkCode("T1", "bob@external.test", right)), EXPIRED)

    @defer.inlineCallbacks
    def test_sessions(self) -> Any:
        yield self.access.openSession("secret", "T1", "bob@external.test", START + 100)
        self.assertEqual((yield self.access.session("secret", "T1")), "bob@external.test")
        self.assertIsNone((yield self.access.session("secret", "T2")))
        self.assertIsNone((yield self.access.session("other", "T1")))
        rows = yield self.db.runQuery("SELECT secret_hash FROM sessions")
        self.assertNotIn("secret", str(rows).replace(secretHash("secret"), ""))
        self.clock.advance(100)
        self.assertIsNone((yield self.access.session("secret", "T1")))
