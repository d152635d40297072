"""
Every SMTP reply the gateway sends, named once.

Codes and enhanced codes follow RFC 5321 section 4.2 and RFC 3463.
"""

from __future__ import annotations

import attrs


@attrs.frozen
class Reply:
    """One SMTP reply: basic code, RFC 3463 enhanced code, text."""

    code: int
    enhanced: str = ""
    text: str = ""

    @property
    def positive(self) -> bool:
        return self.code < 400

    @property
    def temporary(self) -> bool:
        return 400 <= self.code < 500

    @property
    def permanent(self) -> bool:
        return self.code >= 500

    @property
    def line(self) -> str:
        """As a log, a page or a summary quotes it: ``550 5.1.1 No such user``, an absent part left out."""
        return " ".join(str(p) for p in (self.code, self.enhanced, self.text) if p)

    def withText(self, text: str) -> "Reply":
        return attrs.evolve(self, text=text)

    def toBytes(self, enhanced: bool = True) -> bytes:
        """
        Render for the wire; multi-line texts become RFC 5321 4.2.1
        continuation lines.  Enhanced codes are sent only when
        ENHANCEDSTATUSCODES applies (after EHLO).
        """
        lines = self.text.split("\n") if self.text else [""]
        out = []
        for i, line in enumerate(lines):
            sep = "-" if i < len(lines) - 1 else " "
            prefix = f"{self.code}{sep}"
            if enhanced and self.enhanced:
                prefix += self.enhanced + (" " if line else "")
            out.append((prefix + line).rstrip(" ") if not line else prefix + line)
        return ("\r\n".join(out) + "\r\n").encode("utf-8", "replace")


# Connection level
SERVICE_READY = Reply(220, "", "{hostname} ESMTP")
CLOSING = Reply(221, "2.0.0", "Bye")
ACCESS_DENIED = Reply(554, "5.7.1", "Access denied")
TOO_MANY_FROM_IP = Reply(421, "4.7.0", "Too many connections from your address")
TOO_MANY_CONNECTIONS = Reply(421, "4.7.0", "Too many connections, try again later")
SHUTTING_DOWN = Reply(421, "4.3.2", "Service shutting down")
TIMEOUT = Reply(421, "4.4.2", "Timeout, closing connection")
TOO_SLOW = Reply(421, "4.4.2", "Message data too slow, closing connection")
TOO_MANY_ERRORS = Reply(421, "4.7.0", "Too many errors, closing connection")

# Commands
OK = Reply(250, "2.0.0", "Ok")
SENDER_OK = Reply(250, "2.1.0", "Sender ok")
RECIPIENT_OK = Reply(250, "2.1.5", "Recipient ok")
RESET_OK = Reply(250, "2.0.0", "Reset ok")
VRFY_CANNOT = Reply(252, "2.5.0", "Cannot VRFY user, but will accept message and attempt delivery")
START_DATA = Reply(354, "", "End data with <CR><LF>.<CR><LF>")
READY_TLS = Reply(220, "2.0.0", "Ready to start TLS")
HELP = Reply(214, "2.0.0", "See RFC 5321")

SYNTAX_ERROR = Reply(500, "5.5.2", "Syntax error, command unrecognized")
LINE_TOO_LONG = Reply(500, "5.5.6", "Line too long")
PARAM_SYNTAX = Reply(501, "5.5.4", "Syntax error in parameters or arguments")
CONTROL_CHARACTERS = Reply(501, "5.5.2", "Control characters not allowed in commands")
NOT_IMPLEMENTED = Reply(502, "5.5.1", "Command not implemented")
BAD_SEQUENCE = Reply(503, "5.5.1", "Bad sequence of commands")
PARAM_NOT_IMPLEMENTED = Reply(555, "5.5.4", "MAIL FROM/RCPT TO parameters not recognized or not implemented")
TLS_REQUIRED = Reply(530, "5.7.0", "Must issue a STARTTLS command first")
TLS_ALREADY = Reply(503, "5.5.1", "TLS already active")
TLS_UNAVAILABLE = Reply(454, "4.7.0", "TLS not available")
RELAY_DENIED = Reply(550, "5.7.1", "Relaying denied")
TOO_MANY_RECIPIENTS = Reply(452, "4.5.3", "Too many recipients")
MESSAGE_TOO_BIG = Reply(552, "5.3.4", "Message size exceeds fixed maximum message size")
NO_VALID_RECIPIENTS = Reply(554, "5.5.1", "No valid recipients")
SMTPUTF8_REQUIRED = Reply(553, "5.6.7", "Non-ASCII address requires SMTPUTF8")

# Final replies to the message data
ACCEPTED = Reply(250, "2.0.0", "Ok {queue_id}")
RELAY_TEMPFAIL = Reply(451, "4.4.1", "Relay target unavailable, try again later")
LOCAL_TEMPFAIL = Reply(451, "4.3.0", "Temporary local problem, try again later")
DUPLICATE_IN_FLIGHT = Reply(451, "4.3.0", "Same message is being relayed, try again later")
RELAY_REJECTED = Reply(554, "5.0.0", "{remote}")
MIME_LIMIT = Reply(554, "5.6.0", "Message structure exceeds limits")
OUT_OF_MEMORY = Reply(452, "4.3.1", "Insufficient system resources, try again later")
TENANT_MISMATCH = Reply(550, "5.7.1", "Message does not belong to a known tenant")
UNKNOWN_SENDER = Reply(550, "5.7.1", "Sender is not a known user of this service")
MALWARE_FOUND = Reply(554, "5.7.1", "Malware found: {signature}")  # SPEC 10
SCAN_TEMPFAIL = Reply(451, "4.3.0", "Malware scan unavailable, try again later")

# Session additions (the session in smtp/: states, commands, data, session)
HELLO = Reply(250, "", "{hostname}")
BDAT_RECEIVED = Reply(250, "2.0.0", "{size} octets received")
TOO_MUCH_INPUT = Reply(421, "4.7.0", "Too much pipelined input, closing connection")
NOT_SMTP = Reply(421, "4.7.0", "This is an SMTP service, closing connection")
BDAT_SYNTAX = Reply(501, "5.5.4", "Syntax error in BDAT size, closing connection")
CONNECT_TEMPFAIL = Reply(421, "4.3.0", "Temporary local problem, try again later")
