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
    /// One send inside a batch's transaction, its conversation already locked (or locked by its read): one round trip
    /// reads what the rules need, one writes the message, its event, the conversation's seq and the members' counters.
    /// Nothing is written unless the rules accept it, and the new seq follows the locked conversation's last one.
    /// </summary>
    private static async Task<StoreResult<SendResult, TRejection>> SendAsync<TRejection>(
        SqlSession s, NewMessage message, Func<SendFacts, TRejection?> check)
        where TRejection : class
    {
        var cancellationToken = CancellationToken.None; // a batch is not cancelled by one of its callers
        var read = await BindSendReads(s.Sql(SendReadsText(s.Dialect, message)), message)
            .ReadResultsAsync(results => ReadSendAsync(results, message), cancellationToken);
        var (outcome, seq) = await DecideSendAsync(s, message, check, read);
        if (outcome is { } decided)
        {
            return decided;
        }

        await BindSendWrites(s.Sql(SendWritesSql[WriteForm(s)]), message, seq).ExecuteAsync(cancellationToken);
        return Created(message, seq, read);
    }

    /// <summary>
    /// The sends of a batch that are its first write to their conversation, together (where the database is a round trip
    /// away, <see cref="SqlDialect.BindsByPosition"/>): their reads go in one round trip, then the rules run on each,
    /// then the writes of those accepted go in one more. Two round trips for the lot instead of two per send, so a
    /// lane's batch costs about the same time however many sends it carries. No two of them share a conversation, so
    /// none reads what another writes; the batch's other writes run after them, one by one, as before.
    /// </summary>
    private static async Task SendTogetherAsync(SqlSession s, IReadOnlyList<PendingSendWrite> sends)
    {
        var cancellationToken = CancellationToken.None;
        var reads = s.Pipeline();
        foreach (var send in sends)
        {
            BindSendReads(reads.Add(SendReadsText(s.Dialect, send.Message)), send.Message);
        }

        var facts = await reads.ReadResultsAsync(async results =>
        {
            var all = new SendRead[sends.Count];
            for (var i = 0; i < sends.Count; i++)
            {
                all[i] = await ReadSendAsync(results, sends[i].Message);
            }

            return all;
        }, cancellationToken);

        var writes = s.Pipeline();
        for (var i = 0; i < sends.Count; i++)
        {
            if (await sends[i].DecideAsync(s, facts[i]) is { } seq)
            {
                BindSendWrites(writes.Add(SendWritesSql[WriteForm(s)]), sends[i].Message, seq);
            }
        }

        await writes.ExecuteAsync(cancellationToken);
    }

    /// <summary>Runs a batch's writes: sends that can go together first (<see cref="SendTogetherAsync"/>), the rest in their order.</summary>
    private static async Task RunBatchAsync(SqlSession s, IReadOnlyList<PendingWrite> batch)
    {
        List<PendingSendWrite> together = [];
        List<PendingWrite> after = [];
        if (s.Dialect.BindsByPosition && batch.Count > 1)
        {
            var touched = new HashSet<Guid>();
            foreach (var write in batch)
            {
                var first = true;
                foreach (var conversation in write.Conversations)
                {
                    first &= touched.Add(conversation);
                }

                if (first && write is PendingSendWrite send)
                {
                    together.Add(send);
                }
                else
                {
                    after.Add(write);
                }
            }
        }

        if (together.Count < 2)
        {
            foreach (var write in batch)
            {
                await write.RunAsync(s);
            }

            return;
        }

        await SendTogetherAsync(s, together);
        foreach (var write in after)
        {
            await write.RunAsync(s);
        }
    }

    /// <summary>What a send's reads found.</summary>
    private sealed record SendRead(ConversationSnapshot? Snapshot, Message? Existing, Message? ReplyTarget);

    private static string SendReadsText(SqlDialect dialect, NewMessage message) =>
        SendReadsFor(dialect)[(message.ClientMessageId is not null ? 1 : 0) + (message.ReplyToId is not null ? 2 : 0)];

    // Only the lookups the send needs: a lookup by a NULL key finds nothing, yet PostgreSQL plans it anew each time.
    private static SqlCommand BindSendReads(SqlCommand command, NewMessage message) =>
        command.With("@c", message.ConversationId).With("@s", message.SenderId).With("@k", message.ClientMessageId).With("@r", message.ReplyToId);

    private static async Task<SendRead> ReadSendAsync(SqlResults results, NewMessage message)
    {
        var conversation = (await results.NextAsync(r => r.Conversation())).FirstOrDefault();
        var members = await results.NextAsync(r => r.Member());
        var existing = message.ClientMessageId is not null ? (await results.NextAsync(r => r.Message())).FirstOrDefault() : null;
        var reply = message.ReplyToId is not null ? (await results.NextAsync(r => r.Message())).FirstOrDefault() : null;
        return conversation is null ? new SendRead(null, null, reply) : new SendRead(new ConversationSnapshot(conversation, members), existing, reply);
    }

    /// <summary>
    /// Asks the rules about a send: the outcome when it writes nothing (a rejection, or the message an earlier send with
    /// its key stored), else the seq it takes.
    /// </summary>
    private static async Task<(StoreResult<SendResult, TRejection>? Outcome, long Seq)> DecideSendAsync<TRejection>(
        SqlSession s, NewMessage message, Func<SendFacts, TRejection?> check, SendRead read)
        where TRejection : class
    {
        var (snapshot, existing, replyTarget) = read;
        MessageVersion? original = null;
        if (existing is { EditedAt: not null, DeletedAt: null })
        {
            original = await s.Sql($"SELECT {SqlRow.VersionColumns} FROM message_edits WHERE message_id = @id AND version = 1")
                .With("@id", existing.Id)
                .FirstOrDefaultAsync(r => r.Version(), CancellationToken.None);
        }

        if (check(new SendFacts(snapshot, replyTarget, existing, original)) is { } rejection)
        {
            return (rejection, 0);
        }

        if (existing is not null)
        {
            return (new SendResult(existing, Created: false, snapshot!.Members), 0);
        }

        return (null, snapshot!.Conversation.LastSeq + 1);
    }

    // What the database will hold: timestamps keep milliseconds in every store.
    private static DateTimeOffset StoredTime(NewMessage message) => DateTimeOffset.FromUnixTimeMilliseconds(message.Now.ToUnixTimeMilliseconds());

    private static SqlCommand BindSendWrites(SqlCommand command, NewMessage message, long seq) =>
        command
            .With("@id", message.Id).With("@c", message.ConversationId).With("@seq", seq).With("@s", message.SenderId)
            .With("@type", message.MessageType).With("@content", message.Content).With("@reply", message.ReplyToId)
            .WithJson("@mentions", message.Mentions, StorageJsonContext.Default.IReadOnlyListMention)
            .WithJson("@media", message.Media, StorageJsonContext.Default.Media)
            .WithJson("@location", message.Location, StorageJsonContext.Default.Location)
            .With("@k", message.ClientMessageId).With("@now", StoredTime(message)).With("@event", EventTypes.MessageCreated);

    private static SendResult Created(NewMessage message, long seq, SendRead read) =>
        new(new Message(
                message.Id, message.ConversationId, seq, message.SenderId, message.MessageType, message.Content, message.ReplyToId,
                message.Mentions, message.Media, message.Location, message.ClientMessageId, StoredTime(message), EditedAt: null, DeletedAt: null),
            Created: true, read.Snapshot!.Members);

    /// <summary>
    /// What a send writes: [0] and [1] as separate statements in the two forms of <see cref="PositionForm"/>, [2] as
    /// one statement (<see cref="WriteForm"/>).
    /// </summary>
    private static readonly string[] SendWritesSql =
    [
        SendWrites(positionAtInsert: false), SendWrites(positionAtInsert: true),
        $"""
        WITH conversation AS (
            {SendConversationUpdate}),
        message AS (
            {SendMessageInsert}),
        members AS (
            {SendMembersUpdate})
        {InsertEventSql(SendEventValues, positionAtInsert: false)}
        """,
    ];

    private static string SendWrites(bool positionAtInsert) =>
        $"""
        {SendConversationUpdate};
        {SendMessageInsert};
        -- Everyone else has one more unread message; the sender has read up to it. (Two statements: on SQLite one with
        -- CASE for both cost the single writer more, benchmarks.md item 16.)
        UPDATE participants SET unread_count = unread_count + 1, last_activity_at = @now
        WHERE conversation_id = @c AND left_at IS NULL AND user_id <> @s;
        UPDATE participants
        SET read_seq = @seq, read_message_id = @id, delivered_seq = @seq, delivered_message_id = @id, unread_count = 0,
            last_activity_at = @now, receipts_at = @now
        WHERE conversation_id = @c AND user_id = @s AND left_at IS NULL;
        {InsertEventSql(SendEventValues, positionAtInsert)}
        """;

    private const string SendConversationUpdate =
        "UPDATE conversations SET last_seq = @seq, last_activity_at = @now, last_message_id = @id WHERE id = @c";

    private const string SendMessageInsert =
        """
        INSERT INTO messages (id, conversation_id, seq, sender_id, message_type, content, reply_to_id, mentions, media, location,
                              client_message_id, created_at)
        VALUES (@id, @c, @seq, @s, @type, @content, @reply, @mentions, @media, @location, @k, @now)
        """;

    // In the one-statement form: everyone else has one more unread message; the sender has read (and received) up to
    // it. One UPDATE for both (none of the columns it sets is indexed, so the rows stay heap-only updates).
    private const string SendMembersUpdate =
        """
        UPDATE participants
        SET unread_count = CASE WHEN user_id = @s THEN 0 ELSE unread_count + 1 END,
            read_seq = CASE WHEN user_id = @s THEN @seq ELSE read_seq END,
            read_message_id = CASE WHEN user_id = @s THEN @id ELSE read_message_id END,
            delivered_seq = CASE WHEN user_id = @s THEN @seq ELSE delivered_seq END,
            delivered_message_id = CASE WHEN user_id = @s THEN @id ELSE delivered_message_id END,
            receipts_at = CASE WHEN user_id = @s THEN @now ELSE receipts_at END,
            last_activity_at = @now
        WHERE conversation_id = @c AND left_at IS NULL
        """;

    private const string SendEventValues = "@c, @seq, @event, @id, @s, NULL, NULL, @now";

    /// <summary>
    /// Which form of <see cref="SendWritesSql"/> the session runs: one statement where the database takes several
    /// writes in one (<see cref="SqlDialect.WritesInOneStatement"/>; each statement costs PostgreSQL a bind, an
    /// executor start and a snapshot), else the statements of <see cref="PositionForm"/>.
    /// </summary>
    private static int WriteForm(SqlSession s) => s.Dialect.WritesInOneStatement && PositionForm(s) == 0 ? 2 : PositionForm(s);

    /// <summary>
    /// What a send reads, by need: [0] conversation and members, [1] + the earlier send with its key, [2] + the message
    /// it replies to, [3] both. Where write transactions lock their conversations, the conversation's row is read
    /// with its lock (<see cref="PendingWrite.LocksItsConversation"/>).
    /// </summary>
    private static string[] SendReadsFor(SqlDialect dialect) => dialect.LocksConversations ? SendReadsLocking : SendReadsPlain;

    private static readonly string[] SendReadsPlain = SendReads(lockRow: string.Empty);

    private static readonly string[] SendReadsLocking = SendReads(lockRow: " FOR UPDATE");

    private static string[] SendReads(string lockRow)
    {
        var snapshot =
            $"""
            SELECT {SqlRow.ConversationColumns} FROM conversations c WHERE c.id = @c{lockRow};
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

    /// <summary>A send waiting for its batch, seen without its rules' type (<see cref="SendTogetherAsync"/>).</summary>
    private abstract class PendingSendWrite : PendingWrite
    {
        public abstract NewMessage Message { get; }

        /// <summary>Asks the rules on what the batch read: the seq the send takes when it writes, else null (its outcome is set).</summary>
        public abstract Task<long?> DecideAsync(SqlSession session, SendRead read);
    }

    /// <summary>
    /// A send in a group commit: <see cref="SendAsync"/> (or, with others, <see cref="SendTogetherAsync"/>) inside the
    /// batch's transaction, the outcome after its commit.
    /// </summary>
    private sealed class PendingSend<TRejection>(NewMessage message, Func<SendFacts, TRejection?> check) : PendingSendWrite
        where TRejection : class
    {
        private readonly TaskCompletionSource<StoreResult<SendResult, TRejection>> _outcome = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private StoreResult<SendResult, TRejection> _result;

        public Task<StoreResult<SendResult, TRejection>> Outcome => _outcome.Task;

        public override NewMessage Message => message;

        public override Guid ConversationId => message.ConversationId;

        // Its first statement reads the conversation's row with its lock (SendReadsFor).
        public override bool LocksItsConversation => true;

        public override async Task RunAsync(SqlSession session) => _result = await SendAsync(session, message, check);

        public override async Task<long?> DecideAsync(SqlSession session, SendRead read)
        {
            var (outcome, seq) = await DecideSendAsync(session, message, check, read);
            if (outcome is { } decided)
            {
                _result = decided;
                return null;
            }

            // Set now, applied only if the batch commits (Complete); a failed batch runs the send again (RunAsync).
            _result = Created(message, seq, read);
            return seq;
        }

        public override void Complete() => _outcome.TrySetResult(_result);

        public override void Fail(Exception exception) => _outcome.TrySetException(exception);
    }
}
