"""
The portal on two nodes sharing one PostgreSQL database (SPEC 9): a
session made on one node is valid on the other, and a setting an admin
changes on one is in force on the other within 30 seconds, the next
message through it following the new value.
"""

from __future__ import annotations

import http.client
import os
import re
import smtplib
import time
import urllib.parse
from email.message import EmailMessage
from typing import Optional

from secudoc_gateway.testing import DEMO_TENANT, freshPostgreSQL
from secudoc_gateway.testing.polling import untilBlocking
from tests.support import TwoNodes

LOGIN_LINK = re.compile(r"https?://[^/\s]+(/portal/login/[A-Za-z0-9_-]{43})")
CSRF = re.compile(rb'name="csrf" value="([^"]*)"')


class BlockingBrowser:
    """Cookies kept across requests, to any node: what one browser carries between two servers."""

    def __init__(self) -> None:
        self.cookies: dict[str, str] = {}
        self.csrf = ""

    def request(self, port: int, method: str, path: str,
                form: Optional[dict[str, str]] = None) -> tuple[int, bytes, http.client.HTTPResponse]:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())} if self.cookies else {}
        body = None
        if form is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            body = urllib.parse.urlencode(form)
        connection.request(method, path, body, headers)
        response = connection.getresponse()
        data = response.read()
        connection.close()
        for line in response.headers.get_all("Set-Cookie") or []:
            name, _, rest = line.partition("=")
            self.cookies[name] = rest.split(";", 1)[0]
        found = CSRF.search(data)
        if found:
            self.csrf = found.group(1).decode("ascii")
        return response.status, data, response


def outgoing(subject: str) -> bytes:
    m = EmailMessage()
    m["From"] = "alice@example.test"
    m["To"] = "bob@external.test"
    m["Subject"] = subject
    m.set_content("Zie bijlage.\n")
    m.add_attachment(os.urandom(5000), maintype="application", subtype="pdf", filename="offerte.pdf")
    return m.as_bytes()


class PortalOnTwoNodes(TwoNodes):
    def setUp(self) -> None:
        self.startNodes(freshPostgreSQL(), [dict(DEMO_TENANT, admins=["admin@example.test"])])

    def signIn(self, port: int, address: str) -> BlockingBrowser:
        browser = BlockingBrowser()
        code, _, _ = browser.request(port, "GET", "/portal/login")
        self.assertEqual(code, 200)
        code, _, _ = browser.request(port, "POST", "/portal/login", {"address": address, "csrf": browser.csrf})
        self.assertEqual(code, 200)
        untilBlocking(lambda: any(m["X-SecuDoc-Status"] == "generated; kind=login" for m in self.relayed()),
                      "the login mail", 30)
        [mail] = [m for m in self.relayed() if m["X-SecuDoc-Status"] == "generated; kind=login"]
        [path] = LOGIN_LINK.findall(mail.get_body(("plain",)).get_content())
        code, _, _ = browser.request(port, "GET", path)
        self.assertEqual(code, 200)
        code, _, response = browser.request(port, "POST", path, {"csrf": browser.csrf})
        self.assertEqual((code, response.headers.get("Location")), (303, "/portal/"))
        return browser

    def test_sessionAndSettingOnBoth(self) -> None:
        browser = self.signIn(self.a.webPort, "admin@example.test")
        # The session made on A is good on B.
        code, page, _ = browser.request(self.b.webPort, "GET", "/portal/settings")
        self.assertEqual(code, 200, page[:2000])
        self.assertIn(b"Ingelogd als admin@example.test", page)
        self.assertIn(b'<option value="link" selected>', page)
        # Changed on B ...
        code, _, _ = browser.request(self.b.webPort, "POST", "/portal/settings",
                                     {"content_mode": "transfer", "csrf": browser.csrf})
        self.assertEqual(code, 303)
        changed = time.monotonic()

        # ... in force on A within 30 seconds (its page shows the tenant A's registry holds).
        def onA() -> bool:
            code, page, _ = browser.request(self.a.webPort, "GET", "/portal/settings")
            return code == 200 and b'<option value="transfer" selected>' in page

        untilBlocking(onA, "the setting on node A", 30, interval=0.5)
        self.assertLess(time.monotonic() - changed, 30)
        with smtplib.SMTP("127.0.0.1", self.a.smtpPort, timeout=60) as client:
            client.sendmail("alice@example.test", ["bob@external.test"], outgoing("Via A"))
        [message] = [m for m in self.relayed() if m["Subject"] == "Via A"]
        self.assertEqual(message["X-SecuDoc-Status"], "protected")
        self.assertEqual(message.get_content_type(), "multipart/alternative")  # content mode "transfer"
