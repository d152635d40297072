"""
What operators see: the private metrics listener and every series of
SPEC section 8, the public listener answering nothing else, and a start
that fails loudly when a listener cannot be opened.
"""

from __future__ import annotations

import os
import socket
import sys
import time

import treq
from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase

from secudoc_gateway import __version__, tap
from secudoc_gateway.metrics import BUCKETS
from secudoc_gateway.testing import DEMO_TENANT, GatewayProcess, startGateway, writeConfig
from secudoc_gateway.testing.gateway import run
from tests.support import asyncTest, inThread, sendMail, until
from tests.test_logs import message

SERIES = [
    "secudoc_smtp_connections_total", "secudoc_smtp_sessions_active", "secudoc_messages_total",
    "secudoc_attachments_total", "secudoc_attachment_bytes_total", "secudoc_relay_errors_total",
    "secudoc_message_seconds_bucket", "secudoc_downloads_total", "secudoc_build_info",
    "secudoc_config_reload_success", "secudoc_config_reload_success_timestamp_seconds",
    "secudoc_purge_last_success_timestamp_seconds", "secudoc_smtp_replies_total",
    "secudoc_relay_seconds_bucket", "secudoc_tls_certificate_expiry_timestamp_seconds", "secudoc_health_check_up",
]


def closedPort() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def downTenant() -> dict:
    """A second tenant whose relay target does not answer: relay errors, tempfails."""
    return dict(DEMO_TENANT, id="down", domains=["down.test"], users=["*@down.test"],
                relay=f"smtp://127.0.0.1:{closedPort()}", facility_sender="noreply@down.test")


