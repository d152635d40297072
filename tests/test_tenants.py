"""
Tests for secudoc_gateway.tenants: lookups by domain, sender, Microsoft
tenant id and source address, over tenants read from real files.
"""

from __future__ import annotations

import os
import subprocess
import sys

from secudoc_gateway.config import Tenant, loadTenants
from secudoc_gateway.tenants import TenantRegistry
from twisted.trial.unittest import SynchronousTestCase

GUID = "72F988BF-86F1-41AF-91AB-2D7CD011DB47"

ACME = """\
id = "acme"
domains = ["acme.test", "Bücher.Example"]
relay = "maildir:out/acme"
facility_sender = "noreply@acme.test"
microsoft_tenant_id = "72F988BF-86F1-41AF-91AB-2D7CD011DB47"
allowed_sources = ["exchange-online", "192.0.2.0/24"]
"""

BETA = """\
id = "beta"
domains = ["beta.test"]
relay = "smtp://beta-test.mail.protection.outlook.com:25"
facility_sender = "noreply@beta.test"
allowed_sources = ["127.0.0.0/8", "2001:db8::/32"]
"""


class TenantRegistryTests(SynchronousTestCase):
    def setUp(self) -> None:
        folder = self.mktemp()
        os.makedirs(folder)
        for name, text in (("acme.toml", ACME), ("beta.toml", BETA)):
            with open(os.path.join(folder, name), "w", encoding="utf-8") as f:
                f.write(text)
        tenants, problems = loadTenants(folder)
        self.assertEqual(problems, [])
        self.acme, self.beta = tenants
        self.registry = TenantRegistry(tenants)

    def test_iteration(self) -> None:
        self.assertEqual(len(self.registry), 2)
        self.assertEqual(list(self.registry), [self.acme, self.beta])
        self.assertEqual(len(TenantRegistry([])), 0)

    def test_byId(self) -> None:
        self.assertIs(self.registry.byId("acme"), self.acme)
        self.assertIs(self.registry.byId("beta"), self.beta)
        self.assertIsNone(self.registry.byId("gamma"))
        self.assertIsNone(self.registry.byId("ACME"))

    def test_forDomain(self) -> None:
        """Case-insensitive, U-labels and A-labels alike, a trailing dot ignored."""
        for domain in ("acme.test", "ACME.Test", "acme.test.", "bücher.example", "BÜCHER.example", "xn--bcher-kva.example",
                       "XN--BCHER-KVA.EXAMPLE"):
            self.assertIs(self.registry.forDomain(domain), self.acme, domain)
        self.assertIs(self.registry.forDomain("beta.test"), self.beta)
        for domain in ("sub.acme.test", "test", "", "bad_name.test", "büch er.example", "other.test"):
            self.assertIsNone(self.registry.forDomain(domain), domain)

    def test_forSender(self) -> None:
        self.assertIs(self.registry.forSender("alice@acme.test"), self.acme)
        self.assertIs(self.registry.forSender("Alice@ACME.TEST"), self.acme)
        self.assertIs(self.registry.forSender("jürgen@bücher.example"), self.acme)
        self.assertIs(self.registry.forSender('"odd@local"@beta.test'), self.beta)
        for address in ("", "alice", "alice@", "alice@external.test", "acme.test"):
            self.assertIsNone(self.registry.forSender(address), address)

    def test_forMicrosoftTenantId(self) -> None:
        """GUIDs compare case-insensitively; tenants without one never match."""
        self.assertIs(self.registry.forMicrosoftTenantId(GUID), self.acme)
        self.assertIs(self.registry.forMicrosoftTenantId(GUID.lower()), self.acme)
        self.assertIs(self.registry.forMicrosoftTenantId(f" {GUID} "), self.acme)
        self.assertIsNone(self.registry.forMicrosoftTenantId(""))
        self.assertIsNone(self.registry.forMicrosoftTenantId("00000000-0000-0000-0000-000000000000"))

    def test_anyAllows(self) -> None:
        """The connect-time check: any tenant's sources, EXO ranges included."""
        for ip in ("127.0.0.1", "40.92.3.4", "104.47.0.1", "192.0.2.9", "2001:db8::1", "2a01:111:f400::25",
                   "::ffff:127.0.0.1", "::ffff:40.107.9.9"):
            self.assertTrue(self.registry.anyAllows(ip), ip)
        for ip in ("10.0.0.1", "198.51.100.1", "::1", "2001:db9::1", "", "localhost", "40.92.3.4.5"):
            self.assertFalse(self.registry.anyAllows(ip), ip)
        self.assertFalse(TenantRegistry([]).anyAllows("127.0.0.1"))

    def test_perTenantSources(self) -> None:
        """A source allowed at connect may still not be this tenant's."""
        self.assertTrue(self.acme.allowsSource("40.92.3.4"))
        self.assertFalse(self.beta.allowsSource("40.92.3.4"))
        self.assertTrue(self.beta.allowsSource("127.0.0.1"))
        self.assertFalse(self.acme.allowsSource("127.0.0.1"))

    def test_replacedWhole(self) -> None:
        """A reload builds a new registry; the old one keeps its snapshot."""
        only = Tenant(id="beta", domains=("beta.test",), relay="maildir:/x", facility_sender="n@beta.test")
        newer = TenantRegistry([only])
        self.assertIsNone(newer.forDomain("acme.test"))
        self.assertIs(newer.forDomain("beta.test"), only)
        self.assertIs(self.registry.forDomain("acme.test"), self.acme)

    def test_noTwistedInternet(self) -> None:
        """The registry is plain Python: importing it pulls in no reactor."""
        code = (
            "import sys, secudoc_gateway.tenants, secudoc_gateway.config\n"
            "print(sorted(m for m in sys.modules if m.startswith('twisted.internet')))\n"
        )
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True,
            env={**os.environ, "PYTHONPATH": root},
        )
        self.assertEqual(out.stdout.strip(), "[]")


