namespace Parley.Server.Storage.Sql;

/// <summary>Sending, reading, editing and deleting messages, and the versions an edit keeps.</summary>
internal abstract partial class SqlChatStore
{
    /// <summary>
    /// A send joins the next group commit (<see cref="GroupCommit"/>) and completes after the transaction that holds
    /// it committed. Cancelling stops the wait for a place in the queue, never a queued send: once queued, it is
    /// written or fails.
    /// </summary>
    public async Task<StoreResult<SendResult, TRejection>> AppendMessageAsync<TRejection>(
        NewMessage message, Func<SendFacts, TRejection?> check, CancellationToken cancellationToken)
        where TRejection : class
    {
        var send = new PendingSend<TRejection>(message, check);
        await Sends.EnqueueAsync(send, cancellationToken);
        return await send.Outcome;
    }

    /// <summary>
    /// One send inside a batch's transaction, its conversation already locked: one round trip reads what the
    /// rules need, one writes the message, its event, the conversation's seq and the members' counters. Nothing
    /// is written unless the rules accept it, and the new seq follows the locked conversation's last one.
    /// </summary>
    private static async Task<StoreResult<SendResult, TRejection>> SendAsync<TRejection>(
        SqlSession s, NewMessage message, Func<SendFacts, TRejection?> check)
        where TRejection : class
    {
        var cancellationToken = CancellationToken.None; // a batch is not cancelled by one of its callers
        // Only the lookups the send needs: a lookup by a NULL key finds nothing, yet PostgreSQL plans it anew each time.
        var byKey = message.ClientMessageId is not null;
        var isReply = message.ReplyToId is not null;
        var (snapshot, existing, replyTarget) = await s.Sql(SendReadsSql[(byKey ? 1 : 0) + (isReply ? 2 : 0)])
            .With("@c", message.ConversationId).With("@s", message.SenderId).With("@k", message.ClientMessageId).With("@r", message.ReplyToId)
            .ReadResultsAsync(async results =>
            {
                var conversation = (await results.NextAsync(r => r.Conversation())).FirstOrDefault();
                var members = await results.NextAsync(r => r.Member());
                var existing = byKey ? (await results.NextAsync(r => r.Message())).FirstOrDefault() : null;
                var reply = isReply ? (await results.NextAsync(r => r.Message())).FirstOrDefault() : null;
                return (conversation is null ? null : new ConversationSnapshot(conversation, members), conversation is null ? null : existing, reply);
            }, cancellationToken);

        MessageVersion? original = null;
        if (existing is { EditedAt: not null, DeletedAt: null })
        {
            original = await s.Sql($"SELECT {SqlRow.VersionColumns} FROM message_edits WHERE message_id = @id AND version = 1")
                .With("@id", existing.Id)
                .FirstOrDefaultAsync(r => r.Version(), cancellationToken);
        }

        if (check(new SendFacts(snapshot, replyTarget, existing, original)) is { } rejection)
        {
            return rejection;
        }

        if (existing is not null)
        {
            return new SendResult(existing, Created: false, snapshot!.Members);
        }

        // What the database will hold: timestamps keep milliseconds in every store.
        var now = DateTimeOffset.FromUnixTimeMilliseconds(message.Now.ToUnixTimeMilliseconds());
        var seq = snapshot!.Conversation.LastSeq + 1;
        await s.Sql(SendWritesSql[PositionForm(s)])
            .With("@id", message.Id).With("@c", message.ConversationId).With("@seq", seq).With("@s", message.SenderId)
            .With("@type", message.MessageType).With("@content", message.Content).With("@reply", message.ReplyToId)
            .WithJson("@mentions", message.Mentions, StorageJsonContext.Default.IReadOnlyListMention)
            .WithJson("@media", message.Media, StorageJsonContext.Default.Media)
            .WithJson("@location", message.Location, StorageJsonContext.Default.Location)
            .With("@k", message.ClientMessageId).With("@now", now).With("@event", EventTypes.MessageCreated)
            .ExecuteAsync(cancellationToken);

        var stored = new Message(
            message.Id, message.ConversationId, seq, message.SenderId, message.MessageType, message.Content, message.ReplyToId,
            message.Mentions, message.Media, message.Location, message.ClientMessageId, now, EditedAt: null, DeletedAt: null);
        return new SendResult(stored, Created: true, snapshot.Members);
    }

    /// <summary>What a send writes, in the two forms of <see cref="PositionForm"/>.</summary>
    private static readonly string[] SendWritesSql = [SendWrites(positionAtInsert: false), SendWrites(positionAtInsert: true)];

