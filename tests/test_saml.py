"""
SAML sign-on with an Entra-like IdP (SPEC 9), end to end over real
sockets: our metadata, SP-initiated login, the ACS signing in users and
admins by their groups, the pages for no group and a groups overage,
and every forged or replayed response refused with the check that
caught it named on the page (so each test fails without its check).
"""

from __future__ import annotations

import re
import time

from secudoc_gateway.testing.saml_idp import Person
from tests.saml_support import ADMINS, OTHER, TENANT, USERS, SAMLTestCase, key
from tests.support import asyncTest

ALICE = Person("alice@example.test", groups=(USERS,))


class SignOn(SAMLTestCase):
    def reason(self, body: bytes) -> str:
        found = re.search(rb'<code id="reason">([^<]*)</code>', body)
        return found.group(1).decode() if found else ""

    async def refused(self, reason: str, code: int = 403, **forged: object) -> None:
        status, body, _ = await self.signInWith(ALICE, **forged)
        self.assertEqual((status, self.reason(body)), (code, reason), body[:3000])
        self.assertEqual(self.rows("SELECT COUNT(*) FROM portal_sessions"), [(0,)])

    @asyncTest
    async def test_metadata(self) -> None:
        """Ours, SHA-256 only, the ACS with HTTP-POST, signed assertions wanted; entityID its own URL."""
        await self.startSAML()
        code, body, response = await self.browser().request("GET", f"/saml/{TENANT}/metadata.xml")
        self.assertEqual(code, 200)
        text = body.decode()
        self.assertIn(f'entityID="{self.entityId}"', text)
        self.assertIn(f'Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="{self.acsURL}"', text)
        self.assertIn('WantAssertionsSigned="true"', text)
        self.assertNotIn("sha1", text.lower())
        self.assertNotIn("md5", text.lower())

    @asyncTest
    async def test_userSeesOwnTransfers(self) -> None:
        await self.startSAML()
        mine = await self.send("alice@example.test", subject="Van Alice")
        other = await self.send("carol@example.test", subject="Van Carol")
        browser = self.browser()
        code, _, response = await self.signInWith(ALICE, browser)
        self.assertEqual(code, 303, _)
        self.assertEqual(response.headers.getRawHeaders("location"), ["/portal/"])
        code, body, _ = await browser.request("GET", "/portal/")
        self.assertEqual(code, 200)
        self.assertIn(mine.encode(), body)
        self.assertNotIn(other.encode(), body)
        code, _, _ = await browser.request("GET", "/portal/sso")
        self.assertEqual(code, 404)
        self.assertEqual(self.rows("SELECT address, role, how FROM portal_sessions"),
                         [("alice@example.test", "user", "saml")])
        self.assertEqual(self.rows("SELECT who, what, subject, new_value FROM admin_events"),
                         [("alice@example.test", "login", "saml", "user")])

    @asyncTest
    async def test_adminGroupWins(self) -> None:
        """In both groups (ids in another case than the config's): admin; the SSO page shows what Entra needs."""
        await self.startSAML()
        browser = self.browser()
        person = Person("Beheer@Example.test", groups=(USERS.lower(), ADMINS.upper()), email=False)
        code, body, _ = await self.signInWith(person, browser)
        self.assertEqual(code, 303, body)
        self.assertEqual(self.rows("SELECT address, role FROM portal_sessions"), [("beheer@example.test", "admin")])
        code, body, _ = await browser.request("GET", "/portal/sso")
        self.assertEqual(code, 200)
        for value in (self.entityId, self.acsURL, f"{self.publicURL}/saml/{TENANT}/login", self.metadataURL,
                      self.idp.entityId, USERS.lower(), ADMINS):
            self.assertIn(value.encode(), body)
        self.assertIn(b'id="test-login" href="/saml/example/login"', body)

    @asyncTest
    async def test_noGroup(self) -> None:
        await self.startSAML()
        code, body, _ = await self.signInWith(Person("dave@example.test", groups=(OTHER,)))
        self.assertEqual(code, 403)
        self.assertIn(b"Geen toegang tot het portaal", body)
        self.assertIn(USERS.lower().encode(), body)
        self.assertIn(ADMINS.encode(), body)
        self.assertEqual(self.rows("SELECT COUNT(*) FROM portal_sessions"), [(0,)])

    @asyncTest
    async def test_overage(self) -> None:
        await self.startSAML()
        code, body, _ = await self.signInWith(Person("erik@example.test", groups=(), overage=True))
        self.assertEqual(code, 403)
        self.assertIn(b"150 groepen", body)
        self.assertEqual(self.rows("SELECT COUNT(*) FROM portal_sessions"), [(0,)])

    @asyncTest
    async def test_forgeries(self) -> None:
        """Each forgery, refused by the check that names it."""
        await self.startSAML()
        cases = [
            ("issuer", dict(issuer="https://sts.windows.net/00000000-0000-0000-0000-000000000000/")),
            ("destination", dict(destination="https://elsewhere.test/acs")),
            ("recipient", dict(recipient="https://elsewhere.test/acs")),
            ("time", dict(at=time.time() - 2 * 3600)),
            ("algorithm", dict(sha1=True)),
            ("unsigned", dict(signed=False)),
            ("signature", dict(key=key("stranger"))),
            ("in-response-to", dict(confirmationInResponseTo="id-other")),
        ]
        for reason, forged in cases:
            await self.refused(reason, **forged)

    @asyncTest
    async def test_wrongAudience(self) -> None:
        await self.startSAML()
        browser = self.browser()
        requestId = await self.begin(browser)
        code, body, _ = await self.post(browser, self.idp.respond(ALICE, requestId, self.acsURL,
                                                                  "https://other.test/saml/metadata.xml"))
        self.assertEqual((code, self.reason(body)), (403, "audience"))

    @asyncTest
    async def test_replays(self) -> None:
        """The same response twice (InResponseTo used); a new request answered by a seen assertion."""
        await self.startSAML()
        browser = self.browser()
        requestId = await self.begin(browser)
        response = self.idp.respond(ALICE, requestId, self.acsURL, self.entityId, assertionId="_seen-once")
        cookie = browser.cookies["sd_saml"]
        code, _, _ = await self.post(browser, response)
        self.assertEqual(code, 303)
        browser.cookies["sd_saml"] = cookie  # a replay with the cookie it came with
        code, body, _ = await self.post(browser, response)
        self.assertEqual((code, self.reason(body)), (403, "request"))
        requestId = await self.begin(browser)
        code, body, _ = await self.post(browser, self.idp.respond(ALICE, requestId, self.acsURL, self.entityId,
                                                                  assertionId="_seen-once"))
        self.assertEqual((code, self.reason(body)), (403, "replay"))

    @asyncTest
    async def test_idpInitiated(self) -> None:
        await self.startSAML()
        browser = self.browser()
        await self.begin(browser)
        code, body, _ = await self.post(browser, self.idp.respond(ALICE, None, self.acsURL, self.entityId))
        self.assertEqual(code, 400)
        self.assertIn(b'href="/saml/example/login"', body)
        self.assertEqual(self.rows("SELECT COUNT(*) FROM portal_sessions"), [(0,)])

    @asyncTest
    async def test_browserBinding(self) -> None:
        """The cookie: SameSite=None, Secure, on the ACS path; without it, or another browser's, no login."""
        await self.startSAML()
        browser = self.browser()
        requestId = await self.begin(browser)
        [line] = [c for c in browser.setCookies if c.startswith("sd_saml=")]
        self.assertIn("samesite=none", line.lower())
        self.assertIn("Secure", line)
        self.assertIn("HttpOnly", line)
        self.assertIn(f"Path=/saml/{TENANT}/acs", line)
        response = self.idp.respond(ALICE, requestId, self.acsURL, self.entityId)
        del browser.cookies["sd_saml"]
        code, body, _ = await self.post(browser, response)
        self.assertEqual((code, self.reason(body)), (403, "cookie"))
        other = self.browser()
        await self.begin(other)  # another browser's cookie does not answer this browser's request
        requestId = await self.begin(browser)
        other.cookies["sd_saml"] = browser.cookies["sd_saml"] + "x"
        code, body, _ = await self.post(other, self.idp.respond(ALICE, requestId, self.acsURL, self.entityId))
        self.assertEqual((code, self.reason(body)), (403, "request"))

    @asyncTest
    async def test_requestExpires(self) -> None:
        await self.startSAML()
        browser = self.browser()
        requestId = await self.begin(browser)
        self.clock.offset += 10 * 60 + 1
        code, body, _ = await self.post(browser, self.idp.respond(ALICE, requestId, self.acsURL, self.entityId))
        self.assertEqual((code, self.reason(body)), (403, "request"))

    @asyncTest
    async def test_emailLinkTenant(self) -> None:
        """portal_login = "email-link": no SAML login; "saml": no e-mail link; the login page's button."""
        await self.startSAML(portal_login="email-link")
        code, _, _ = await self.browser().request("GET", f"/saml/{TENANT}/login")
        self.assertEqual(code, 404)
        code, body, _ = await self.browser().request("GET", f"/portal/login?tenant={TENANT}")
        self.assertNotIn(b"Inloggen met Microsoft", body)

    @asyncTest
    async def test_samlOnlyTenant(self) -> None:
        await self.startSAML(portal_login="saml")
        code, body, _ = await self.browser().request("GET", f"/portal/login?tenant={TENANT}")
        self.assertIn(b'id="saml" href="/saml/example/login"', body)
        self.assertNotIn(b'name="address"', body)
        code, _ = await self.askLink("alice@example.test")
        self.assertEqual(code, 200)
        code, _, _ = await self.signInWith(ALICE)
        self.assertEqual(code, 303)
        self.assertEqual(self.mails("login"), [])


