"""What SAML sign-on needs beside the portal's own context: the stored requests, the IdPs, pysaml2's thread."""

from __future__ import annotations

import attrs

from secudoc_gateway.portal.saml.federation import Federation
from secudoc_gateway.portal.saml.signatures import SAMLWorker
from secudoc_gateway.portal.saml.store import SAMLStore


@attrs.frozen
class SAMLContext:
    store: SAMLStore
    federation: Federation
    worker: SAMLWorker
