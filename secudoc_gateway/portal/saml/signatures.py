"""
pysaml2's part (SPEC 9): the AuthnRequest for the HTTP-Redirect binding
and the verification of a response's XML signature against the IdP's
current metadata (xmlsec1 does the cryptography), trying every signing
certificate the metadata lists.

pysaml2 blocks (it runs xmlsec1 as a process) and is not known to be
safe from several threads, so ``SAMLWorker`` runs it on one thread of
its own: calls are serialised and the reactor never waits.  Its checks
are not the only ones: ``checks`` does SPEC 9's own on the same
document, because pysaml2 leaves some out (Recipient, SHA-1, a wrong
Destination answered with no assertion rather than an error).
"""

from __future__ import annotations

import hashlib
import warnings
from typing import Any, Callable, TypeVar

import attrs
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from secudoc_gateway.portal.saml.checks import SIGNATURE, SKEW, Refused
from secudoc_gateway.portal.saml.metadata import HTTP_POST, HTTP_REDIRECT, IdP

T = TypeVar("T")


@attrs.frozen
class Provider:
    """One tenant's service provider and its IdP: what pysaml2 is configured with."""

    entityId: str
    acsURL: str
    idp: IdP


def _pysaml2() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its import warns of cryptography's deprecations, nothing of ours
        import saml2.client
        import saml2.config
        import saml2.sigver
    return saml2


class Clients:
    """pysaml2 clients, one per provider and metadata (reading metadata costs; the thread keeps them)."""

    def __init__(self, size: int = 32) -> None:
        self._clients: dict[str, Any] = {}
        self._size = size

    def __call__(self, provider: Provider) -> Any:
        key = hashlib.sha256(f"{provider.entityId}\n{provider.acsURL}\n".encode() + provider.idp.xml).hexdigest()
        client = self._clients.get(key)
        if client is None:
            saml2 = _pysaml2()
            config = saml2.config.SPConfig()
            config.load({
                "entityid": provider.entityId,
                "xmlsec_binary": saml2.sigver.get_xmlsec_binary(),
                "metadata": {"inline": [provider.idp.xml.decode("utf-8")]},
                "accepted_time_diff": int(SKEW),
                "service": {"sp": {
                    "endpoints": {"assertion_consumer_service": [(provider.acsURL, HTTP_POST)]},
                    "allow_unsolicited": False,
                    "authn_requests_signed": False,
                    "want_assertions_signed": True,
                    "want_response_signed": False,
                }},
            })
            client = saml2.client.Saml2Client(config=config)
            if len(self._clients) >= self._size:
                self._clients.pop(next(iter(self._clients)))
            self._clients[key] = client
        return client


def authnRequest(clients: Clients, provider: Provider) -> tuple[str, str]:
    """A new AuthnRequest's id and the IdP URL that carries it (HTTP-Redirect, unsigned: Entra takes that)."""
    client = clients(provider)
    requestId, info = client.prepare_for_authenticate(entityid=provider.idp.entityId, binding=HTTP_REDIRECT,
                                                      sign=False)
    location = dict(info["headers"])["Location"]
    return requestId, location


def verify(clients: Clients, provider: Provider, posted: str, requestId: str) -> None:
    """pysaml2's verdict on the posted response: its assertion signed by a key of the metadata, or ``Refused``."""
    client = clients(provider)
    try:
        response = client.parse_authn_request_response(posted, HTTP_POST, outstanding={requestId: "/"})
    except Exception as e:
        raise Refused(SIGNATURE, f"{type(e).__name__}: {e}") from None
    if response is None or response.assertion is None or response.name_id is None:
        raise Refused(SIGNATURE, "pysaml2 found no assertion it could verify")


class SAMLWorker(Service):
    """The one thread pysaml2 runs on, started and stopped with the gateway."""

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.pool = ThreadPool(1, 1, name="saml")
        self.clients = Clients()

    def startService(self) -> None:
        super().startService()
        self.pool.start()

    def stopService(self) -> Deferred[None] | None:
        super().stopService()
        self.pool.stop()
        return None

    def run(self, f: Callable[..., T], *args: Any) -> Deferred[T]:
        return deferToThreadPool(self.reactor, self.pool, f, self.clients, *args)
