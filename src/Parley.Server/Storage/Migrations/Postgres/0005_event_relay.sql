-- The event stream (docs/events.md): conversation_events is the outbox; watermark moves get a log of their own
-- (written only while a sink is configured), positioned by the stream sequencer after commit like the events; each
-- sink's relay records how far it published and who holds its lease.

CREATE TABLE receipt_log (
    id              bigserial   PRIMARY KEY,
    pos             bigint,
    conversation_id uuid        NOT NULL,
    user_id         text        NOT NULL,
    kind            text        NOT NULL,
    seq             bigint      NOT NULL,
    message_id      uuid        NOT NULL,
    created_at      timestamptz NOT NULL
);

-- The relay reads by position; the sequencer's work list is the unpositioned rows (normally none).
CREATE UNIQUE INDEX ux_receipt_log_pos ON receipt_log (pos) WHERE pos IS NOT NULL;
CREATE INDEX ix_receipt_log_unpositioned ON receipt_log (id) WHERE pos IS NULL;

-- The receipt log's last assigned position, beside the events'.
ALTER TABLE stream_state ADD COLUMN receipt_pos bigint NOT NULL DEFAULT 0;

CREATE TABLE event_relay (
    sink         text        NOT NULL PRIMARY KEY,
    pos          bigint      NOT NULL,
    receipt_pos  bigint      NOT NULL,
    owner        text,
    lease_until  timestamptz,
    published_at timestamptz
);

-- Records a webhook endpoint refused too often; kept for the operator.
CREATE TABLE event_dead_letters (
    id        bigserial   PRIMARY KEY,
    sink      text        NOT NULL,
    event_id  text        NOT NULL,
    type      text        NOT NULL,
    record    text        NOT NULL,
    error     text        NOT NULL,
    failed_at timestamptz NOT NULL
);
