-- smsd phone delivery retry for PostgreSQL, version 4:
-- smsd/store/migrations/0004_phone_delivery_retry.sql.
CREATE TABLE inbound_delivery_waits (
    inbound_id      bigint NOT NULL REFERENCES inbound (id) ON DELETE CASCADE,
    extension       text NOT NULL,
    endpoint        text NOT NULL,
    attempts        integer NOT NULL,
    last_error      text NOT NULL,
    last_attempt_at timestamptz NOT NULL,
    next_attempt_at timestamptz NOT NULL,
    gave_up         boolean NOT NULL DEFAULT false,
    PRIMARY KEY (inbound_id, extension)
);
CREATE INDEX inbound_delivery_waits_due ON inbound_delivery_waits (next_attempt_at)
    WHERE NOT gave_up;
