"""
The portal in a real browser: Debian's Chromium driven by selenium asks
for a login link, follows it from the outbox, presses "log in", sees
the transfer list and one transfer; axe-core finds no serious or
critical violation in any of those pages, and screenshots at desktop
and phone width go to ``var/screenshots/portal-*.png``.  The harness
(Chromium, axe, the screenshots) is ``test_browser``'s.
"""

from __future__ import annotations

import shutil
import tempfile

from tests.portal_support import PortalTestCase
from tests.support import asyncTest, inThread
from tests import test_browser


class PortalInChromium(PortalTestCase):
    timeout = 300
    look = test_browser.BrowserTests.look

    @asyncTest
    async def test_signInAndList(self) -> None:
        await self.start()
        transferId = await self.send("alice@example.test", subject="Offerte renovatie gemeentehuis 2025",
                                     recipients=("bob@external.test", "projectbureau.renovatie@external.test"))
        downloads = tempfile.mkdtemp(prefix="downloads-")
        self.addCleanup(shutil.rmtree, downloads, True)
        driver = await inThread(test_browser.chromium, downloads)
        self.addCleanup(lambda: inThread(lambda: (driver.quit(), shutil.rmtree(driver.profile, True))))
        from selenium.webdriver.common.by import By

        def ask() -> list[str]:
            driver.get(self.gateway.webURL + "/portal/login")
            self.assertEqual(driver.find_element(By.TAG_NAME, "html").get_attribute("lang"), "nl")
            found = self.look(driver, "portal-1-login")
            driver.find_element(By.ID, "address").send_keys("alice@example.test")
            driver.find_element(By.CSS_SELECTOR, "main button[type=submit]").click()
            driver.find_element(By.PARTIAL_LINK_TEXT, "Nieuwe inloglink")  # the next page, once it is there
            self.assertEqual(driver.find_element(By.TAG_NAME, "h1").text, "Kijk in uw mailbox")
            return found + self.look(driver, "portal-2-sent")

        violations = await inThread(ask)
        link = await self.loginLink("alice@example.test")

        def signIn() -> list[str]:
            driver.get(self.gateway.webURL + link)
            found = self.look(driver, "portal-3-button")
            driver.find_element(By.CSS_SELECTOR, "main button[type=submit]").click()
            driver.find_element(By.CSS_SELECTOR, "nav.portal")  # signed in, once the list is there
            self.assertEqual(driver.find_element(By.TAG_NAME, "h1").text, "Mijn verzendingen")
            self.assertIn(transferId, driver.find_element(By.TAG_NAME, "main").text)
            found += self.look(driver, "portal-4-list")
            driver.find_element(By.PARTIAL_LINK_TEXT, "Offerte renovatie").click()
            driver.find_element(By.CSS_SELECTOR, "button.danger")
            return found + self.look(driver, "portal-5-transfer")

        violations += await inThread(signIn)
        self.assertEqual(violations, [])
