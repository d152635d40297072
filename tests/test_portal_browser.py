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


class AdminInChromium(PortalTestCase):
    """An admin changes the content mode in the browser and the next mail follows it (SPEC 9)."""

    timeout = 300
    look = test_browser.BrowserTests.look

    @asyncTest
    async def test_changeContentMode(self) -> None:
        await self.start()
        await self.send("alice@example.test", subject="Voor de wijziging")
        downloads = tempfile.mkdtemp(prefix="downloads-")
        self.addCleanup(shutil.rmtree, downloads, True)
        driver = await inThread(test_browser.chromium, downloads)
        self.addCleanup(lambda: inThread(lambda: (driver.quit(), shutil.rmtree(driver.profile, True))))
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import Select

        def ask() -> None:
            driver.get(self.gateway.webURL + "/portal/login")
            driver.find_element(By.ID, "address").send_keys("admin@example.test")
            driver.find_element(By.CSS_SELECTOR, "main button[type=submit]").click()
            driver.find_element(By.PARTIAL_LINK_TEXT, "Nieuwe inloglink")

        await inThread(ask)
        link = await self.loginLink("admin@example.test")

        def change() -> list[str]:
            driver.get(self.gateway.webURL + link)
            driver.find_element(By.CSS_SELECTOR, "main button[type=submit]").click()
            driver.find_element(By.CSS_SELECTOR, "nav.portal")
            driver.find_element(By.LINK_TEXT, "Instellingen").click()
            self.assertEqual(driver.find_element(By.TAG_NAME, "h1").text, "Instellingen")
            found = self.look(driver, "portal-admin-1-settings")
            # A wrong value first: check-config's message beside its field, nothing saved.
            days = driver.find_element(By.ID, "link_expiry_days")
            days.clear()
            days.send_keys("0")
            driver.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
            error = driver.find_element(By.ID, "error-link_expiry_days")
            self.assertEqual(error.text, "link_expiry_days: must be at least 1, not 0")
            self.assertEqual(driver.find_element(By.ID, "link_expiry_days").get_attribute("aria-invalid"), "true")
            found += self.look(driver, "portal-admin-2-settings-wrong")
            days = driver.find_element(By.ID, "link_expiry_days")
            days.clear()
            days.send_keys("7")
            Select(driver.find_element(By.ID, "content_mode")).select_by_value("transfer")
            driver.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
            self.assertEqual(driver.find_element(By.CSS_SELECTOR, ".notice").text, "De instellingen zijn opgeslagen.")
            self.assertIn("Bron: portaal, door admin@example.test",
                          driver.find_element(By.ID, "source-content_mode").text)
            found += self.look(driver, "portal-admin-3-settings-saved")
            for name, page in (("users", "Gebruikers"), ("downloads", "Downloads"),
                               ("relay-test", "Mailserver testen")):
                driver.find_element(By.LINK_TEXT, page).click()
                self.assertEqual(driver.find_element(By.TAG_NAME, "h1").text, page)
                found += self.look(driver, f"portal-admin-{name}")
            driver.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
            self.assertIn("Gelukt", driver.find_element(By.CSS_SELECTOR, ".notice").text)
            return found + self.look(driver, "portal-admin-relay-test-done")

        violations = await inThread(change)
        self.assertEqual(violations, [])
        await self.send("alice@example.test", subject="Na de wijziging")
        [message] = [m for m in self.relayedMessages() if m["Subject"] == "Na de wijziging"]
        self.assertEqual(message.get_content_type(), "multipart/alternative")  # content mode "transfer"

    def relayedMessages(self) -> list:
        import email
        import email.policy

        from tests.support import maildirMessages, splitEnvelope

        return [email.message_from_bytes(splitEnvelope(m)[2], policy=email.policy.default)
                for m in maildirMessages(self.outbox)]
