-- smsd inbound idempotency, version 3.
--
-- inbound.dedupe_key (0001) now also holds the key of a whole message from
-- the trunk (SIP Call-ID/CSeq, or a key the dialplan passes), so that the
-- second sms-receive call of [sms-in] finds the row the first one committed.
--
-- One row per phone that Asterisk took an inbound message for (AMI
-- MessageSend answered Success), written right after that answer.  When AMI
-- drops halfway through a conversation's participants the message stays
-- 'pending'; the retry sends only to extensions without a row here, so no
-- phone gets the same message twice.
CREATE TABLE inbound_deliveries (
    inbound_id   INTEGER NOT NULL REFERENCES inbound (id) ON DELETE CASCADE,
    extension    TEXT NOT NULL,
    delivered_at TEXT NOT NULL,
    PRIMARY KEY (inbound_id, extension)
) WITHOUT ROWID;
