-- A realistic data set for query plans: 1,000 conversations (800 direct, 190 groups of 10, 10 groups of
-- 200), 2,000 users, 1,000,000 messages (1,000 per conversation), one event per message, 2% of messages
-- edited once, 1% deleted. Deterministic (setseed).
SELECT setseed(0.42);

INSERT INTO conversations (id, type, name, created_by, created_at, last_activity_at, last_seq, direct_key)
SELECT ('00000000-0000-7000-8000-' || lpad(to_hex(n), 12, '0'))::uuid,
       CASE WHEN n <= 800 THEN 'direct' ELSE 'group' END,
       CASE WHEN n <= 800 THEN NULL ELSE 'group ' || n END,
       'u' || ((n * 7) % 2000),
       now() - interval '90 days',
       now() - (n || ' minutes')::interval,
       1001,
       CASE WHEN n <= 800 THEN 'u' || ((n * 7) % 2000) || chr(10) || 'u' || ((n * 7 + 1) % 2000) END
FROM generate_series(1, 1000) AS n;

-- Members: user ids spread so every user is in a few conversations; the big groups hold 200.
INSERT INTO participants (conversation_id, user_id, role, joined_seq, joined_at, read_seq, delivered_seq, unread_count, last_activity_at)
SELECT c.id,
       'u' || ((c.n * 7 + k) % 2000),
       CASE WHEN k = 0 AND c.type = 'group' THEN 'owner' ELSE 'member' END,
       0, now() - interval '90 days',
       r.read_seq, r.read_seq, 0,
       c.last_activity_at
FROM (SELECT id, type, last_activity_at, ('x' || right(id::text, 12))::bit(48)::bigint AS n FROM conversations) c
CROSS JOIN LATERAL generate_series(0, CASE WHEN c.n <= 800 THEN 1 WHEN c.n <= 990 THEN 9 ELSE 199 END) AS k
CROSS JOIN LATERAL (SELECT 2 + floor(random() * 1000)::bigint AS read_seq) r
ON CONFLICT DO NOTHING;

INSERT INTO messages (id, conversation_id, seq, sender_id, message_type, content, created_at, edited_at, deleted_at)
SELECT gen_random_uuid(),
       c.id,
       s,
       (SELECT p.user_id FROM participants p WHERE p.conversation_id = c.id ORDER BY p.user_id OFFSET (s % greatest(1, c.members)) LIMIT 1),
       'text',
       CASE WHEN random() < 0.01 THEN NULL ELSE repeat('lorem ipsum ', 1 + (s % 8)) END,
       c.created_at + (s || ' minutes')::interval,
       NULL, NULL
FROM (SELECT c.id, c.created_at, (SELECT count(*) FROM participants p WHERE p.conversation_id = c.id) AS members FROM conversations c) c
CROSS JOIN generate_series(2, 1001) AS s;

UPDATE messages SET deleted_at = created_at + interval '1 minute' WHERE content IS NULL;
UPDATE messages SET edited_at = created_at + interval '2 minutes' WHERE deleted_at IS NULL AND random() < 0.02;
INSERT INTO message_edits (message_id, version, content, mentions, created_at, replaced_at)
SELECT id, 1, 'first version', NULL, created_at, edited_at FROM messages WHERE edited_at IS NOT NULL;

INSERT INTO conversation_events (conversation_id, seq, type, message_id, actor_id, created_at)
SELECT conversation_id, seq, 'new_message', id, sender_id, created_at FROM messages;
INSERT INTO conversation_events (conversation_id, seq, type, actor_id, created_at)
SELECT id, 1, 'conversation_created', created_by, created_at FROM conversations;

UPDATE conversations c SET last_message_id = m.id FROM messages m WHERE m.conversation_id = c.id AND m.seq = 1001;

-- Stored unread counters as the API keeps them: messages from others after the read watermark.
UPDATE participants p SET unread_count = (
    SELECT count(*) FROM messages m
    WHERE m.conversation_id = p.conversation_id AND m.seq > p.read_seq AND m.sender_id <> p.user_id AND m.deleted_at IS NULL);

VACUUM ANALYZE;
