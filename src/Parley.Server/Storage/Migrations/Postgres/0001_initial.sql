-- Parley schema, PostgreSQL. Timestamps are timestamptz with millisecond precision (as the API).

CREATE TABLE conversations (
    id               uuid        NOT NULL PRIMARY KEY,
    type             text        NOT NULL CHECK (type IN ('direct', 'group')),
    name             text,
    created_by       text        NOT NULL,
    created_at       timestamptz NOT NULL,
    last_activity_at timestamptz NOT NULL,
    -- The conversation's event counter: the seq of its latest durable event. Taken with
    -- UPDATE ... RETURNING under the row lock, so seqs commit in order (a sequence would not).
    last_seq         bigint      NOT NULL DEFAULT 0,
    last_message_id  uuid,
    -- "<user a>\n<user b>" with the ids sorted: at most one direct conversation per pair.
    direct_key       text        UNIQUE
);

-- One row per member and conversation, kept with left_at after leaving: watermarks and the unread
-- counter live here, so receipts and unread counts never need a row per recipient per message.
CREATE TABLE participants (
    conversation_id      uuid        NOT NULL REFERENCES conversations (id),
    user_id              text        NOT NULL,
    role                 text        NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    joined_seq           bigint      NOT NULL,
    joined_at            timestamptz NOT NULL,
    left_at              timestamptz,
    read_seq             bigint      NOT NULL,
    read_message_id      uuid,
    delivered_seq        bigint      NOT NULL,
    delivered_message_id uuid,
    unread_count         integer     NOT NULL DEFAULT 0 CHECK (unread_count >= 0),
    last_activity_at     timestamptz NOT NULL,
    PRIMARY KEY (conversation_id, user_id)
);

-- The conversation list: one index range per user, already in order.
CREATE INDEX ix_participants_user_activity
    ON participants (user_id, last_activity_at DESC, conversation_id DESC)
    WHERE left_at IS NULL;

CREATE TABLE messages (
    id                uuid        NOT NULL PRIMARY KEY,
    conversation_id   uuid        NOT NULL REFERENCES conversations (id),
    seq               bigint      NOT NULL,
    sender_id         text        NOT NULL,
    message_type      text        NOT NULL,
    content           text,
    reply_to_id       uuid,
    -- Structured parts as JSON text: read and written whole, never queried inside.
    mentions          text,
    media             text,
    location          text,
    client_message_id text,
    created_at        timestamptz NOT NULL,
    edited_at         timestamptz,
    deleted_at        timestamptz,
    CONSTRAINT ux_messages_conversation_seq UNIQUE (conversation_id, seq)
);

-- A retried send finds the original.
CREATE UNIQUE INDEX ux_messages_client_message_id
    ON messages (conversation_id, sender_id, client_message_id)
    WHERE client_message_id IS NOT NULL;

CREATE TABLE message_edits (
    message_id  uuid        NOT NULL REFERENCES messages (id),
    version     integer     NOT NULL,
    content     text,
    mentions    text,
    created_at  timestamptz NOT NULL,
    replaced_at timestamptz NOT NULL,
    PRIMARY KEY (message_id, version)
);

-- Every durable change of a conversation at its position, for replay. References, never content.
CREATE TABLE conversation_events (
    conversation_id uuid        NOT NULL REFERENCES conversations (id),
    seq             bigint      NOT NULL,
    type            text        NOT NULL,
    message_id      uuid,
    actor_id        text        NOT NULL,
    user_id         text,
    role            text,
    created_at      timestamptz NOT NULL,
    PRIMARY KEY (conversation_id, seq)
);
