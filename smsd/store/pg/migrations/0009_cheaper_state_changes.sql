-- smsd schema version 9 for PostgreSQL: the meaning of
-- smsd/store/migrations/0009_cheaper_state_changes.sql (read its comments).
-- The CHECKs stay: PostgreSQL tests an IN list as an array, with no table.
--
-- The usage trigger keeps its function (0006) but gets a WHEN, which
-- PostgreSQL evaluates before queuing the trigger: the send path's state
-- changes (which move nothing) no longer call the function at all.
DROP TRIGGER usage_update ON messages;
CREATE TRIGGER usage_update AFTER UPDATE OF state, parts, "user", usage_month ON messages
FOR EACH ROW
WHEN (NEW."user" IS DISTINCT FROM OLD."user" OR NEW.usage_month IS DISTINCT FROM OLD.usage_month
      OR NEW.parts <> OLD.parts
      OR (NEW.state IN ('failed', 'expired')) <> (OLD.state IN ('failed', 'expired')))
EXECUTE FUNCTION smsd_usage_follow();

-- In-flight rows are found through messages_node_inflight (same condition).
DROP INDEX messages_inflight;
