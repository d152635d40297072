"""
The admin's SSO page (SPEC 9, the seed's section 9): what to give Entra
(our metadata to download, our entity id, the ACS URL, the Sign-on URL
that makes Entra's "Test this application" and My Apps tile start here),
what we have from Entra (the federation metadata URL and how its last
fetch went, the IdP and its signing certificates), the group ids, and a
"test login" (an SP-initiated sign-on).  Read-only: the values are
changed on the settings page.
"""

from __future__ import annotations

from secudoc_gateway import links
from secudoc_gateway.notices.texts import formatMoment
from secudoc_gateway.portal.pages import Visit, page
from secudoc_gateway.portal.routes import ADMIN_ONLY, Route
from secudoc_gateway.portal.saml.metadata import MetadataError
from secudoc_gateway.portal.saml.resource import ACS, LOGIN, METADATA, samlAllowed


async def ssoPage(visit: Visit) -> None:
    tenant = visit.tenant
    assert tenant is not None
    t = visit.t
    publicURL = visit.portal.web.publicURL
    values = {
        "mode": t[f"sso_mode_{tenant.portal_login.value}"],
        "metadata": links.samlPath(publicURL, tenant.id, METADATA),
        "metadata_url": links.samlURL(publicURL, tenant.id, METADATA),
        "acs": links.samlURL(publicURL, tenant.id, ACS),
        "sign_on": links.samlURL(publicURL, tenant.id, LOGIN),
        "file": tenant.saml_metadata_file, "federation_url": tenant.saml_metadata_url,
        "fetched": "", "fetch_error": "", "idp": "", "certificates": "",
        "user_groups": ", ".join(tenant.saml_user_groups), "admin_groups": ", ".join(tenant.saml_admin_groups),
        "test": links.samlPath(publicURL, tenant.id, LOGIN) if samlAllowed(tenant) else "",
    }
    saml = visit.portal.saml
    if saml is not None and (tenant.saml_metadata_url or tenant.saml_metadata_file):
        state = await saml.federation.state(tenant)
        values["fetched"] = formatMoment(state.fetched, visit.language) if state.fetched else ""
        values["fetch_error"] = state.error
        try:
            idp = await saml.federation.idp(tenant)
        except MetadataError as e:
            values["fetch_error"] = values["fetch_error"] or str(e)
        else:
            values["idp"] = idp.entityId
            values["certificates"] = str(len(idp.certificates))
    page(visit, 200, "sso.html", t["sso_title"], current="sso", **values)


ROUTES = (Route("GET", "sso", ssoPage, ADMIN_ONLY),)

