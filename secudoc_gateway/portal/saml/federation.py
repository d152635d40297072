"""
A tenant's IdP (SPEC 9): from ``saml_metadata_file``, or from
``saml_metadata_url`` (Entra's "App Federation Metadata Url"), fetched
over verified https, refreshed daily, the last good copy kept.

The copy lives in the database (``saml_metadata``), so every worker and
node shares one fetch a day and a restart during the IdP's outage still
signs people in.  A refresh is due ``maxAge`` after the last good fetch;
it happens when someone needs the IdP (a login, the ACS, the SSO page),
at most once per ``retrySeconds`` while it keeps failing, and a failed
one keeps the old copy and records why (the SSO page shows it).  An
answer that is not usable metadata (garbage, an IdP without a signing
certificate) is a failure like a refused connection.

``http`` is a treq ``HTTPClient`` whose agent verifies certificates
against the platform's roots (``tap``); tests give it one that trusts
their CA.  Redirects are not followed: Entra answers the URL itself.
"""

from __future__ import annotations

import hashlib
from typing import Any, Optional

import attrs
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from secudoc_gateway.config import Tenant
from secudoc_gateway.db import Database
from secudoc_gateway.portal.saml.metadata import MAX_METADATA, IdP, MetadataError, parseIdP

DAY = 24 * 60 * 60
RETRY_SECONDS = 5 * 60
TIMEOUT = 30

log = Logger()


@attrs.frozen
class FetchState:
    """How the metadata URL's last fetch went (``fetched``: the last good copy's time; ``error``: the last failure)."""

    url: str
    fetched: Optional[float] = None
    checked: Optional[float] = None
    error: str = ""


class Federation:
    def __init__(self, database: Database, clock: Any, http: Any, maxAge: float = DAY,
                 retrySeconds: float = RETRY_SECONDS) -> None:
        self._db = database
        self.clock = clock
        self.http = http
        self.maxAge = maxAge
        self.retrySeconds = retrySeconds
        self._parsed: dict[str, IdP] = {}
        self._waiting: dict[tuple[str, str], list[Deferred[None]]] = {}

    def _parse(self, xml: bytes) -> IdP:
        key = hashlib.sha256(xml).hexdigest()
        idp = self._parsed.get(key)
        if idp is None:
            idp = parseIdP(xml)
            if len(self._parsed) > 64:
                self._parsed.clear()
            self._parsed[key] = idp
        return idp

    async def _row(self, tenant: str) -> Optional[tuple[str, Optional[str], Optional[float], float, Optional[str]]]:
        rows = await self._db.runQuery("SELECT url, xml, fetched, checked, error FROM saml_metadata WHERE tenant = ?",
                                       (tenant,))
        return rows[0] if rows else None

    async def state(self, tenant: Tenant) -> FetchState:
        """The SSO page's line about the URL (after a refresh, if one was due)."""
        if not tenant.saml_metadata_url:
            return FetchState("")
        try:
            await self.idp(tenant)
        except MetadataError:
            pass  # the page shows the failure from the stored row, with the last good copy's date
        row = await self._row(tenant.id)
        if row is None or row[0] != tenant.saml_metadata_url:
            return FetchState(tenant.saml_metadata_url)
        return FetchState(row[0], row[2], row[3], row[4] or "")

    async def idp(self, tenant: Tenant) -> IdP:
        """The tenant's IdP now, or ``MetadataError`` saying why there is none."""
        if tenant.saml_metadata_file:
            try:
                with open(tenant.saml_metadata_file, "rb") as f:
                    xml = f.read(MAX_METADATA + 1)
            except OSError as e:
                raise MetadataError(f"cannot read {tenant.saml_metadata_file}: {e.strerror}") from None
            return self._parse(xml)
        url = tenant.saml_metadata_url
        if not url:
            raise MetadataError("no saml_metadata_url or saml_metadata_file is set")
        row = await self._row(tenant.id)
        now = self.clock.seconds()
        mine = row is not None and row[0] == url
        fetched = row[2] if mine and row is not None else None
        checked = row[3] if mine and row is not None else None
        due = fetched is None or now - fetched >= self.maxAge
        if due and (checked is None or now - checked >= self.retrySeconds):
            await self._refresh(tenant.id, url)
            row = await self._row(tenant.id)
            mine = row is not None and row[0] == url
        if not mine or row is None or row[1] is None:
            raise MetadataError(row[4] if mine and row is not None and row[4] else "the metadata was never fetched")
        return self._parse(row[1].encode("utf-8"))

    async def _refresh(self, tenant: str, url: str) -> None:
        """One fetch per tenant and URL at a time in this process; whoever asks meanwhile waits for it."""
        key = (tenant, url)
        waiting = self._waiting.get(key)
        if waiting is not None:
            waiter: Deferred[None] = Deferred()
            waiting.append(waiter)
            await waiter
            return
        self._waiting[key] = []
        try:
            await self._fetch(tenant, url)
        finally:
            for waiter in self._waiting.pop(key):
                waiter.callback(None)

    async def _fetch(self, tenant: str, url: str) -> None:
        now = self.clock.seconds()
        try:
            response = await self.http.get(url, timeout=TIMEOUT, allow_redirects=False)
            body = await response.content()
            if response.code != 200:
                raise MetadataError(f"HTTP {response.code}")
            if len(body) > MAX_METADATA:
                raise MetadataError("the metadata is larger than 1 MiB")
            parseIdP(body)
            xml: Optional[str] = body.decode("utf-8")
            error = None
        except Exception as e:  # refused, untrusted certificate, timeout, garbage: all keep the last good copy
            text = str(e) if isinstance(e, MetadataError) else f"{type(e).__name__}: {e}"
            log.warn("SAML metadata of tenant {tenant} not refreshed from {url}: {error}", tenant=tenant, url=url,
                     error=text)
            xml, error = None, text[:500]

        def store(txn: Any) -> None:
            txn.execute(f"SELECT url FROM saml_metadata WHERE tenant = ?{txn.dialect.forUpdate}", (tenant,))
            row = txn.fetchone()
            if row is None:
                txn.execute("INSERT INTO saml_metadata (tenant, url, xml, fetched, checked, error)"
                            " VALUES (?, ?, ?, ?, ?, ?)", (tenant, url, xml, now if xml else None, now, error))
            elif xml is not None:
                txn.execute("UPDATE saml_metadata SET url = ?, xml = ?, fetched = ?, checked = ?, error = NULL"
                            " WHERE tenant = ?", (url, xml, now, now, tenant))
            elif row[0] == url:
                txn.execute("UPDATE saml_metadata SET checked = ?, error = ? WHERE tenant = ?", (now, error, tenant))
            else:  # a new URL that failed: the old URL's copy is not this IdP's
                txn.execute("UPDATE saml_metadata SET url = ?, xml = NULL, fetched = NULL, checked = ?, error = ?"
                            " WHERE tenant = ?", (url, now, error, tenant))

        await self._db.runTransaction(store)