    private static string SendWrites(bool positionAtInsert) =>
        $"""
        UPDATE conversations SET last_seq = @seq, last_activity_at = @now, last_message_id = @id WHERE id = @c;
        INSERT INTO messages (id, conversation_id, seq, sender_id, message_type, content, reply_to_id, mentions, media, location,
                              client_message_id, created_at)
        VALUES (@id, @c, @seq, @s, @type, @content, @reply, @mentions, @media, @location, @k, @now);
        -- Everyone else has one more unread message; the sender has read up to it.
        UPDATE participants SET unread_count = unread_count + 1, last_activity_at = @now
        WHERE conversation_id = @c AND left_at IS NULL AND user_id <> @s;
        UPDATE participants
        SET read_seq = @seq, read_message_id = @id, delivered_seq = @seq, delivered_message_id = @id, unread_count = 0,
            last_activity_at = @now, receipts_at = @now
        WHERE conversation_id = @c AND user_id = @s AND left_at IS NULL;
        {InsertEventSql("@c, @seq, @event, @id, @s, NULL, NULL, @now", positionAtInsert)}
        """;

    /// <summary>What a send reads, by need: [0] conversation and members, [1] + the earlier send with its key, [2] + the message it replies to, [3] both.</summary>
    private static readonly string[] SendReadsSql = SendReads();

    private static string[] SendReads()
    {
        var snapshot =
            $"""
            SELECT {SqlRow.ConversationColumns} FROM conversations c WHERE c.id = @c;
            SELECT {SqlRow.MemberColumns} FROM participants p
            WHERE p.conversation_id = @c AND p.left_at IS NULL ORDER BY p.joined_seq, p.joined_at, p.user_id;
            """;
        var byKey =
            $"""

            SELECT {SqlRow.MessageColumns} FROM messages m
            WHERE m.conversation_id = @c AND m.sender_id = @s AND m.client_message_id = @k;
            """;
        var reply =
            $"""

            SELECT {SqlRow.MessageColumns} FROM messages m WHERE m.id = @r;
            """;
        return [snapshot, snapshot + byKey, snapshot + reply, snapshot + byKey + reply];
    }

    public Task<Message?> GetMessageAsync(Guid messageId, CancellationToken cancellationToken) =>
        ReadAsync(s => LoadMessageAsync(s, messageId, cancellationToken), cancellationToken);

    public Task<IReadOnlyList<Message>> ListMessagesAsync(MessageQuery query, CancellationToken cancellationToken) =>
        ReadAsync<IReadOnlyList<Message>>(async s =>
        {
            // Newest first when paging backwards (or from the end), oldest first when paging forward.
            var sql = query.After is not null
                ? $"SELECT {SqlRow.MessageColumns} FROM messages m WHERE m.conversation_id = @c AND m.seq > @lo ORDER BY m.seq ASC LIMIT @n"
                : $"SELECT {SqlRow.MessageColumns} FROM messages m WHERE m.conversation_id = @c AND m.seq > @lo AND m.seq < @hi ORDER BY m.seq DESC LIMIT @n";
            return await s.Sql(sql)
                .With("@c", query.ConversationId)
                .With("@lo", Math.Max(query.VisibleAfterSeq, query.After ?? 0))
                .With("@hi", query.Before ?? long.MaxValue)
                .With("@n", query.Limit)
                .ListAsync(r => r.Message(), cancellationToken);
        }, cancellationToken);

    public Task<StoreResult<MessageChangeResult, TRejection>> EditMessageAsync<TRejection>(
        Guid messageId, string editorId, string? content, IReadOnlyList<Mention>? mentions,
        Func<MessageFacts, TRejection?> check, DateTimeOffset now, CancellationToken cancellationToken)
        where TRejection : class =>
        ChangeMessageAsync(messageId, check, async (s, facts) =>
        {
            var current = facts.Message;
            if (current.Content == content && MentionsEqual(current.Mentions, mentions))
            {
                return new MessageChangeResult(current, 0, facts.Conversation.Members);
            }

            var seq = await NextSeqAsync(s, current.ConversationId, now, touchActivity: false, cancellationToken);
            await s.Sql(
                """
                INSERT INTO message_edits (message_id, version, content, mentions, created_at, replaced_at)
                VALUES (@id, (SELECT COUNT(*) + 1 FROM message_edits WHERE message_id = @id), @content, @mentions, @since, @now);
                UPDATE messages SET content = @new, mentions = @newMentions, edited_at = @now WHERE id = @id;
                """)
                .With("@id", messageId).With("@content", current.Content)
                .WithJson("@mentions", current.Mentions, StorageJsonContext.Default.IReadOnlyListMention)
                .With("@since", current.EditedAt ?? current.CreatedAt).With("@now", now).With("@new", content)
                .WithJson("@newMentions", mentions is { Count: > 0 } ? mentions : null, StorageJsonContext.Default.IReadOnlyListMention)
                .ExecuteAsync(cancellationToken);
            await InsertEventAsync(
                s, new ConversationEvent(current.ConversationId, seq, EventTypes.MessageEdited, messageId, editorId, null, null, now),
                cancellationToken);
            var updated = await LoadMessageAsync(s, messageId, cancellationToken);
            return new MessageChangeResult(updated!, seq, facts.Conversation.Members);
        }, cancellationToken);

