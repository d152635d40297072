"""
``--workers``: real twistd parents with real worker processes, real
SMTP clients on many connections, /metrics over HTTP.
"""

from __future__ import annotations

import email
import os
import signal
import smtplib
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage

from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families
from twisted.trial.unittest import SynchronousTestCase

from secudoc_gateway.testing.ports import freePort
from secudoc_gateway.testing import GatewayProcess, writeConfig
from tests.support import maildirMessages, splitEnvelope, untilBlocking


def protectedMessage(n: int) -> bytes:
    message = EmailMessage()
    message["From"] = "alice@example.test"
    message["To"] = "bob@external.test"
    message["Subject"] = f"message {n}"
    message["Message-ID"] = f"<m{n}@workers.test>"
    message.set_content("See attached.\n")
    message.add_attachment(os.urandom(4096), maintype="application", subtype="pdf", filename=f"f{n}.pdf")
    return message.as_bytes()


def metricTotal(text: str, name: str) -> float:
    return sum(sample.value for family in text_string_to_metric_families(text)
               for sample in family.samples if sample.name == name)


class WorkersTestCase(SynchronousTestCase):
    def startGateway(self, workers: int = 2) -> GatewayProcess:
        self.folder = os.path.abspath(self.mktemp())
        self.metricsFolder = os.path.join(self.folder, "metrics")
        os.makedirs(self.metricsFolder)
        smtpPort, webPort, self.metricsPort = freePort(), freePort(), freePort()
        path = writeConfig(self.folder, smtp={"listen": [f"tcp:{smtpPort}:interface=127.0.0.1"]},
                           web={"listen": [f"tcp:{webPort}:interface=127.0.0.1"]},
                           metrics={"listen": [f"tcp:{self.metricsPort}:interface=127.0.0.1"]})
        gateway = GatewayProcess(path, smtpPort, webPort, workers,
                                 env={"PROMETHEUS_MULTIPROC_DIR": self.metricsFolder})
        self.addCleanup(lambda: gateway.process is None or gateway.stop())
        return gateway

    def outbox(self) -> set[str]:
        """Message-IDs relayed into the demo tenant's maildir."""
        ids = set()
        for stored in maildirMessages(os.path.join(self.folder, "outbox", "example")):
            ids.add(email.message_from_bytes(splitEnvelope(stored)[2])["Message-ID"])
        return ids


class LoadTests(WorkersTestCase):
    def test_300MessagesOver20Connections(self) -> None:
        """
        Both workers take connections and relay; /metrics, answered by
        either, counts every message once; a stale metrics file of an
        earlier run is cleaned away at start.
        """
        gateway = self.startGateway()
        with open(os.path.join(self.metricsFolder, "counter_1.db"), "wb") as f:
            f.write(b"stale")
        gateway.start()

        def connection(first: int) -> list[int]:
            codes = []
            with smtplib.SMTP("127.0.0.1", gateway.smtpPort, timeout=60) as client:
                for n in range(first, first + 15):
                    refused = client.sendmail("alice@example.test", ["bob@external.test"], protectedMessage(n))
                    codes.append(250 if not refused else 0)
            return codes

        with ThreadPoolExecutor(20) as pool:
            codes = [c for result in pool.map(connection, range(0, 300, 15)) for c in result]
        self.assertEqual(codes, [250] * 300)
        self.assertEqual(self.outbox(), {f"<m{n}@workers.test>" for n in range(300)})
        for _ in range(4):  # whichever worker answers
            status, body = gateway.get("/metrics", port=self.metricsPort)
            self.assertEqual(status, 200)
            self.assertEqual(metricTotal(body.decode(), "secudoc_messages_total"), 300)
            self.assertEqual(metricTotal(body.decode(), "secudoc_smtp_connections_total"), 20)
        perWorker = {}
        for pid in gateway.workerPids().values():
            values = MmapedDict.read_all_values_from_file(os.path.join(self.metricsFolder, f"counter_{pid}.db"))
            perWorker[pid] = sum(value for key, value, *_ in values if '"secudoc_messages_total"' in key)
        self.assertEqual(sum(perWorker.values()), 300)
        self.assertEqual(len([n for n in perWorker.values() if n > 0]), 2, perWorker)


