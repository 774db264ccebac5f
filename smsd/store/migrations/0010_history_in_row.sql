-- smsd schema version 10: a message's routine history lives in its own row (issue 17).
--
-- A message that goes well wrote five message_history rows: 'queued' at the
-- submit, 'sending' at the claim, 'submitting', 'sent' and 'delivered'.  Each
-- was an INSERT (and index and WAL pages at the commit) on the database
-- thread, beside an UPDATE of the same message that happens anyway.  These
-- columns keep those transitions in that UPDATE instead; smsd.store.views
-- puts them back into the history it shows, in the order the table had them:
--
--   hist_queued            the submit's row ('queued' or 'scheduled', at
--                          created_at, detail origin=<origin>): the first
--                          row of every history.  NULL: the row is in
--                          message_history (messages older than version 10).
--   hist_sending_at        the current attempt's 'sending' (detail
--                          "attempt N", N from attempts and state),
--   hist_submitting_at     its 'submitting',
--   hist_sent_at           its 'sent' (detail "<gateway> [via <modem>]"),
--   hist_delivered_at      its 'delivered', with
--   hist_delivered_detail  that row's detail.
--
-- These four follow every message_history row of the message: any write of an
-- explicit row (a retry, a failure, an expiry, a recovery, a failed report...)
-- first moves them into message_history (smsd.store.history.FLUSH_SQL) and
-- clears them in the same transaction.  Rows written before this version stay
-- where they are; a message in flight at the upgrade keeps its 'sending' in
-- the table and gains the rest here, after it.  Nullable columns without a
-- default: nothing is copied, a database of any size migrates at once.
ALTER TABLE messages ADD COLUMN hist_queued TEXT;
ALTER TABLE messages ADD COLUMN hist_sending_at TEXT;
ALTER TABLE messages ADD COLUMN hist_submitting_at TEXT;
ALTER TABLE messages ADD COLUMN hist_sent_at TEXT;
ALTER TABLE messages ADD COLUMN hist_delivered_at TEXT;
ALTER TABLE messages ADD COLUMN hist_delivered_detail TEXT;
