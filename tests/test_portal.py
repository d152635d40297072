"""
The portal end to end (SPEC 9): signing in by e-mail link over the real
web listener, the link read from the maildir outbox; who sees which
transfers; the pages in Dutch and English.
"""

from __future__ import annotations

import re

from tests.portal_support import LOGIN_LINK, PortalTestCase
from tests.support import asyncTest


class LoginByLink(PortalTestCase):
    @asyncTest
    async def test_endToEnd(self) -> None:
        await self.start()
        mine = await self.send("alice@example.test", subject="Offerte <2025>")
        browser = self.browser()
        code, page, response = await browser.request("GET", "/portal/login")
        text = page.decode("utf-8")
        self.assertEqual(code, 200)
        self.assertIn('<html lang="nl">', text)
        self.assertIn('name="viewport"', text)
        self.assertIn('<label for="address">E-mailadres</label>', text)
        self.assertNotIn("<script", text)
        self.assertIn(b"default-src 'none'", response.headers.getRawHeaders("content-security-policy")[0].encode())
        code, page, _ = await browser.request("POST", "/portal/login",
                                              {"address": "Alice@Example.TEST", "csrf": browser.csrf()})
        self.assertEqual(code, 200)
        self.assertIn("Kijk in uw mailbox", page.decode("utf-8"))
        [mail] = await self.waitMails("login", 1)
        self.assertEqual(mail["From"], "noreply@example.test")
        self.assertEqual(mail["To"], "alice@example.test")
        self.assertEqual(mail["Subject"], "Uw inloglink voor het SecuDoc-portaal")
        self.assertEqual(mail["Auto-Submitted"], "auto-generated")
        [link] = LOGIN_LINK.findall(mail.get_body(("plain",)).get_content())
        self.assertIn(link, mail.get_body(("html",)).get_content())

        # A GET (a link scanner's too) only shows the button: twice, and the link still works.
        for _ in range(2):
            code, page, _ = await browser.request("GET", link)
            self.assertEqual(code, 200)
            self.assertIn('<button type="submit">Inloggen</button>', page.decode("utf-8"))
        self.assertEqual(self.rows("SELECT COUNT(*) FROM portal_sessions"), [(0,)])
        code, _, response = await browser.request("POST", link, {"csrf": browser.csrf()})
        self.assertEqual(code, 303)
        self.assertEqual(response.headers.getRawHeaders("location"), ["/portal/"])
        code, page, _ = await browser.request("GET", "/portal/")
        text = page.decode("utf-8")
        self.assertEqual(code, 200)
        self.assertIn("Mijn verzendingen", text)
        self.assertIn("Ingelogd als alice@example.test", text)
        self.assertIn(mine, text)
        self.assertIn("Offerte &lt;2025&gt;", text)
        self.assertIn("bob@external.test", text)
        self.assertIn(">actief<", text)
        self.assertNotIn("Alle verzendingen", text)  # a user's menu
        [(tenant, address, role, how)] = self.rows("SELECT tenant, address, role, how FROM portal_sessions")
        self.assertEqual((tenant, address, role, how), ("example", "alice@example.test", "user", "email-link"))
        [(hashed,)] = self.rows("SELECT secret_hash FROM portal_sessions")
        self.assertNotIn(hashed, "".join(browser.cookies.values()))
        self.assertEqual(self.rows("SELECT who, what, subject, new_value FROM admin_events"),
                         [("alice@example.test", "login", "email-link", "user")])

    @asyncTest
    async def test_sameAnswerForEveryAddress(self) -> None:
        """A stranger, another tenant's domain, an admin and a user: one answer, only the people get mail."""
        await self.start()
        answers = []
        for address in ("mallory@example.test", "someone@elsewhere.test", "alice@example.test",
                        "admin@example.test"):
            code, page = await self.askLink(address)
            answers.append((code, page.decode("utf-8").replace(address, "ADDRESS")))
        self.assertEqual(len(set(answers)), 1, answers)
        await self.waitMails("login", 2)
        self.assertEqual(sorted(to for m in self.mails("login") for to in [m["To"]]),
                         ["admin@example.test", "alice@example.test"])
        self.assertEqual(self.rows("SELECT COUNT(*) FROM portal_login_links"), [(2,)])

    @asyncTest
    async def test_userFromTheUsersTable(self) -> None:
        """A sender made a user (welcome) may sign in; the welcome mail names the portal's login page."""
        await self.start()
        await self.send("carol@example.test")
        [welcome] = await self.waitMails("welcome", 1)
        self.assertIn(f"{self.publicURL}/portal/login", welcome.get_body(("plain",)).get_content())
        browser = await self.signIn("carol@example.test")
        code, page, _ = await browser.request("GET", "/portal/")
        self.assertEqual(code, 200)
        self.assertIn("carol@example.test", page.decode("utf-8"))

    @asyncTest
    async def test_samlOnlyTenantGetsNoLink(self) -> None:
        await self.start(portal_login="saml")
        code, page = await self.askLink("alice@example.test")
        self.assertEqual(code, 200)
        await self.send("alice@example.test")  # something else goes out after the lookup
        self.assertEqual(self.rows("SELECT COUNT(*) FROM portal_login_links"), [(0,)])
        self.assertEqual(self.mails("login"), [])

    @asyncTest
    async def test_notAnAddress(self) -> None:
        await self.start()
        code, page = await self.askLink("not an address")
        self.assertEqual(code, 400)
        self.assertIn('role="alert"', page.decode("utf-8"))

    @asyncTest
    async def test_forgedLoginForm(self) -> None:
        await self.start()
        browser = self.browser()
        await browser.request("GET", "/portal/login")
        code, _, _ = await browser.request("POST", "/portal/login", {"address": "alice@example.test", "csrf": "x"})
        self.assertEqual(code, 403)
        code, _, _ = await browser.request("POST", "/portal/login",
                                           {"address": "alice@example.test", "csrf": browser.csrf()},
                                           {"Origin": "https://evil.test"})
        self.assertEqual(code, 403)
        self.assertEqual(self.rows("SELECT COUNT(*) FROM attempts"), [(0,)])

    @asyncTest
    async def test_disabled(self) -> None:
        await self.start(portal={"enabled": False})
        code, _, _ = await self.browser().request("GET", "/portal/login")
        self.assertEqual(code, 404)