class AdoptableTests(SynchronousTestCase):
    def test_kinds(self) -> None:
        """TCP and UNIX sockets are adopted as they are, ssl: gets its TLS back, anything else is refused."""
        from twisted.internet import reactor
        from twisted.internet.endpoints import StandardIOEndpoint, serverFromString
        from twisted.internet.protocol import Factory
        from twisted.protocols.tls import TLSMemoryBIOFactory

        from secudoc_gateway.errors import ConfigError
        from secudoc_gateway.listening import adoptable

        factory = Factory()
        for description in ("tcp:0", "tcp6:0", "unix:/nowhere/socket"):
            self.assertIs(adoptable(serverFromString(reactor, description), factory), factory)
        certificate = os.path.join(os.path.abspath(self.mktemp()), "gateway.pem")
        writeConfig(os.path.dirname(certificate))
        wrapped = adoptable(serverFromString(reactor, f"ssl:0:privateKey={certificate}"), factory)
        self.assertIsInstance(wrapped, TLSMemoryBIOFactory)
        self.assertIs(wrapped.wrappedFactory, factory)
        e = self.assertRaises(ConfigError, adoptable, StandardIOEndpoint(reactor), factory)
        self.assertIn("cannot be shared by --workers", e.problems[0])


class TLSListenerTests(WorkersTestCase):
    def test_sslWebListener(self) -> None:
        """An ssl: listener stays TLS in every worker that adopts it."""
        self.folder = os.path.abspath(self.mktemp())
        smtpPort, webPort = freePort(), freePort()
        certificate = os.path.join(self.folder, "gateway.pem")
        path = writeConfig(self.folder, smtp={"listen": [f"tcp:{smtpPort}:interface=127.0.0.1"]},
                           web={"listen": [f"ssl:{webPort}:interface=127.0.0.1:privateKey={certificate}"]})
        gateway = GatewayProcess(path, smtpPort, webPort, 2, webScheme="https")
        self.addCleanup(lambda: gateway.process is None or gateway.stop())
        gateway.start()
        for _ in range(4):
            self.assertEqual(gateway.get("/healthz", "https"), (200, b"ok\n"))
        self.assertEqual(gateway.get("/healthz", "http")[0], 0)  # no plain HTTP on it


class SupervisionTests(WorkersTestCase):
    def test_killedWorkerRestarted(self) -> None:
        """
        A worker killed under load is logged and started again; every
        message that got 250 was relayed; the new worker serves.
        """
        gateway = self.startGateway().start()
        accepted: list[str] = []
        lock = threading.Lock()
        stop = threading.Event()

        def sender(lane: int) -> None:
            n = 0
            while not stop.is_set():
                try:
                    # Five messages a connection, so new connections reach the new worker too.
                    with smtplib.SMTP("127.0.0.1", gateway.smtpPort, timeout=30) as client:
                        for _ in range(5):
                            messageId = lane * 100000 + n
                            n += 1
                            if not client.sendmail("alice@example.test", ["bob@external.test"],
                                                   protectedMessage(messageId)):
                                with lock:
                                    accepted.append(f"<m{messageId}@workers.test>")
                except (smtplib.SMTPException, OSError):
                    continue  # that connection's worker died: a new connection

        threads = [threading.Thread(target=sender, args=(lane,)) for lane in range(8)]
        for t in threads:
            t.start()
        try:
            gateway.waitFor(lambda: len(accepted) >= 40, 60, "40 messages")
            victim = gateway.workerPids()[0]
            os.kill(victim, signal.SIGKILL)
            gateway.waitFor(lambda: gateway.workerPids()[0] != victim, 30, "worker 0 to start again")
            replacement = gateway.workerPids()[0]
            gateway.waitFor(lambda: self.connections(replacement) > 0, 60, "the new worker to take connections")
            before = len(accepted)
            gateway.waitFor(lambda: len(accepted) >= before + 40, 60, "40 more messages")
        finally:
            stop.set()
            for t in threads:
                t.join(60)
        self.assertIn("worker 0 died", gateway.log())
        self.assertLessEqual(set(accepted), self.outbox())
        # The dead worker's open sessions no longer count; its counts do.
        self.assertFalse(os.path.exists(os.path.join(self.metricsFolder, f"gauge_livesum_{victim}.db")))
        self.assertGreater(self.connections(victim), 0)

    def connections(self, pid: int) -> float:
        """SMTP connections worker ``pid`` has taken, from its metrics file."""
        path = os.path.join(self.metricsFolder, f"counter_{pid}.db")
        if not os.path.exists(path):
            return 0
        values = MmapedDict.read_all_values_from_file(path)
        return sum(v for key, v, *_ in values if '"secudoc_smtp_connections_total"' in key)

    def test_hangupReachesEveryWorker(self) -> None:
        """SIGHUP to the parent: each worker reloads its tenants; none is restarted."""
        gateway = self.startGateway().start()
        workers = gateway.workerPids()
        gateway.process.send_signal(signal.SIGHUP)
        gateway.waitFor(lambda: gateway.log().count("reloaded 1 tenant(s)") == 2, 30, "both workers to reload")
        self.assertEqual(gateway.workerPids(), workers)
        self.assertNotIn("died", gateway.log())

    def test_sigtermFinishesInFlight(self) -> None:
        """
        SIGTERM to the parent: every listener closes, the message in
        flight still gets its 250, then every process exits.
        """
        gateway = self.startGateway().start()
        workers = list(gateway.workerPids().values())
        client = smtplib.SMTP("127.0.0.1", gateway.smtpPort, timeout=60)
        client.ehlo("client.test")
        client.mail("alice@example.test")
        client.rcpt("bob@external.test")
        code, _ = client.docmd("DATA")
        self.assertEqual(code, 354)
        raw = protectedMessage(1).replace(b"\n", b"\r\n")
        client.send(raw[:1000])
        gateway.process.send_signal(signal.SIGTERM)

        def refused() -> bool:
            try:
                socket.create_connection(("127.0.0.1", gateway.smtpPort), timeout=5).close()
                return False
            except ConnectionRefusedError:
                return True
            except ConnectionResetError:
                return False  # taken into the backlog as the listener closed: ask again

        gateway.waitFor(refused, 30, "the listeners to close")
        client.send(raw[1000:] + b"\r\n.\r\n")
        code, text = client.getreply()
        self.assertEqual(code, 250, text)
        client.close()
        # twistd ends by the signal that stopped it, after a clean shutdown.
        self.assertEqual(gateway.process.wait(90), -signal.SIGTERM)
        self.assertIn("Server Shut Down.", gateway.log())
        for pid in workers:
            self.assertRaises(ProcessLookupError, os.kill, pid, 0)
        self.assertEqual(self.outbox(), {"<m1@workers.test>"})

    def test_parentKilled(self) -> None:
        """A parent killed outright leaves no worker serving on its sockets."""
        gateway = self.startGateway().start()
        workers = list(gateway.workerPids().values())
        gateway.process.kill()
        gateway.process.wait(30)

        def gone() -> bool:
            """Every worker has exited: no such process, or a zombie that init has yet to reap."""
            for pid in workers:
                try:
                    with open(f"/proc/{pid}/stat") as f:
                        state = f.read().rsplit(")", 1)[1].split()[0]
                except FileNotFoundError:
                    continue
                if state != "Z":
                    return False
            return True

        untilBlocking(gone, "every worker to stop with its parent", 60)


