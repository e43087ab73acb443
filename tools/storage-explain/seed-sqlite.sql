-- A data set of seed.sql's size for SQLite, as ballast for a benchmark on a database with history: 1,000 conversations
-- (800 direct, 200 groups of 10), 2,000 users, 1,000 messages each, one event per message with its stream position.
-- Usage, on a migrated file: dotnet Parley.Server.dll migrate --ConnectionStrings:Sqlite="Data Source=parley.db";
-- sqlite3 parley.db < tools/storage-explain/seed-sqlite.sql (about 20 s, 490 MB); docs/benchmarks.md, "On a database
-- with history".
PRAGMA foreign_keys = OFF;
BEGIN;
CREATE TEMP TABLE n(i INTEGER PRIMARY KEY);
WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < 1001) INSERT INTO n SELECT i FROM r;
CREATE TEMP TABLE conv AS
SELECT i, printf('00000000-0000-7000-8000-%012x', i) AS id, CASE WHEN i <= 800 THEN 2 ELSE 10 END AS members
FROM n WHERE i <= 1000;
CREATE TEMP TABLE mem AS
SELECT c.id AS cid, c.i AS ci, k.i - 1 AS k, 'h' || ((c.i * 7 + k.i - 1) % 2000) AS uid
FROM conv c JOIN n k ON k.i <= c.members;
INSERT INTO conversations (id, type, name, created_by, created_at, last_activity_at, last_seq, last_message_id, direct_key)
SELECT c.id, CASE WHEN c.members = 2 THEN 'direct' ELSE 'group' END, CASE WHEN c.members = 2 THEN NULL ELSE 'group ' || c.i END,
       'h' || ((c.i * 7) % 2000), 1700000000000, 1700000000000 + c.i, 1001, printf('00000000-0000-7000-9000-%012x', c.i * 2000 + 1001),
       CASE WHEN c.members = 2 THEN min('h' || ((c.i * 7) % 2000), 'h' || ((c.i * 7 + 1) % 2000)) || char(10) || max('h' || ((c.i * 7) % 2000), 'h' || ((c.i * 7 + 1) % 2000)) END
FROM conv c;
INSERT INTO participants (conversation_id, user_id, role, joined_seq, joined_at, read_seq, delivered_seq, unread_count, last_activity_at, receipts_at)
SELECT cid, uid, CASE WHEN k = 0 AND ci > 800 THEN 'owner' ELSE 'member' END, 0, 1700000000000, 1001, 1001, 0, 1700000000000 + ci, 1700000000000 FROM mem;
INSERT INTO messages (id, conversation_id, seq, sender_id, message_type, content, created_at)
SELECT printf('00000000-0000-7000-9000-%012x', c.i * 2000 + s.i), c.id, s.i, 'h' || ((c.i * 7 + (s.i % c.members)) % 2000), 'text',
       substr('lorem ipsum lorem ipsum lorem ipsum lorem ipsum lorem ipsum lorem ipsum lorem ipsum lorem ipsum', 1, 12 * (1 + s.i % 8)),
       1700000000000 + s.i * 60000
FROM conv c JOIN n s ON s.i BETWEEN 2 AND 1001;
INSERT INTO conversation_events (conversation_id, seq, type, actor_id, created_at)
SELECT id, 1, 'conversation_created', 'h' || ((i * 7) % 2000), 1700000000000 FROM conv;
INSERT INTO conversation_events (conversation_id, seq, type, message_id, actor_id, created_at)
SELECT conversation_id, seq, 'new_message', id, sender_id, created_at FROM messages;
UPDATE conversation_events SET pos = r.rn
FROM (SELECT conversation_id, seq, row_number() OVER (ORDER BY created_at, conversation_id, seq) AS rn FROM conversation_events) AS r
WHERE conversation_events.conversation_id = r.conversation_id AND conversation_events.seq = r.seq;
UPDATE stream_state SET pos = (SELECT max(pos) FROM conversation_events);
COMMIT;
