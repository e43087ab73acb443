using System.Data.Common;
using System.Globalization;
using System.Text;
using Parley.Server.Hosting;
using Parley.Server.Messages;
using Parley.Server.Storage.Migrations;

namespace Parley.Server.Storage.Sql;

/// <summary>
/// The storage logic shared by every SQL database: the same statements, in the same transactions, with the
/// differences (value binding, transaction start, conversation locking, migrations) left to a
/// <see cref="SqlDialect"/> and the subclass.
/// <para>
/// Concurrency: every write transaction that changes a conversation first locks it
/// (<see cref="SqlDialect.LockConversationSql"/>) and only then reads the facts its rules need, so rules see
/// the latest committed state and two writers of one conversation never interleave. The lock is held until
/// commit, so seqs are committed in the order they are taken. A transaction locks at most one conversation,
/// except delivered batches, which lock theirs in id order: no deadlocks.
/// </para>
/// </summary>
internal abstract partial class SqlChatStore(SqlDialect dialect) : IChatStore
{
    private volatile bool _migrated;

    protected SqlDialect Dialect => dialect;

    protected abstract Task<DbConnection> OpenConnectionAsync(CancellationToken cancellationToken);

    protected abstract Task<DbTransaction> BeginWriteTransactionAsync(DbConnection connection, CancellationToken cancellationToken);

    /// <summary>Admission to writing (SQLite: its single writer); null when writers need no queue.</summary>
    protected virtual ValueTask<IDisposable?> EnterWriteAsync(CancellationToken cancellationToken) => ValueTask.FromResult<IDisposable?>(null);

    public abstract Task<IReadOnlyList<string>> MigrateAsync(CancellationToken cancellationToken);

    /// <summary>
    /// Applies the dialect's scripts that <c>schema_migrations</c> does not list yet, each in a transaction with
    /// its record, in version order; then the store is ready. The caller excludes concurrent migrators.
    /// </summary>
    /// <summary>Applies the scripts the ledger does not list, each in its own transaction with its record; returns their names.</summary>
    protected async Task<IReadOnlyList<string>> ApplyMigrationsAsync(DbConnection connection, string createLedgerSql, CancellationToken cancellationToken)
    {
        // Migrations may run longer than a request; they get a generous timeout of their own.
        const int MigrationTimeoutSeconds = 300;
        var ledger = new SqlSession(connection, null, dialect);
        await ledger.Sql(createLedgerSql).ExecuteAsync(cancellationToken);
        var applied = (await ledger.Sql("SELECT version FROM schema_migrations").ListAsync(r => r.Long(0), cancellationToken)).ToHashSet();
        var names = new List<string>();
        foreach (var script in MigrationScripts.For(dialect.Provider).Where(m => !applied.Contains(m.Version)))
        {
            await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
            var s = new SqlSession(connection, transaction, dialect);
            await s.Sql(script.Sql).WithTimeout(MigrationTimeoutSeconds).ExecuteAsync(cancellationToken);
            await s.Sql("INSERT INTO schema_migrations (version, name, applied_at) VALUES (@v, @n, @t)")
                .With("@v", script.Version).With("@n", script.Name).With("@t", DateTimeOffset.UtcNow)
                .ExecuteAsync(cancellationToken);
            await transaction.CommitAsync(cancellationToken);
            names.Add(script.FullName);
        }

        _migrated = true;
        return names;
    }

    public async Task<bool> IsReadyAsync(CancellationToken cancellationToken)
    {
        if (!_migrated)
        {
            return false;
        }

        var session = await ReadSessionAsync(cancellationToken);
        await using var _ = session.Connection;
        return await session.Session.Sql("SELECT 1").ScalarAsync(cancellationToken) is not null;
    }

    private async Task<(SqlSession Session, DbConnection Connection)> ReadSessionAsync(CancellationToken cancellationToken)
    {
        var connection = await OpenConnectionAsync(cancellationToken);
        return (new SqlSession(connection, null, dialect), connection);
    }

    /// <summary>Runs a read on its own connection.</summary>
    private async Task<T> ReadAsync<T>(Func<SqlSession, Task<T>> work, CancellationToken cancellationToken)
    {
        await using var connection = await OpenConnectionAsync(cancellationToken);
        return await work(new SqlSession(connection, null, dialect));
    }

