"""
Header field names the gateway reads or writes (SPEC 5, 6), on the
ground floor so the parser, policy, stamping and the gateway's own mails
all name a field the same way without importing each other.
"""

SECUDOC = "X-SecuDoc"
SECUDOC_STATUS = "X-SecuDoc-Status"
SECUDOC_TRANSFER = "X-SecuDoc-Transfer"
SECUDOC_ENABLED = "X-SecuDoc-Enabled"
CROSS_TENANT_ID = "X-MS-Exchange-CrossTenant-Id"
NETWORK_MESSAGE_ID = "X-MS-Exchange-CrossTenant-Network-Message-Id"
MESSAGE_ID = "Message-ID"
CONTENT_TYPE = "Content-Type"
FROM = "From"

SECUDOC_VERSION = "1.0"
"""The value of the ``X-SecuDoc`` header on every relayed message."""

GATEWAY_HEADERS = frozenset(name.lower() for name in (SECUDOC, SECUDOC_STATUS, SECUDOC_TRANSFER))
"""Lowercased names removed from every incoming message (SPEC 5)."""
