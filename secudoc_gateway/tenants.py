"""
The tenant registry: which tenant a connection, a sender or a Microsoft
tenant id belongs to (SPEC section 4).

A registry is an immutable snapshot of the tenant files.  A SIGHUP
reload builds a new one and swaps it in whole, so a transaction that
already picked its tenant keeps a consistent view.
"""

from __future__ import annotations

import ipaddress
from typing import Iterator, Optional, Sequence

from secudoc_gateway.addresses import IPNetwork, domainKey, parseIP
from secudoc_gateway.config import Tenant


class TenantRegistry:
    """Lookups over a fixed set of tenants, validated by the config loader."""

    def __init__(self, tenants: Sequence[Tenant]) -> None:
        self._tenants: tuple[Tenant, ...] = tuple(tenants)
        self._byDomain: dict[str, Tenant] = {}
        self._byId: dict[str, Tenant] = {}
        self._byMicrosoftId: dict[str, Tenant] = {}
        for tenant in self._tenants:
            self._byId.setdefault(tenant.id, tenant)
            for domain in tenant.domains:
                self._byDomain.setdefault(domain, tenant)
            if tenant.microsoft_tenant_id:
                self._byMicrosoftId.setdefault(tenant.microsoft_tenant_id.lower(), tenant)
        # Checked at every connect: the union of all tenants' sources,
        # collapsed so overlapping ranges are tested once.
        v4: list[ipaddress.IPv4Network] = []
        v6: list[ipaddress.IPv6Network] = []
        for tenant in self._tenants:
            for network in tenant.networks:
                if isinstance(network, ipaddress.IPv4Network):
                    v4.append(network)
                else:
                    v6.append(network)
        self._networks: tuple[IPNetwork, ...] = tuple(ipaddress.collapse_addresses(v4)) + tuple(
            ipaddress.collapse_addresses(v6)
        )

    def __iter__(self) -> Iterator[Tenant]:
        return iter(self._tenants)

    def __len__(self) -> int:
        return len(self._tenants)

    def byId(self, tenantId: str) -> Optional[Tenant]:
        return self._byId.get(tenantId)

    def forDomain(self, domain: str) -> Optional[Tenant]:
        """
        The tenant claiming ``domain``, compared case-insensitively in
        IDNA A-label form (RFC 5890), so an SMTPUTF8 sender's U-label
        domain finds the same tenant.
        """
        return self._byDomain.get(domainKey(domain))

    def forSender(self, address: str) -> Optional[Tenant]:
        """The tenant of an envelope sender's domain; ``None`` for ``<>``."""
        local, at, domain = address.rpartition("@")
        if not at or not domain:
            return None
        return self.forDomain(domain)

    def forMicrosoftTenantId(self, tenantId: str) -> Optional[Tenant]:
        """The tenant whose ``microsoft_tenant_id`` is ``tenantId`` (a GUID)."""
        tenantId = tenantId.strip().lower()
        if not tenantId:
            return None
        return self._byMicrosoftId.get(tenantId)

    def anyAllows(self, ip: str) -> bool:
        """Whether ``ip`` is in any tenant's allowed sources (checked at connect)."""
        address = parseIP(ip)
        if address is None:
            return False
        return any(address in network for network in self._networks)