    public Task<StoreResult<MessageChangeResult, TRejection>> DeleteMessageAsync<TRejection>(
        Guid messageId, string actorId, Func<MessageFacts, TRejection?> check, DateTimeOffset now, CancellationToken cancellationToken)
        where TRejection : class =>
        ChangeMessageAsync(messageId, check, async (s, facts) =>
        {
            var current = facts.Message;
            if (current.DeletedAt is not null)
            {
                return new MessageChangeResult(current, 0, facts.Conversation.Members);
            }

            var seq = await NextSeqAsync(s, current.ConversationId, now, touchActivity: false, cancellationToken);
            await s.Sql(
                """
                UPDATE messages SET content = NULL, mentions = NULL, media = NULL, location = NULL, deleted_at = @now WHERE id = @id;
                DELETE FROM message_edits WHERE message_id = @id;
                -- Members who had not read it (and could see it) have one unread message fewer.
                UPDATE participants SET unread_count = unread_count - 1
                WHERE conversation_id = @c AND left_at IS NULL AND user_id <> @sender
                  AND read_seq < @mseq AND joined_seq < @mseq AND unread_count > 0;
                """)
                .With("@now", now).With("@id", messageId).With("@c", current.ConversationId)
                .With("@sender", current.SenderId).With("@mseq", current.Seq)
                .ExecuteAsync(cancellationToken);
            await InsertEventAsync(
                s, new ConversationEvent(current.ConversationId, seq, EventTypes.MessageDeleted, messageId, actorId, null, null, now),
                cancellationToken);
            var tombstone = await LoadMessageAsync(s, messageId, cancellationToken);
            return new MessageChangeResult(tombstone!, seq, facts.Conversation.Members);
        }, cancellationToken);

    public Task<IReadOnlyList<MessageVersion>> GetEditsAsync(Guid messageId, CancellationToken cancellationToken) =>
        ReadAsync<IReadOnlyList<MessageVersion>>(
            async s => await s.Sql($"SELECT {SqlRow.VersionColumns} FROM message_edits WHERE message_id = @id ORDER BY version")
                .With("@id", messageId)
                .ListAsync(r => r.Version(), cancellationToken),
            cancellationToken);

    /// <summary>
    /// An edit or delete: locks the message's conversation (a message never changes conversation, so it is
    /// read first), reads the message and its conversation again under the lock, asks the rules, then applies
    /// <paramref name="change"/>. Refused when the message is unknown.
    /// </summary>
    private async Task<StoreResult<MessageChangeResult, TRejection>> ChangeMessageAsync<TRejection>(
        Guid messageId, Func<MessageFacts, TRejection?> check, Func<SqlSession, MessageFacts, Task<MessageChangeResult>> change,
        CancellationToken cancellationToken)
        where TRejection : class
    {
        if (await GetMessageAsync(messageId, cancellationToken) is not { } unlocked)
        {
            return StoreRefusal.MessageNotFound;
        }

        return await WriteAsync<StoreResult<MessageChangeResult, TRejection>>(unlocked.ConversationId, async s =>
        {
            var message = (await LoadMessageAsync(s, messageId, cancellationToken))!;
            var facts = new MessageFacts(message, (await LoadSnapshotAsync(s, message.ConversationId, cancellationToken))!);
            return check(facts) is { } rejection ? rejection : await change(s, facts);
        }, r => r.IsApplied, cancellationToken);
    }

    private static bool MentionsEqual(IReadOnlyList<Mention>? a, IReadOnlyList<Mention>? b) =>
        (a is null || a.Count == 0) ? (b is null || b.Count == 0) : b is not null && a.SequenceEqual(b);

    /// <summary>A send in a group commit: <see cref="SendAsync"/> inside the batch's transaction, the outcome after its commit.</summary>
    private sealed class PendingSend<TRejection>(NewMessage message, Func<SendFacts, TRejection?> check) : PendingWrite
        where TRejection : class
    {
        private readonly TaskCompletionSource<StoreResult<SendResult, TRejection>> _outcome = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private StoreResult<SendResult, TRejection> _result;

        public Task<StoreResult<SendResult, TRejection>> Outcome => _outcome.Task;

        public override Guid ConversationId => message.ConversationId;

        public override async Task RunAsync(SqlSession session) => _result = await SendAsync(session, message, check);

        public override void Complete() => _outcome.TrySetResult(_result);

        public override void Fail(Exception exception) => _outcome.TrySetException(exception);
    }
}
