-- Events take their stream position as they are inserted, in the transaction that writes them (docs/delivery.md):
-- SQLite commits one write transaction at a time, so positions taken inside transactions grow in commit order, and
-- the sequencer no longer rewrites every event after commit (its row and three index entries, a second time). The
-- stream sequencer has nothing left to do on SQLite.
--
-- Events an earlier version left without a position (committed, not yet sequenced when it stopped) get theirs now,
-- in the order the sequencer used, after every position already given.
UPDATE conversation_events SET pos = b.base + r.rn
FROM (SELECT conversation_id, seq, row_number() OVER (ORDER BY conversation_id, seq) AS rn
      FROM conversation_events WHERE pos IS NULL) AS r,
     (SELECT pos AS base FROM stream_state WHERE id = 1) AS b
WHERE conversation_events.conversation_id = r.conversation_id AND conversation_events.seq = r.seq;

UPDATE stream_state SET pos = MAX(pos, COALESCE((SELECT MAX(pos) FROM conversation_events), 0)) WHERE id = 1;

-- Receipt log rows become readable in the transaction that writes them; those written before are readable now (the
-- sequencer's next pass would have done the same, every event being positioned).
UPDATE stream_state SET receipt_pos = MAX(receipt_pos, COALESCE((SELECT MAX(id) FROM receipt_log), 0)) WHERE id = 1;

-- The sequencer's work list is always empty now.
DROP INDEX ix_conversation_events_unpositioned;