class WhoSeesWhat(PortalTestCase):
    @asyncTest
    async def test_userSeesOnlyTheirOwn(self) -> None:
        await self.start()
        alices = await self.send("alice@example.test", subject="Van Alice")
        carols = await self.send("carol@example.test", subject="Van Carol")
        browser = await self.signIn("alice@example.test")
        code, page, _ = await browser.request("GET", "/portal/")
        text = page.decode("utf-8")
        self.assertIn("Van Alice", text)
        self.assertNotIn("Van Carol", text)
        self.assertNotIn(carols, text)
        code, own, _ = await browser.request("GET", f"/portal/transfers/{alices}")
        self.assertEqual(code, 200)
        code, others, _ = await browser.request("GET", f"/portal/transfers/{carols}")
        code2, nothing, _ = await browser.request("GET", "/portal/transfers/aaaaaaaaaaaaaaaa")
        self.assertEqual((code, code2), (404, 404))
        self.assertEqual(others.replace(carols.encode(), b"ID"), nothing.replace(b"a" * 16, b"ID"))
        for path in ("/portal/transfers", "/portal/events", "/portal/events.csv"):
            code, _, _ = await browser.request("GET", path)
            self.assertEqual(code, 404, path)
        # Nor can she act on it.
        for action in ("revoke", "extend"):
            code, _, _ = await browser.request("POST", f"/portal/transfers/{carols}/{action}",
                                               {"csrf": browser.csrf(), "days": "1"})
            self.assertEqual(code, 404)
        self.assertEqual(self.rows("SELECT revoked FROM transfers WHERE id = ?", (carols,)), [(None,)])

    @asyncTest
    async def test_transferPage(self) -> None:
        await self.start(recipient_verification="email-code")
        data = b"hello portal\n" * 100
        transferId = await self.send("alice@example.test", files={"rapport.txt": data},
                                     recipients=("bob@external.test", "eve@external.test"))
        browser = await self.signIn("alice@example.test")
        code, page, _ = await browser.request("GET", f"/portal/transfers/{transferId}")
        text = page.decode("utf-8")
        self.assertEqual(code, 200)
        import hashlib

        self.assertIn(hashlib.sha256(data).hexdigest(), text)
        self.assertIn("rapport.txt", text)
        self.assertIn("eve@external.test", text)
        self.assertIn("Nog niet gedownload.", text)
        self.rows("INSERT INTO downloads (transfer_id, n, tenant, name, at, client, user_agent, recipient)"
                  " VALUES (?, 0, 'example', 'rapport.txt', 1700000000, '192.0.2.7', 'curl', 'bob@external.test')",
                  (transferId,))
        code, page, _ = await browser.request("GET", f"/portal/transfers/{transferId}")
        text = page.decode("utf-8")
        self.assertIn("bob@external.test", text)
        self.assertIn("192.0.2.7", text)
        code, page, _ = await browser.request("GET", "/portal/")
        self.assertRegex(page.decode("utf-8"), r'data-label="Downloads">1<')

    @asyncTest
    async def test_adminSeesTheTenant(self) -> None:
        await self.start()
        alices = await self.send("alice@example.test", subject="Van Alice", recipients=("bob@external.test",))
        carols = await self.send("carol@example.test", subject="Van Carol", recipients=("dave@external.test",))
        browser = await self.signIn("admin@example.test")
        code, page, _ = await browser.request("GET", "/portal/")
        self.assertNotIn("Van Alice", page.decode("utf-8"))  # the admin's own list is their own
        self.assertIn("Alle verzendingen", page.decode("utf-8"))
        code, page, _ = await browser.request("GET", "/portal/transfers")
        text = page.decode("utf-8")
        self.assertEqual(code, 200)
        self.assertIn(alices, text)
        self.assertIn(carols, text)
        code, page, _ = await browser.request("GET", "/portal/transfers?sender=Carol@example.test")
        self.assertIn(carols, page.decode("utf-8"))
        self.assertNotIn(alices, page.decode("utf-8"))
        code, page, _ = await browser.request("GET", "/portal/transfers?recipient=bob@external.test")
        self.assertIn(alices, page.decode("utf-8"))
        self.assertNotIn(carols, page.decode("utf-8"))
        code, page, _ = await browser.request("GET", "/portal/transfers?since=2999-01-01")
        self.assertEqual(code, 200)
        self.assertIn("Geen verzendingen gevonden.", page.decode("utf-8"))
        code, page, _ = await browser.request("GET", "/portal/transfers?since=gisteren")
        self.assertEqual(code, 400)
        self.assertIn("Geen geldige datum", page.decode("utf-8"))
        code, _, _ = await browser.request("GET", f"/portal/transfers/{carols}")
        self.assertEqual(code, 200)
        [(role,)] = self.rows("SELECT role FROM portal_sessions")
        self.assertEqual(role, "admin")

    @asyncTest
    async def test_notSignedIn(self) -> None:
        await self.start()
        for path in ("/portal/", "/portal/transfers", "/portal/events", "/portal/transfers/abc"):
            code, _, response = await self.browser().request("GET", path)
            self.assertEqual(code, 303, path)
            self.assertEqual(response.headers.getRawHeaders("location"), ["/portal/login"])
        code, _, response = await self.browser().request("GET", "/portal")
        self.assertEqual((code, response.headers.getRawHeaders("location")), (303, ["/portal/"]))
        code, page, _ = await self.browser().request("GET", "/portal/nothing/here")
        self.assertEqual(code, 404)


