"""SMTP in (session, protocol) and SMTP/maildir out (relay)."""