    /// <summary>
    /// Runs <paramref name="work"/> in a write transaction, with <paramref name="conversationId"/> locked first
    /// when given, and commits only on success. The commit is not cancellable: once the rules accepted a
    /// change, it is written or nothing is.
    /// </summary>
    private async Task<Result<T>> WriteAsync<T>(Guid? conversationId, Func<SqlSession, Task<Result<T>>> work, CancellationToken cancellationToken)
    {
        using var writer = await EnterWriteAsync(cancellationToken);
        await using var connection = await OpenConnectionAsync(cancellationToken);
        await using var transaction = await BeginWriteTransactionAsync(connection, cancellationToken);
        var session = new SqlSession(connection, transaction, dialect);
        if (conversationId is { } id)
        {
            await LockConversationAsync(session, id, cancellationToken);
        }

        var result = await work(session);
        if (result.IsSuccess)
        {
            await transaction.CommitAsync(CancellationToken.None);
        }
        else
        {
            await transaction.RollbackAsync(CancellationToken.None);
        }

        return result;
    }

    private Task LockConversationAsync(SqlSession session, Guid conversationId, CancellationToken cancellationToken) =>
        dialect.LockConversationSql.Length == 0
            ? Task.CompletedTask
            : session.Sql(dialect.LockConversationSql).With("@c", conversationId).ExecuteAsync(cancellationToken);

    // ---- conversations -------------------------------------------------------------------------------

    public async Task<CreateConversationResult> CreateConversationAsync(NewConversation conversation, CancellationToken cancellationToken)
    {
        var result = await WriteAsync<CreateConversationResult>(null, async s =>
        {
            var now = conversation.Now;
            // A concurrent create of the same direct pair waits on the unique key, then inserts nothing.
            var inserted = await s.Sql(
                """
                INSERT INTO conversations (id, type, name, created_by, created_at, last_activity_at, last_seq, direct_key)
                VALUES (@id, @type, @name, @by, @now, @now, 1, @key)
                ON CONFLICT (direct_key) DO NOTHING
                """)
                .With("@id", conversation.Id).With("@type", conversation.Type).With("@name", conversation.Name)
                .With("@by", conversation.CreatedBy).With("@now", now).With("@key", conversation.DirectKey)
                .ExecuteAsync(cancellationToken);
            if (inserted == 0)
            {
                var existingId = await s.Sql("SELECT id FROM conversations WHERE direct_key = @k")
                    .With("@k", conversation.DirectKey).FirstOrDefaultAsync(r => (object)r.Guid(0), cancellationToken);
                var existing = await LoadSnapshotAsync(s, (Guid)existingId!, cancellationToken);
                return new CreateConversationResult(existing!, Created: false);
            }

            foreach (var (userId, role) in conversation.Members)
            {
                await InsertOrRejoinAsync(s, conversation.Id, userId, role, joinedSeq: 0, now, cancellationToken);
            }

            // Creation is the conversation's first event (seq 1), so a replay from the start shows it.
            await InsertEventAsync(
                s, new ConversationEvent(conversation.Id, 1, EventTypes.ConversationCreated, null, conversation.CreatedBy, null, null, now),
                cancellationToken);
            // The roster it was created with: with later participant events, the roster as of any seq (a former
            // member's replay shows the conversation as it was when the membership ended).
            await s.Sql("UPDATE conversation_events SET members = @m WHERE conversation_id = @c AND seq = 1")
                .With("@c", conversation.Id)
                .WithJson("@m", conversation.Members.Select(m => new RosterEntry(m.UserId, m.Role)).ToList(), ParleyJsonContext.Default.IReadOnlyListRosterEntry)
                .ExecuteAsync(cancellationToken);

            var snapshot = await LoadSnapshotAsync(s, conversation.Id, cancellationToken);
            return new CreateConversationResult(snapshot!, Created: true);
        }, cancellationToken);
        return result.Value!;
    }

    public Task<ConversationSnapshot?> GetConversationAsync(Guid conversationId, CancellationToken cancellationToken) =>
        ReadAsync(s => LoadSnapshotAsync(s, conversationId, cancellationToken), cancellationToken);

