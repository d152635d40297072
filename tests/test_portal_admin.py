"""
An admin's other pages end to end (SPEC 9): users (add, remove, how
created, last login), the tenant's download trail with filters and
CSV, "test the mail server" from the browser; a user gets 404 on every
admin page, a signed-out browser the login form.
"""

from __future__ import annotations

import csv
import email
import email.policy
import io
import os
import re

from tests.portal_support import PortalTestCase
from tests.support import asyncTest, inThread, maildirMessages, sendBDAT, splitEnvelope

LINK = re.compile(r"https?://[^/\s]+(/t/[A-Za-z0-9_-]{43})")

ADMIN_PAGES = (("GET", "/portal/settings"), ("POST", "/portal/settings"), ("GET", "/portal/users"),
               ("POST", "/portal/users/add"), ("POST", "/portal/users/remove"), ("GET", "/portal/downloads"),
               ("GET", "/portal/downloads.csv"), ("GET", "/portal/relay-test"), ("POST", "/portal/relay-test"),
               ("GET", "/portal/events"), ("GET", "/portal/transfers"), ("GET", "/portal/trace"))


class AdminPages(PortalTestCase):
    @asyncTest
    async def test_userGets404Everywhere(self) -> None:
        await self.start()
        user = await self.signIn("alice@example.test")
        code, page, _ = await user.request("GET", "/portal/")
        text = page.decode("utf-8")
        self.assertNotIn("/portal/settings", text)  # not in a user's menu
        for method, path in ADMIN_PAGES:
            form = {"csrf": user.csrf(), "content_mode": "transfer", "address": "eve@example.test",
                    "to": "alice@example.test"} if method == "POST" else None
            code, _, _ = await user.request(method, path, form)
            self.assertEqual(code, 404, path)
        self.assertEqual(self.rows("SELECT COUNT(*) FROM tenant_settings"), [(0,)])
        self.assertEqual(self.rows("SELECT COUNT(*) FROM users WHERE address = 'eve@example.test'"), [(0,)])
        anonymous = self.browser()
        for method, path in ADMIN_PAGES:
            code, _, response = await anonymous.request(method, path, {} if method == "POST" else None)
            self.assertEqual((code, response.headers.getRawHeaders("location")), (303, ["/portal/login"]), path)

    @asyncTest
    async def test_users(self) -> None:
        await self.start()
        await self.send("carol@example.test", subject="Welkom")  # auto_create_users = "welcome"
        await self.signIn("carol@example.test")
        admin = await self.signIn("admin@example.test")
        code, page, _ = await admin.request("GET", "/portal/users")
        text = page.decode("utf-8")
        self.assertEqual(code, 200)
        self.assertIn("<h1>Gebruikers</h1>", text)
        self.assertIn("Patronen uit de instellingen: alice@example.test", text)
        self.assertRegex(text, r'<td data-label="Adres">carol@example\.test</td><td data-label="Hoe aangemaakt">'
                               r'met welkomstmail</td><td class="nowrap" data-label="Aangemaakt">[^<]+</td>'
                               r'<td class="nowrap" data-label="Laatst ingelogd">\d')
        self.assertRegex(text, r'<td data-label="Adres">Admin@example\.test</td><td class="nowrap" '
                               r'data-label="Laatst ingelogd">\d')

        # Add: only an address in the tenant's domains.
        for wrong in ("eve@elsewhere.test", "not an address", "a@b@example.test"):
            code, page, _ = await admin.request("POST", "/portal/users/add", {"address": wrong,
                                                                              "csrf": admin.csrf()})
            self.assertEqual(code, 400, wrong)
            self.assertIn("Vul een e-mailadres in van een domein van uw organisatie (example.test).",
                          page.decode("utf-8"))
        code, _, response = await admin.request("POST", "/portal/users/add", {"address": "Dave@Example.TEST",
                                                                              "csrf": admin.csrf()})
        self.assertEqual(code, 303)
        code, page, _ = await admin.request("GET", response.headers.getRawHeaders("location")[0])
        text = page.decode("utf-8")
        self.assertIn("dave@example.test is toegevoegd.", text)
        self.assertIn('<td data-label="Hoe aangemaakt">door een beheerder</td>', text)
        code, page, _ = await admin.request("POST", "/portal/users/add", {"address": "dave@example.test",
                                                                          "csrf": admin.csrf()})
        self.assertEqual(code, 400)
        self.assertIn("dave@example.test is al een gebruiker.", page.decode("utf-8"))
        # The added user can sign in.
        await self.signIn("dave@example.test")

        code, _, _ = await admin.request("POST", "/portal/users/remove", {"address": "dave@example.test",
                                                                          "csrf": admin.csrf()})
        self.assertEqual(code, 303)
        self.assertEqual(self.rows("SELECT address FROM users ORDER BY address"), [("carol@example.test",)])
        self.assertEqual(self.rows("SELECT who, what, subject, old_value, new_value FROM admin_events"
                                   " WHERE what LIKE 'user-%' ORDER BY id"),
                         [("admin@example.test", "user-add", "dave@example.test", None, "admin"),
                          ("admin@example.test", "user-remove", "dave@example.test", "admin", None)])
        code, page, _ = await admin.request("GET", "/portal/events")
        self.assertIn("gebruiker verwijderd", page.decode("utf-8"))
        code, _, _ = await admin.request("POST", "/portal/users/add", {"address": "x@example.test", "csrf": "no"})
        self.assertEqual(code, 403)

    def links(self) -> dict[str, str]:
        """Each protected message's subject to its download link's path."""
        found = {}
        for stored in maildirMessages(self.outbox):
            message = email.message_from_bytes(splitEnvelope(stored)[2], policy=email.policy.default)
            if message["X-SecuDoc-Status"] == "protected":
                [path] = set(LINK.findall(message.get_body(("plain",)).get_content()))
                found[str(message["Subject"])] = path
        return found

    @asyncTest
    async def test_downloadTrail(self) -> None:
        await self.start()
        one = await self.send("alice@example.test", subject="=HYPERLINK(1)", recipients=("bob@external.test",))
        two = await self.send("admin@example.test", subject="Twee", recipients=("carol@external.test",))
        links = self.links()
        for subject in ("=HYPERLINK(1)", "Twee"):
            code, _, _ = await self.browser().request("GET", links[subject] + "/0")
            self.assertEqual(code, 200)
        admin = await self.signIn("admin@example.test")
        code, page, _ = await admin.request("GET", "/portal/downloads")
        text = page.decode("utf-8")
        self.assertEqual(code, 200)
        self.assertIn(one, text)
        self.assertIn(two, text)
        self.assertLess(text.index(two), text.index(one))  # newest first
        code, page, _ = await admin.request("GET", "/portal/downloads?sender=Alice%40example.test")
        self.assertIn(one, page.decode("utf-8"))
        self.assertNotIn(two, page.decode("utf-8"))
        code, page, _ = await admin.request("GET", "/portal/downloads?recipient=carol%40external.test")
        self.assertNotIn(one, page.decode("utf-8"))
        self.assertIn(two, page.decode("utf-8"))
        code, page, _ = await admin.request("GET", "/portal/downloads?since=2999-01-01")
        self.assertNotIn(one, page.decode("utf-8"))
        self.assertIn("Geen downloads gevonden.", page.decode("utf-8"))
        code, _, _ = await admin.request("GET", "/portal/downloads?since=gisteren")
        self.assertEqual(code, 400)

        code, body, response = await admin.request("GET", "/portal/downloads.csv?sender=alice%40example.test")
        self.assertEqual(code, 200)
        self.assertEqual(response.headers.getRawHeaders("content-type"), ["text/csv; charset=utf-8"])
        self.assertTrue(body.startswith(b"\xef\xbb\xbf"))
        rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
        self.assertEqual(rows[0], ["when", "transfer", "sender", "subject", "file", "recipient", "client",
                                   "user_agent"])
        [row] = rows[1:]
        self.assertEqual(row[1:5], [one, "alice@example.test", "'=HYPERLINK(1)", "offerte.pdf"])
        self.assertIn(b"\r\n", body)

    @asyncTest
    async def test_messageTrace(self) -> None:
        """The admin sees the tenant's message trace: what became of each message, by sender and Message-ID."""
        await self.start()
        one = await self.send("alice@example.test", subject="Een")
        code, text = await inThread(sendBDAT, self.gateway.smtpPort, "admin@example.test", ["colleague@example.test"],
                                    b"From: admin@example.test\r\nSubject: Twee\r\nMessage-ID: <twee@example.test>\r\n"
                                    b"\r\nHallo\r\n")
        self.assertEqual(code, 250, text)
        admin = await self.signIn("admin@example.test")
        code, page, _ = await admin.request("GET", "/portal/trace")
        text = page.decode("utf-8")
        self.assertEqual(code, 200)
        self.assertIn(f'href="/portal/transfers/{one}"', text)
        self.assertIn("internal-recipient", text)  # the second went inside the organisation, passed
        self.assertLess(text.index("internal-recipient"), text.index(one))  # newest first
        code, page, _ = await admin.request("GET", "/portal/trace?sender=ALICE%40example.test")
        self.assertIn(one, page.decode("utf-8"))
        self.assertNotIn("internal-recipient", page.decode("utf-8"))
        code, page, _ = await admin.request("GET", "/portal/trace?message_id=twee%40example.test")
        self.assertIn("internal-recipient", page.decode("utf-8"))
        self.assertNotIn(one, page.decode("utf-8"))
        code, page, _ = await admin.request("GET", "/portal/trace?recipient=nobody%40external.test")
        self.assertIn("Geen berichten gevonden.", page.decode("utf-8"))
        code, _, _ = await admin.request("GET", "/portal/trace?since=gisteren")
        self.assertEqual(code, 400)

    @asyncTest
    async def test_relayTest(self) -> None:
        await self.start()
        admin = await self.signIn("admin@example.test")
        code, page, _ = await admin.request("GET", "/portal/relay-test")
        text = page.decode("utf-8")
        self.assertEqual(code, 200)
        self.assertIn('value="admin@example.test"', text)
        code, page, _ = await admin.request("POST", "/portal/relay-test", {"to": "someone@elsewhere.test",
                                                                           "csrf": admin.csrf()})
        self.assertEqual(code, 400)
        before = len(maildirMessages(self.outbox))
        code, page, _ = await admin.request("POST", "/portal/relay-test", {"to": "admin@example.test",
                                                                           "csrf": admin.csrf()})
        text = page.decode("utf-8")
        self.assertEqual(code, 200, text)
        self.assertIn("Gelukt: de mailserver nam het testbericht aan.", text)
        [reply] = re.findall(r'<p class="mono" id="relay-reply">([^<]+)</p>', text)
        messages = maildirMessages(self.outbox)
        self.assertEqual(len(messages), before + 1)
        sender, recipients, raw = splitEnvelope(messages[-1] if b"test-relay" in messages[-1] else
                                                next(m for m in messages if b"reason=test-relay" in m))
        self.assertEqual((sender, recipients), ("noreply@example.test", ["admin@example.test"]))
        self.assertIn(b"Subject: Uw mailserver is ingesteld", raw)
        [(who, subject, new)] = self.rows("SELECT who, subject, new_value FROM admin_events WHERE what = 'relay-test'")
        self.assertEqual((who, subject), ("admin@example.test", "admin@example.test"))
        self.assertEqual(new, "ok: " + reply.replace("&#39;", "'"))

    @asyncTest
    async def test_relayTestFails(self) -> None:
        """A relay that refuses: the page says so with what the remote said (here: nothing listens)."""
        from secudoc_gateway.testing.ports import freePort

        await self.start()
        admin = await self.signIn("admin@example.test")  # the link comes by the maildir relay
        service = self.gateway.service
        path = os.path.join(os.path.dirname(service.config.path), "tenants", "example.toml")
        with open(path) as f:
            text = re.sub(r'(?m)^relay = .*$', f'relay = "smtp://127.0.0.1:{freePort()}"', f.read())
        with open(path, "w") as f:
            f.write(text + "\nrelay_require_tls = false\n")
        self.assertTrue(service.reload())
        await admin.request("GET", "/portal/relay-test")
        code, page, _ = await admin.request("POST", "/portal/relay-test", {"to": "admin@example.test",
                                                                           "csrf": admin.csrf()})
        text = page.decode("utf-8")
        self.assertEqual(code, 502, text)
        self.assertIn("Mislukt: de mailserver nam het testbericht niet aan.", text)
        self.assertIn("connect:", text)
        [(new,)] = self.rows("SELECT new_value FROM admin_events WHERE what = 'relay-test'")
        self.assertTrue(new.startswith("failed: connect:"), new)
