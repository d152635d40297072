"""secudoc-gateway: attachments out of outgoing mail, a download link in."""

__version__ = "0.1.0"
