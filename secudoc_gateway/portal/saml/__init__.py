"""
SAML 2.0 sign-on with Microsoft Entra ID (SPEC 9), per tenant a service
provider under ``/saml/<tenant>/``: ``metadata`` (ours, and the IdP's
parsed), ``federation`` (the IdP's metadata fetched and kept),
``checks`` (SPEC 9's checks on a response, pure), ``signatures``
(pysaml2 and xmlsec1 on their own thread), ``store`` (requests and
assertions seen, in the database), ``context`` and ``resource`` (the
three URLs).  This package imports none of them, so the portal's
context can name ``context`` without loading the pages.
"""
