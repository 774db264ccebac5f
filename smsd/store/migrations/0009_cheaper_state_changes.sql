-- smsd schema version 9: the same rules, cheaper to check on every state change (issue 17).
--
-- A message's life changes messages.state four times and its part's state
-- three times; the database thread's CPU per message was mostly these
-- UPDATEs.  Three things they paid for and nothing needed:
--
-- 1. The state CHECKs were written `state IN ('queued', ...)` (and inbound's
--    route_state likewise).  SQLite codes an IN list of more than two
--    constants as a temporary b-tree, and in a CHECK it builds that b-tree
--    again for every row written: each state change opened, filled and freed
--    one (a third of the thread's instructions per message).  The same rule
--    spelled with `=` and `OR` compiles to plain comparisons.  Only the text
--    of the constraint in sqlite_master changes, which SQLite documents as
--    safe for CHECK constraints (lang_altertable.html, "other kinds of table
--    schema changes"): the rows on disk do not depend on it, nothing is
--    copied and a database of any size migrates at once.  PostgreSQL compiles the IN
--    list to an array test and keeps its CHECKs.
--
-- 2. usage_update_out and usage_update_in (0006) ran their trigger programs
--    on every state change, to find out from their WHEN that the send path's
--    changes move nothing.  One trigger, whose WHEN passes only when the
--    user, the month or the parts changed or the state went into or out of
--    failed/expired, does the same work with one program instead of two
--    (the rules of 0006 are unchanged; tests/core/test_usage.py).
--
-- 3. messages_inflight (0001) indexed state over the rows in
--    sending/submitting; messages_node_inflight (0008) has the same partial
--    condition, so every query on in-flight rows (recovery, the stale-row
--    scan, the status line's count) can read that one instead, and a
--    claim, a 'submitting' and a 'sent' no longer maintain two.
PRAGMA writable_schema = ON;
UPDATE sqlite_master SET sql = replace(sql,
    'CHECK (state IN (''queued'', ''scheduled'', ''sending'', ''submitting'',
                                                   ''sent'', ''delivered'', ''failed'', ''expired''))',
    'CHECK (state = ''queued'' OR state = ''scheduled'' OR state = ''sending''
                                         OR state = ''submitting'' OR state = ''sent''
                                         OR state = ''delivered'' OR state = ''failed''
                                         OR state = ''expired'')')
WHERE type = 'table' AND name = 'messages';
UPDATE sqlite_master SET sql = replace(sql,
    'CHECK (state IN (''pending'', ''submitting'', ''sent'', ''delivered'', ''failed'', ''expired''))',
    'CHECK (state = ''pending'' OR state = ''submitting'' OR state = ''sent''
                         OR state = ''delivered'' OR state = ''failed'' OR state = ''expired'')')
WHERE type = 'table' AND name = 'message_parts';
-- The inbound path's route_state (written at the insert and at each routing step).
UPDATE sqlite_master SET sql = replace(sql,
    'CHECK (route_state IN (''pending'', ''routed'', ''unrouted'', ''blocked''))',
    'CHECK (route_state = ''pending'' OR route_state = ''routed''
                           OR route_state = ''unrouted'' OR route_state = ''blocked'')')
WHERE type = 'table' AND name = 'inbound';
-- Reloads this connection's schema; the DDL below moves the schema cookie,
-- which makes every other connection reload it too.
PRAGMA writable_schema = RESET;

DROP TRIGGER usage_update_out;
DROP TRIGGER usage_update_in;
-- An update moves the row's contribution: out of the old (user, month) when it
-- counted there, into the new one when it counts there.  The WHEN lets through
-- only the updates where that can move anything.
CREATE TRIGGER usage_update AFTER UPDATE OF state, parts, user, usage_month ON messages
WHEN NOT (NEW.user IS OLD.user AND NEW.usage_month IS OLD.usage_month
          AND NEW.parts = OLD.parts
          AND (NEW.state IN ('failed', 'expired')) = (OLD.state IN ('failed', 'expired')))
BEGIN
    UPDATE usage_months SET parts = parts - OLD.parts
    WHERE OLD.user IS NOT NULL AND OLD.usage_month IS NOT NULL
          AND OLD.state NOT IN ('failed', 'expired')
          AND user = OLD.user AND month = OLD.usage_month;
    INSERT INTO usage_months (user, month, parts)
    SELECT NEW.user, NEW.usage_month, NEW.parts
    WHERE NEW.user IS NOT NULL AND NEW.usage_month IS NOT NULL
          AND NEW.state NOT IN ('failed', 'expired')
    ON CONFLICT (user, month) DO UPDATE SET parts = parts + excluded.parts;
END;

DROP INDEX messages_inflight;
