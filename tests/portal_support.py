"""
Shared by the portal's end-to-end tests: a gateway started in-process
with a maildir relay and the portal on, a clock the tests can move
(login links and sessions age by it), messages protected over SMTP,
and a person signed in by the link read from the outbox.
"""

from __future__ import annotations

import email
import email.message
import email.policy
import os
import re
import time
from email.message import EmailMessage
from typing import Any, Optional

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from secudoc_gateway.testing import DEMO_TENANT, startGateway, writeConfig
from secudoc_gateway.testing.ports import freePort
from tests.support import Browser, databaseRows, inThread, maildirMessages, sendBDAT, splitEnvelope

LOGIN_LINK = re.compile(r"https?://[^/\s]+(/portal/login/[A-Za-z0-9_-]{43})")
TRANSFER_ID = re.compile(r"X-SecuDoc-Transfer: ([a-z2-7]{16})")

PORTAL_TENANT: dict[str, Any] = dict(
    DEMO_TENANT, users=["alice@example.test"], admins=["Admin@Example.test"], auto_create_users="welcome",
    organisation="Gemeente Voorbeeld", help_contact="servicedesk@example.test", link_expiry_days=7,
)


class ShiftedClock:
    """The real time, moved on by ``offset`` seconds: ages links and sessions without waiting."""

    def __init__(self) -> None:
        self.offset = 0.0

    def seconds(self) -> float:
        return time.time() + self.offset


class PortalTestCase(TestCase):
    async def start(self, publicURL: str = "", portal: Optional[dict[str, Any]] = None,
                    scan: Optional[dict[str, Any]] = None, **tenant: Any) -> None:
        self.folder = os.path.abspath(self.mktemp())
        os.makedirs(self.folder)
        self.clock = ShiftedClock()
        port = freePort()
        self.publicURL = publicURL or f"http://127.0.0.1:{port}"
        web = {"listen": [f"tcp:{port}:interface=127.0.0.1"], "public_url": self.publicURL}
        path = writeConfig(self.folder, [dict(PORTAL_TENANT, **tenant)], web=web, portal=portal, scan=scan)
        self.gateway = await startGateway(path, reactor, clock=self.clock)
        self.addCleanup(self.gateway.stop)

    @property
    def outbox(self) -> str:
        return os.path.join(self.folder, "outbox", "example")

    def browser(self, **headers: str) -> Browser:
        browser = Browser(self.gateway.webURL)
        if headers:
            plain = browser.request

            async def request(method: str, path: str, form: Optional[dict[str, str]] = None,
                              headers_: Optional[dict[str, str]] = None) -> Any:
                return await plain(method, path, form, {**headers, **(headers_ or {})})

            browser.request = request  # type: ignore[method-assign]
        return browser

    def rows(self, sql: str, args: tuple = ()) -> list[tuple]:
        """What the gateway wrote, on SQLite or PostgreSQL."""
        return databaseRows(self.gateway.service.config.database, sql, args)

    async def send(self, sender: str = "alice@example.test", subject: str = "Offerte 2025",
                   recipients: tuple[str, ...] = ("bob@external.test",),
                   files: Optional[dict[str, bytes]] = None) -> str:
        """Protect a message from ``sender``; returns its public transfer id."""
        message = EmailMessage()
        message["From"] = sender
        message["To"] = ", ".join(recipients)
        message["Subject"] = subject
        message.set_content("Zie bijlage.\n")
        for name, data in (files or {"offerte.pdf": os.urandom(3000)}).items():
            message.add_attachment(data, maintype="application", subtype="octet-stream", filename=name)
        before = set(maildirMessages(self.outbox))
        code, text = await inThread(sendBDAT, self.gateway.smtpPort, sender, list(recipients), message.as_bytes())
        self.assertEqual(code, 250, text)
        for stored in maildirMessages(self.outbox):
            if stored not in before and b"kind=" not in stored:
                found = TRANSFER_ID.search(stored.decode("utf-8", "replace"))
                assert found is not None, stored[:2000]
                return found.group(1)
        raise AssertionError("no protected message relayed")

    def mails(self, kind: str, to: Optional[str] = None) -> list[email.message.EmailMessage]:
        """The gateway's own messages of ``kind`` (to ``to``) in the outbox now."""
        found = []
        for stored in maildirMessages(self.outbox):
            if f"kind={kind}".encode() in stored:
                _, recipients, raw = splitEnvelope(stored)
                if to is None or to in recipients:
                    found.append(email.message_from_bytes(raw, policy=email.policy.default))
        return found

    async def waitMails(self, kind: str, count: int, to: Optional[str] = None,
                        deadline: float = 30) -> list[email.message.EmailMessage]:
        end = time.monotonic() + deadline
        while True:
            found = self.mails(kind, to)
            if len(found) >= count:
                return found
            if time.monotonic() > end:
                raise AssertionError(f"not within {deadline} s: {count} {kind} mail(s) to {to}")
            await deferLater(reactor, 0.05, lambda: None)

    async def askLink(self, address: str, browser: Optional[Browser] = None, **headers: str) -> tuple[int, bytes]:
        """Ask for a login link as the form does; the answer's status and page."""
        browser = browser or self.browser()
        code, _, _ = await browser.request("GET", "/portal/login")
        self.assertEqual(code, 200)
        code, body, _ = await browser.request("POST", "/portal/login",
                                              {"address": address, "csrf": browser.csrf()}, headers or None)
        return code, body

    async def loginLink(self, address: str, count: int = 1) -> str:
        """The path of the ``count``-th login link mailed to ``address``."""
        mails = await self.waitMails("login", count, to=address)
        text = mails[count - 1].get_body(("plain",)).get_content()
        [path] = LOGIN_LINK.findall(text)
        return path

    async def signIn(self, address: str, **headers: str) -> Browser:
        """A browser signed in as ``address`` by its e-mail link, on the transfer list."""
        browser = self.browser(**headers)
        already = len(self.mails("login", to=address))
        code, _ = await self.askLink(address, browser)
        self.assertEqual(code, 200)
        path = await self.loginLink(address, already + 1)
        code, _, _ = await browser.request("GET", path)
        self.assertEqual(code, 200)
        code, _, response = await browser.request("POST", path, {"csrf": browser.csrf()})
        self.assertEqual(code, 303)
        self.assertEqual(response.headers.getRawHeaders("location"), ["/portal/"])
        return browser
