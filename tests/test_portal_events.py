"""
Admin events (SPEC 7) end to end: revoke and extend in the portal, the
sender's link and the CLI each leave one, with who, what, the transfer
and the old and new value; an admin lists them by day and exports them
as CSV; extend is bounded by the tenant's ``link_expiry_days``.
"""

from __future__ import annotations

import csv
import io
import os
import re
import subprocess
import sys

from tests.portal_support import PortalTestCase
from tests.support import asyncTest, inThread, until

SENDER_LINK = re.compile(r"https?://[^/\s]+(/t/sender/[A-Za-z0-9_-]{43})")


class PortalChanges(PortalTestCase):
    @asyncTest
    async def test_revokeAndExtendRecorded(self) -> None:
        await self.start()
        transferId = await self.send("alice@example.test")
        [(expires,)] = self.rows("SELECT expires FROM transfers")
        browser = await self.signIn("alice@example.test")
        path = f"/portal/transfers/{transferId}"
        code, page, _ = await browser.request("GET", path)
        self.assertIn('max="7"', page.decode("utf-8"))
        for days in ("8", "0", "x"):
            code, page, _ = await browser.request("POST", path + "/extend", {"csrf": browser.csrf(), "days": days})
            self.assertEqual(code, 400, days)
            self.assertIn("Kies 1 tot en met 7 dagen.", page.decode("utf-8"))
        code, _, response = await browser.request("POST", path + "/extend", {"csrf": browser.csrf(), "days": "7"})
        self.assertEqual((code, response.headers.getRawHeaders("location")), (303, [path]))
        [(extended,)] = self.rows("SELECT expires FROM transfers")
        self.assertAlmostEqual(extended - expires, 7 * 86400, delta=1)
        await browser.request("GET", path)
        code, _, _ = await browser.request("POST", path + "/revoke", {"csrf": browser.csrf()})
        self.assertEqual(code, 303)
        code, page, _ = await browser.request("GET", path)
        text = page.decode("utf-8")
        self.assertIn(">ingetrokken", text)
        self.assertNotIn(path + "/revoke", text)
        self.assertNotIn(path + "/extend", text)
        rows = self.rows("SELECT tenant, who, what, subject, old_value, new_value FROM admin_events"
                         " WHERE what != 'login' ORDER BY id")
        self.assertEqual([r[:4] for r in rows], [("example", "alice@example.test", "extend", transferId),
                                                 ("example", "alice@example.test", "revoke", transferId)])
        self.assertRegex(rows[0][4], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        self.assertNotEqual(rows[0][4], rows[0][5])
        self.assertIsNone(rows[1][4])
        self.assertIsNotNone(rows[1][5])
        # The link answers "withdrawn" now, as for any revoke.
        [(state,)] = self.rows("SELECT revoked IS NOT NULL FROM transfers")
        self.assertTrue(state)

    @asyncTest
    async def test_adminEventsPageAndCSV(self) -> None:
        await self.start()
        transferId = await self.send("carol@example.test", subject="=HYPERLINK(1)")
        admin = await self.signIn("admin@example.test")
        await admin.request("GET", f"/portal/transfers/{transferId}")
        await admin.request("POST", f"/portal/transfers/{transferId}/revoke", {"csrf": admin.csrf()})
        code, page, _ = await admin.request("GET", "/portal/events")
        text = page.decode("utf-8")
        self.assertEqual(code, 200)
        self.assertIn("Beheergebeurtenissen", text)
        self.assertIn("ingetrokken", text)
        self.assertIn(transferId, text)
        self.assertIn("ingelogd", text)
        code, page, _ = await admin.request("GET", "/portal/events?since=2999-01-01")
        self.assertIn("Geen gebeurtenissen gevonden.", page.decode("utf-8"))
        code, _, _ = await admin.request("GET", "/portal/events?until=morgen")
        self.assertEqual(code, 400)
        code, body, response = await admin.request("GET", "/portal/events.csv")
        self.assertEqual(code, 200)
        self.assertEqual(response.headers.getRawHeaders("content-type"), ["text/csv; charset=utf-8"])
        self.assertIn("attachment", response.headers.getRawHeaders("content-disposition")[0])
        rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
        self.assertEqual(rows[0], ["when", "who", "what", "subject", "old", "new"])
        self.assertEqual([r[1:4] for r in rows[1:]], [["admin@example.test", "revoke", transferId],
                                                       ["admin@example.test", "login", "email-link"]])
        code, body, _ = await admin.request("GET", "/portal/events.csv?since=2999-01-01")
        self.assertEqual(len(list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))), 1)

    @asyncTest
    async def test_csvCellsAreNotFormulas(self) -> None:
        from secudoc_gateway.portal.events import eventsCSV
        from secudoc_gateway.transfers import AdminEvent

        body = eventsCSV([AdminEvent(1, "t", 0.0, "=cmd|' /C calc'!A0", "setting", "+x", "-1", "@SUM(A1)")])
        [_, row] = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
        self.assertEqual(row, ["1970-01-01T00:00:00Z", "'=cmd|' /C calc'!A0", "setting", "'+x", "'-1", "'@SUM(A1)"])


class OtherChanges(PortalTestCase):
    @asyncTest
    async def test_sendersLink(self) -> None:
        await self.start(confirmation_mail=True)
        transferId = await self.send("alice@example.test")
        [confirmation] = await self.waitMails("confirmation", 1)
        [path] = SENDER_LINK.findall(confirmation.get_body(("plain",)).get_content())
        browser = self.browser()
        await browser.request("GET", path)
        code, _, _ = await browser.request("POST", path + "/revoke", {"csrf": browser.csrf()})
        self.assertEqual(code, 303)
        self.assertEqual(self.rows("SELECT who, what, subject FROM admin_events"),
                         [("alice@example.test", "revoke", transferId)])

    @asyncTest
    async def test_commandLine(self) -> None:
        """``transfers revoke`` and ``extend`` are the operator's events (who = "operator")."""
        await self.start()
        transferId = await self.send("alice@example.test")
        config = os.path.join(self.folder, "gateway.toml")
        command = [os.path.join(os.path.dirname(sys.executable), "secudoc-gateway"), "transfers"]
        for verb in (["extend", "--config", config, transferId, "2"], ["revoke", "--config", config, transferId]):
            result = await inThread(subprocess.run, command + verb, capture_output=True, timeout=60)
            self.assertEqual(result.returncode, 0, result.stderr)
        await until(lambda: len(self.rows("SELECT 1 FROM admin_events")) == 2, "both events")
        self.assertEqual(self.rows("SELECT who, what, subject FROM admin_events ORDER BY id"),
                         [("operator", "extend", transferId), ("operator", "revoke", transferId)])
        admin = await self.signIn("admin@example.test")
        code, page, _ = await admin.request("GET", "/portal/events")
        self.assertIn("operator", page.decode("utf-8"))
