-- smsd conversation read marks for PostgreSQL, version 7:
-- smsd/store/migrations/0007_conversation_reads.sql (read its comments).
CREATE TABLE conversation_reads (
    conversation_id bigint NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    extension       text NOT NULL,
    read_at         timestamptz NOT NULL,
    PRIMARY KEY (conversation_id, extension)
);
