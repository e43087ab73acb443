-- When an instance last took or renewed each sink's lease: the receipt log is pruned below the positions of the sinks
-- this instance runs and of every sink held recently (one that instances of another configuration run, as during a
-- rolling deploy that adds it); a sink no instance has held for Events:RemovedSinkAfter counts as removed.
ALTER TABLE event_relay ADD COLUMN held_at timestamptz;

-- Rows from before: held when they last published or were leased, else now (a row nobody held yet counts from here).
UPDATE event_relay SET held_at = COALESCE(published_at, lease_until, now());
