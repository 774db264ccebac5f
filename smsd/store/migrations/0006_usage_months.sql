-- smsd per-user, per-month usage counter, version 6 (issue 17).
--
-- The outbox needs "parts this user used this month" for every submit (the
-- billable parts of the new message depend on it).  Summing the month's
-- messages took 66-72 ms at 100,000 messages, inside the writer lock that
-- every send's commit needs too.  So the sum is kept, per user and month, in
-- the same transaction as the row changes that move it: the submit adds its
-- parts in one statement (smsd.store.usage.record_submit: a trigger per row
-- cost a 100,000-number submit two seconds of CPU), and triggers follow every
-- later change: a state change into or out of failed/expired (those do not
-- use the package, smsd.store.usage.NOT_USED), a change of parts, user or
-- month, a delete.  It equals the full sum at every commit
-- (tests/core/test_usage.py checks that with hypothesis).
--
-- messages.usage_month is "YYYY-MM" of created_at in the time zone recorded in
-- usage_zone (policy.timezone); NULL until smsd.store.usage labels the rows
-- (at the first submit after this migration, or after the zone changed).
ALTER TABLE messages ADD COLUMN usage_month TEXT;

CREATE TABLE usage_months (
    user  TEXT NOT NULL,
    month TEXT NOT NULL,                  -- "YYYY-MM" in usage_zone.timezone
    parts INTEGER NOT NULL,               -- parts of the user's messages not failed/expired
    PRIMARY KEY (user, month)
) WITHOUT ROWID;

CREATE TABLE usage_zone (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    timezone TEXT NOT NULL                -- the zone messages.usage_month was computed in
);

-- An update moves the row's contribution: out of the old (user, month) when it
-- counted there, into the new one when it counts there; nothing when neither
-- the key, the parts nor "counts" changed (the send path's state changes).
CREATE TRIGGER usage_update_out AFTER UPDATE OF state, parts, user, usage_month ON messages
WHEN OLD.user IS NOT NULL AND OLD.usage_month IS NOT NULL
     AND OLD.state NOT IN ('failed', 'expired')
     AND NOT (NEW.user IS OLD.user AND NEW.usage_month IS OLD.usage_month
              AND NEW.parts = OLD.parts AND NEW.state NOT IN ('failed', 'expired'))
BEGIN
    UPDATE usage_months SET parts = parts - OLD.parts
    WHERE user = OLD.user AND month = OLD.usage_month;
END;

CREATE TRIGGER usage_update_in AFTER UPDATE OF state, parts, user, usage_month ON messages
WHEN NEW.user IS NOT NULL AND NEW.usage_month IS NOT NULL
     AND NEW.state NOT IN ('failed', 'expired')
     AND NOT (OLD.user IS NEW.user AND OLD.usage_month IS NEW.usage_month
              AND OLD.parts = NEW.parts AND OLD.state NOT IN ('failed', 'expired'))
BEGIN
    INSERT INTO usage_months (user, month, parts) VALUES (NEW.user, NEW.usage_month, NEW.parts)
    ON CONFLICT (user, month) DO UPDATE SET parts = parts + excluded.parts;
END;

CREATE TRIGGER usage_delete AFTER DELETE ON messages
WHEN OLD.user IS NOT NULL AND OLD.usage_month IS NOT NULL
     AND OLD.state NOT IN ('failed', 'expired')
BEGIN
    UPDATE usage_months SET parts = parts - OLD.parts
    WHERE user = OLD.user AND month = OLD.usage_month;
END;
