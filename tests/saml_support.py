"""
Shared by the SAML tests: one Entra-like IdP for the module (keys made
once), its federation metadata served over https with a devcert CA
that the gateway trusts through ``SSL_CERT_FILE`` (as an operator trusts
a private CA), its sign-on page over http, and a gateway whose tenant
signs in with it.
"""

from __future__ import annotations

import os
import tempfile
import urllib.parse
from typing import Any, Optional

from twisted.internet import reactor
from twisted.internet.ssl import PrivateCertificate
from twisted.web.server import Site

from secudoc_gateway import devcert
from secudoc_gateway.testing.ports import freePort
from secudoc_gateway.testing.saml_idp import EntraIdP, IdPSite, Person, SigningKey, signingKey
from tests.portal_support import PortalTestCase
from tests.support import Browser

USERS = "5A0F9A1E-1111-4C6B-9D1A-000000000001"
ADMINS = "5a0f9a1e-2222-4c6b-9d1a-000000000002"
OTHER = "5a0f9a1e-3333-4c6b-9d1a-000000000003"
TENANT = "example"

_keys: dict[str, SigningKey] = {}
_folder = tempfile.mkdtemp(prefix="saml-keys-")
_ca = devcert.makeCA("SAML test CA")


def key(name: str) -> SigningKey:
    """A signing key made once for the whole run (RSA keys take a while)."""
    if name not in _keys:
        _keys[name] = signingKey(_folder, name)
    return _keys[name]


class SAMLTestCase(PortalTestCase):
    async def startSAML(self, trusted: bool = True, keys: Optional[list[SigningKey]] = None,
                        **tenant: Any) -> None:
        """The IdP's two sites, then the gateway (its tenant with the IdP's metadata URL and both groups)."""
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        signOnPort = freePort()
        self.idp = EntraIdP(folder, keys or [key("current")], signOnURL=f"http://127.0.0.1:{signOnPort}/saml2")
        self.site = IdPSite(self.idp, "")
        leaf = devcert.issue(_ca, "127.0.0.1", ["127.0.0.1"])
        certificate = PrivateCertificate.loadPEM((leaf.certificatePEM() + leaf.keyPEM()).decode("ascii"))
        https = reactor.listenSSL(0, Site(self.site), certificate.options(), interface="127.0.0.1")
        self.addCleanup(https.stopListening)
        http = reactor.listenTCP(signOnPort, Site(self.site), interface="127.0.0.1")
        self.addCleanup(http.stopListening)
        self.metadataURL = f"https://127.0.0.1:{https.getHost().port}/{self.idp.tenantId}/federationmetadata.xml"
        if trusted:
            caFile = os.path.join(folder, "ca.pem")
            with open(caFile, "wb") as f:
                f.write(_ca.certificatePEM())
            before = os.environ.get("SSL_CERT_FILE")
            os.environ["SSL_CERT_FILE"] = caFile
            self.addCleanup(lambda: os.environ.pop("SSL_CERT_FILE") if before is None
                            else os.environ.__setitem__("SSL_CERT_FILE", before))
        settings = dict(portal_login="both", saml_metadata_url=self.metadataURL, saml_user_groups=[USERS],
                        saml_admin_groups=[ADMINS])
        settings.update(tenant)
        await self.start(**settings)
        self.entityId = f"{self.publicURL}/saml/{TENANT}/metadata.xml"
        self.acsURL = f"{self.publicURL}/saml/{TENANT}/acs"
        self.site.audience = self.entityId

    async def begin(self, browser: Browser) -> str:
        """An SP-initiated login as far as the IdP: the AuthnRequest's id."""
        code, _, response = await browser.request("GET", f"/saml/{TENANT}/login")
        self.assertEqual(code, 303)
        [location] = response.headers.getRawHeaders("location")
        self.assertTrue(location.startswith(self.idp.signOnURL + "?"), location)
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(location).query)
        requestId, acsURL, issuer = self.idp.request(query["SAMLRequest"][0])
        self.assertEqual((acsURL, issuer), (self.acsURL, self.entityId))
        return requestId

    async def post(self, browser: Browser, samlResponse: str) -> tuple[int, bytes, Any]:
        """The IdP's form posted to the ACS, as a browser does it (cross-site: Origin is the IdP's)."""
        return await browser.request("POST", f"/saml/{TENANT}/acs", {"SAMLResponse": samlResponse},
                                     {"Origin": "https://login.microsoftonline.com"})

    async def signInWith(self, person: Person, browser: Optional[Browser] = None, **forged: Any
                         ) -> tuple[int, bytes, Any]:
        browser = browser or self.browser()
        requestId = await self.begin(browser)
        return await self.post(browser, self.idp.respond(person, requestId, self.acsURL, self.entityId, **forged))
