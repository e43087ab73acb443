-- Delivery guarantees: a deployment-wide position for every conversation event, assigned after commit by
-- the stream sequencer, so that one cursor covers a device's place in all its conversations.

ALTER TABLE conversation_events ADD COLUMN pos INTEGER;

-- Catch-up and sync: a conversation's events after a position.
CREATE INDEX ix_conversation_events_pos ON conversation_events (conversation_id, pos);

-- The sequencer's work list: committed events without a position (normally empty).
CREATE INDEX ix_conversation_events_unpositioned ON conversation_events (conversation_id, seq) WHERE pos IS NULL;

-- The stream's epoch (a cursor from another database is refused) and its last assigned position.
CREATE TABLE stream_state (
    id    INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    epoch TEXT    NOT NULL,
    pos   INTEGER NOT NULL
);

INSERT INTO stream_state (id, epoch, pos)
SELECT 1, lower(substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-' || substr(h, 13, 4) || '-' || substr(h, 17, 4) || '-' || substr(h, 21, 12)), 0
FROM (SELECT hex(randomblob(16)) AS h);

-- Events that exist already (before this migration) get positions in their seq order.
UPDATE conversation_events SET pos = r.rn
FROM (SELECT conversation_id, seq, row_number() OVER (ORDER BY conversation_id, seq) AS rn FROM conversation_events) AS r
WHERE conversation_events.conversation_id = r.conversation_id AND conversation_events.seq = r.seq;
UPDATE stream_state SET pos = (SELECT COUNT(*) FROM conversation_events);

-- The seq of the member's removal: a removed member's events end there.
ALTER TABLE participants ADD COLUMN left_seq INTEGER;

-- When the member's read or delivered watermark last moved: resume sends the watermarks that moved.
ALTER TABLE participants ADD COLUMN receipts_at INTEGER NOT NULL DEFAULT 0;
