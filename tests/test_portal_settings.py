"""
Settings live (SPEC 3 and 9) end to end: an admin changes a key in the
portal over the real web listener and the next message sent over SMTP
follows it; a wrong value shows check-config's message and changes
nothing; the operator's keys are refused even in a hand-made post;
each change is an admin event; ``tenants show`` says where each value
comes from.
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import re
import sys

from secudoc_gateway.testing.gateway import run
from tests.portal_support import PortalTestCase
from tests.support import asyncTest, inThread, maildirMessages, splitEnvelope


def fields(page: bytes) -> dict[str, str]:
    """The settings form's text inputs, selects' chosen options and checked radios, as posted back."""
    text = page.decode("utf-8")
    found: dict[str, str] = {}
    for name, value in re.findall(r'<input type="text" id="[^"]+" name="([^"]+)" value="([^"]*)"', text):
        found[name] = value
    for name, value in re.findall(r'<input type="radio" id="[^"]+" name="([^"]+)" value="([^"]+)" checked', text):
        found[name] = value
    for name, body in re.findall(r'<select id="[^"]+" name="([^"]+)"[^>]*>(.*?)</select>', text, re.S):
        [chosen] = re.findall(r'<option value="([^"]+)" selected', body)
        found[name] = chosen
    for name, value in re.findall(r'<textarea id="[^"]+" name="([^"]+)"[^>]*>(.*?)</textarea>', text, re.S):
        found[name] = value
    return {k: v.replace("&#34;", '"').replace("&amp;", "&") for k, v in found.items()}


class SettingsPage(PortalTestCase):
    async def admin(self):
        browser = await self.signIn("admin@example.test")
        code, page, _ = await browser.request("GET", "/portal/settings")
        self.assertEqual(code, 200, page)
        return browser, page

    def relayed(self) -> list[email.message.EmailMessage]:
        out = []
        for stored in maildirMessages(self.outbox):
            _, _, raw = splitEnvelope(stored)
            message = email.message_from_bytes(raw, policy=email.policy.default)
            if message["X-SecuDoc-Status"] == "protected":
                out.append(message)
        return out

    def tenantsShow(self, *more: str) -> dict:
        config = self.gateway.service.config.path
        done = run([sys.executable, "-m", "secudoc_gateway.cli", "tenants", "show", "example", "--config", config,
                    "--json", *more])
        self.assertEqual(done.returncode, 0, done.stderr)
        return {r["key"]: r for r in json.loads(done.stdout)["settings"]}

    @asyncTest
    async def test_contentModeFollowsAtOnce(self) -> None:
        await self.start()
        await self.send()
        [first] = self.relayed()
        self.assertEqual(first.get_content_type(), "multipart/mixed")  # link: the original with a banner
        browser, page = await self.admin()
        text = page.decode("utf-8")
        self.assertIn("<h1>Instellingen</h1>", text)
        self.assertIn('<label for="content_mode">Inhoud e-mail</label>', text)
        self.assertIn("Bron: standaardwaarde", text)
        self.assertIn('aria-describedby="help-content_mode source-content_mode"', text)
        form = fields(page)
        self.assertEqual(form["content_mode"], "link")
        self.assertEqual(form["link_expiry_days"], "7")
        self.assertNotIn("relay", form)
        self.assertNotIn("facility_sender", form)
        code, _, response = await browser.request(
            "POST", "/portal/settings", dict(form, content_mode="transfer", csrf=browser.csrf()))
        self.assertEqual(code, 303)
        self.assertEqual(response.headers.getRawHeaders("location"), ["/portal/settings?saved=1"])
        # One change, one event: the fields sent back as shown changed nothing.
        self.assertEqual(self.rows("SELECT who, what, subject, old_value, new_value FROM admin_events"
                                   " WHERE what = 'setting'"),
                         [("admin@example.test", "setting", "content_mode", '"link"', '"transfer"')])
        self.assertEqual(self.rows("SELECT tenant, key, value, who FROM tenant_settings"),
                         [("example", "content_mode", '"transfer"', "admin@example.test")])
        code, page, _ = await browser.request("GET", "/portal/settings?saved=1")
        text = page.decode("utf-8")
        self.assertIn("De instellingen zijn opgeslagen.", text)
        self.assertRegex(text, r"Bron: portaal, door admin@example\.test op")
        self.assertIn('name="reset" value="content_mode"', text)

        # The next message follows it, on this process at once.
        await self.send(subject="Na de wijziging")
        second = [m for m in self.relayed() if m["Subject"] == "Na de wijziging"]
        self.assertEqual([m.get_content_type() for m in second], ["multipart/alternative"])

        shown = await inThread(self.tenantsShow)
        self.assertEqual(shown["content_mode"]["value"], "transfer")
        self.assertEqual(shown["content_mode"]["source"], "portal")
        self.assertEqual(shown["content_mode"]["who"], "admin@example.test")
        self.assertRegex(shown["content_mode"]["when"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        self.assertEqual(shown["link_expiry_days"], {"key": "link_expiry_days", "value": 7, "source": "file",
                                                     "who": None, "when": None})
        self.assertEqual(shown["on_malware"]["source"], "default")

        # Reset: the file's value again, and the source says so.
        code, _, _ = await browser.request("POST", "/portal/settings",
                                           {"reset": "content_mode", "csrf": browser.csrf()})
        self.assertEqual(code, 303)
        self.assertEqual(self.rows("SELECT COUNT(*) FROM tenant_settings"), [(0,)])
        self.assertEqual(self.rows("SELECT old_value, new_value FROM admin_events WHERE what = 'setting'"
                                   " ORDER BY id"), [('"link"', '"transfer"'), ('"transfer"', '"link"')])
        shown = await inThread(self.tenantsShow)
        self.assertEqual((shown["content_mode"]["value"], shown["content_mode"]["source"]), ("link", "default"))
        await self.send(subject="Na het terugzetten")
        [third] = [m for m in self.relayed() if m["Subject"] == "Na het terugzetten"]
        self.assertEqual(third.get_content_type(), "multipart/mixed")

    @asyncTest
    async def test_wrongValueChangesNothing(self) -> None:
        await self.start()
        browser, page = await self.admin()
        form = fields(page)
        code, page, _ = await browser.request("POST", "/portal/settings", dict(
            form, content_mode="transfer", link_expiry_days="0", required_header="X Bad", csrf=browser.csrf()))
        text = page.decode("utf-8")
        self.assertEqual(code, 400)
        self.assertIn("Niet opgeslagen: verbeter de gemarkeerde velden.", text)
        # check-config's own words, without the file's name.
        self.assertIn('<p class="error" id="error-link_expiry_days">link_expiry_days: must be at least 1, not 0</p>',
                      text)
        self.assertIn("required_header: must be &#34;Name&#34; or &#34;Name: value&#34;, not &#34;X Bad&#34;", text)
        self.assertIn('aria-describedby="help-link_expiry_days source-link_expiry_days error-link_expiry_days"'
                      ' aria-invalid="true"', text)
        self.assertNotIn(self.gateway.service.config.path, text)
        self.assertEqual(self.rows("SELECT COUNT(*) FROM tenant_settings"), [(0,)])
        self.assertEqual(self.rows("SELECT COUNT(*) FROM admin_events WHERE what = 'setting'"), [(0,)])
        # What was typed is shown again, to correct.
        self.assertEqual(fields(page)["link_expiry_days"], "0")

        # Lists: group ids comma-separated (the guide's step 19), checked as the file's are.
        code, page, _ = await browser.request("POST", "/portal/settings", {
            "saml_admin_groups": "not-a-guid", "csrf": browser.csrf()})
        self.assertEqual(code, 400)
        self.assertIn("saml_admin_groups: &#34;not-a-guid&#34; is not a group object id", page.decode("utf-8"))
        groups = "0F1E2D3C-0000-4000-8000-000000000001, 0f1e2d3c-0000-4000-8000-000000000002"
        code, _, _ = await browser.request("POST", "/portal/settings", {"saml_admin_groups": groups,
                                                                        "csrf": browser.csrf()})
        self.assertEqual(code, 303)
        [(value,)] = self.rows("SELECT value FROM tenant_settings WHERE key = 'saml_admin_groups'")
        self.assertEqual(json.loads(value), ["0F1E2D3C-0000-4000-8000-000000000001",
                                             "0f1e2d3c-0000-4000-8000-000000000002"])
        tenant = self.gateway.service.gateway.registry.byId("example")
        self.assertEqual(tenant.saml_admin_groups, ("0f1e2d3c-0000-4000-8000-000000000001",
                                                    "0f1e2d3c-0000-4000-8000-000000000002"))

    @asyncTest
    async def test_removedAdminLosesTheRoleAtOnce(self) -> None:
        """
        An admin signed in by e-mail link whom another admin takes out of
        ``admins`` is an admin no more from the next request: a user if
        the tenant knows the address, else signed out.
        """
        await self.start(admins=["admin@example.test", "alice@example.test", "bob@example.test"])
        browser, page = await self.admin()
        alice, bob = await self.signIn("alice@example.test"), await self.signIn("bob@example.test")
        for other in (alice, bob):
            code, _, _ = await other.request("GET", "/portal/settings")
            self.assertEqual(code, 200)
        code, _, _ = await browser.request("POST", "/portal/settings", {
            "admins": "admin@example.test", "csrf": browser.csrf()})
        self.assertEqual(code, 303)
        code, _, _ = await alice.request("GET", "/portal/settings")
        self.assertEqual(code, 404)
        code, page, _ = await alice.request("GET", "/portal/")
        self.assertEqual(code, 200, page)  # alice is one of the tenant's users
        code, _, response = await bob.request("GET", "/portal/")
        self.assertEqual(code, 303)  # bob is nobody here now
        self.assertEqual(response.headers.getRawHeaders("location"), ["/portal/login"])
        code, _, _ = await browser.request("GET", "/portal/settings")
        self.assertEqual(code, 200)

    @asyncTest
    async def test_operatorKeysRefused(self) -> None:
        """Posted by hand, never hidden only: the store refuses them and nothing changes."""
        await self.start()
        browser, _ = await self.admin()
        for key, value in (("relay", "smtp:evil.test:25"), ("facility_sender", "ceo@example.test"),
                           ("on_error", "pass"), ("domains", "evil.test"), ("logo", "/etc/passwd"),
                           ("saml_metadata_file", "/etc/hostname"), ("allowed_sources", "0.0.0.0/0"),
                           ("no_such_key", "1")):
            for form in ({key: value, "csrf": browser.csrf()}, {"reset": key, "csrf": browser.csrf()}):
                code, page, _ = await browser.request("POST", "/portal/settings", form)
                self.assertEqual(code, 400, (key, form))
                why = ("unknown key" if key == "no_such_key" else "names a file on the server" if key in (
                    "logo", "saml_metadata_file") else "only the operator sets this key, in the tenant file")
                self.assertIn(f"<li>{key}: {why}", page.decode("utf-8"))
        self.assertEqual(self.rows("SELECT COUNT(*) FROM tenant_settings"), [(0,)])
        self.assertEqual(self.rows("SELECT COUNT(*) FROM admin_events WHERE what = 'setting'"), [(0,)])
        tenant = self.gateway.service.gateway.registry.byId("example")
        self.assertTrue(tenant.relay.startswith("maildir:"))

    @asyncTest
    async def test_forgedPost(self) -> None:
        await self.start()
        browser, _ = await self.admin()
        code, _, _ = await browser.request("POST", "/portal/settings", {"content_mode": "transfer", "csrf": "x"})
        self.assertEqual(code, 403)
        self.assertEqual(self.rows("SELECT COUNT(*) FROM tenant_settings"), [(0,)])

    @asyncTest
    async def test_englishAndPhone(self) -> None:
        await self.start(language="en")
        _, page = await self.admin()
        text = page.decode("utf-8")
        self.assertIn('<html lang="en">', text)
        self.assertIn('<label for="content_mode">E-mail content</label>', text)
        self.assertIn("Send the message as a SecuDoc transfer", text)
        self.assertIn('name="viewport"', text)
        self.assertNotIn("<script", text)


class FileReload(PortalTestCase):
    @asyncTest
    async def test_sighupKeepsTheOverride(self) -> None:
        """A reload of the files (SIGHUP) rebuilds from the new file and the portal's values together."""
        await self.start()
        browser = await self.signIn("admin@example.test")
        await browser.request("GET", "/portal/settings")
        code, _, _ = await browser.request("POST", "/portal/settings", {"content_mode": "separate",
                                                                        "csrf": browser.csrf()})
        self.assertEqual(code, 303)
        service = self.gateway.service
        path = os.path.join(os.path.dirname(service.config.path), "tenants", "example.toml")
        with open(path, "a") as f:
            f.write('\ndisclaimer = "Vertrouwelijk."\n')
        self.assertTrue(service.reload())
        tenant = service.gateway.registry.byId("example")
        self.assertEqual((tenant.content_mode.value, tenant.disclaimer), ("separate", "Vertrouwelijk."))
