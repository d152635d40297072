"""
The portal in a real browser: Debian's Chromium driven by selenium asks
for a login link, follows it from the outbox, presses "log in", sees
the transfer list and one transfer; sends three files from the send
page (the progress bar moving) and the recipient downloads them, one by
one and as a ZIP, byte-exact; axe-core finds no serious or critical
violation in any of those pages, and screenshots at desktop and phone
width go to ``var/screenshots/portal-*.png``.  The harness (Chromium,
axe, the screenshots) is ``test_browser``'s.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import zipfile

from tests.portal_support import PortalTestCase
from tests.support import asyncTest, inThread, until
from tests import test_browser

BIG_MB = int(os.environ.get("SECUDOC_TEST_UPLOAD_MB", "50"))
# Every value the total progress bar takes, kept across the page change
# that follows the upload (sessionStorage is the origin's, per tab).
WATCH_PROGRESS = """
const bar = document.getElementById("total-progress");
sessionStorage.setItem("progress", "[]");
new MutationObserver(() => {
  const seen = JSON.parse(sessionStorage.getItem("progress"));
  seen.push(Number(bar.getAttribute("value")));
  sessionStorage.setItem("progress", JSON.stringify(seen));
}).observe(bar, {attributes: true, attributeFilter: ["value"]});
"""


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for piece in iter(lambda: f.read(1 << 20), b""):
            h.update(piece)
    return h.hexdigest()


def fileOf(folder: str, name: str, size: int, seed: int) -> str:
    """A file of ``size`` bytes made 1 MiB at a time (never whole in memory)."""
    path = os.path.join(folder, name)
    block = hashlib.sha256(str(seed).encode()).digest() * 32768
    with open(path, "wb") as f:
        left = size
        while left:
            f.write(block[:min(left, len(block))])
            left -= min(left, len(block))
    return path


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


class SendInChromium(PortalTestCase):
    """Issue 20's acceptance: three files sent from the browser reach the recipient byte-exact."""

    timeout = 300
    look = test_browser.BrowserTests.look

    @asyncTest
    async def test_sendThreeFiles(self) -> None:
        await self.start()
        folder = tempfile.mkdtemp(prefix="upload-")
        downloads = tempfile.mkdtemp(prefix="downloads-")
        self.addCleanup(shutil.rmtree, folder, True)
        self.addCleanup(shutil.rmtree, downloads, True)
        paths = [fileOf(folder, "Tekening begane grond.pdf", 180_000, 1),
                 fileOf(folder, "Bouwtekeningen-2025.bin", BIG_MB << 20, 2),
                 fileOf(folder, "Planning.xlsx", 12_000, 3)]
        sums = {os.path.basename(p): sha256(p) for p in paths}
        driver = await inThread(test_browser.chromium, downloads)
        self.addCleanup(lambda: inThread(lambda: (driver.quit(), shutil.rmtree(driver.profile, True))))
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        def ask() -> None:
            driver.get(self.gateway.webURL + "/portal/login")
            driver.find_element(By.ID, "address").send_keys("alice@example.test")
            driver.find_element(By.CSS_SELECTOR, "main button[type=submit]").click()
            driver.find_element(By.PARTIAL_LINK_TEXT, "Nieuwe inloglink")

        await inThread(ask)
        link = await self.loginLink("alice@example.test")

        def send() -> tuple[list[str], list[int]]:
            driver.get(self.gateway.webURL + link)
            driver.find_element(By.CSS_SELECTOR, "main button[type=submit]").click()
            driver.find_element(By.CSS_SELECTOR, "nav.portal")
            driver.find_element(By.LINK_TEXT, "Bestanden versturen").click()
            self.assertEqual(driver.find_element(By.TAG_NAME, "h1").text, "Bestanden versturen")
            found = self.look(driver, "portal-send-1-form")
            driver.find_element(By.ID, "recipients").send_keys("bob@external.test")
            driver.find_element(By.ID, "subject").send_keys("Bouwtekeningen")
            driver.find_element(By.ID, "message").send_keys("Beste Bob,\nhierbij de tekeningen.")
            driver.find_element(By.ID, "files").send_keys("\n".join(paths))
            self.assertEqual(len(driver.find_elements(By.CSS_SELECTOR, "#chosen progress")), 3)
            self.assertEqual(driver.find_element(By.CSS_SELECTOR, "#chosen button").text,
                             "Uit de lijst halen: Tekening begane grond.pdf")
            found += self.look(driver, "portal-send-2-chosen")
            driver.execute_script(WATCH_PROGRESS)
            driver.find_element(By.ID, "send-button").click()
            WebDriverWait(driver, 120).until(lambda d: re.search(r"/portal/transfers/[a-z2-7]{16}$", d.current_url))
            self.assertEqual(driver.find_element(By.TAG_NAME, "h1").text, "Bouwtekeningen")
            progress = driver.execute_script("return JSON.parse(sessionStorage.getItem('progress') || '[]')")
            return found + self.look(driver, "portal-send-3-sent"), progress

        violations, progress = await inThread(send)
        # The bar moved: values between none and all, rising, ending at 100%.
        self.assertEqual(progress[-1], 100, progress)
        self.assertTrue([v for v in progress if 0 < v < 100], progress)
        self.assertEqual(progress, sorted(progress))

        [mail] = await self.waitMails("upload", 1, to="bob@external.test")
        self.assertEqual(mail["To"], "bob@external.test")
        [url] = re.findall(r"https?://[^\s]+/t/[A-Za-z0-9_-]{43}", mail.get_body(("plain",)).get_content())

        def receive() -> list[str]:
            driver.get(url)
            items = driver.find_elements(By.CSS_SELECTOR, "ul.files li a")
            self.assertEqual(len(items), 3)
            found = self.look(driver, "portal-send-4-landing")
            for item in driver.find_elements(By.CSS_SELECTOR, "ul.files li a"):
                item.click()
            driver.find_element(By.PARTIAL_LINK_TEXT, "Alle bestanden downloaden").click()
            return found

        violations += await inThread(receive)
        names = set(sums) | {"bestanden.zip"}

        def complete() -> bool:
            present = set(os.listdir(downloads))
            return names <= present and not any(n.endswith(".crdownload") for n in present)

        await until(complete, "the downloads", 60, interval=0.1)
        self.assertEqual({n: sha256(os.path.join(downloads, n)) for n in sums}, sums)
        with zipfile.ZipFile(os.path.join(downloads, "bestanden.zip")) as archive:
            self.assertEqual(sorted(archive.namelist()), sorted(sums))
            for name in sums:
                h = hashlib.sha256()
                with archive.open(name) as member:
                    for piece in iter(lambda: member.read(1 << 20), b""):
                        h.update(piece)
                self.assertEqual(h.hexdigest(), sums[name], name)
        self.assertEqual(violations, [])
