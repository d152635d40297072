"""
The recipient's pages in a real browser: Debian's Chromium driven by
selenium walks the code form, the landing page, "download all" and the
expired page, saves screenshots at desktop and phone width under
``var/screenshots/``, and runs axe-core in each page (no serious or
critical violation).  ``make test`` installs Chromium, its driver and
axe-core when they are missing.

The gateway runs in trial's reactor; selenium blocks, so every browser
step runs in a thread.
"""

from __future__ import annotations

import base64
import email
import email.policy
import io
import os
import re
import shutil
import sqlite3
import tempfile
import zipfile
from email.message import EmailMessage
from typing import Any

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from secudoc_gateway.testing import DEMO_TENANT, startGateway, writeConfig
from secudoc_gateway.testing.ports import freePort
from tests.support import asyncTest, inThread, maildirMessages, sendBDAT, splitEnvelope, until

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCREENSHOTS = os.path.join(ROOT, "var", "screenshots")
AXE = os.path.join(ROOT, "var", "axe", "node_modules", "axe-core", "axe.min.js")
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WIDTHS = {"desktop": (1280, 900), "phone": (390, 844)}
LOGO = (b'<svg xmlns="http://www.w3.org/2000/svg" width="120" height="40" viewBox="0 0 120 40">'
        b'<rect width="40" height="40" rx="6" fill="#0b5cad"/><text x="48" y="27" font-family="sans-serif"'
        b' font-size="18" fill="#1f2933">GV</text></svg>')


