-- smsd phone delivery retry, version 4.
--
-- One row per phone that did NOT take an inbound message (AMI MessageSend
-- answered an error: on Asterisk 20 "Message failed to send." for a PJSIP
-- endpoint with no registered contact, i.e. a phone that is off).  The
-- message is routed (its conversation and participants are decided); only
-- this phone's copy waits.  It is tried again at next_attempt_at (back-off)
-- and at once when Asterisk reports the endpoint back (ContactStatus /
-- PeerStatus).  A success moves the phone to inbound_deliveries and deletes
-- the row; gave_up = 1 once the message is too old to be worth sending.
CREATE TABLE inbound_delivery_waits (
    inbound_id      INTEGER NOT NULL REFERENCES inbound (id) ON DELETE CASCADE,
    extension       TEXT NOT NULL,
    endpoint        TEXT NOT NULL,
    attempts        INTEGER NOT NULL,
    last_error      TEXT NOT NULL,
    last_attempt_at TEXT NOT NULL,
    next_attempt_at TEXT NOT NULL,
    gave_up         INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (inbound_id, extension)
) WITHOUT ROWID;
CREATE INDEX inbound_delivery_waits_due ON inbound_delivery_waits (next_attempt_at)
    WHERE gave_up = 0;
