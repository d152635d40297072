"""
Tests for secudoc_gateway.settings and config.tenants.withOverrides: an
override is read by the tenant file's own checks; the store refuses the
operator's keys and wrong values and writes the row, the counter and
the admin event together; an override a changed file no longer allows
is left out, the others kept.
"""

from __future__ import annotations

import os

from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase

from secudoc_gateway.config import ContentMode, loadTenant
from secudoc_gateway.config.tenants import OPERATOR_KEYS, PORTAL_KEYS, withOverrides
from secudoc_gateway.db import Database
from secudoc_gateway.settings import LiveSettings, Override, SettingRefused, SettingsStore, effective
from tests.support import asyncTest

TENANT = """\
id = "acme"
domains = ["acme.test"]
relay = "maildir:out"
facility_sender = "noreply@acme.test"
link_expiry_days = 7
"""


def tenantFile(test: SynchronousTestCase, text: str = TENANT):
    folder = os.path.abspath(test.mktemp())
    os.makedirs(folder)
    path = os.path.join(folder, "acme.toml")
    with open(path, "w") as f:
        f.write(text)
    problems: list[str] = []
    tenant = loadTenant(path, problems)
    test.assertEqual(problems, [])
    assert tenant is not None
    return tenant


class WithOverrides(SynchronousTestCase):
    def test_applied(self) -> None:
        tenant = tenantFile(self)
        merged, problems = withOverrides(tenant, {"content_mode": "transfer", "exclude_senders": ["Facturen@ACME.test"]})
        self.assertEqual(problems, [])
        self.assertEqual(merged.content_mode, ContentMode.TRANSFER)
        self.assertEqual(merged.exclude_senders, ("Facturen@acme.test",))
        self.assertEqual((merged.relay, merged.link_expiry_days), (tenant.relay, 7))
        self.assertEqual(tenant.content_mode, ContentMode.LINK)

    def test_checkConfigWords(self) -> None:
        tenant = tenantFile(self)
        _, problems = withOverrides(tenant, {"link_expiry_days": 0, "content_mode": "mail", "mode": 3})
        self.assertEqual(sorted(problems), sorted([
            f"{tenant.source}: link_expiry_days: must be at least 1, not 0",
            f'{tenant.source}: content_mode: must be one of "link", "transfer", "separate", not "mail"',
            f"{tenant.source}: mode: must be a string, not an integer",
        ]))

    def test_operatorKeys(self) -> None:
        tenant = tenantFile(self)
        self.assertEqual(OPERATOR_KEYS & set(PORTAL_KEYS), set())
        for key in sorted(OPERATOR_KEYS) + ["logo", "saml_metadata_file", "networks", "document"]:
            _, problems = withOverrides(tenant, {key: "x"})
            self.assertEqual(len(problems), 1, key)

    def test_leftOutWhenTheFileChanged(self) -> None:
        """The operator sets saml_metadata_file after an admin set the URL: the URL is left out, not the rest."""
        metadata = os.path.abspath(self.mktemp())
        with open(metadata, "w") as f:
            f.write("<EntityDescriptor/>")
        tenant = tenantFile(self, TENANT + f'saml_metadata_file = "{metadata}"\n')
        overrides = [Override("acme", "saml_metadata_url", "https://login.example/metadata.xml", "a@acme.test", 1.0),
                     Override("acme", "content_mode", "separate", "a@acme.test", 1.0)]
        [merged], problems = effective([tenant], overrides)
        self.assertEqual(merged.saml_metadata_url, "")
        self.assertEqual(merged.content_mode, ContentMode.SEPARATE)
        self.assertEqual(len(problems), 1)
        self.assertIn("saml_metadata_file: set saml_metadata_url or saml_metadata_file, not both", problems[0])


class Store(TestCase):
    @asyncTest
    async def test_changeAndPoll(self) -> None:
        tenant = tenantFile(self)
        database = Database.fromURL("sqlite:" + os.path.abspath(self.mktemp()), reactor)
        await database.open()
        self.addCleanup(database.close)
        store = SettingsStore(database, reactor)
        published = []
        live = LiveSettings(store, [tenant], published.append)
        await live.poll()
        self.assertEqual(published, [])  # nothing set: nothing to publish
        self.assertEqual(await store.version(), 0)
        with self.assertRaises(SettingRefused):
            await live.change("acme", "relay", "maildir:elsewhere", "a@acme.test")
        with self.assertRaises(SettingRefused) as caught:
            await live.change("acme", "min_attachment_size", -1, "a@acme.test")
        self.assertEqual(caught.exception.problems,
                         [f"{tenant.source}: min_attachment_size: must be at least 0, not -1"])
        self.assertEqual(await store.version(), 0)
        self.assertTrue(await live.change("acme", "min_attachment_size", 10, "a@acme.test"))
        self.assertFalse(await live.change("acme", "min_attachment_size", 10, "a@acme.test"))
        self.assertEqual(await store.version(), 1)
        self.assertEqual([t.min_attachment_size for [t] in published], [10])
        rows = await database.runQuery("SELECT who, what, subject, old_value, new_value FROM admin_events")
        self.assertEqual(rows, [("a@acme.test", "setting", "min_attachment_size", "1024", "10")])

        # Another process's view catches up on its next poll, and only then.
        other: list = []
        elsewhere = LiveSettings(SettingsStore(database, reactor), [tenant], other.append)
        await elsewhere.poll()
        self.assertEqual([t.min_attachment_size for [t] in other], [10])
        await elsewhere.poll()
        self.assertEqual(len(other), 1)  # the counter did not move: nothing read again
        self.assertTrue(await live.change("acme", "min_attachment_size", None, "a@acme.test"))
        await elsewhere.poll()
        self.assertEqual([t.min_attachment_size for [t] in other], [10, 1024])
        self.assertEqual(elsewhere.overridesOf("acme"), {})
