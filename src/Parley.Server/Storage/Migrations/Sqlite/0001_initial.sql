-- Parley schema, SQLite. Ids are UUID text, timestamps Unix milliseconds.

CREATE TABLE conversations (
    id               TEXT    NOT NULL PRIMARY KEY,
    type             TEXT    NOT NULL CHECK (type IN ('direct', 'group')),
    name             TEXT,
    created_by       TEXT    NOT NULL,
    created_at       INTEGER NOT NULL,
    last_activity_at INTEGER NOT NULL,
    -- The conversation's event counter: the seq of its latest durable event.
    last_seq         INTEGER NOT NULL DEFAULT 0,
    last_message_id  TEXT,
    -- "<user a>\n<user b>" with the ids sorted: at most one direct conversation per pair.
    direct_key       TEXT UNIQUE
);

-- One row per member and conversation, kept with left_at after leaving. Holds the member's watermarks and
-- unread counter, so receipts and unread counts never need one row per recipient per message.
CREATE TABLE participants (
    conversation_id      TEXT    NOT NULL REFERENCES conversations (id),
    user_id              TEXT    NOT NULL,
    role                 TEXT    NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    joined_seq           INTEGER NOT NULL,
    joined_at            INTEGER NOT NULL,
    left_at              INTEGER,
    read_seq             INTEGER NOT NULL,
    read_message_id      TEXT,
    delivered_seq        INTEGER NOT NULL,
    delivered_message_id TEXT,
    unread_count         INTEGER NOT NULL DEFAULT 0 CHECK (unread_count >= 0),
    -- Copied from the conversation on every message so the conversation list is one index range per user.
    last_activity_at     INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, user_id)
) WITHOUT ROWID;

CREATE INDEX ix_participants_user_activity
    ON participants (user_id, last_activity_at DESC, conversation_id DESC)
    WHERE left_at IS NULL;

CREATE TABLE messages (
    id                TEXT    NOT NULL PRIMARY KEY,
    conversation_id   TEXT    NOT NULL REFERENCES conversations (id),
    seq               INTEGER NOT NULL,
    sender_id         TEXT    NOT NULL,
    message_type      TEXT    NOT NULL,
    content           TEXT,
    reply_to_id       TEXT,
    mentions          TEXT,
    media             TEXT,
    location          TEXT,
    client_message_id TEXT,
    created_at        INTEGER NOT NULL,
    edited_at         INTEGER,
    deleted_at        INTEGER
);

-- History pages, unread counts and watermark lookups are all ranges of this index.
CREATE UNIQUE INDEX ux_messages_conversation_seq ON messages (conversation_id, seq);

-- A retried send finds the original.
CREATE UNIQUE INDEX ux_messages_client_message_id
    ON messages (conversation_id, sender_id, client_message_id)
    WHERE client_message_id IS NOT NULL;

-- Earlier versions of edited messages; deleted with the message.
CREATE TABLE message_edits (
    message_id  TEXT    NOT NULL REFERENCES messages (id),
    version     INTEGER NOT NULL,
    content     TEXT,
    mentions    TEXT,
    created_at  INTEGER NOT NULL,
    replaced_at INTEGER NOT NULL,
    PRIMARY KEY (message_id, version)
) WITHOUT ROWID;

-- Every durable change of a conversation at its position, for replay. References, never content.
CREATE TABLE conversation_events (
    conversation_id TEXT    NOT NULL REFERENCES conversations (id),
    seq             INTEGER NOT NULL,
    type            TEXT    NOT NULL,
    message_id      TEXT,
    actor_id        TEXT    NOT NULL,
    user_id         TEXT,
    role            TEXT,
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, seq)
) WITHOUT ROWID;