    public Task<MemberRecord?> GetMemberAsync(Guid conversationId, string userId, CancellationToken cancellationToken) =>
        ReadAsync(s => LoadMemberAsync(s, conversationId, userId, cancellationToken), cancellationToken);

    public Task<IReadOnlyList<ConversationListItem>> ListConversationsAsync(
        string userId, ConversationPosition? after, int limit, CancellationToken cancellationToken) =>
        ReadAsync<IReadOnlyList<ConversationListItem>>(async s =>
        {
            var rows = await s.Sql(
                $"""
                SELECT {SqlRow.MemberColumns}, {SqlRow.ConversationColumns}
                FROM participants p JOIN conversations c ON c.id = p.conversation_id
                WHERE p.user_id = @u AND p.left_at IS NULL
                  AND (@t IS NULL OR p.last_activity_at < @t OR (p.last_activity_at = @t AND p.conversation_id < @cid))
                ORDER BY p.last_activity_at DESC, p.conversation_id DESC
                LIMIT @limit
                """)
                .With("@u", userId).With("@t", after?.LastActivityAt).With("@cid", after?.ConversationId).With("@limit", limit)
                .ListAsync(r => (Caller: r.Member(), Conversation: r.Conversation(SqlRow.MemberColumnCount)), cancellationToken);
            if (rows.Count == 0)
            {
                return [];
            }

            var members = await LoadMembersAsync(s, rows.Select(r => r.Conversation.Id).ToList(), cancellationToken);
            var lastMessageIds = rows.Where(r => r.Conversation.LastMessageId is not null).Select(r => r.Conversation.LastMessageId!.Value).ToList();
            var lastMessages = new Dictionary<Guid, Message>();
            if (lastMessageIds.Count > 0)
            {
                var command = s.Sql($"SELECT {SqlRow.MessageColumns} FROM messages m WHERE m.id IN ({Placeholders("@m", lastMessageIds.Count)})");
                for (var i = 0; i < lastMessageIds.Count; i++)
                {
                    command.With($"@m{i}", lastMessageIds[i]);
                }

                foreach (var message in await command.ListAsync(r => r.Message(), cancellationToken))
                {
                    lastMessages[message.Id] = message;
                }
            }

            return rows.Select(row =>
            {
                var last = row.Conversation.LastMessageId is { } lastId && lastMessages.TryGetValue(lastId, out var m) ? m : null;
                var snapshot = new ConversationSnapshot(row.Conversation, members.GetValueOrDefault(row.Conversation.Id) ?? []);
                return new ConversationListItem(snapshot, row.Caller, last);
            }).ToList();
        }, cancellationToken);

