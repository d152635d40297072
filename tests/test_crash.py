"""
Crash safety (SPEC 7's durability contract): the gateway as operators
run it (twistd, two workers) is killed with SIGKILL at random moments
while clients send protected messages, started again, and killed
again.  Whatever got a 250 must have its object and its rows and a
link that downloads the file; a message that got no 250 (its client
sends it again, as EXO does) must never be relayed twice.
"""

from __future__ import annotations

import email
import email.policy
import os
import random
import re
import signal
import smtplib
import threading
from collections import defaultdict
from typing import Optional

from twisted.trial.unittest import SynchronousTestCase

from secudoc_gateway.config import loadConfig
from secudoc_gateway.testing import GatewayProcess
from tests.support import databaseRows, maildirMessages, splitEnvelope, withAttachments

LINK = re.compile(r"http://127\.0\.0\.1:8080(/t/[A-Za-z0-9_-]{43})")
CLIENTS = 6
KILLS = 3


def message(n: int, data: bytes) -> bytes:
    return withAttachments((f"file{n}.bin", data), subject=f"crash {n}", messageId=f"<crash{n}@crash.test>")


def send(port: int, raw: bytes) -> Optional[int]:
    """The final reply's code, or ``None`` when the connection died before it (blocking)."""
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            try:
                client.sendmail("alice@example.test", ["bob@external.test"], raw)
            except smtplib.SMTPResponseException as e:
                return e.smtp_code
            return 250
    except (OSError, smtplib.SMTPServerDisconnected):
        return None


class Load:
    """
    ``CLIENTS`` clients sending the messages not yet answered 250, until
    the gateway is gone; each reply kept by message number.
    """

    def __init__(self, port: int, payloads: dict[int, bytes], replies: dict[int, list[Optional[int]]],
                 todo: list[int]) -> None:
        self.port = port
        self.payloads = payloads
        self.replies = replies
        self.todo = todo
        self.lock = threading.Lock()
        self.accepted = 0
        self.acceptedEvent = threading.Condition(self.lock)
        self.dead = False

    def client(self) -> None:
        while True:
            with self.lock:
                if self.dead or not self.todo:
                    return
                n = self.todo.pop(0)
            code = send(self.port, message(n, self.payloads[n]))
            with self.lock:
                self.replies[n].append(code)
                if code == 250:
                    self.accepted += 1
                    self.acceptedEvent.notify_all()
                else:
                    self.todo.append(n)  # sent again, as EXO does
                if code is None and self.dead:
                    return

    def run(self, killAfter: int, kill) -> None:
        """Kill once ``killAfter`` messages got a 250 this round (and at once if the work runs out)."""
        threads = [threading.Thread(target=self.client) for _ in range(CLIENTS)]
        for thread in threads:
            thread.start()
        with self.lock:
            self.acceptedEvent.wait_for(lambda: self.accepted >= killAfter or not any(t.is_alive() for t in threads),
                                        timeout=60)
        kill()  # while the clients go on sending: the kill finds messages in flight
        with self.lock:
            self.dead = True
        for thread in threads:
            thread.join(60)


class SigkillUnderLoadTests(SynchronousTestCase):
    def test_everyAcceptedMessageSurvivesAndNoneIsRelayedTwice(self) -> None:
        seed = int.from_bytes(os.urandom(4), "big")
        rng = random.Random(seed)
        folder = os.path.abspath(self.mktemp())
        gateway = GatewayProcess.inFolder(folder, workers=2)
        self.addCleanup(lambda: gateway.process is None or gateway.stop())
        total = 120
        payloads = {n: os.urandom(rng.choice((5_000, 20_000, 70_000, 300_000))) for n in range(total)}
        replies: dict[int, list[Optional[int]]] = defaultdict(list)
        todo = list(range(total))
        for _ in range(KILLS):
            gateway.start()
            load = Load(gateway.smtpPort, payloads, replies, todo)

            def kill() -> None:
                # A random moment: a millisecond to a tenth of a second after the n-th 250.
                threading.Event().wait(rng.uniform(0.001, 0.1))
                os.killpg(gateway.process.pid, signal.SIGKILL)
                gateway.process.wait(30)

            load.run(rng.randint(1, 12), kill)
        # Back up: every message not answered 250 is sent once more.
        gateway.start()
        for n in list(todo):
            replies[n].append(send(gateway.smtpPort, message(n, payloads[n])))
        seen = f"(seed {seed}; replies {dict(replies)})"
        self.assertTrue(any(None in r for r in replies.values()), f"no kill caught a message in flight {seen}")

        relayed: dict[str, list[email.message.EmailMessage]] = defaultdict(list)
        for stored in maildirMessages(os.path.join(folder, "outbox", "example")):
            m = email.message_from_bytes(splitEnvelope(stored)[2], policy=email.policy.default)
            relayed[m["Message-ID"]].append(m)
        twice = {mid: len(copies) for mid, copies in relayed.items() if len(copies) > 1}
        self.assertEqual(twice, {}, f"relayed more than once {seen}")
        database = loadConfig(gateway.configPath).database
        for n, codes in replies.items():
            if 250 not in codes:
                continue
            messageId = f"<crash{n}@crash.test>"
            self.assertIn(messageId, relayed, f"message {n} got 250 but was not relayed {seen}")
            [copy] = relayed[messageId]
            self.assertEqual(copy["X-SecuDoc-Status"], "protected")
            self.assertEqual(databaseRows(database, "SELECT count(*) FROM transfers t JOIN files f"
                                          " ON f.transfer_id = t.id WHERE t.message_id = ?", (messageId,)),
                             [(1,)], f"message {n}'s rows {seen}")
            [path] = set(LINK.findall(copy.get_body(("plain",)).get_content()))
            self.assertEqual(gateway.get(path + "/0"), (200, payloads[n]), f"message {n}'s link {seen}")
