"""
Several nodes on one PostgreSQL database and one storage folder: two
real gateway processes, real SMTP and HTTP clients, and a PostgreSQL
server stopped and started under them.
"""

from __future__ import annotations

import email
import os
import re
import smtplib
import subprocess
import sys
import tempfile

from secudoc_gateway.testing import freshPostgreSQL
from secudoc_gateway.testing import postgres as pgcluster
from tests.support import TwoNodes, withAttachments

LINK = re.compile(r"http://127\.0\.0\.1:8080(/t/[A-Za-z0-9_-]{43})")


def message(n: int, data: bytes) -> bytes:
    return withAttachments((f"offer{n}.pdf", data), subject=f"offer {n}", messageId=f"<offer{n}@nodes.test>")


def send(port: int, raw: bytes) -> int:
    """The final reply's code (blocking)."""
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
        try:
            refused = client.sendmail("alice@example.test", ["bob@external.test"], raw)
        except smtplib.SMTPDataError as e:
            return e.smtp_code
        return 0 if refused else 250


def link(relayed: email.message.EmailMessage) -> str:
    [path] = set(LINK.findall(relayed.get_body(("plain",)).get_content()))
    return path


class SharedDatabaseTests(TwoNodes):
    def setUp(self) -> None:
        self.startNodes(freshPostgreSQL())

    def test_anyNodeServesAnyLinkAndDedupHolds(self) -> None:
        """Sent through A, downloaded through B; EXO's resend to B is not relayed again."""
        data = os.urandom(70000)
        self.assertEqual(send(self.a.smtpPort, message(1, data)), 250)
        [relayed] = self.relayed()
        self.assertEqual(relayed["X-SecuDoc-Status"], "protected")
        path = link(relayed)
        self.assertEqual(self.b.get(path + "/0"), (200, data))
        self.assertEqual(self.rows("SELECT count(*) FROM downloads"), [(1,)])
        self.assertEqual(send(self.b.smtpPort, message(1, data)), 250)
        self.assertEqual(len(self.relayed()), 1)

    def test_purgeOnBothAtOnce(self) -> None:
        """
        Two purges at once, one per node: each expired transfer is
        purged once, the live ones keep their files.
        """
        for n in range(30):
            self.assertEqual(send(self.a.smtpPort if n % 2 else self.b.smtpPort, message(n, os.urandom(3000))), 250)
        links = {m["Message-ID"]: link(m) for m in self.relayed()}
        self.rows("UPDATE transfers SET expires = 1 WHERE subject NOT IN ('offer 0', 'offer 1', 'offer 2')")
        env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        purges = [subprocess.Popen([sys.executable, "-m", "secudoc_gateway.cli", "purge", "--config", node.configPath],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
                  for node in (self.a, self.b)]
        outputs = [p.communicate(timeout=120)[0] for p in purges]
        self.assertEqual([p.returncode for p in purges], [0, 0], outputs)
        counts = [int(re.search(r"purged \d+ transfer\(s\): (\d+) expired", out).group(1)) for out in outputs]
        self.assertEqual(sum(counts), 27, outputs)
        self.assertEqual(self.rows("SELECT subject FROM transfers WHERE purged IS NULL ORDER BY subject"),
                         [("offer 0",), ("offer 1",), ("offer 2",)])
        objects = [name for _, _, names in os.walk(os.path.join(self.folder, "objects")) for name in names]
        self.assertEqual(len(objects), 3, objects)
        for n in range(30):
            code, _ = self.b.get(links[f"<offer{n}@nodes.test>"] + "/0")
            if n < 3:
                self.assertEqual(code, 200)
            else:
                self.assertEqual(code, 410)  # its tombstone: "expired", never "unknown"


class DatabaseRestartTests(TwoNodes):
    """On a PostgreSQL server of its own, which it stops and starts."""

    def setUp(self) -> None:
        self.cluster = pgcluster.Cluster(tempfile.mkdtemp(prefix="secudoc-pg-"))
        self.cluster.create()
        self.cluster.start()
        self.addCleanup(self.cluster.destroy)
        self.patch(os, "environ", dict(os.environ, SECUDOC_NODES_PASSWORD=self.cluster.password))
        self.startNodes({"url": pgcluster.freshDatabase(self.cluster.url(), self.cluster.password),
                         "password_env": "SECUDOC_NODES_PASSWORD"})

    def test_stopAndStart(self) -> None:
        """Database down: 451 (never 250) and /healthz 503; back up: the nodes recover by themselves."""
        self.assertEqual(send(self.a.smtpPort, message(1, os.urandom(3000))), 250)
        self.cluster.stop()
        self.assertEqual(send(self.a.smtpPort, message(2, os.urandom(3000))), 451)
        self.assertEqual(send(self.b.smtpPort, message(3, os.urandom(3000))), 451)
        for node in (self.a, self.b):
            node.waitFor(lambda: node.health() == 503, 30, "/healthz to say 503")
        self.cluster.start()
        for node in (self.a, self.b):
            node.waitFor(lambda: node.health() == 200, 60, "/healthz to say 200 again")
        self.assertEqual(send(self.a.smtpPort, message(2, os.urandom(3000))), 250)
        self.assertEqual(send(self.b.smtpPort, message(3, os.urandom(3000))), 250)
        self.assertEqual(sorted(m["Subject"] for m in self.relayed()), ["offer 1", "offer 2", "offer 3"])
