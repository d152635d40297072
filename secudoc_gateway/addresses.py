"""
The one normaliser of domains, mail addresses and IP addresses.

Tenants are found by domain, users by address, dedup keys and transfers
by both: if two places normalised differently, a user created under one
form would not be found under the other.  Domains are compared as
lowercase IDNA 2008 A-labels (RFC 5890, UTS 46 mapping, non-transitional:
``straße`` stays ``xn--strae-oqa``, never ``strasse``), without a
trailing dot.

Configuration is strict (``configDomain`` raises, so a typo is reported
with its file and key); message data is lenient (``domainKey`` never
raises, because an address in a message is data, not a mistake to
report).
"""

from __future__ import annotations

import functools
import ipaddress
import re
from typing import Optional, Union

import idna

IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]


def configDomain(domain: str) -> str:
    """
    A domain from configuration in its compared form; ``ValueError`` for
    a name that is not a valid domain.
    """
    if domain.endswith("."):
        domain = domain[:-1]
    if not domain:
        raise ValueError("empty domain")
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError as e:
        raise ValueError(str(e)) from None


@functools.lru_cache(maxsize=4096)
def domainKey(domain: str) -> str:
    """
    A domain from a message in its compared form.  A name IDNA refuses
    (an underscore, an empty label) is still compared, lowercased.
    """
    domain = domain.strip()
    if domain.endswith("."):
        domain = domain[:-1]
    if domain.isascii():
        return domain.lower()
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        return domain.lower()


# RFC 5322 3.4.1's addr-spec without quoting or comments (what a person types), RFC 6531's UTF-8 allowed.
_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010ffff]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-"
                    r"\u0080-\U0010ffff]+)*")
_LABEL = re.compile(r"(?!-)[A-Za-z0-9\-\u0080-\U0010ffff]{1,63}(?<!-)")


def isMailbox(address: str) -> bool:
    """
    Whether ``address`` is one plain mailbox a person may type or an
    IdP may name (no quoting, no comments, no display name; a dotted
    domain): the one check of every address the portal takes in.
    """
    local, at, domain = address.rpartition("@")
    if not at or len(address) > 254 or len(local) > 64 or not _LOCAL.fullmatch(local):
        return False
    labels = domain.split(".")
    return len(labels) >= 2 and all(_LABEL.fullmatch(label) for label in labels)


def splitAddress(address: str) -> tuple[str, str]:
    """
    ``(local part, domain key)``, split at the last ``@`` (a quoted
    local part may hold one); ``(address, "")`` without one.
    """
    local, at, domain = address.strip().rpartition("@")
    if not at:
        return address.strip(), ""
    return local, domainKey(domain)


def addressKey(address: str) -> str:
    """
    The form addresses are stored and compared in: the local part
    lower-cased, the domain as ``domainKey``.

    RFC 5321 2.4 lets a host treat local parts as case-sensitive, but
    Exchange, which owns every mailbox this gateway sees, does not; so
    ``Alice@X`` and ``alice@x`` are one user.
    """
    local, domain = splitAddress(address)
    if not domain:
        return local.lower()
    return f"{local.lower()}@{domain}"


@functools.lru_cache(maxsize=1024)
def parseIP(ip: str) -> Optional[IPAddress]:
    """
    An IP address from a transport, IPv4-mapped IPv6 addresses (a
    dual-stack listener's view of an IPv4 client) as IPv4; ``None`` if
    ``ip`` is not an address.  Remembered for the last thousand peers:
    every connection asks, and mail comes from few addresses (EXO's).
    """
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address
