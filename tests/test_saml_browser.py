"""
SAML sign-on in a real browser: Debian's Chromium follows the portal's
per-tenant login page's "Sign in with Microsoft" to the test IdP, which
answers with Entra's form; pressing its button posts the response
cross-site to the ACS, with the ``SameSite=None; Secure`` cookie that
binds it to this browser (Chromium keeps Secure cookies of
http://127.0.0.1, a secure context).  The user lands on their list.
"""

from __future__ import annotations

import shutil
import tempfile

from secudoc_gateway.testing.saml_idp import Person
from tests import test_browser
from tests.saml_support import TENANT, USERS, SAMLTestCase
from tests.support import asyncTest, inThread


class SAMLInChromium(SAMLTestCase):
    timeout = 300
    look = test_browser.BrowserTests.look

    @asyncTest
    async def test_signIn(self) -> None:
        await self.startSAML()
        transferId = await self.send("alice@example.test", subject="Offerte renovatie gemeentehuis 2025")
        self.site.person = Person("alice@example.test", groups=(USERS,))
        downloads = tempfile.mkdtemp(prefix="downloads-")
        self.addCleanup(shutil.rmtree, downloads, True)
        driver = await inThread(test_browser.chromium, downloads)
        self.addCleanup(lambda: inThread(lambda: (driver.quit(), shutil.rmtree(driver.profile, True))))
        from selenium.webdriver.common.by import By

        def signIn() -> list[str]:
            driver.get(f"{self.gateway.webURL}/portal/login?tenant={TENANT}")
            found = self.look(driver, "portal-saml-1-login")
            driver.find_element(By.ID, "saml").click()
            driver.find_element(By.ID, "continue").click()  # the IdP's form, posted to the ACS
            driver.find_element(By.CSS_SELECTOR, "nav.portal")  # signed in, once the list is there
            self.assertEqual(driver.find_element(By.TAG_NAME, "h1").text, "Mijn verzendingen")
            self.assertIn(transferId, driver.find_element(By.TAG_NAME, "main").text)
            return found

        violations = await inThread(signIn)
        self.assertEqual(violations, [])
        self.assertEqual(self.rows("SELECT address, role, how FROM portal_sessions"),
                         [("alice@example.test", "user", "saml")])
