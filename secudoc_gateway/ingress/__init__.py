"""
The way in: admission (``gateway``), one message (``transaction``) made
of its collaborators: received (``reception``), decided and protected
(``protection``), its legs relayed (``legs``); its attachments planned
from the parser's events (``attachments``) and streamed into storage
(``sink``).  Apart from ``smtp/`` because none of it speaks SMTP: the
protocol hands it an envelope and bytes and gets a reply back.
"""
