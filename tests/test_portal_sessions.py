"""
Portal sessions and login links end to end (SPEC 9): single use and
expiry of a link, rate limits, idle and absolute expiry, logout by
POST, forms refused with a forged token or another session's, and the
cookie's flags over http and https.  Links and sessions age by the
gateway's clock, moved by the test.
"""

from __future__ import annotations

from tests.portal_support import PortalTestCase
from tests.support import asyncTest


class Links(PortalTestCase):
    @asyncTest
    async def test_singleUse(self) -> None:
        await self.start()
        browser = self.browser()
        await self.askLink("alice@example.test", browser)
        link = await self.loginLink("alice@example.test")
        await browser.request("GET", link)
        csrf = browser.csrf()
        code, _, _ = await browser.request("POST", link, {"csrf": csrf})
        self.assertEqual(code, 303)
        other = self.browser()
        for who in (browser, other):
            code, page, _ = await who.request("GET", link)
            self.assertEqual(code, 410)
            self.assertIn("Deze inloglink werkt niet meer", page.decode("utf-8"))
        code, _, _ = await browser.request("POST", link, {"csrf": csrf})
        self.assertEqual(code, 410)
        self.assertEqual(self.rows("SELECT COUNT(*) FROM portal_sessions"), [(1,)])

    @asyncTest
    async def test_expiry(self) -> None:
        await self.start()
        browser = self.browser()
        await self.askLink("alice@example.test", browser)
        link = await self.loginLink("alice@example.test")
        await browser.request("GET", link)
        self.clock.offset += 15 * 60 + 1
        code, _, _ = await browser.request("POST", link, {"csrf": browser.csrf()})
        self.assertEqual(code, 410)
        code, _, _ = await browser.request("GET", link)
        self.assertEqual(code, 410)
        self.assertEqual(self.rows("SELECT COUNT(*) FROM portal_sessions"), [(0,)])

    @asyncTest
    async def test_linkPostNeedsTheButtonsToken(self) -> None:
        """A post the link's own page did not make is refused, and the link stays usable."""
        await self.start()
        await self.askLink("alice@example.test")
        link = await self.loginLink("alice@example.test")
        browser = self.browser()
        code, _, _ = await browser.request("POST", link, {"csrf": "forged"})
        self.assertEqual(code, 403)
        await browser.request("GET", link)
        code, _, _ = await browser.request("POST", link, {"csrf": browser.csrf()})
        self.assertEqual(code, 303)

    @asyncTest
    async def test_rateLimits(self) -> None:
        """Five links an hour per address, ten asks per client; a refused ask is not counted."""
        await self.start()
        for _ in range(5):
            code, _ = await self.askLink("alice@example.test")
            self.assertEqual(code, 200)
        code, page = await self.askLink("alice@example.test")
        self.assertEqual(code, 429)
        self.assertIn("Te veel pogingen", page.decode("utf-8"))
        for n in range(5):
            code, _ = await self.askLink(f"someone{n}@example.test")
            self.assertEqual(code, 200)
        code, _ = await self.askLink("admin@example.test")
        self.assertEqual(code, 429)
        await self.waitMails("login", 5, to="alice@example.test")
        self.assertEqual(self.mails("login", to="admin@example.test"), [])
        self.clock.offset += 3601
        code, _ = await self.askLink("admin@example.test")
        self.assertEqual(code, 200)
        await self.waitMails("login", 1, to="admin@example.test")


class Expiry(PortalTestCase):
    @asyncTest
    async def test_idle(self) -> None:
        await self.start(portal={"idle_minutes": 30, "session_hours": 8})
        browser = await self.signIn("alice@example.test")
        self.clock.offset += 29 * 60
        code, _, _ = await browser.request("GET", "/portal/")
        self.assertEqual(code, 200)
        self.clock.offset += 29 * 60  # used 29 minutes ago: still alive
        code, _, _ = await browser.request("GET", "/portal/")
        self.assertEqual(code, 200)
        self.clock.offset += 30 * 60 + 1
        code, _, response = await browser.request("GET", "/portal/")
        self.assertEqual((code, response.headers.getRawHeaders("location")), (303, ["/portal/login"]))
        self.assertEqual(self.rows("SELECT COUNT(*) FROM portal_sessions"), [(0,)])

    @asyncTest
    async def test_absolute(self) -> None:
        await self.start(portal={"idle_minutes": 30, "session_hours": 1})
        browser = await self.signIn("alice@example.test")
        for _ in range(2):
            self.clock.offset += 25 * 60
            code, _, _ = await browser.request("GET", "/portal/")
            self.assertEqual(code, 200)
        self.clock.offset += 11 * 60  # used 11 minutes ago, but begun 61 minutes ago
        code, _, response = await browser.request("GET", "/portal/")
        self.assertEqual((code, response.headers.getRawHeaders("location")), (303, ["/portal/login"]))


