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
                SET read_seq = @seq, read_message_id = @id, delivered_seq = @dseq, delivered_message_id = @did, receipts_at = @now,
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

    public Task<IReadOnlyList<WatermarkResult>> AdvanceDeliveredAsync(
        IReadOnlyList<DeliveryReport> reports, DateTimeOffset now, CancellationToken cancellationToken)
    {
        // One transaction for the batch; conversations locked in id order so concurrent batches cannot deadlock.
        var ordered = reports.OrderBy(r => r.ConversationId).ThenBy(r => r.UserId, StringComparer.Ordinal).ToList();
        return WriteAsync<IReadOnlyList<WatermarkResult>>(null, async s =>
        {
            var results = new List<WatermarkResult>();
            Guid? locked = null;
            foreach (var report in ordered)
            {
                if (locked != report.ConversationId)
                {
                    await LockConversationAsync(s, report.ConversationId, cancellationToken);
                    locked = report.ConversationId;
                }

                var before = await LoadMemberAsync(s, report.ConversationId, report.UserId, cancellationToken);
                if (before is null)
                {
                    continue;
                }

                var from = Math.Max(before.DeliveredSeq, before.JoinedSeq);
                var target = await s.Sql(
                    """
                    SELECT id, seq FROM messages
                    WHERE conversation_id = @c AND seq > @from AND seq <= @to
                    ORDER BY seq DESC LIMIT 1
                    """)
                    .With("@c", report.ConversationId).With("@from", from).With("@to", report.UpToSeq)
                    .FirstOrDefaultAsync(r => new Tuple<Guid, long>(r.Guid(0), r.Long(1)), cancellationToken);
                if (target is null)
                {
                    continue;
                }

                await s.Sql(
                    "UPDATE participants SET delivered_seq = @seq, delivered_message_id = @id, receipts_at = @now WHERE conversation_id = @c AND user_id = @u")
                    .With("@seq", target.Item2).With("@id", target.Item1).With("@c", report.ConversationId).With("@u", report.UserId).With("@now", now)
                    .ExecuteAsync(cancellationToken);
                var after = before with { DeliveredSeq = target.Item2, DeliveredMessageId = target.Item1 };
                var senders = await SendersBetweenAsync(s, report.ConversationId, report.UserId, from, target.Item2, cancellationToken);
                results.Add(new WatermarkResult(report.ConversationId, before, after, senders, []));
            }

            return results;
        }, cancellationToken);
    }

    /// <summary>
    /// Senders (other than the user) of live messages in (from, to]: who learns that the user received them.
    /// Only current members: a sender who has left receives nothing more of the conversation.
    /// </summary>
    private static async Task<IReadOnlyList<string>> SendersBetweenAsync(
        SqlSession s, Guid conversationId, string userId, long from, long to, CancellationToken cancellationToken) =>
        await s.Sql(
            """
            SELECT DISTINCT m.sender_id FROM messages m
            JOIN participants p ON p.conversation_id = m.conversation_id AND p.user_id = m.sender_id AND p.left_at IS NULL
            WHERE m.conversation_id = @c AND m.seq > @from AND m.seq <= @to AND m.sender_id <> @u AND m.deleted_at IS NULL
            """)
            .With("@c", conversationId).With("@from", from).With("@to", to).With("@u", userId)
            .ListAsync(r => r.String(0), cancellationToken);
}
