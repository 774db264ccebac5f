-- smsd conversations, version 2.
--
-- A conversation is one external number talking to one service of the PBX:
-- a call group (service_kind 'group', service = its name) or, when no call
-- group owns the DID, the DID itself (service_kind 'did', service = the DID).
-- The service never changes; a second request for the same number and
-- service joins the existing row (the UNIQUE constraint makes that a rule of
-- the database, not only of the code).  Replies go out from `did`.
CREATE TABLE conversations (
    id              INTEGER PRIMARY KEY,
    external        TEXT NOT NULL,           -- the customer's E.164 number
    service_kind    TEXT NOT NULL CHECK (service_kind IN ('group', 'did')),
    service         TEXT NOT NULL,           -- call group name or DID
    did             TEXT NOT NULL,           -- the company number the customer writes to
    title           TEXT NOT NULL,           -- the customer's number (their display name)
    assignee        TEXT,                    -- extension of the responsible member; NULL = nobody
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    last_message_at TEXT,
    UNIQUE (external, service_kind, service)
);
CREATE INDEX conversations_did_external ON conversations (did, external);

-- Internal participants only (extensions); the external party is the
-- conversation's `external` and can never be added or removed.  A row stays
-- after the user leaves (active = 0) so the history shows who took part.
CREATE TABLE conversation_participants (
    conversation_id INTEGER NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    extension       TEXT NOT NULL,
    active          INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    joined_at       TEXT NOT NULL,
    left_at         TEXT,
    added_by        TEXT,                    -- extension, 'dialplan', 'directory' or 'service'
    PRIMARY KEY (conversation_id, extension)
) WITHOUT ROWID;
CREATE INDEX conversation_participants_active ON conversation_participants (extension)
    WHERE active = 1;

-- The conversation_id links of 0001 (messages, inbound), indexed for history.
CREATE INDEX messages_conversation ON messages (conversation_id) WHERE conversation_id IS NOT NULL;
CREATE INDEX inbound_conversation ON inbound (conversation_id) WHERE conversation_id IS NOT NULL;
