-- The event stream (docs/events.md): conversation_events is the outbox; watermark moves get a log of their own
-- (written only while a sink is configured), positioned by the stream sequencer after commit like the events; each
-- sink's relay records how far it published and who holds its lease.

-- AUTOINCREMENT: ids are never reused after the published rows are deleted (a receipt's event_id includes its id).
CREATE TABLE receipt_log (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    pos             INTEGER,
    conversation_id TEXT    NOT NULL,
    user_id         TEXT    NOT NULL,
    kind            TEXT    NOT NULL,
    seq             INTEGER NOT NULL,
    message_id      TEXT    NOT NULL,
    created_at      INTEGER NOT NULL
);

CREATE UNIQUE INDEX ux_receipt_log_pos ON receipt_log (pos) WHERE pos IS NOT NULL;
CREATE INDEX ix_receipt_log_unpositioned ON receipt_log (id) WHERE pos IS NULL;

ALTER TABLE stream_state ADD COLUMN receipt_pos INTEGER NOT NULL DEFAULT 0;

CREATE TABLE event_relay (
    sink         TEXT    NOT NULL PRIMARY KEY,
    pos          INTEGER NOT NULL,
    receipt_pos  INTEGER NOT NULL,
    owner        TEXT,
    lease_until  INTEGER,
    published_at INTEGER
);

CREATE TABLE event_dead_letters (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    sink      TEXT    NOT NULL,
    event_id  TEXT    NOT NULL,
    type      TEXT    NOT NULL,
    record    TEXT    NOT NULL,
    error     TEXT    NOT NULL,
    failed_at INTEGER NOT NULL
);
