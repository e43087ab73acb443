namespace Parley.Server.Storage.Sql;

/// <summary>Membership changes: adding, removing and changing roles, each with its own seq and event.</summary>
internal abstract partial class SqlChatStore
{
    public Task<StoreResult<MembershipResult, TRejection>> ChangeMembershipAsync<TRejection>(
        Guid conversationId, string actorId, Func<ConversationSnapshot, StoreResult<IReadOnlyList<MembershipChange>, TRejection>> decide,
        DateTimeOffset now, CancellationToken cancellationToken)
        where TRejection : class =>
        WriteAsync<StoreResult<MembershipResult, TRejection>>(conversationId, async s =>
        {
            var before = await LoadSnapshotAsync(s, conversationId, cancellationToken);
            if (before is null)
            {
                return StoreRefusal.ConversationNotFound;
            }

            var plan = decide(before);
            if (!plan.IsApplied)
            {
                return plan.FailureAs<MembershipResult>();
            }

            var applied = new List<AppliedMembershipChange>();
            foreach (var change in plan.Value!)
            {
                var seq = await NextSeqAsync(s, conversationId, now, touchActivity: change is MembershipChange.Add, cancellationToken);
                ConversationEvent evt;
                switch (change)
                {
                    case MembershipChange.Add add:
                        await InsertOrRejoinAsync(s, conversationId, add.UserId, add.Role, seq, now, cancellationToken);
                        evt = new ConversationEvent(conversationId, seq, EventTypes.ParticipantAdded, null, actorId, add.UserId, add.Role, now);
                        break;
                    case MembershipChange.Remove remove:
                        // left_seq: the removal is the last position the removed member receives.
                        await s.Sql("UPDATE participants SET left_at = @now, left_seq = @seq WHERE conversation_id = @c AND user_id = @u AND left_at IS NULL")
                            .With("@now", now).With("@seq", seq).With("@c", conversationId).With("@u", remove.UserId).ExecuteAsync(cancellationToken);
                        evt = new ConversationEvent(conversationId, seq, EventTypes.ParticipantRemoved, null, actorId, remove.UserId, null, now);
                        break;
                    case MembershipChange.SetRole setRole:
                        await s.Sql("UPDATE participants SET role = @r WHERE conversation_id = @c AND user_id = @u AND left_at IS NULL")
                            .With("@r", setRole.Role).With("@c", conversationId).With("@u", setRole.UserId).ExecuteAsync(cancellationToken);
                        evt = new ConversationEvent(conversationId, seq, EventTypes.ParticipantUpdated, null, actorId, setRole.UserId, setRole.Role, now);
                        break;
                    default:
                        throw new InvalidOperationException($"Unknown membership change {change.GetType().Name}.");
                }

                await InsertEventAsync(s, evt, cancellationToken);
                applied.Add(new AppliedMembershipChange(change, evt));
            }

            var after = await LoadSnapshotAsync(s, conversationId, cancellationToken);
            return new MembershipResult(after!, applied);
        }, r => r.IsApplied, cancellationToken);

    /// <summary>Adds a member, or brings back one who left: history is visible after <paramref name="joinedSeq"/>, nothing is unread.</summary>
    private static Task InsertOrRejoinAsync(
        SqlSession s, Guid conversationId, string userId, string role, long joinedSeq, DateTimeOffset now, CancellationToken cancellationToken) =>
        s.Sql(
            """
            INSERT INTO participants (conversation_id, user_id, role, joined_seq, joined_at, left_at, read_seq, read_message_id,
                                      delivered_seq, delivered_message_id, unread_count, last_activity_at)
            VALUES (@c, @u, @role, @seq, @now, NULL, @seq, NULL, @seq, NULL, 0, @now)
            ON CONFLICT (conversation_id, user_id) DO UPDATE SET
                role = excluded.role, joined_seq = excluded.joined_seq, joined_at = excluded.joined_at, left_at = NULL,
                read_seq = excluded.read_seq, read_message_id = NULL, delivered_seq = excluded.delivered_seq,
                delivered_message_id = NULL, unread_count = 0, last_activity_at = excluded.last_activity_at
            """)
            .With("@c", conversationId).With("@u", userId).With("@role", role).With("@seq", joinedSeq).With("@now", now)
            .ExecuteAsync(cancellationToken);
}
