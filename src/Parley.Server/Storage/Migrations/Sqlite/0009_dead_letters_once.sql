-- A record is dead-lettered once per sink: a relay that retries a batch after a restart (or a lost lease) finds the
-- record there already. Copies written before this migration are removed, keeping the first.
DELETE FROM event_dead_letters
WHERE EXISTS (
    SELECT 1 FROM event_dead_letters e
    WHERE e.sink = event_dead_letters.sink AND e.event_id = event_dead_letters.event_id AND e.id < event_dead_letters.id);

CREATE UNIQUE INDEX ux_event_dead_letters_sink_event ON event_dead_letters (sink, event_id);
