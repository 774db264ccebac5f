-- smsd opt-outs per company number for PostgreSQL, version 5:
-- smsd/store/migrations/0005_opt_outs_per_did.sql (did = '' means any DID).
UPDATE opt_outs SET did = '' WHERE did IS NULL;
ALTER TABLE opt_outs ALTER COLUMN did SET DEFAULT '';
ALTER TABLE opt_outs ALTER COLUMN did SET NOT NULL;
ALTER TABLE opt_outs DROP CONSTRAINT opt_outs_pkey;
ALTER TABLE opt_outs ADD PRIMARY KEY (number, did);