class Logout(PortalTestCase):
    @asyncTest
    async def test_logoutIsAPost(self) -> None:
        await self.start()
        browser = await self.signIn("alice@example.test")
        stolen = dict(browser.cookies)
        code, _, _ = await browser.request("GET", "/portal/logout")
        self.assertEqual(code, 405)
        code, _, _ = await browser.request("POST", "/portal/logout", {"csrf": "forged"})
        self.assertEqual(code, 403)
        await browser.request("GET", "/portal/")
        code, _, response = await browser.request("POST", "/portal/logout", {"csrf": browser.csrf()})
        self.assertEqual((code, response.headers.getRawHeaders("location")), (303, ["/portal/login"]))
        [cleared] = [c for c in response.headers.getRawHeaders("set-cookie") if c.startswith("sd_portal=")]
        self.assertIn("Max-Age=0", cleared)
        self.assertEqual(self.rows("SELECT COUNT(*) FROM portal_sessions"), [(0,)])
        # The old cookie, kept by someone, opens nothing any more.
        replay = self.browser()
        replay.cookies = stolen
        code, _, response = await replay.request("GET", "/portal/")
        self.assertEqual((code, response.headers.getRawHeaders("location")), (303, ["/portal/login"]))


class Forms(PortalTestCase):
    @asyncTest
    async def test_csrf(self) -> None:
        await self.start()
        transferId = await self.send("alice@example.test")
        browser = await self.signIn("alice@example.test")
        other = await self.signIn("alice@example.test")  # the same person, another session
        await other.request("GET", f"/portal/transfers/{transferId}")
        await browser.request("GET", f"/portal/transfers/{transferId}")
        revoke = f"/portal/transfers/{transferId}/revoke"
        for form, headers in (({"csrf": "forged"}, None), ({}, None), ({"csrf": other.csrf()}, None),
                              ({"csrf": browser.csrf()}, {"Origin": "https://evil.test"})):
            code, page, _ = await browser.request("POST", revoke, form, headers)
            self.assertEqual(code, 403, form)
            self.assertIn("Het formulier was verlopen", page.decode("utf-8"))
        self.assertEqual(self.rows("SELECT revoked FROM transfers"), [(None,)])
        self.assertEqual(self.rows("SELECT COUNT(*) FROM admin_events WHERE what = 'revoke'"), [(0,)])
        code, _, _ = await browser.request("POST", revoke, {"csrf": browser.csrf()})
        self.assertEqual(code, 303)
        [(revoked,)] = self.rows("SELECT revoked FROM transfers")
        self.assertIsNotNone(revoked)


class Cookies(PortalTestCase):
    @asyncTest
    async def test_http(self) -> None:
        await self.start()
        browser = await self.signIn("alice@example.test")
        [cookie] = [c for c in browser.setCookies if c.startswith("sd_portal=")]
        attributes = {a.strip().split("=")[0].lower(): a.strip() for a in cookie.split(";")[1:]}
        self.assertEqual(attributes["path"], "Path=/portal")
        self.assertEqual(attributes["samesite"], "SameSite=lax")
        self.assertIn("httponly", attributes)
        self.assertNotIn("secure", attributes)
        self.assertNotIn("max-age", attributes)
        self.assertEqual(len(cookie.split(";")[0].split("=", 1)[1]), 43)  # 256 bits

    @asyncTest
    async def test_https(self) -> None:
        """An https public URL: ``__Host-`` prefixed, Secure, Path=/ (the listener behind a proxy is plain)."""
        await self.start(publicURL="https://portal.example.test")
        origin = {"Origin": "https://portal.example.test"}
        browser = await self.signIn("alice@example.test", **origin)
        [cookie] = [c for c in browser.setCookies if c.startswith("__Host-sd_portal=")]
        attributes = {a.strip().split("=")[0].lower(): a.strip() for a in cookie.split(";")[1:]}
        self.assertEqual(attributes["path"], "Path=/")
        self.assertIn("secure", attributes)
        self.assertIn("httponly", attributes)
        self.assertNotIn("domain", attributes)
        self.assertEqual(attributes["samesite"], "SameSite=lax")
        code, page, response = await browser.request("GET", "/portal/")
        self.assertEqual(code, 200)
        self.assertIn("Strict-Transport-Security", {k.decode() for k, _ in response.headers.getAllRawHeaders()})
        # Over https the plain cookie name is not ours: a planted one opens nothing.
        planted = self.browser()
        planted.cookies = {"sd_portal": cookie.split(";")[0].split("=", 1)[1]}
        code, _, _ = await planted.request("GET", "/portal/")
        self.assertEqual(code, 303)
