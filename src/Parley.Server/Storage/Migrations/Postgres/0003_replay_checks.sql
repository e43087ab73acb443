-- Replaying history faithfully (docs/delivery.md).

-- A cursor's position is checked against the event the stream holds there: after a restore from a backup the
-- same position can hold a different (newer) event, and the cursor must then be refused, not trusted.
CREATE UNIQUE INDEX ux_conversation_events_stream_pos ON conversation_events (pos) WHERE pos IS NOT NULL;

-- The members a conversation was created with (JSON [{user_id, role}], on its conversation_created event):
-- with the participant events after it, the roster as of any seq, so that a former member's catch-up shows the
-- conversation as it was when the membership ended, not as it is now.
ALTER TABLE conversation_events ADD COLUMN members text;

-- Conversations created before this migration: the members that did not join through participant_added
-- (their first participant event, if any, is not an addition), with their role as it is now (the role they were
-- created with was not recorded).
UPDATE conversation_events e SET members = (
    SELECT coalesce(json_agg(json_build_object('user_id', p.user_id, 'role', p.role) ORDER BY p.joined_at, p.user_id), '[]'::json)::text
    FROM participants p
    WHERE p.conversation_id = e.conversation_id
      AND NOT EXISTS (
          SELECT 1 FROM conversation_events a
          WHERE a.conversation_id = p.conversation_id AND a.user_id = p.user_id AND a.type = 'participant_added'
            AND a.seq = (SELECT min(b.seq) FROM conversation_events b
                         WHERE b.conversation_id = p.conversation_id AND b.user_id = p.user_id
                           AND b.type IN ('participant_added', 'participant_removed', 'participant_updated'))))
WHERE e.type = 'conversation_created';