class Metadata(SAMLTestCase):
    @asyncTest
    async def test_untrustedCA(self) -> None:
        """Without the CA trusted, no metadata: the login page says SSO is unavailable, the SSO page why."""
        await self.startSAML(trusted=False)
        code, body, _ = await self.browser().request("GET", f"/saml/{TENANT}/login")
        self.assertEqual(code, 503)
        self.assertIn(b"certificate", body.lower().replace(b"_", b" "))
        self.assertEqual(self.site.fetches, 0)  # refused in the handshake: no request reached the IdP

    @asyncTest
    async def test_lastGoodCopyKept(self) -> None:
        """A day later the IdP answers garbage: the old copy still signs people in; the error is shown."""
        await self.startSAML()
        code, _, _ = await self.signInWith(ALICE)
        self.assertEqual(code, 303)
        self.assertEqual(self.site.fetches, 1)
        self.site.metadata = b"<html>Service unavailable</html>"
        self.clock.offset += 24 * 3600 + 1
        code, _, _ = await self.signInWith(ALICE)
        self.assertEqual(code, 303)
        self.assertEqual(self.site.fetches, 2)
        [(fetched, error)] = self.rows("SELECT fetched, error FROM saml_metadata")
        self.assertLess(fetched, self.clock.seconds() - 24 * 3600)
        self.assertIn("EntityDescriptor", error)
        code, _, _ = await self.signInWith(ALICE)  # within the retry interval: no new fetch
        self.assertEqual((code, self.site.fetches), (303, 2))

    @asyncTest
    async def test_rollover(self) -> None:
        """Two signing certificates in the metadata: responses signed with either are taken."""
        await self.startSAML(keys=[key("current"), key("next")])
        code, _, _ = await self.signInWith(ALICE)
        self.assertEqual(code, 303)
        code, body, _ = await self.signInWith(ALICE, key=key("next"))
        self.assertEqual(code, 303, body[:2000])


