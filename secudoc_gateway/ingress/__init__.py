"""
The way in: admission (``gateway``), one message received and decided
(``transaction``), its legs relayed (``legs``), its attachments planned
from the parser's events (``attachments``) and streamed into storage
(``sink``).  Apart from ``smtp/`` because none of it speaks SMTP: the
protocol hands it an envelope and bytes and gets a reply back.
"""
