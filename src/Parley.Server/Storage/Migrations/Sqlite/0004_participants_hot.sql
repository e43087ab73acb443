-- Sending a message updates every member's row (unread count, activity time). With last_activity_at in an
-- index, each of those updates also deleted and inserted an index entry. The conversation list now finds a
-- user's rows by user_id and sorts them (a user's conversations, typically hundreds, not millions), so the
-- per-message updates touch no indexed column.
DROP INDEX ix_participants_user_activity;
CREATE INDEX ix_participants_user ON participants (user_id) WHERE left_at IS NULL;