class AdminSetsUpSignOn(SAMLTestCase):
    @asyncTest
    async def test_fromEmailLinkToSignOn(self) -> None:
        """
        Issue 17's path: the first admin gets in by e-mail link, sets the
        metadata URL, the groups and "both" on the settings page, logs
        out, and signs in again through Entra as an admin.
        """
        await self.startSAML(portal_login="email-link", saml_metadata_url="", saml_user_groups=[],
                             saml_admin_groups=[])
        code, _, _ = await self.browser().request("GET", f"/saml/{TENANT}/login")
        self.assertEqual(code, 404)  # no single sign-on yet
        admin = await self.signIn("admin@example.test")
        await admin.request("GET", "/portal/settings")
        code, _, response = await admin.request("POST", "/portal/settings", {
            "portal_login": "both", "saml_metadata_url": self.metadataURL, "saml_user_groups": USERS,
            "saml_admin_groups": f"{ADMINS}, {OTHER}", "csrf": admin.csrf()})
        self.assertEqual(code, 303, _)
        self.assertEqual(sorted(key for key, in self.rows("SELECT key FROM tenant_settings")),
                         ["portal_login", "saml_admin_groups", "saml_metadata_url", "saml_user_groups"])
        code, _, _ = await admin.request("POST", "/portal/logout", {"csrf": admin.csrf()})
        self.assertEqual(code, 303)
        code, _, _ = await admin.request("GET", "/portal/")
        self.assertEqual(code, 303)  # signed out
        browser = self.browser()
        code, body, response = await self.signInWith(Person("admin@example.test", groups=(OTHER,)), browser)
        self.assertEqual(code, 303, body)
        self.assertEqual(self.rows("SELECT address, role, how FROM portal_sessions"),
                         [("admin@example.test", "admin", "saml")])
        code, _, _ = await browser.request("GET", "/portal/settings")
        self.assertEqual(code, 200)
