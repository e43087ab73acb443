-- The receipt log's position becomes its row id (docs/events.md). SQLite commits one write transaction at a time, so
-- AUTOINCREMENT ids grow in commit order: the sequencer no longer numbers each row after commit (an UPDATE of every
-- row and two index changes per watermark move); it only moves stream_state.receipt_pos, the readable end.
--
-- Positions were numbered in id order, so each stored position converts to the id of the last row at or below it:
-- one less than the first row above it (or not numbered yet), else the highest id ever taken.
UPDATE event_relay SET receipt_pos = COALESCE(
    (SELECT MIN(id) - 1 FROM receipt_log WHERE pos IS NULL OR pos > event_relay.receipt_pos),
    (SELECT seq FROM sqlite_sequence WHERE name = 'receipt_log'),
    0);

UPDATE stream_state SET receipt_pos = COALESCE(
    (SELECT MIN(id) - 1 FROM receipt_log WHERE pos IS NULL),
    (SELECT seq FROM sqlite_sequence WHERE name = 'receipt_log'),
    0);

DROP INDEX ux_receipt_log_pos;
DROP INDEX ix_receipt_log_unpositioned;
ALTER TABLE receipt_log DROP COLUMN pos;
