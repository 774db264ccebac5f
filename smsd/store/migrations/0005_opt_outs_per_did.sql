-- smsd opt-outs per company number, version 4.
--
-- A STOP opts the sender out of SMS from the company number (DID) it was
-- sent to, not from every number of the PBX (the CTIA practice the service
-- follows: each sending number keeps its own opt-out list).  did = '' means
-- the DID was not known (a modem without its own number): such an opt-out
-- holds for every sender.  Rows from version 1 keep their DID, or '' when
-- they had none.
CREATE TABLE opt_outs_v4 (
    number     TEXT NOT NULL,
    did        TEXT NOT NULL DEFAULT '',
    keyword    TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (number, did)
) WITHOUT ROWID;
INSERT INTO opt_outs_v4 (number, did, keyword, created_at)
    SELECT number, COALESCE(did, ''), keyword, created_at FROM opt_outs;
DROP TABLE opt_outs;
ALTER TABLE opt_outs_v4 RENAME TO opt_outs;