def chromium(downloads: str) -> Any:
    """Headless Chromium as this machine runs it (no network of its own, a fresh profile)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    for program in (CHROMIUM, CHROMEDRIVER, AXE):
        if not os.path.exists(program):
            raise AssertionError(f"{program} is missing: `make test` installs it")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="chromium-")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    # A Dutch recipient's browser: the pages follow Accept-Language.
    options.add_experimental_option("prefs", {"download.default_directory": downloads,
                                              "download.prompt_for_download": False,
                                              "intl.accept_languages": "nl-NL,nl"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.implicitly_wait(10)  # an element looked for right after a click waits for the next page
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": downloads})
    driver.profile = profile
    return driver


class BrowserTests(TestCase):
    timeout = 300

    async def startGateway(self) -> None:
        self.folder = os.path.abspath(self.mktemp())
        os.makedirs(self.folder)
        with open(os.path.join(self.folder, "logo.svg"), "wb") as f:
            f.write(LOGO)
        port = freePort()
        web = {"listen": [f"tcp:{port}:interface=127.0.0.1"], "public_url": f"http://127.0.0.1:{port}"}
        tenant = dict(DEMO_TENANT, organisation="Gemeente Voorbeeld", help_contact="servicedesk@example.test",
                      logo="../logo.svg", recipient_verification="email-code", confirmation_mail=True)
        self.gateway = await startGateway(writeConfig(self.folder, [tenant], web=web), reactor)
        self.addCleanup(self.gateway.stop)

    async def protect(self) -> str:
        message = EmailMessage()
        message["From"] = "Alice de Vries <alice@example.test>"
        message["To"] = "bob@external.test"
        message["Subject"] = "Offerte renovatie gemeentehuis 2025"
        message.set_content("Zie bijlagen.\n")
        self.files = {
            "Offerte-renovatie-gemeentehuis-definitieve-versie-na-overleg-met-de-aannemer-2025.pdf":
                os.urandom(180_000),
            "Tekening begane grond.dwg": os.urandom(90_000),
            "Planning.xlsx": os.urandom(12_000),
        }
        for name, data in self.files.items():
            message.add_attachment(data, maintype="application", subtype="octet-stream", filename=name)
        code, text = await inThread(sendBDAT, self.gateway.smtpPort, "alice@example.test", ["bob@external.test"],
                                    message.as_bytes())
        self.assertEqual(code, 250, text)
        texts = [email.message_from_bytes(splitEnvelope(stored)[2], policy=email.policy.default)
                 .get_body(("plain",)).get_content() for stored in maildirMessages(self.outbox)]
        [link] = {link for text in texts for link in re.findall(r"http://127\.0\.0\.1:\d+/t/[A-Za-z0-9_-]{43}", text)}
        [self.senderLink] = {link for text in texts
                             for link in re.findall(r"http://127\.0\.0\.1:\d+/t/sender/[A-Za-z0-9_-]{43}", text)}
        return link

    @property
    def outbox(self) -> str:
        return os.path.join(self.folder, "outbox", "example")

    async def code(self) -> str:
        codes = lambda: [stored for stored in maildirMessages(self.outbox) if b"kind=code" in stored]
        await until(codes, "the code mail", 30)
        mail = email.message_from_bytes(splitEnvelope(codes()[0])[2], policy=email.policy.default)
        return re.findall(r"\b(\d{6})\b", mail.get_body(("plain",)).get_content())[0]

    def look(self, driver: Any, name: str) -> list[str]:
        """Screenshots at both widths; the serious accessibility violations axe finds."""
        os.makedirs(SCREENSHOTS, exist_ok=True)
        for width, (x, y) in WIDTHS.items():
            driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                                   {"width": x, "height": y, "deviceScaleFactor": 1, "mobile": width == "phone"})
            height = driver.execute_script("return document.documentElement.scrollHeight")
            shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
                "format": "png", "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": x, "height": max(y, height), "scale": 1}})
            with open(os.path.join(SCREENSHOTS, f"{name}-{width}.png"), "wb") as f:
                f.write(base64.b64decode(shot["data"]))
            overflow = driver.execute_script(
                "return document.documentElement.scrollWidth > document.documentElement.clientWidth")
            self.assertFalse(overflow, f"{name} scrolls sideways at {width} width")
        with open(AXE, encoding="utf-8") as f:
            driver.execute_script(f.read())
        violations = driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "axe.run(document).then(r => done(r.violations"
            ".filter(v => v.impact === 'serious' || v.impact === 'critical')"
            ".map(v => v.id + ': ' + v.help + ' ' + v.nodes.map(n => n.target.join(' ')).join(', '))));")
        return list(violations)

    @asyncTest
    async def test_walk(self) -> None:
        await self.startGateway()
        link = await self.protect()
        downloads = tempfile.mkdtemp(prefix="downloads-")
        self.addCleanup(shutil.rmtree, downloads, True)
        driver = await inThread(chromium, downloads)
        self.addCleanup(lambda: inThread(lambda: (driver.quit(), shutil.rmtree(driver.profile, True))))
        from selenium.webdriver.common.by import By

        def askCode() -> list[str]:
            driver.get(link)
            self.assertEqual(driver.find_element(By.TAG_NAME, "html").get_attribute("lang"), "nl")
            found = self.look(driver, "1-address")
            driver.find_element(By.ID, "address").send_keys("bob@external.test")
            driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
            driver.find_element(By.ID, "code")
            return found + self.look(driver, "2-code")

        violations = await inThread(askCode)
        code = await self.code()

        def landing() -> list[str]:
            driver.find_element(By.ID, "code").send_keys(code)
            driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
            driver.find_element(By.CSS_SELECTOR, "ul.files")  # the landing page, after the redirect
            heading = driver.find_element(By.TAG_NAME, "h1").text
            self.assertIn("3 bestanden", heading)
            found = self.look(driver, "3-landing")
            driver.find_element(By.PARTIAL_LINK_TEXT, "Alle bestanden downloaden").click()
            return found

        violations += await inThread(landing)

        def sender() -> list[str]:
            driver.get(self.senderLink)
            driver.find_element(By.CSS_SELECTOR, "button.danger")
            return self.look(driver, "5-sender")

        target = os.path.join(downloads, "bestanden.zip")
        await until(lambda: os.path.exists(target), "the ZIP download", 60, interval=0.1)
        with open(target, "rb") as f:
            archive = zipfile.ZipFile(io.BytesIO(f.read()))
        self.assertEqual({name: archive.read(name) for name in archive.namelist()}, self.files)
        violations += await inThread(sender)

        database = sqlite3.connect(os.path.join(self.folder, "gateway.sqlite3"))
        self.addCleanup(database.close)
        with database:
            database.execute("UPDATE transfers SET expires = 1")

        def expired() -> list[str]:
            driver.get(link)
            self.assertEqual(driver.find_element(By.TAG_NAME, "h1").text, "Deze link is verlopen")
            return self.look(driver, "4-expired")

        violations += await inThread(expired)
        self.assertEqual(violations, [])
