-- smsd schema version 8 for PostgreSQL: the meaning of
-- smsd/store/migrations/0008_message_node.sql (the node holding a message's lease).
ALTER TABLE messages ADD COLUMN node text;
CREATE INDEX messages_node_inflight ON messages (node) WHERE state IN ('sending', 'submitting');
-- The claim reads due work in (next_attempt_at, id) order: with both in the
-- index, PostgreSQL takes the first rows off the index instead of sorting
-- every message due at the same instant (a bulk's) on each claim.
DROP INDEX messages_due;
CREATE INDEX messages_due ON messages (next_attempt_at, id) WHERE state IN ('queued', 'scheduled');
