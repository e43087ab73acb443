-- Stream positions for the seed's events, in the order they were written (the sequencer's work, done once).
UPDATE conversation_events e SET pos = r.rn
FROM (SELECT conversation_id, seq, row_number() OVER (ORDER BY created_at, conversation_id, seq) AS rn FROM conversation_events) r
WHERE e.conversation_id = r.conversation_id AND e.seq = r.seq;
UPDATE stream_state SET pos = (SELECT max(pos) FROM conversation_events) WHERE id = 1;
VACUUM ANALYZE conversation_events;