    public Task<Result<MembershipResult>> ChangeMembershipAsync(
        Guid conversationId, string actorId, Func<ConversationSnapshot, Result<IReadOnlyList<MembershipChange>>> decide,
        DateTimeOffset now, CancellationToken cancellationToken) =>
        WriteAsync<MembershipResult>(conversationId, async s =>
        {
            var before = await LoadSnapshotAsync(s, conversationId, cancellationToken);
            if (before is null)
            {
                return ApiError.NotFound("Conversation");
            }

            var plan = decide(before);
            if (!plan.IsSuccess)
            {
                return plan.Error!;
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
        }, cancellationToken);

    // ---- messages --------------------------------------------------------------------------------------

    public Task<Result<SendResult>> AppendMessageAsync(NewMessage message, Func<SendFacts, ApiError?> check, CancellationToken cancellationToken) =>
        WriteAsync<SendResult>(message.ConversationId, async s =>
        {
            var snapshot = await LoadSnapshotAsync(s, message.ConversationId, cancellationToken);
            var replyTarget = message.ReplyToId is { } replyId ? await LoadMessageAsync(s, replyId, cancellationToken) : null;
            Message? existing = null;
            if (message.ClientMessageId is not null && snapshot is not null)
            {
                existing = await s.Sql(
                    $"""
                    SELECT {SqlRow.MessageColumns} FROM messages m
                    WHERE m.conversation_id = @c AND m.sender_id = @s AND m.client_message_id = @k
                    """)
                    .With("@c", message.ConversationId).With("@s", message.SenderId).With("@k", message.ClientMessageId)
                    .FirstOrDefaultAsync(r => r.Message(), cancellationToken);
            }

            MessageVersion? original = null;
            if (existing is { EditedAt: not null, DeletedAt: null })
            {
                original = await s.Sql("SELECT version, content, mentions, created_at, replaced_at FROM message_edits WHERE message_id = @id AND version = 1")
                    .With("@id", existing.Id)
                    .FirstOrDefaultAsync(
                        r => new MessageVersion(r.Int(0), r.NullableString(1), r.Json(2, ParleyJsonContext.Default.IReadOnlyListMention), r.Time(3), r.Time(4)),
                        cancellationToken);
            }

            if (check(new SendFacts(snapshot, replyTarget, existing, original)) is { } error)
            {
                return error;
            }

            if (existing is not null)
            {
                return new SendResult(existing, Created: false, snapshot!.Members);
            }

            var now = message.Now;
            var seq = await NextSeqAsync(s, message.ConversationId, now, touchActivity: true, cancellationToken);
            await s.Sql(
                """
                INSERT INTO messages (id, conversation_id, seq, sender_id, message_type, content, reply_to_id, mentions, media, location,
                                      client_message_id, created_at)
                VALUES (@id, @c, @seq, @s, @type, @content, @reply, @mentions, @media, @location, @k, @now);
                UPDATE conversations SET last_message_id = @id WHERE id = @c;
                -- Everyone else has one more unread message; the sender has read up to it.
                UPDATE participants SET unread_count = unread_count + 1, last_activity_at = @now
                WHERE conversation_id = @c AND left_at IS NULL AND user_id <> @s;
                UPDATE participants
                SET read_seq = @seq, read_message_id = @id, delivered_seq = @seq, delivered_message_id = @id, unread_count = 0,
                    last_activity_at = @now, receipts_at = @now
                WHERE conversation_id = @c AND user_id = @s AND left_at IS NULL;
                """)
                .With("@id", message.Id).With("@c", message.ConversationId).With("@seq", seq).With("@s", message.SenderId)
                .With("@type", message.MessageType).With("@content", message.Content).With("@reply", message.ReplyToId)
                .WithJson("@mentions", message.Mentions, ParleyJsonContext.Default.IReadOnlyListMention)
                .WithJson("@media", message.Media, ParleyJsonContext.Default.Media)
                .WithJson("@location", message.Location, ParleyJsonContext.Default.Location)
                .With("@k", message.ClientMessageId).With("@now", now)
                .ExecuteAsync(cancellationToken);
            await InsertEventAsync(
                s, new ConversationEvent(message.ConversationId, seq, EventTypes.MessageCreated, message.Id, message.SenderId, null, null, now),
                cancellationToken);

            var stored = await LoadMessageAsync(s, message.Id, cancellationToken);
            return new SendResult(stored!, Created: true, snapshot!.Members);
        }, cancellationToken);

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

    public Task<Result<MessageChangeResult>> EditMessageAsync(
        Guid messageId, string editorId, string? content, IReadOnlyList<Mention>? mentions,
        Func<MessageFacts, ApiError?> check, DateTimeOffset now, CancellationToken cancellationToken) =>
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
                .WithJson("@mentions", current.Mentions, ParleyJsonContext.Default.IReadOnlyListMention)
                .With("@since", current.EditedAt ?? current.CreatedAt).With("@now", now).With("@new", content)
                .WithJson("@newMentions", mentions is { Count: > 0 } ? mentions : null, ParleyJsonContext.Default.IReadOnlyListMention)
                .ExecuteAsync(cancellationToken);
            await InsertEventAsync(
                s, new ConversationEvent(current.ConversationId, seq, EventTypes.MessageEdited, messageId, editorId, null, null, now),
                cancellationToken);
            var updated = await LoadMessageAsync(s, messageId, cancellationToken);
            return new MessageChangeResult(updated!, seq, facts.Conversation.Members);
        }, cancellationToken);

    public Task<Result<MessageChangeResult>> DeleteMessageAsync(
        Guid messageId, string actorId, Func<MessageFacts, ApiError?> check, DateTimeOffset now, CancellationToken cancellationToken) =>
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
            async s => await s.Sql("SELECT version, content, mentions, created_at, replaced_at FROM message_edits WHERE message_id = @id ORDER BY version")
                .With("@id", messageId)
                .ListAsync(
                    r => new MessageVersion(r.Int(0), r.NullableString(1), r.Json(2, ParleyJsonContext.Default.IReadOnlyListMention), r.Time(3), r.Time(4)),
                    cancellationToken),
            cancellationToken);

    // ---- receipts --------------------------------------------------------------------------------------

    public Task<Result<WatermarkResult>> AdvanceReadAsync(
        Guid conversationId, string userId, Guid messageId, DateTimeOffset now, CancellationToken cancellationToken) =>
        WriteAsync<WatermarkResult>(conversationId, async s =>
        {
            var snapshot = await LoadSnapshotAsync(s, conversationId, cancellationToken);
            var before = snapshot?.Find(userId);
            if (before is null)
            {
                return ApiError.NotFound("Conversation");
            }

            var message = await LoadMessageAsync(s, messageId, cancellationToken);
            if (message is null || message.ConversationId != conversationId || message.Seq <= before.JoinedSeq)
            {
                return ApiError.NotFound("Message");
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
        }, cancellationToken);

    public async Task<IReadOnlyList<WatermarkResult>> AdvanceDeliveredAsync(
        IReadOnlyList<DeliveryReport> reports, DateTimeOffset now, CancellationToken cancellationToken)
    {
        // One transaction for the batch; conversations locked in id order so concurrent batches cannot deadlock.
        var ordered = reports.OrderBy(r => r.ConversationId).ThenBy(r => r.UserId, StringComparer.Ordinal).ToList();
        var result = await WriteAsync<IReadOnlyList<WatermarkResult>>(null, async s =>
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
        return result.Value!;
    }

    public Task<IReadOnlyList<ConversationEvent>> ListEventsAsync(Guid conversationId, long afterSeq, int limit, CancellationToken cancellationToken) =>
        ReadAsync<IReadOnlyList<ConversationEvent>>(
            async s => await s.Sql(
                """
                SELECT conversation_id, seq, type, message_id, actor_id, user_id, role, created_at
                FROM conversation_events WHERE conversation_id = @c AND seq > @after ORDER BY seq LIMIT @n
                """)
                .With("@c", conversationId).With("@after", afterSeq).With("@n", limit)
                .ListAsync(
                    r => new ConversationEvent(
                        r.Guid(0), r.Long(1), r.String(2), r.NullableGuid(3), r.String(4), r.NullableString(5), r.NullableString(6), r.Time(7)),
                    cancellationToken),
            cancellationToken);

    // ---- helpers ---------------------------------------------------------------------------------------

    /// <summary>Takes the conversation's next seq, inside the transaction that holds the conversation's lock.</summary>
    private static async Task<long> NextSeqAsync(SqlSession s, Guid conversationId, DateTimeOffset now, bool touchActivity, CancellationToken cancellationToken)
    {
        var sql = touchActivity
            ? "UPDATE conversations SET last_seq = last_seq + 1, last_activity_at = @now WHERE id = @c RETURNING last_seq"
            : "UPDATE conversations SET last_seq = last_seq + 1 WHERE id = @c RETURNING last_seq";
        var seq = await s.Sql(sql).With("@c", conversationId).With("@now", now).ScalarAsync(cancellationToken);
        return seq is not null
            ? Convert.ToInt64(seq, CultureInfo.InvariantCulture)
            : throw new InvalidOperationException($"Conversation {conversationId} vanished inside its transaction.");
    }

    private static Task InsertEventAsync(SqlSession s, ConversationEvent evt, CancellationToken cancellationToken) =>
        s.Sql(
            """
            INSERT INTO conversation_events (conversation_id, seq, type, message_id, actor_id, user_id, role, created_at)
            VALUES (@c, @seq, @type, @m, @actor, @u, @role, @at)
            """)
            .With("@c", evt.ConversationId).With("@seq", evt.Seq).With("@type", evt.Type).With("@m", evt.MessageId)
            .With("@actor", evt.ActorId).With("@u", evt.UserId).With("@role", evt.Role).With("@at", evt.CreatedAt)
            .ExecuteAsync(cancellationToken);

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

    private static async Task<ConversationSnapshot?> LoadSnapshotAsync(SqlSession s, Guid conversationId, CancellationToken cancellationToken)
    {
        var conversation = await s.Sql($"SELECT {SqlRow.ConversationColumns} FROM conversations c WHERE c.id = @c")
            .With("@c", conversationId).FirstOrDefaultAsync(r => r.Conversation(), cancellationToken);
        if (conversation is null)
        {
            return null;
        }

        var members = await LoadMembersAsync(s, [conversationId], cancellationToken);
        return new ConversationSnapshot(conversation, members.GetValueOrDefault(conversationId) ?? []);
    }

    private static async Task<Dictionary<Guid, List<MemberRecord>>> LoadMembersAsync(
        SqlSession s, IReadOnlyList<Guid> conversationIds, CancellationToken cancellationToken)
    {
        var command = s.Sql(
            $"""
            SELECT p.conversation_id, {SqlRow.MemberColumns} FROM participants p
            WHERE p.conversation_id IN ({Placeholders("@c", conversationIds.Count)}) AND p.left_at IS NULL
            ORDER BY p.conversation_id, p.joined_seq, p.joined_at, p.user_id
            """);
        for (var i = 0; i < conversationIds.Count; i++)
        {
            command.With($"@c{i}", conversationIds[i]);
        }

        var result = new Dictionary<Guid, List<MemberRecord>>();
        foreach (var (conversationId, member) in await command.ListAsync(r => (r.Guid(0), r.Member(1)), cancellationToken))
        {
            if (!result.TryGetValue(conversationId, out var list))
            {
                result[conversationId] = list = [];
            }

            list.Add(member);
        }

        return result;
    }

    private static Task<MemberRecord?> LoadMemberAsync(SqlSession s, Guid conversationId, string userId, CancellationToken cancellationToken) =>
        s.Sql($"SELECT {SqlRow.MemberColumns} FROM participants p WHERE p.conversation_id = @c AND p.user_id = @u AND p.left_at IS NULL")
            .With("@c", conversationId).With("@u", userId)
            .FirstOrDefaultAsync(r => r.Member(), cancellationToken);

    private static Task<Message?> LoadMessageAsync(SqlSession s, Guid messageId, CancellationToken cancellationToken) =>
        s.Sql($"SELECT {SqlRow.MessageColumns} FROM messages m WHERE m.id = @id")
            .With("@id", messageId).FirstOrDefaultAsync(r => r.Message(), cancellationToken);

    /// <summary>
    /// An edit or delete: locks the message's conversation (a message never changes conversation, so it is
    /// read first), reads the message and its conversation again under the lock, asks the rules, then applies
    /// <paramref name="change"/>. 404 when the message is unknown.
    /// </summary>
    private async Task<Result<MessageChangeResult>> ChangeMessageAsync(
        Guid messageId, Func<MessageFacts, ApiError?> check, Func<SqlSession, MessageFacts, Task<Result<MessageChangeResult>>> change,
        CancellationToken cancellationToken)
    {
        if (await GetMessageAsync(messageId, cancellationToken) is not { } unlocked)
        {
            return ApiError.NotFound("Message");
        }

        return await WriteAsync(unlocked.ConversationId, async s =>
        {
            var message = (await LoadMessageAsync(s, messageId, cancellationToken))!;
            var facts = new MessageFacts(message, (await LoadSnapshotAsync(s, message.ConversationId, cancellationToken))!);
            return check(facts) is { } error ? error : await change(s, facts);
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

    private static bool MentionsEqual(IReadOnlyList<Mention>? a, IReadOnlyList<Mention>? b) =>
        (a is null || a.Count == 0) ? (b is null || b.Count == 0) : b is not null && a.SequenceEqual(b);

    private static string Placeholders(string prefix, int count)
    {
        var builder = new StringBuilder();
        for (var i = 0; i < count; i++)
        {
            builder.Append(i == 0 ? "" : ", ").Append(prefix).Append(i);
        }

        return builder.ToString();
    }
}
