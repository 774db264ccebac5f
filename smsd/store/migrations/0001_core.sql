-- smsd core schema, version 1.
--
-- Times are UTC ISO 8601 text with microseconds and "+00:00"
-- ("2026-11-25T13:04:26.123456+00:00"): readable with the sqlite3 shell and,
-- being fixed width, they sort and compare as text.  smsd.store.ts() writes them.

-- Outbound: one row per recipient.  `state` is the message state machine:
--   queued -> sending -> submitting -> sent -> delivered
--   scheduled (send_at in the future) -> queued when due (the dispatcher takes
--   both once next_attempt_at has passed); failed and expired are final.
CREATE TABLE messages (
    id              INTEGER PRIMARY KEY,
    user            TEXT,                 -- username; NULL = system (dialplan without a user)
    sender          TEXT,                 -- E.164 DID or alphanumeric sender ID; NULL = gateway default
    did             TEXT,                 -- the DID used to pick the modem (user's office number)
    recipient       TEXT NOT NULL,        -- E.164
    text            TEXT NOT NULL,
    encoding        TEXT NOT NULL,        -- gsm7 | ucs2
    parts           INTEGER NOT NULL CHECK (parts >= 1),
    state           TEXT NOT NULL CHECK (state IN ('queued', 'scheduled', 'sending', 'submitting',
                                                   'sent', 'delivered', 'failed', 'expired')),
    gateway         TEXT,
    modem           TEXT,
    send_at         TEXT,                 -- requested time (postpone); NULL = now
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,        -- when the dispatcher may take it next
    error           TEXT,
    origin          TEXT NOT NULL,        -- originate | api | agi | cli | mail2sms | conversation
    conversation_id INTEGER,
    cost_billable   INTEGER NOT NULL DEFAULT 0  -- parts of this message beyond the monthly package
);
-- The dispatcher's only scan: due work in time order, without reading the rest.
CREATE INDEX messages_due ON messages (next_attempt_at) WHERE state IN ('queued', 'scheduled');
CREATE INDEX messages_inflight ON messages (state) WHERE state IN ('sending', 'submitting');
CREATE INDEX messages_user_created ON messages (user, created_at);
CREATE INDEX messages_created ON messages (created_at);

-- One row per SMS part.  `reference` is the TP-MR the SMSC will quote in its
-- status report; it wraps at 256 per modem, so reports match the most recent part.
CREATE TABLE message_parts (
    message_id    INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    part          INTEGER NOT NULL CHECK (part >= 1),
    state         TEXT NOT NULL DEFAULT 'pending'
                  CHECK (state IN ('pending', 'submitting', 'sent', 'delivered', 'failed', 'expired')),
    modem         TEXT,
    reference     INTEGER,
    sent_at       TEXT,
    report_status INTEGER,                -- TP-ST of the last status report
    report_at     TEXT,
    PRIMARY KEY (message_id, part)
) WITHOUT ROWID;
CREATE INDEX message_parts_report ON message_parts (modem, reference, sent_at);

CREATE TABLE message_history (
    id         INTEGER PRIMARY KEY,
    message_id INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    at         TEXT NOT NULL,
    state      TEXT NOT NULL,
    detail     TEXT
);
CREATE INDEX message_history_message ON message_history (message_id);

-- Inbound: one row per whole (reassembled) message.
CREATE TABLE inbound (
    id              INTEGER PRIMARY KEY,
    sender          TEXT NOT NULL,
    recipient       TEXT,                 -- our DID when known
    text            TEXT NOT NULL,
    received_at     TEXT NOT NULL,
    sent_at         TEXT,                 -- SMSC timestamp (SCTS) for modem messages
    gateway         TEXT NOT NULL,
    modem           TEXT,
    parts           INTEGER NOT NULL DEFAULT 1,
    complete        INTEGER NOT NULL DEFAULT 1,  -- 0 = released by timeout with missing parts
    route_state     TEXT NOT NULL DEFAULT 'pending'
                    CHECK (route_state IN ('pending', 'routed', 'unrouted', 'blocked')),
    conversation_id INTEGER,
    dedupe_key      TEXT UNIQUE            -- modem messages: the same SMS read twice off a SIM
);
CREATE INDEX inbound_received ON inbound (received_at);
CREATE INDEX inbound_route_state ON inbound (route_state);

-- Parts of concatenated inbound SMS waiting for their siblings.  Rows are kept
-- (done = 1) after reassembly so that a part read again from the SIM (crash
-- between commit and delete) is recognised as a duplicate; purged later.
CREATE TABLE inbound_parts (
    modem       TEXT NOT NULL,
    sender      TEXT NOT NULL,
    reference   INTEGER NOT NULL,
    parts       INTEGER NOT NULL,
    part        INTEGER NOT NULL,
    pdu         TEXT NOT NULL,            -- the decoded DeliverPdu as JSON
    received_at TEXT NOT NULL,
    done        INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (modem, sender, reference, parts, part)
) WITHOUT ROWID;
CREATE INDEX inbound_parts_pending ON inbound_parts (received_at) WHERE done = 0;

CREATE TABLE delivery_reports (
    id          INTEGER PRIMARY KEY,
    modem       TEXT,
    recipient   TEXT NOT NULL,
    reference   INTEGER NOT NULL,
    status      INTEGER NOT NULL,
    scts        TEXT,
    discharge   TEXT,
    received_at TEXT NOT NULL,
    message_id  INTEGER REFERENCES messages (id) ON DELETE SET NULL,  -- NULL = matched nothing
    part        INTEGER
);

-- Inbound senders whose messages are stored but never routed (`smsd block`).
CREATE TABLE blocklist (
    number     TEXT PRIMARY KEY,
    by         TEXT,
    reason     TEXT NOT NULL,
    created_at TEXT NOT NULL
);

-- Numbers that texted STOP: outbound to them is refused until START.
CREATE TABLE opt_outs (
    number     TEXT PRIMARY KEY,
    did        TEXT,                      -- the DID they texted
    keyword    TEXT NOT NULL,
    created_at TEXT NOT NULL
);
