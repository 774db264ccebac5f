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
