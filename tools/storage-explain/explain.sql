-- The statements behind each endpoint (as in Storage/Sql/SqlChatStore.cs), explained on the seed data set.
-- Parameters: a busy user (member of the big groups), a big group, a direct conversation.
\set ON_ERROR_STOP on
\pset pager off
SELECT p.user_id AS "user" FROM participants p GROUP BY p.user_id ORDER BY count(*) DESC, p.user_id LIMIT 1 \gset busy_
SELECT id AS "group" FROM conversations WHERE name = 'group 995' \gset big_
SELECT id AS "conversation" FROM conversations WHERE type = 'direct' ORDER BY id LIMIT 1 \gset direct_
SELECT id AS "message" FROM messages WHERE conversation_id = :'big_group' AND seq = 500 \gset mid_

\echo '== GET /api/v1/conversations (the caller''s page, most recent activity first)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON)
SELECT p.user_id, p.role, p.joined_seq, p.read_seq, p.unread_count, p.last_activity_at, c.id, c.type, c.name, c.last_seq, c.last_message_id
FROM participants p JOIN conversations c ON c.id = p.conversation_id
WHERE p.user_id = :'busy_user' AND p.left_at IS NULL
ORDER BY p.last_activity_at DESC, p.conversation_id DESC LIMIT 21;

SELECT string_agg(quote_literal(conversation_id::text), ',') AS ids FROM (
  SELECT conversation_id FROM participants WHERE user_id = :'busy_user' AND left_at IS NULL ORDER BY last_activity_at DESC LIMIT 21) page \gset page_
SELECT string_agg(quote_literal(c.last_message_id::text), ',') AS ids FROM conversations c WHERE c.id::text IN (:page_ids) \gset last_

\echo '== ... the members of the page (an IN list of its ids)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON)
SELECT p.conversation_id, p.user_id, p.role, p.joined_seq, p.read_seq, p.unread_count FROM participants p
WHERE p.conversation_id IN (:page_ids) AND p.left_at IS NULL
ORDER BY p.conversation_id, p.joined_seq, p.joined_at, p.user_id;

\echo '== ... and the last messages of the page'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON)
SELECT m.* FROM messages m WHERE m.id IN (:last_ids);

\echo '== GET /api/v1/conversations/{id}/messages (newest page)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON)
SELECT m.* FROM messages m WHERE m.conversation_id = :'big_group' AND m.seq > 0 AND m.seq < 9223372036854775807 ORDER BY m.seq DESC LIMIT 51;

\echo '== GET /api/v1/conversations/{id}/messages?after=500 (forward)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON)
SELECT m.* FROM messages m WHERE m.conversation_id = :'big_group' AND m.seq > 500 ORDER BY m.seq ASC LIMIT 51;

\echo '== GET /api/v1/messages/{id}'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON)
SELECT m.* FROM messages m WHERE m.id = :'mid_message';

\echo '== GET /api/v1/messages/{id}/edits'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON)
SELECT version, content, mentions, created_at, replaced_at FROM message_edits WHERE message_id = :'mid_message' ORDER BY version;

\echo '== POST /api/v1/messages (one transaction; rolled back here)'
BEGIN;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON) SELECT 1 FROM conversations WHERE id = :'big_group' FOR UPDATE;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON)
SELECT p.* FROM participants p WHERE p.conversation_id IN (:'big_group') AND p.left_at IS NULL ORDER BY p.conversation_id, p.joined_seq, p.joined_at, p.user_id;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON)
SELECT m.* FROM messages m WHERE m.conversation_id = :'big_group' AND m.sender_id = :'busy_user' AND m.client_message_id = 'c-1';
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON)
UPDATE conversations SET last_seq = last_seq + 1, last_activity_at = now() WHERE id = :'big_group' RETURNING last_seq;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON)
INSERT INTO messages (id, conversation_id, seq, sender_id, message_type, content, created_at)
VALUES (gen_random_uuid(), :'big_group', 1002, :'busy_user', 'text', 'hello', now());
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON)
UPDATE participants SET unread_count = unread_count + 1, last_activity_at = now()
WHERE conversation_id = :'big_group' AND left_at IS NULL AND user_id <> :'busy_user';
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON)
UPDATE participants SET read_seq = 1002, delivered_seq = 1002, unread_count = 0, last_activity_at = now()
WHERE conversation_id = :'big_group' AND user_id = :'busy_user' AND left_at IS NULL;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON)
INSERT INTO conversation_events (conversation_id, seq, type, message_id, actor_id, created_at)
VALUES (:'big_group', 1002, 'new_message', gen_random_uuid(), :'busy_user', now());
ROLLBACK;

\echo '== POST /api/v1/messages/{id}/read (unread recount from the new watermark)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON)
SELECT COUNT(*) FROM messages m
WHERE m.conversation_id = :'big_group' AND m.seq > 500 AND m.seq > 0 AND m.sender_id <> :'busy_user' AND m.deleted_at IS NULL;

\echo '== delivered watermark: the newest message at or before an acknowledged seq'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON)
SELECT id, seq FROM messages WHERE conversation_id = :'big_group' AND seq > 900 AND seq <= 1001 ORDER BY seq DESC LIMIT 1;

\echo '== delivered/read: senders of the newly covered messages who are still members'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON)
SELECT DISTINCT m.sender_id FROM messages m
JOIN participants p ON p.conversation_id = m.conversation_id AND p.user_id = m.sender_id AND p.left_at IS NULL
WHERE m.conversation_id = :'big_group' AND m.seq > 900 AND m.seq <= 1001 AND m.sender_id <> :'busy_user' AND m.deleted_at IS NULL;

