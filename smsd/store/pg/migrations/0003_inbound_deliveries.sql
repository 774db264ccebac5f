-- smsd inbound idempotency for PostgreSQL, version 3:
-- smsd/store/migrations/0003_inbound_deliveries.sql.
CREATE TABLE inbound_deliveries (
    inbound_id   bigint NOT NULL REFERENCES inbound (id) ON DELETE CASCADE,
    extension    text NOT NULL,
    delivered_at timestamptz NOT NULL,
    PRIMARY KEY (inbound_id, extension)
);
