"""
The database schema, as the ordered list of steps that build it: one
list for SQLite and PostgreSQL (what differs is in ``dialect``), applied
by ``db.Database.open``.
"""

from __future__ import annotations

# Each step is a tuple of statements applied in one transaction; step i
# (0-based) brings the schema to version i + 1.  Never edit a step that
# has shipped: append a new one.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        # SPEC 7: known users of a tenant.  ``address`` is stored
        # normalised (addresses.addressKey), so lookups are exact.
        """
        CREATE TABLE users (
            tenant TEXT NOT NULL,
            address TEXT NOT NULL,
            created REAL NOT NULL,
            how TEXT NOT NULL CHECK (how IN ('config', 'welcome', 'silent')),
            PRIMARY KEY (tenant, address)
        )
        """,
        # SPEC 7: one row per protected message.  ``id`` is the public
        # transfer id (X-SecuDoc-Transfer); the URL token is stored only
        # as ``token_hash``.  Times are Unix seconds.
        """
        CREATE TABLE transfers (
            id TEXT PRIMARY KEY,
            token_hash TEXT NOT NULL UNIQUE,
            tenant TEXT NOT NULL,
            sender TEXT NOT NULL,
            recipients TEXT NOT NULL,
            subject TEXT NOT NULL,
            created REAL NOT NULL,
            expires REAL NOT NULL,
            message_id TEXT
        )
        """,
        "CREATE INDEX transfers_expires ON transfers (expires)",
        # SPEC 8: ``n`` is the 0-based position in the message, the
        # ``<n>`` of ``/t/<token>/<n>``; ``size`` and ``sha256`` are of
        # the plaintext.
        """
        CREATE TABLE files (
            transfer_id TEXT NOT NULL REFERENCES transfers (id) ON DELETE CASCADE,
            n INTEGER NOT NULL CHECK (n >= 0),
            name TEXT NOT NULL,
            content_type TEXT NOT NULL,
            size INTEGER NOT NULL CHECK (size >= 0),
            sha256 TEXT NOT NULL,
            object_key TEXT NOT NULL,
            PRIMARY KEY (transfer_id, n)
        )
        """,
        # SPEC 8: the audit trail.  No foreign key: the rows outlive the
        # purge of their transfer, and carry the tenant and file name so
        # they still say what was downloaded.  AUTOINCREMENT so an id is
        # never reused.
        """
        CREATE TABLE downloads (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            transfer_id TEXT NOT NULL,
            n INTEGER NOT NULL,
            tenant TEXT,
            name TEXT,
            at REAL NOT NULL,
            client TEXT,
            user_agent TEXT
        )
        """,
        "CREATE INDEX downloads_transfer ON downloads (transfer_id)",
        # SPEC 4: messages relayed (or being relayed), for EXO's resends.
        """
        CREATE TABLE relayed (
            dedup_key TEXT PRIMARY KEY,
            tenant TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('inflight', 'done')),
            created REAL NOT NULL,
            updated REAL NOT NULL
        )
        """,
        "CREATE INDEX relayed_updated ON relayed (updated)",
    ),
    (
        # SPEC 8, the recipient's side.  ``sender_name`` is the From
        # display name shown on the page; ``revoked`` (NULL = live, else
        # Unix time) is set through the sender's link or ``transfers
        # revoke``; ``purged`` marks a tombstone: the files are gone, the
        # row stays so its link says "expired", not "unknown";
        # ``sender_hash`` is the hash of the sender's link secret.
        "ALTER TABLE transfers ADD COLUMN sender_name TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE transfers ADD COLUMN revoked REAL",
        "ALTER TABLE transfers ADD COLUMN purged REAL",
        "ALTER TABLE transfers ADD COLUMN sender_hash TEXT",
        "CREATE UNIQUE INDEX transfers_sender_hash ON transfers (sender_hash)",
        # The verified recipient of a download (NULL without verification).
        "ALTER TABLE downloads ADD COLUMN recipient TEXT",
        # recipient_verification = "email-code": one code per transfer and
        # address asked for, stored as an HMAC keyed by the link's token.
        """
        CREATE TABLE codes (
            transfer_id TEXT NOT NULL REFERENCES transfers (id) ON DELETE CASCADE,
            recipient TEXT NOT NULL,
            code_hash TEXT NOT NULL,
            expires REAL NOT NULL,
            tries INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (transfer_id, recipient)
        )
        """,
        # A right code's browser session, for that transfer only.
        """
        CREATE TABLE sessions (
            secret_hash TEXT PRIMARY KEY,
            transfer_id TEXT NOT NULL REFERENCES transfers (id) ON DELETE CASCADE,
            recipient TEXT NOT NULL,
            expires REAL NOT NULL
        )
        """,
        # Rate limits that hold across worker processes and nodes: one row
        # per counted event, ``scope`` naming what is limited.
        """
        CREATE TABLE attempts (
            scope TEXT NOT NULL,
            at REAL NOT NULL
        )
        """,
        "CREATE INDEX attempts_scope ON attempts (scope, at)",
        "CREATE INDEX attempts_at ON attempts (at)",
        # ``transfers list --since`` and ``audit --since`` read by time.
        "CREATE INDEX transfers_created ON transfers (created)",
        "CREATE INDEX downloads_at ON downloads (at)",
    ),
    (
        # SPEC 7: one object per transfer.  A file is the sealed stream
        # of ``object_length`` bytes at ``object_offset`` in the object
        # ``object_key``; ``key_index`` is its HKDF index (its place
        # among the message's candidates, which ``n`` need not be).
        "ALTER TABLE files ADD COLUMN object_offset INTEGER NOT NULL DEFAULT 0 CHECK (object_offset >= 0)",
        "ALTER TABLE files ADD COLUMN object_length INTEGER NOT NULL DEFAULT 0 CHECK (object_length >= 0)",
        "ALTER TABLE files ADD COLUMN key_index INTEGER NOT NULL DEFAULT 0 CHECK (key_index >= 0)",
    ),
    (
        # When a purge claimed the transfer (Unix seconds; NULL: none),
        # so two nodes purging at once never delete the same one.
        "ALTER TABLE transfers ADD COLUMN purging REAL",
    ),
    (
        # The gateway's own secrets, made once by the first node to need
        # one and shared by all: ``forms`` signs form tokens (CSRF).
        """
        CREATE TABLE gateway_secrets (
            name TEXT PRIMARY KEY,
            secret TEXT NOT NULL
        )
        """,
        # When the sender was told of the file's first whole download
        # (NULL: not yet); files downloaded before count as told.
        "ALTER TABLE files ADD COLUMN notified REAL",
        "UPDATE files SET notified = (SELECT MIN(at) FROM downloads"
        " WHERE downloads.transfer_id = files.transfer_id AND downloads.n = files.n)",
    ),
    (
        # SPEC 10: each stored file's malware verdict (clean, skipped,
        # error; NULL: stored with scanning off), and the files found
        # infected and withheld (on_malware = "strip"): a name and the
        # signature for the page, never bytes or a link.
        "ALTER TABLE files ADD COLUMN scan TEXT CHECK (scan IN ('clean', 'skipped', 'error'))",
        """
        CREATE TABLE withheld (
            transfer_id TEXT NOT NULL REFERENCES transfers (id) ON DELETE CASCADE,
            n INTEGER NOT NULL CHECK (n >= 0),
            name TEXT NOT NULL,
            signature TEXT NOT NULL,
            PRIMARY KEY (transfer_id, n)
        )
        """,
    ),
    (
        # SPEC 9: portal sessions.  The 256-bit id is stored only as its
        # hash (crypto.secretHash), so any worker or node serves it and
        # the database alone opens none; ``created`` bounds its life
        # (session_hours), ``last_seen`` its idleness (idle_minutes).
        """
        CREATE TABLE portal_sessions (
            secret_hash TEXT PRIMARY KEY,
            tenant TEXT NOT NULL,
            address TEXT NOT NULL,
            role TEXT NOT NULL CHECK (role IN ('user', 'admin')),
            how TEXT NOT NULL CHECK (how IN ('email-link', 'saml')),
            created REAL NOT NULL,
            last_seen REAL NOT NULL
        )
        """,
        "CREATE INDEX portal_sessions_last_seen ON portal_sessions (last_seen)",
        # One-time login links (``portal_login = "email-link"``), hashed
        # like sessions, used up by the POST that starts a session.
        """
        CREATE TABLE portal_login_links (
            secret_hash TEXT PRIMARY KEY,
            tenant TEXT NOT NULL,
            address TEXT NOT NULL,
            expires REAL NOT NULL
        )
        """,
        "CREATE INDEX portal_login_links_expires ON portal_login_links (expires)",
        # SPEC 7: admin events, kept as long as the download trail.
        # ``who`` is an address or "operator"; ``subject`` a transfer id
        # or a setting's key.
        """
        CREATE TABLE admin_events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            tenant TEXT NOT NULL,
            at REAL NOT NULL,
            who TEXT NOT NULL,
            what TEXT NOT NULL CHECK (what IN ('login', 'revoke', 'extend', 'setting')),
            subject TEXT NOT NULL DEFAULT '',
            old_value TEXT,
            new_value TEXT
        )
        """,
        "CREATE INDEX admin_events_tenant_at ON admin_events (tenant, at)",
        # The portal's lists: a sender's transfers, a tenant's, newest first.
        "CREATE INDEX transfers_tenant_sender ON transfers (tenant, lower(sender), created)",
        "CREATE INDEX transfers_tenant_created ON transfers (tenant, created)",
    ),
    (
        # SPEC 7: the message trace, one row per message the gateway gave
        # a final reply to (no subject, no content), kept ``trace_days``.
        # ``decision`` is what became of the message (the status label of
        # secudoc_messages_total), ``reason`` the X-SecuDoc-Status reason
        # or the refusal's; ``reply_code`` and ``reply_text`` the final
        # reply, ``relay_reply`` the relay target's; ``scan`` the malware
        # verdict (SPEC 10; NULL: not scanned).  ``recipients`` is the
        # envelope's, as a JSON list, for showing.
        """
        CREATE TABLE message_trace (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            at REAL NOT NULL,
            tenant TEXT NOT NULL,
            queue_id TEXT NOT NULL,
            message_id TEXT,
            sender TEXT NOT NULL,
            recipients TEXT NOT NULL,
            size INTEGER NOT NULL,
            decision TEXT NOT NULL,
            reason TEXT NOT NULL,
            transfer_id TEXT,
            reply_code INTEGER NOT NULL,
            reply_text TEXT NOT NULL,
            relay_reply TEXT NOT NULL,
            scan TEXT
        )
        """,
        # Searched by tenant and time, sender (any case), Message-ID, and
        # time alone (--since, --follow, the purge).
        "CREATE INDEX message_trace_tenant ON message_trace (tenant, at)",
        "CREATE INDEX message_trace_sender ON message_trace (lower(sender), at)",
        "CREATE INDEX message_trace_message_id ON message_trace (message_id)",
        "CREATE INDEX message_trace_at ON message_trace (at)",
        # One row per envelope recipient (addresses.addressKey), so a
        # search by recipient reads an index, not every row's list.  No
        # foreign key: the purge deletes both by ``at``, and an insert
        # checks nothing more.
        """
        CREATE TABLE message_trace_recipients (
            trace_id INTEGER NOT NULL,
            recipient TEXT NOT NULL,
            at REAL NOT NULL
        )
        """,
        "CREATE INDEX message_trace_recipients_recipient ON message_trace_recipients (recipient, at)",
        "CREATE INDEX message_trace_recipients_at ON message_trace_recipients (at)",
    ),
    (
        # SPEC 9, SAML sign-on.  An AuthnRequest not yet answered, keyed
        # by the hash of its id with the browser's nonce (the cookie):
        # only that browser can use it, once, until ``expires``.
        """
        CREATE TABLE saml_requests (
            request_hash TEXT PRIMARY KEY,
            tenant TEXT NOT NULL,
            expires REAL NOT NULL
        )
        """,
        "CREATE INDEX saml_requests_expires ON saml_requests (expires)",
        # Assertion ids seen (hashed), until the assertion expires: a replay is refused on every node.
        """
        CREATE TABLE saml_assertions (
            assertion_hash TEXT PRIMARY KEY,
            tenant TEXT NOT NULL,
            expires REAL NOT NULL
        )
        """,
        "CREATE INDEX saml_assertions_expires ON saml_assertions (expires)",
        # The last good copy of a tenant's federation metadata (``saml_metadata_url``), shared by every
        # worker and node and kept across an IdP's outage; ``checked`` and ``error`` say how the last
        # fetch went.
        """
        CREATE TABLE saml_metadata (
            tenant TEXT PRIMARY KEY,
            url TEXT NOT NULL,
            xml TEXT,
            fetched REAL,
            checked REAL NOT NULL,
            error TEXT
        )
        """,
    ),
    (
        # SPEC 3 and 9: the portal's overrides of a tenant file, one row
        # per key set (``value`` as JSON), and a counter every change
        # bumps, which each node polls instead of the rows.
        """
        CREATE TABLE tenant_settings (
            tenant TEXT NOT NULL,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            who TEXT NOT NULL,
            at REAL NOT NULL,
            PRIMARY KEY (tenant, key)
        )
        """,
        """
        CREATE TABLE tenant_settings_version (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            version INTEGER NOT NULL
        )
        """,
        "INSERT INTO tenant_settings_version (id, version) VALUES (1, 0)",
        # SPEC 9: a user an admin added, or one who signed in with SSO.
        # A CHECK cannot be altered in SQLite: the table is made again.
        """
        CREATE TABLE users_next (
            tenant TEXT NOT NULL,
            address TEXT NOT NULL,
            created REAL NOT NULL,
            how TEXT NOT NULL CHECK (how IN ('config', 'welcome', 'silent', 'sso', 'admin')),
            PRIMARY KEY (tenant, address)
        )
        """,
        "INSERT INTO users_next (tenant, address, created, how) SELECT tenant, address, created, how FROM users",
        "DROP TABLE users",
        "ALTER TABLE users_next RENAME TO users",
        # Admin events of the users page and of "test the mail server";
        # made again in the order of the old ids (nothing refers to them).
        """
        CREATE TABLE admin_events_next (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            tenant TEXT NOT NULL,
            at REAL NOT NULL,
            who TEXT NOT NULL,
            what TEXT NOT NULL CHECK (what IN ('login', 'revoke', 'extend', 'setting', 'user-add', 'user-remove',
                                               'relay-test')),
            subject TEXT NOT NULL DEFAULT '',
            old_value TEXT,
            new_value TEXT
        )
        """,
        "INSERT INTO admin_events_next (tenant, at, who, what, subject, old_value, new_value)"
        " SELECT tenant, at, who, what, subject, old_value, new_value FROM admin_events ORDER BY id",
        "DROP TABLE admin_events",
        "ALTER TABLE admin_events_next RENAME TO admin_events",
        "CREATE INDEX admin_events_tenant_at ON admin_events (tenant, at)",
        # The portal's download trail of a whole tenant, newest first.
        "CREATE INDEX downloads_tenant_at ON downloads (tenant, at)",
    ),
    (
        # SPEC 9: a transfer sent from the browser.  ``state`` is 'sent'
        # once the tenant's relay took the transfer mail, 'unsent' while
        # it refused it (the user retries or deletes).  ``message`` is
        # the user's text for the mail; ``sealed_token`` holds the link's
        # token only while unsent, sealed under a key from the sender's
        # session secret (which the database never sees): the database
        # and the bucket alone still open no file.
        """
        CREATE TABLE browser_sends (
            transfer_id TEXT PRIMARY KEY REFERENCES transfers (id) ON DELETE CASCADE,
            state TEXT NOT NULL CHECK (state IN ('sent', 'unsent')),
            message TEXT NOT NULL,
            sealed_token TEXT,
            error TEXT NOT NULL DEFAULT ''
        )
        """,
    ),
    (
        # SPEC 9: each recipient of a browser transfer gets a mail of
        # their own (no recipient sees the others' addresses).
        # ``pending`` is the JSON list of those whose mail the relay
        # refused, the ones a retry sends to; '' (a row of the step
        # before) means every recipient.
        "ALTER TABLE browser_sends ADD COLUMN pending TEXT NOT NULL DEFAULT ''",
    ),
)
