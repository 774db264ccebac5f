-- smsd schema version 8 for PostgreSQL: the meaning of
-- smsd/store/migrations/0008_message_node.sql (the node holding a message's lease).
ALTER TABLE messages ADD COLUMN node text;
CREATE INDEX messages_node_inflight ON messages (node) WHERE state IN ('sending', 'submitting');