class RelayReloadTests(SynchronousTestCase):
    """A SIGHUP reload and the relays: what a reload replaced is closed, what it kept stays open."""

    def test_replacedRelaysClosed(self) -> None:
        from twisted.internet import defer, task

        from secudoc_gateway.config import loadConfig
        from secudoc_gateway.testing import DEMO_TENANT, ingressOn, writeConfig

        made: list[tuple[Tenant, "_Relay"]] = []

        class _Relay:
            def __init__(self) -> None:
                self.closed = 0

            def close(self) -> defer.Deferred:
                self.closed += 1
                return defer.succeed(None)

        def factory(tenant: Tenant, hostname: str, reactor: object) -> _Relay:
            made.append((tenant, _Relay()))
            return made[-1][1]

        folder = os.path.abspath(self.mktemp())
        other = dict(DEMO_TENANT, id="other", domains=["other.test"], users=["*@other.test"])
        gateway = ingressOn(task.Clock(), folder, [DEMO_TENANT, other], relayFactory=factory)
        old, kept = gateway.registry.byId("example"), gateway.registry.byId("other")
        first, second = gateway.relayFor(old), gateway.relayFor(kept)
        self.assertIs(gateway.relayFor(old), first)  # one relay (one pool) per tenant
        gateway.reload(loadConfig(writeConfig(folder, [dict(DEMO_TENANT, organisation="Changed"), other])))
        self.assertEqual((first.closed, second.closed), (1, 0))  # replaced: closed; unchanged: kept
        self.assertIs(gateway.relayFor(kept), second)
        # A transaction that began before the reload still relays for the old
        # tenant: its relay is closed from the start, so no connection idles on.
        stale = gateway.relayFor(old)
        self.assertIsNot(stale, first)
        self.assertEqual(stale.closed, 1)
        fresh = gateway.relayFor(gateway.registry.byId("example"))
        self.assertEqual(fresh.closed, 0)
        self.assertIs(gateway.relayFor(gateway.registry.byId("example")), fresh)
