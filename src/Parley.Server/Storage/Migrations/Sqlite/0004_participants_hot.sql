-- Sending a message updates every member's row (unread count, activity time). With last_activity_at in an
-- index, each of those updates also deleted and inserted an index entry. The conversation list now finds a
-- user's rows by user_id and sorts them (a user's conversations, typically hundreds, not millions), so the
-- per-message updates touch no indexed column.
DROP INDEX ix_participants_user_activity;
-- Every membership, former ones included: resume, catch-up and the cursor check read the events of the user's
-- membership windows (a partial index of current members could not serve them, and the planner then walked
-- the whole stream from the cursor's position instead of the user's conversations).
CREATE INDEX ix_participants_user ON participants (user_id);
