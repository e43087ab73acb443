-- Delivery guarantees: a deployment-wide position for every conversation event, assigned after commit by
-- the stream sequencer, so that one cursor covers a device's place in all its conversations. (A database
-- sequence taken at insert would not do: its values commit out of order across transactions.)

ALTER TABLE conversation_events ADD COLUMN pos bigint;

-- Catch-up and sync: a conversation's events after a position.
CREATE INDEX ix_conversation_events_pos ON conversation_events (conversation_id, pos);

-- The sequencer's work list: committed events without a position (normally empty).
CREATE INDEX ix_conversation_events_unpositioned ON conversation_events (conversation_id, seq) WHERE pos IS NULL;

-- The stream's epoch (a cursor from another database is refused) and its last assigned position.
CREATE TABLE stream_state (
    id    integer NOT NULL PRIMARY KEY CHECK (id = 1),
    epoch uuid    NOT NULL,
    pos   bigint  NOT NULL
);

INSERT INTO stream_state (id, epoch, pos) VALUES (1, gen_random_uuid(), 0);

-- Events that exist already (before this migration) get positions in their seq order.
UPDATE conversation_events e SET pos = r.rn
FROM (SELECT conversation_id, seq, row_number() OVER (ORDER BY conversation_id, seq) AS rn FROM conversation_events) r
WHERE e.conversation_id = r.conversation_id AND e.seq = r.seq;
UPDATE stream_state SET pos = (SELECT count(*) FROM conversation_events);

-- The seq of the member's removal: a removed member's events end there.
ALTER TABLE participants ADD COLUMN left_seq bigint;

-- When the member's read or delivered watermark last moved: resume sends the watermarks that moved.
ALTER TABLE participants ADD COLUMN receipts_at timestamptz NOT NULL DEFAULT '1970-01-01T00:00:00Z';
