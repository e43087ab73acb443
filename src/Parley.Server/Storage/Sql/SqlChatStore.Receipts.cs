namespace Parley.Server.Storage.Sql;

/// <summary>Read and delivered watermarks: they only move forward, and read carries delivered along.</summary>
internal abstract partial class SqlChatStore
{
    public Task<StoreResult<WatermarkResult>> AdvanceReadAsync(
        Guid conversationId, string userId, Guid messageId, DateTimeOffset now, CancellationToken cancellationToken) =>
        WriteAsync<StoreResult<WatermarkResult>>(conversationId, async s =>
        {
            var snapshot = await LoadSnapshotAsync(s, conversationId, cancellationToken);
            var before = snapshot?.Find(userId);
            if (before is null)
            {
                return StoreRefusal.NotAMember;
            }

            var message = await LoadMessageAsync(s, messageId, cancellationToken);
            if (message is null || message.ConversationId != conversationId || message.Seq <= before.JoinedSeq)
            {
                return StoreRefusal.MessageNotFound;
            }

            if (message.Seq <= before.ReadSeq)
            {
                return new WatermarkResult(conversationId, before, before, [], snapshot!.Members);
            }

            var deliveredTo = Math.Max(before.DeliveredSeq, message.Seq);
            var deliveredId = deliveredTo == message.Seq ? message.Id : before.DeliveredMessageId;
            await s.Sql(
                """
                UPDATE participants
                SET read_seq = @seq, read_message_id = @id, receipts_at = @now,
                    -- Delivered batches do not lock the conversation (see AdvanceDeliveredAsync): never move it back.
                    delivered_message_id = CASE WHEN delivered_seq > @dseq THEN delivered_message_id ELSE @did END,
                    delivered_seq = CASE WHEN delivered_seq > @dseq THEN delivered_seq ELSE @dseq END,
                    unread_count = (SELECT COUNT(*) FROM messages m
                                    WHERE m.conversation_id = @c AND m.seq > @seq AND m.seq > @joined
                                      AND m.sender_id <> @u AND m.deleted_at IS NULL)
                WHERE conversation_id = @c AND user_id = @u
                """)
                .With("@seq", message.Seq).With("@id", message.Id).With("@dseq", deliveredTo).With("@did", deliveredId)
                .With("@c", conversationId).With("@u", userId).With("@joined", before.JoinedSeq).With("@now", now)
                .ExecuteAsync(cancellationToken);
            var after = (await LoadMemberAsync(s, conversationId, userId, cancellationToken))!;
            var senders = after.DeliveredSeq > before.DeliveredSeq
                ? await SendersBetweenAsync(s, conversationId, userId, Math.Max(before.DeliveredSeq, before.JoinedSeq), after.DeliveredSeq, cancellationToken)
                : [];
            return new WatermarkResult(conversationId, before, after, senders, snapshot!.Members);
        }, r => r.IsApplied, cancellationToken);

    /// <summary>
    /// Delivered watermarks of a batch of reports, in one transaction. Unlike every other write it locks no
    /// conversation: a delivered watermark only rises (each update is conditional on it being lower, and the
    /// read receipt's update never lowers it either), so it needs only its member row, and a batch over hundreds
    /// of conversations never holds up their senders. It never waits for a row either: a row a sender or a
    /// reader holds right now is skipped (<see cref="SqlDialect.SkipLockedRowSql"/>) and its report handed back
    /// as busy, so the batch cannot close a deadlock cycle with writers that lock conversations.
    /// </summary>
    public Task<DeliveredBatch> AdvanceDeliveredAsync(
        IReadOnlyList<DeliveryReport> reports, DateTimeOffset now, CancellationToken cancellationToken)
    {
        var ordered = reports.OrderBy(r => r.ConversationId).ThenBy(r => r.UserId, StringComparer.Ordinal).ToList();
        return WriteAsync(null, async s =>
        {
            var moved = new List<WatermarkResult>();
            var busy = new List<DeliveryReport>();
            foreach (var report in ordered)
            {
                // The member (its row locked, unless someone else holds it) and the newest message in
                // (max(delivered, joined), up_to_seq], in one round trip.
                var found = await s.Sql(
                    $"""
                    SELECT {SqlRow.MemberColumns}, t.seq, t.id
                    FROM participants p
                    LEFT JOIN messages t ON t.conversation_id = p.conversation_id AND t.seq = (
                        SELECT MAX(m.seq) FROM messages m
                        WHERE m.conversation_id = p.conversation_id AND m.seq <= @to
                          AND m.seq > CASE WHEN p.delivered_seq > p.joined_seq THEN p.delivered_seq ELSE p.joined_seq END)
                    WHERE p.conversation_id = @c AND p.user_id = @u AND p.left_at IS NULL
                    {s.Dialect.SkipLockedRowSql}
                    """)
                    .With("@c", report.ConversationId).With("@u", report.UserId).With("@to", report.UpToSeq)
                    .FirstOrDefaultAsync(
                        r => new Tuple<MemberRecord, long?, Guid?>(
                            r.Member(), r.NullableLong(SqlRow.MemberColumnCount), r.NullableGuid(SqlRow.MemberColumnCount + 1)),
                        cancellationToken);
                if (found is null)
                {
                    if (s.Dialect.SkipLockedRowSql.Length > 0 && await LoadMemberAsync(s, report.ConversationId, report.UserId, cancellationToken) is not null)
                    {
                        busy.Add(report); // a member whose row is held right now
                    }

                    continue;
                }

                var (before, targetSeq, targetId) = found;
                if (targetSeq is not { } seq || targetId is not { } id)
                {
                    continue; // nothing newer to mark
                }

                // The row is this transaction's (locked above, or the single writer's): the target is above its watermark.
                var from = Math.Max(before.DeliveredSeq, before.JoinedSeq);
                var senders = await s.Sql(
                    $"""
                    UPDATE participants SET delivered_seq = @seq, delivered_message_id = @id, receipts_at = @now
                    WHERE conversation_id = @c AND user_id = @u AND delivered_seq < @seq;
                    {SendersBetweenSql}
                    """)
                    .With("@seq", seq).With("@id", id).With("@c", report.ConversationId).With("@u", report.UserId).With("@now", now)
                    .With("@from", from).With("@to", seq)
                    .ReadResultsAsync(results => results.NextAsync(r => r.String(0)), cancellationToken);
                var after = before with { DeliveredSeq = seq, DeliveredMessageId = id };
                moved.Add(new WatermarkResult(report.ConversationId, before, after, senders, []));
            }

            return new DeliveredBatch(moved, busy);
        }, cancellationToken);
    }

    /// <summary>
    /// Senders (other than the user) of live messages in (from, to]: who learns that the user received them.
    /// Only current members: a sender who has left receives nothing more of the conversation.
    /// </summary>
    private static async Task<IReadOnlyList<string>> SendersBetweenAsync(
        SqlSession s, Guid conversationId, string userId, long from, long to, CancellationToken cancellationToken) =>
        await s.Sql(SendersBetweenSql)
            .With("@c", conversationId).With("@from", from).With("@to", to).With("@u", userId)
            .ListAsync(r => r.String(0), cancellationToken);

    private const string SendersBetweenSql =
        """
        SELECT DISTINCT m.sender_id FROM messages m
        JOIN participants p ON p.conversation_id = m.conversation_id AND p.user_id = m.sender_id AND p.left_at IS NULL
        WHERE m.conversation_id = @c AND m.seq > @from AND m.seq <= @to AND m.sender_id <> @u AND m.deleted_at IS NULL
        """;
}
