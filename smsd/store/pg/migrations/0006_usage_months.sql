-- smsd per-user, per-month usage counter for PostgreSQL, version 6: the meaning
-- of smsd/store/migrations/0006_usage_months.sql (read its comments).  SQLite's
-- three triggers (update out, update in, delete) are one row-level trigger
-- function here; the rules are the same: a row counts in (user, usage_month)
-- while its state is not failed/expired, and a change moves its contribution
-- only when the key, the parts or "counts" changed.
ALTER TABLE messages ADD COLUMN usage_month text;

CREATE TABLE usage_months (
    "user" text NOT NULL,
    month  text NOT NULL,                 -- "YYYY-MM" in usage_zone.timezone
    parts  integer NOT NULL,              -- parts of the user's messages not failed/expired
    PRIMARY KEY ("user", month)
);

CREATE TABLE usage_zone (
    id       integer PRIMARY KEY CHECK (id = 1),
    timezone text NOT NULL                -- the zone messages.usage_month was computed in
);

CREATE FUNCTION smsd_usage_follow() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    old_counts boolean := false;
    new_counts boolean := false;
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        old_counts := OLD."user" IS NOT NULL AND OLD.usage_month IS NOT NULL
                      AND OLD.state NOT IN ('failed', 'expired');
    END IF;
    IF TG_OP = 'UPDATE' THEN
        new_counts := NEW."user" IS NOT NULL AND NEW.usage_month IS NOT NULL
                      AND NEW.state NOT IN ('failed', 'expired');
        IF old_counts AND new_counts AND NEW."user" IS NOT DISTINCT FROM OLD."user"
           AND NEW.usage_month IS NOT DISTINCT FROM OLD.usage_month
           AND NEW.parts = OLD.parts THEN
            RETURN NULL;                  -- the send path's state changes: nothing moves
        END IF;
    END IF;
    IF old_counts THEN
        UPDATE usage_months SET parts = parts - OLD.parts
        WHERE "user" = OLD."user" AND month = OLD.usage_month;
    END IF;
    IF new_counts THEN
        INSERT INTO usage_months ("user", month, parts) VALUES (NEW."user", NEW.usage_month, NEW.parts)
        ON CONFLICT ("user", month) DO UPDATE SET parts = usage_months.parts + excluded.parts;
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER usage_update AFTER UPDATE OF state, parts, "user", usage_month ON messages
FOR EACH ROW EXECUTE FUNCTION smsd_usage_follow();

CREATE TRIGGER usage_delete AFTER DELETE ON messages
FOR EACH ROW EXECUTE FUNCTION smsd_usage_follow();
