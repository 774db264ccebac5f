-- smsd conversation read marks, version 7 (issue 19).
--
-- When each user (by extension) last opened each conversation in the web
-- console.  A conversation's unread count is the number of its inbound
-- messages received after that time (smsd.store.reads); keeping the mark
-- here, not in the daemon's memory, makes the count survive a restart.
-- One row per (conversation, extension), moved forward only.
CREATE TABLE conversation_reads (
    conversation_id INTEGER NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    extension       TEXT NOT NULL,
    read_at         TEXT NOT NULL,            -- ISO 8601 UTC, as inbound.received_at
    PRIMARY KEY (conversation_id, extension)
) WITHOUT ROWID;
