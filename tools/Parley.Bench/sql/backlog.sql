-- A backlog for the `relay` scenario (docs/benchmarks.md): direct conversations with text messages, written straight
-- into a migrated, empty PostgreSQL database as Parley writes them (a conversation, its two members, its
-- conversation_created event, then one message and one new_message event per send, each event positioned in the
-- stream). Creating a million messages through the API would take longer than the run it prepares.
--
--   psql "$DATABASE" -v messages=1000000 -v pairs=500 -f tools/Parley.Bench/sql/backlog.sql
--
-- Run it with the servers stopped: it sets the stream's position, which the sequencer of a running server owns.
-- Every sink starts at position 0, so all of it is then waiting for the relay.

\set ON_ERROR_STOP on
\if :{?messages}
\else
  \set messages 1000000
\endif
\if :{?pairs}
\else
  \set pairs 500
\endif

BEGIN;

DO $$
BEGIN
  IF (SELECT pos FROM stream_state) <> 0 THEN
    RAISE EXCEPTION 'backlog.sql expects an empty database (stream_state.pos is not 0)';
  END IF;
END $$;

CREATE TEMP TABLE bench_pairs ON COMMIT DROP AS
SELECT n, gen_random_uuid() AS id, 'bench-a-' || n AS a, 'bench-b-' || n AS b,
       timestamptz '2026-01-01T00:00:00Z' AS at
FROM generate_series(1, :pairs) AS n;

-- :messages spread evenly: pair n gets per + (n <= extra ? 1 : 0).
CREATE TEMP TABLE bench_sends ON COMMIT DROP AS
SELECT p.id AS conversation_id, p.n, i, CASE WHEN i % 2 = 1 THEN p.a ELSE p.b END AS sender_id,
       gen_random_uuid() AS message_id, p.at + make_interval(secs => i * 0.001) AS at
FROM bench_pairs p,
     LATERAL generate_series(1, (:messages / :pairs) + CASE WHEN p.n <= :messages % :pairs THEN 1 ELSE 0 END) AS i;

INSERT INTO conversations (id, type, name, created_by, created_at, last_activity_at, last_seq, direct_key)
SELECT id, 'direct', NULL, a, at, at, 1, a || E'\n' || b FROM bench_pairs;

INSERT INTO participants (conversation_id, user_id, role, joined_seq, joined_at, left_at, read_seq, read_message_id,
                          delivered_seq, delivered_message_id, unread_count, last_activity_at)
SELECT id, u, 'member', 0, at, NULL, 0, NULL, 0, NULL, 0, at
FROM bench_pairs, LATERAL (VALUES (a), (b)) AS v(u);

INSERT INTO conversation_events (conversation_id, seq, type, message_id, actor_id, user_id, role, created_at, pos, members)
SELECT id, 1, 'conversation_created', NULL, a, NULL, NULL, at, n,
       json_build_array(json_build_object('user_id', a, 'role', 'member'), json_build_object('user_id', b, 'role', 'member'))::text
FROM bench_pairs;

INSERT INTO messages (id, conversation_id, seq, sender_id, message_type, content, created_at)
SELECT message_id, conversation_id, i + 1, sender_id, 'text',
       'Benchmark message ' || i || ' of conversation ' || n || ': about the length of a short chat line.', at
FROM bench_sends;

-- Positions interleave the conversations, as concurrent senders do.
INSERT INTO conversation_events (conversation_id, seq, type, message_id, actor_id, user_id, role, created_at, pos)
SELECT conversation_id, i + 1, 'new_message', message_id, sender_id, NULL, NULL, at,
       :pairs + row_number() OVER (ORDER BY i, n)
FROM bench_sends;

UPDATE conversations c SET last_seq = l.seq, last_message_id = l.message_id, last_activity_at = l.at
FROM (SELECT DISTINCT ON (conversation_id) conversation_id, i + 1 AS seq, message_id, at
      FROM bench_sends ORDER BY conversation_id, i DESC) AS l
WHERE c.id = l.conversation_id;

-- Unread: every message of the other member; the sender has read their own.
UPDATE participants p SET unread_count = u.unread, last_activity_at = u.at
FROM (SELECT p2.conversation_id, p2.user_id, count(*) FILTER (WHERE s.sender_id <> p2.user_id) AS unread, max(s.at) AS at
      FROM participants p2 JOIN bench_sends s ON s.conversation_id = p2.conversation_id
      GROUP BY p2.conversation_id, p2.user_id) AS u
WHERE p.conversation_id = u.conversation_id AND p.user_id = u.user_id;

UPDATE stream_state SET pos = (SELECT max(pos) FROM conversation_events);

COMMIT;

ANALYZE conversations, participants, messages, conversation_events;

SELECT pos AS stream_position, (SELECT count(*) FROM messages) AS messages, (SELECT count(*) FROM conversations) AS conversations
FROM stream_state;