class StartAndStopTests(WorkersTestCase):
    """What ``make run`` shows: one ready line, each worker's lines tagged, a quiet Ctrl-C or SIGTERM."""

    def assertCleanRun(self, gateway: GatewayProcess, workers: int, signum: int) -> None:
        self.assertEqual(gateway.wait(90), -signum)  # twistd ends by the signal that stopped it
        log = gateway.log()
        self.assertNotIn("#critical]", log)
        self.assertNotIn("Traceback", log)
        self.assertIn("Server Shut Down.", log)
        lines = log.splitlines()
        [ready] = gateway.readyLines()
        self.assertIn(f"ready: smtp 127.0.0.1:{gateway.smtpPort}, web 127.0.0.1:{gateway.webPort},"
                      f" metrics 127.0.0.1:{self.metricsPort}; 1 tenant(s): example; {workers} worker(s)", ready)
        listening = [line for line in lines if "ListeningService#info]" in line]
        self.assertEqual(len(listening), 3 * workers)
        self.assertLess(max(map(lines.index, listening)), lines.index(ready))  # the start ends with it
        if workers > 1:
            for number in range(workers):
                tagged = [line for line in listening if f"] worker={number} listening on" in line]
                self.assertEqual(len(tagged), 3, number)
            stopping = [line for line in lines if "] worker=" in line and "Received SIGTERM, shutting down." in line]
            self.assertEqual(len(stopping), workers)

    def test_ctrlC(self) -> None:
        """A terminal's Ctrl-C reaches the parent and every worker at once: each stops once, quietly."""
        gateway = self.startGateway().start()
        gateway.signalGroup(signal.SIGINT)
        self.assertCleanRun(gateway, 2, signal.SIGINT)

    def test_sigtermToEveryProcess(self) -> None:
        """SIGTERM to the whole group (systemd's control group) as well as from the parent: one stop each."""
        gateway = self.startGateway().start()
        gateway.signalGroup(signal.SIGTERM)
        self.assertCleanRun(gateway, 2, signal.SIGTERM)

    def test_oneProcess(self) -> None:
        """Without workers the same ready line ends the start, and Ctrl-C stops it as quietly."""
        gateway = self.startGateway(workers=1).start()
        gateway.signalGroup(signal.SIGINT)
        self.assertCleanRun(gateway, 1, signal.SIGINT)