class Languages(PortalTestCase):
    @asyncTest
    async def test_english(self) -> None:
        await self.start(language="en")
        await self.send("alice@example.test")
        # Before signing in no tenant is known: [web] language (or the browser's).
        code, page, _ = await self.browser().request("GET", "/portal/login")
        self.assertIn('<html lang="nl">', page.decode("utf-8"))
        browser = await self.signIn("alice@example.test")
        [mail] = self.mails("login")
        self.assertEqual(mail["Subject"], "Your login link for the SecuDoc portal")
        code, page, _ = await browser.request("GET", "/portal/")
        text = page.decode("utf-8")
        self.assertIn('<html lang="en">', text)
        self.assertIn("My transfers", text)
        self.assertIn("Signed in as alice@example.test", text)
        self.assertIn(">live<", text)

    @asyncTest
    async def test_switchAndBrowserLanguage(self) -> None:
        await self.start()
        code, page, _ = await self.browser().request("GET", "/portal/login", headers={"Accept-Language": "en-GB"})
        self.assertIn('<html lang="en">', page.decode("utf-8"))
        browser = self.browser()
        code, page, _ = await browser.request("GET", "/portal/login?lang=en")
        self.assertIn("Send login link", page.decode("utf-8"))
        self.assertTrue(any(re.match(r"sd_lang=en;.*Path=/portal", c, re.I) for c in browser.setCookies))
        code, page, _ = await browser.request("POST", "/portal/login",
                                              {"address": "alice@example.test", "csrf": browser.csrf()})
        self.assertIn("Check your mailbox", page.decode("utf-8"))
        [mail] = await self.waitMails("login", 1)
        self.assertEqual(mail["Subject"], "Your login link for the SecuDoc portal")
