-- smsd schema version 10 for PostgreSQL: the meaning of
-- smsd/store/migrations/0010_history_in_row.sql (read its comments).
-- Nullable columns without a default: no table rewrite.
ALTER TABLE messages ADD COLUMN hist_queued text,
    ADD COLUMN hist_sending_at timestamptz,
    ADD COLUMN hist_submitting_at timestamptz,
    ADD COLUMN hist_sent_at timestamptz,
    ADD COLUMN hist_delivered_at timestamptz,
    ADD COLUMN hist_delivered_detail text;