class ListenerTests(TestCase):
    async def start(self):
        self.folder = os.path.abspath(self.mktemp())
        self.gateway = await startGateway(writeConfig(self.folder, [DEMO_TENANT, downTenant()]), reactor)
        self.addCleanup(self.gateway.stop)
        return self.gateway

    async def get(self, url: str):
        response = await treq.get(url, persistent=False)
        return response, await response.text()

    @asyncTest
    async def test_publicListener(self) -> None:
        """/t/ and /healthz only; a plain 404 with the security headers; no Server header."""
        gateway = await self.start()
        for path in ("/metrics", "/", "/favicon.ico", "/t", "/healthz"):
            response, body = await self.get(gateway.webURL + path)
            self.assertEqual(response.code, 200 if path == "/healthz" else 404, path)
            self.assertNotIn("secudoc_", body)
            self.assertIsNone(response.headers.getRawHeaders("server"), path)
            self.assertEqual(response.headers.getRawHeaders("x-content-type-options"), ["nosniff"], path)
            self.assertEqual(response.headers.getRawHeaders("referrer-policy"), ["no-referrer"], path)
            self.assertEqual(response.headers.getRawHeaders("cache-control"), ["no-store"], path)

    @asyncTest
    async def test_metricsListener(self) -> None:
        """/metrics and /healthz; download links are not served here."""
        gateway = await self.start()
        response, body = await self.get(gateway.metricsURL + "/healthz")
        self.assertEqual((response.code, body), (200, "ok\n"))
        response, _ = await self.get(gateway.metricsURL + "/t/" + "A" * 43)
        self.assertEqual(response.code, 404)
        response, body = await self.get(gateway.metricsURL + "/metrics")
        self.assertEqual(response.code, 200)
        self.assertIsNone(response.headers.getRawHeaders("server"))

    @asyncTest
    async def test_everySeries(self) -> None:
        gateway = await self.start()
        code, _ = await inThread(sendMail, gateway.smtpPort, "alice@example.test", ["bob@external.test"],
                                 message("x" * 40))
        self.assertEqual(code, 250)
        code, _ = await inThread(sendMail, gateway.smtpPort, "dave@down.test", ["bob@external.test"], message())
        self.assertEqual(code, 451)
        response, _ = await self.get(f"{gateway.webURL}/t/{'A' * 43}/0")
        self.assertEqual(response.code, 404)
        async def purged() -> bool:  # the first purge runs as the service starts
            nonlocal text
            _, text = await self.get(gateway.metricsURL + "/metrics")
            return "\nsecudoc_purge_last_success_timestamp_seconds 0.0" not in text

        text = ""
        await until(purged, "the first purge", 30)
        names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if not line.startswith("#")}
        self.assertEqual([s for s in SERIES if s not in names], [])
        self.assertIn(f'secudoc_build_info{{version="{__version__}"}} 1.0', text)
        self.assertIn("secudoc_config_reload_success 1.0", text)
        self.assertIn('secudoc_health_check_up{check="database"} 1.0', text)
        self.assertIn('secudoc_health_check_up{check="storage"} 1.0', text)
        self.assertIn('secudoc_smtp_replies_total{code="220"} 2.0', text)
        self.assertIn('secudoc_smtp_replies_total{code="451"} 1.0', text)
        self.assertIn('secudoc_relay_errors_total{kind="connect",tenant="down"} 1.0', text)
        self.assertIn('secudoc_smtp_replies_total{code="250"}', text)
        self.assertIn('secudoc_relay_seconds_count{tenant="example"} 1.0', text)
        self.assertIn('secudoc_message_seconds_bucket{le="600.0"} 2.0', text)
        self.assertEqual((BUCKETS[0], BUCKETS[-1]), (0.01, 600))
        [purged] = [line for line in text.splitlines()
                    if line.startswith("secudoc_purge_last_success_timestamp_seconds ")]
        self.assertLess(abs(float(purged.split()[1]) - time.time()), 60)
        listener = gateway.service.smtpListeners[0].description
        [expiry] = [line for line in text.splitlines()
                    if line.startswith(f'secudoc_tls_certificate_expiry_timestamp_seconds{{listener="{listener}"}}')]
        self.assertGreater(float(expiry.split()[1]), time.time() + 86400)

    @asyncTest
    async def test_reloadFailed(self) -> None:
        gateway = await self.start()
        with open(os.path.join(self.folder, "tenants", "bad.toml"), "w") as f:
            f.write('id = "bad"\n')
        self.assertFalse(gateway.service.reload())
        _, text = await self.get(gateway.metricsURL + "/metrics")
        self.assertIn("secudoc_config_reload_success 0.0", text)


class StartFailureTests(SynchronousTestCase):
    """A listener that cannot be opened stops the start, non-zero (real twistd)."""

    def test_portInUse(self) -> None:
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        self.addCleanup(taken.close)
        port = taken.getsockname()[1]
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        gateway = GatewayProcess.inFolder(folder, log={"format": "json"},
                                          smtp={"listen": [f"tcp:{port}:interface=127.0.0.1"]})
        gateway.launch()
        self.addCleanup(gateway.stop)
        self.assertEqual(gateway.wait(), tap.EXIT_CANNOT_LISTEN)
        out, err = gateway.output()
        self.assertIn(f"cannot listen on tcp:{port}:interface=127.0.0.1".encode(), out)
        self.assertIn(b"Address already in use", out)

    def test_badEndpoint(self) -> None:
        """Refused before anything starts, by twistd and check-config alike."""
        folder = os.path.abspath(self.mktemp())
        path = writeConfig(folder, web={"listen": ["tcp:notaport"]})
        problem = f'{path}: web.listen: "tcp:notaport" is not an endpoint'
        twistd = run([os.path.join(os.path.dirname(sys.executable), "twistd"), "-n", "--pidfile=",
                      "secudoc-gateway", "--config", path])
        self.assertEqual(twistd.returncode, tap.EXIT_CONFIG)
        self.assertIn(problem, twistd.stderr)
        check = run([sys.executable, "-m", "secudoc_gateway.cli", "check-config", "--config", path])
        self.assertEqual(check.returncode, 2)
        self.assertIn(problem, check.stderr)
