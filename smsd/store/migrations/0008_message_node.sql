-- smsd schema version 8: which node claimed a message in flight.
--
-- A node's dispatcher writes its name here when it moves a message to
-- 'sending'.  On the shared PostgreSQL store that is the message's lease: it
-- stays the node's while the node's heartbeat (table nodes) is fresh, and is
-- taken over by the other nodes once the heartbeat is older than
-- node_dead_after_s.  On SQLite there is one daemon and the column is only
-- informative.
ALTER TABLE messages ADD COLUMN node TEXT;
CREATE INDEX messages_node_inflight ON messages (node) WHERE state IN ('sending', 'submitting');
-- The claim reads due work in (next_attempt_at, id) order: with both in the
-- index, PostgreSQL takes the first rows off the index instead of sorting
-- every message due at the same instant (a bulk's) on each claim.
DROP INDEX messages_due;
CREATE INDEX messages_due ON messages (next_attempt_at, id) WHERE state IN ('queued', 'scheduled');