-- The delivered batch names the senders of many reports in one statement (SqlChatStore.Receipts.cs): 64 reports of
-- direct conversations, each member's watermark moving over the last two messages of its 1,000.
SELECT string_agg(format('(%L::uuid, %L, 999::bigint, 1001::bigint)', r.conversation_id, r.user_id), ', ') AS list
FROM (SELECT DISTINCT ON (p.conversation_id) p.conversation_id, p.user_id
      FROM participants p JOIN conversations c ON c.id = p.conversation_id AND c.type = 'direct'
      ORDER BY p.conversation_id, p.user_id LIMIT 64) r \gset reports_

\echo '== delivered batch: the member rows of 64 reports (each by key, laterally) and the newest message each may advance to'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON)
WITH r(c, u, lo, upto) AS (VALUES :reports_list)
SELECT p.user_id, p.delivered_seq, p.conversation_id, t.seq, t.id
FROM r
CROSS JOIN LATERAL (SELECT * FROM participants p WHERE p.conversation_id = r.c AND p.user_id = r.u AND p.left_at IS NULL LIMIT 1) p
LEFT JOIN messages t ON t.conversation_id = p.conversation_id AND t.seq = (
    SELECT MAX(m.seq) FROM messages m
    WHERE m.conversation_id = p.conversation_id AND m.seq <= r.upto
      AND m.seq > CASE WHEN p.delivered_seq > p.joined_seq THEN p.delivered_seq ELSE p.joined_seq END);

\echo '== delivered batch: senders of 64 reports, joined (the SQLite form)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON)
WITH v(c, u, lo, hi) AS (VALUES :reports_list)
SELECT DISTINCT v.c, v.u, m.sender_id FROM v
JOIN messages m ON m.conversation_id = v.c AND m.seq > v.lo AND m.seq <= v.hi AND m.sender_id <> v.u AND m.deleted_at IS NULL
JOIN participants p ON p.conversation_id = m.conversation_id AND p.user_id = m.sender_id AND p.left_at IS NULL;

\echo '== ... and each report laterally (the PostgreSQL form)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON)
WITH v(c, u, lo, hi) AS (VALUES :reports_list)
SELECT DISTINCT v.c, v.u, n.sender_id FROM v
CROSS JOIN LATERAL (
    SELECT DISTINCT m.sender_id FROM messages m
    WHERE m.conversation_id = v.c AND m.seq > v.lo AND m.seq <= v.hi AND m.sender_id <> v.u AND m.deleted_at IS NULL) n
CROSS JOIN LATERAL (
    SELECT 1 FROM participants p WHERE p.conversation_id = v.c AND p.user_id = n.sender_id AND p.left_at IS NULL
    LIMIT 1) k;

\echo '== DELETE /api/v1/messages/{id}: unread decrement for those who had not read it'
BEGIN;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON)
UPDATE participants SET unread_count = unread_count - 1
WHERE conversation_id = :'big_group' AND left_at IS NULL AND user_id <> :'busy_user' AND read_seq < 500 AND joined_seq < 500 AND unread_count > 0;
ROLLBACK;

\echo '== replay: a conversation''s events after a seq'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON)
SELECT conversation_id, seq, type, message_id, actor_id, user_id, role, created_at
FROM conversation_events WHERE conversation_id = :'big_group' AND seq > 900 ORDER BY seq LIMIT 200;

\echo '== stream positions for the seed (the sequencer''s work, done once here, not measured)'
\ir positions.sql
SELECT pos - 5000 AS "cursor", pos - 100 AS "upto" FROM stream_state WHERE id = 1 \gset resume_

\echo '== resume and the cursor check: the user''s events after a cursor 5,000 positions back (membership windows)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON)
SELECT e.conversation_id, e.seq, e.type, e.message_id, e.pos, p.joined_seq
FROM participants p JOIN conversation_events e ON e.conversation_id = p.conversation_id
WHERE p.user_id = :'busy_user' AND e.seq >= p.joined_seq AND (p.left_at IS NULL OR e.seq <= p.left_seq)
  AND e.pos > :resume_cursor AND e.pos <= :resume_upto + 100
ORDER BY e.pos LIMIT 2001;

\echo '== catch-up: the user''s events newer than its snapshot (positioned after it, or not positioned yet)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON)
SELECT e.conversation_id, e.seq, e.type, e.message_id, e.pos, p.joined_seq
FROM participants p JOIN conversation_events e ON e.conversation_id = p.conversation_id
WHERE p.user_id = :'busy_user' AND e.seq >= p.joined_seq AND (p.left_at IS NULL OR e.seq <= p.left_seq) AND e.pos > :resume_upto
UNION ALL
SELECT e.conversation_id, e.seq, e.type, e.message_id, e.pos, p.joined_seq
FROM participants p JOIN conversation_events e ON e.conversation_id = p.conversation_id
WHERE p.user_id = :'busy_user' AND e.seq >= p.joined_seq AND (p.left_at IS NULL OR e.seq <= p.left_seq) AND e.pos IS NULL
ORDER BY 1, 2 LIMIT 2001;

\echo '== table and index sizes'
SELECT relname AS relation, pg_size_pretty(pg_total_relation_size(c.oid)) AS total, reltuples::bigint AS rows
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind = 'r' ORDER BY pg_total_relation_size(c.oid) DESC;
