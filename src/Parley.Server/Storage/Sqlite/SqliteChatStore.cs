using System.Text;
using Microsoft.Data.Sqlite;
using Parley.Server.Hosting;
using Parley.Server.Messages;
using Parley.Server.Storage.Migrations;

namespace Parley.Server.Storage.Sqlite;

/// <summary>
/// The embedded default store: one SQLite file in WAL mode (readers never block the writer).
/// SQLite allows one writer at a time; <see cref="_writeLock"/> queues writers in process instead of letting
/// them spin on SQLITE_BUSY, and makes every write transaction (and so every seq) strictly ordered.
/// One process per database file: several Parley processes must not share one SQLite file.
/// </summary>
internal sealed class SqliteChatStore(string connectionString) : IChatStore, IDisposable
{
    private const string Provider = "Sqlite";
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private readonly string _connectionString = new SqliteConnectionStringBuilder(connectionString)
    {
        Pooling = true,
        ForeignKeys = true,
    }.ToString();

    private volatile bool _migrated;

    public void Dispose() => _writeLock.Dispose();

    private async Task<SqliteConnection> OpenAsync(CancellationToken cancellationToken)
    {
        var connection = new SqliteConnection(_connectionString);
        await connection.OpenAsync(cancellationToken);
        return connection;
    }

    /// <summary>
    /// Runs <paramref name="work"/> in a write transaction (BEGIN IMMEDIATE) and commits only on success.
    /// The commit itself is not cancellable: once the rules accepted a change it is written or nothing is.
    /// </summary>
    private async Task<Result<T>> WriteAsync<T>(
        Func<SqliteConnection, SqliteTransaction, Task<Result<T>>> work, CancellationToken cancellationToken)
    {
        await _writeLock.WaitAsync(cancellationToken);
        try
        {
            await using var connection = await OpenAsync(cancellationToken);
            await using var transaction = connection.BeginTransaction(deferred: false);
            var result = await work(connection, transaction);
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
        finally
        {
            _writeLock.Release();
        }
    }

    public async Task MigrateAsync(CancellationToken cancellationToken)
    {
        await _writeLock.WaitAsync(cancellationToken);
        try
        {
            await using var connection = await OpenAsync(cancellationToken);
            // WAL is a property of the database file: set once, kept by every later connection.
            await connection.Command("PRAGMA journal_mode=WAL;").ExecuteNonQueryAsync(cancellationToken);
            await connection.Command(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER NOT NULL PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL);")
                .ExecuteNonQueryAsync(cancellationToken);
            var applied = await connection.Command("SELECT version FROM schema_migrations")
                .ListAsync(r => r.GetInt32(0), cancellationToken);
            foreach (var script in MigrationScripts.For(Provider))
            {
                if (applied.Contains(script.Version))
                {
                    continue;
                }

                await using var transaction = connection.BeginTransaction(deferred: false);
                await connection.Command(script.Sql, transaction).ExecuteNonQueryAsync(cancellationToken);
                await connection.Command("INSERT INTO schema_migrations (version, name, applied_at) VALUES (@v, @n, @t)", transaction)
                    .With("@v", script.Version).With("@n", script.Name).With("@t", DateTimeOffset.UtcNow)
                    .ExecuteNonQueryAsync(cancellationToken);
                await transaction.CommitAsync(cancellationToken);
            }

            _migrated = true;
        }
        finally
        {
            _writeLock.Release();
        }
    }

    public async Task<bool> IsReadyAsync(CancellationToken cancellationToken)
    {
        if (!_migrated)
        {
            return false;
        }

        await using var connection = await OpenAsync(cancellationToken);
        return await connection.Command("SELECT 1").ExecuteScalarAsync(cancellationToken) is long;
    }

    // ---- conversations -------------------------------------------------------------------------------

    public async Task<CreateConversationResult> CreateConversationAsync(NewConversation conversation, CancellationToken cancellationToken)
    {
        var result = await WriteAsync<CreateConversationResult>(async (connection, transaction) =>
        {
            if (conversation.DirectKey is not null)
            {
                var existingId = await connection.Command("SELECT id FROM conversations WHERE direct_key = @k", transaction)
                    .With("@k", conversation.DirectKey).ExecuteScalarAsync(cancellationToken) as string;
                if (existingId is not null)
                {
                    var existing = await LoadSnapshotAsync(connection, transaction, Guid.Parse(existingId), cancellationToken);
                    return new CreateConversationResult(existing!, Created: false);
                }
            }

            var now = conversation.Now;
            await connection.Command(
                """
                INSERT INTO conversations (id, type, name, created_by, created_at, last_activity_at, last_seq, direct_key)
                VALUES (@id, @type, @name, @by, @now, @now, 1, @key)
                """, transaction)
                .With("@id", conversation.Id).With("@type", conversation.Type).With("@name", conversation.Name)
                .With("@by", conversation.CreatedBy).With("@now", now).With("@key", conversation.DirectKey)
                .ExecuteNonQueryAsync(cancellationToken);

            foreach (var (userId, role) in conversation.Members)
            {
                await InsertOrRejoinAsync(connection, transaction, conversation.Id, userId, role, joinedSeq: 0, now, cancellationToken);
            }

            // Creation is the conversation's first event (seq 1), so a replay from the start shows it.
            await InsertEventAsync(
                connection, transaction,
                new ConversationEvent(conversation.Id, 1, EventTypes.ConversationCreated, null, conversation.CreatedBy, null, null, now),
                cancellationToken);

            var snapshot = await LoadSnapshotAsync(connection, transaction, conversation.Id, cancellationToken);
            return new CreateConversationResult(snapshot!, Created: true);
        }, cancellationToken);
        return result.Value!;
    }

    public async Task<ConversationSnapshot?> GetConversationAsync(Guid conversationId, CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken);
        return await LoadSnapshotAsync(connection, null, conversationId, cancellationToken);
    }

    public async Task<MemberRecord?> GetMemberAsync(Guid conversationId, string userId, CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken);
        return await LoadMemberAsync(connection, null, conversationId, userId, cancellationToken);
    }

    public async Task<IReadOnlyList<ConversationListItem>> ListConversationsAsync(
        string userId, ConversationPosition? after, int limit, CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken);
        var command = connection.Command(
            $"""
            SELECT {SqliteCommands.MemberColumns}, {SqliteCommands.ConversationColumns}
            FROM participants p JOIN conversations c ON c.id = p.conversation_id
            WHERE p.user_id = @u AND p.left_at IS NULL
              AND (@t IS NULL OR p.last_activity_at < @t OR (p.last_activity_at = @t AND p.conversation_id < @cid))
            ORDER BY p.last_activity_at DESC, p.conversation_id DESC
            LIMIT @limit
            """)
            .With("@u", userId).With("@t", after?.LastActivityAt).With("@cid", after?.ConversationId).With("@limit", limit);
        var rows = await command.ListAsync(
            r => (Caller: r.ReadMember(), Conversation: r.ReadConversation(SqliteCommands.MemberColumnCount)), cancellationToken);
        if (rows.Count == 0)
        {
            return [];
        }

        var ids = rows.Select(r => r.Conversation.Id).ToList();
        var members = await LoadMembersAsync(connection, null, ids, cancellationToken);
        var lastMessageIds = rows.Where(r => r.Conversation.LastMessageId is not null).Select(r => r.Conversation.LastMessageId!.Value).ToList();
        var lastMessages = new Dictionary<Guid, Message>();
        if (lastMessageIds.Count > 0)
        {
            var messageCommand = connection.Command(
                $"SELECT {SqliteCommands.MessageColumns} FROM messages m WHERE m.id IN ({Placeholders("@m", lastMessageIds.Count)})");
            for (var i = 0; i < lastMessageIds.Count; i++)
            {
                messageCommand.With($"@m{i}", lastMessageIds[i]);
            }

            foreach (var message in await messageCommand.ListAsync(r => r.ReadMessage(), cancellationToken))
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
    }

    public Task<Result<MembershipResult>> ChangeMembershipAsync(
        Guid conversationId, string actorId, Func<ConversationSnapshot, Result<IReadOnlyList<MembershipChange>>> decide,
        DateTimeOffset now, CancellationToken cancellationToken) =>
        WriteAsync<MembershipResult>(async (connection, transaction) =>
        {
            var before = await LoadSnapshotAsync(connection, transaction, conversationId, cancellationToken);
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
                var seq = await NextSeqAsync(connection, transaction, conversationId, now, touchActivity: change is MembershipChange.Add, cancellationToken);
                ConversationEvent evt;
                switch (change)
                {
                    case MembershipChange.Add add:
                        await InsertOrRejoinAsync(connection, transaction, conversationId, add.UserId, add.Role, seq, now, cancellationToken);
                        evt = new ConversationEvent(conversationId, seq, EventTypes.ParticipantAdded, null, actorId, add.UserId, add.Role, now);
                        break;
                    case MembershipChange.Remove remove:
                        await connection.Command(
                            "UPDATE participants SET left_at = @now WHERE conversation_id = @c AND user_id = @u AND left_at IS NULL", transaction)
                            .With("@now", now).With("@c", conversationId).With("@u", remove.UserId).ExecuteNonQueryAsync(cancellationToken);
                        evt = new ConversationEvent(conversationId, seq, EventTypes.ParticipantRemoved, null, actorId, remove.UserId, null, now);
                        break;
                    case MembershipChange.SetRole setRole:
                        await connection.Command(
                            "UPDATE participants SET role = @r WHERE conversation_id = @c AND user_id = @u AND left_at IS NULL", transaction)
                            .With("@r", setRole.Role).With("@c", conversationId).With("@u", setRole.UserId).ExecuteNonQueryAsync(cancellationToken);
                        evt = new ConversationEvent(conversationId, seq, EventTypes.ParticipantUpdated, null, actorId, setRole.UserId, setRole.Role, now);
                        break;
                    default:
                        throw new InvalidOperationException($"Unknown membership change {change.GetType().Name}.");
                }

                await InsertEventAsync(connection, transaction, evt, cancellationToken);
                applied.Add(new AppliedMembershipChange(change, evt));
            }

            var after = await LoadSnapshotAsync(connection, transaction, conversationId, cancellationToken);
            return new MembershipResult(after!, applied);
        }, cancellationToken);

    // ---- messages --------------------------------------------------------------------------------------

    public Task<Result<SendResult>> AppendMessageAsync(NewMessage message, Func<SendFacts, ApiError?> check, CancellationToken cancellationToken) =>
        WriteAsync<SendResult>(async (connection, transaction) =>
        {
            var snapshot = await LoadSnapshotAsync(connection, transaction, message.ConversationId, cancellationToken);
            var replyTarget = message.ReplyToId is { } replyId ? await LoadMessageAsync(connection, transaction, replyId, cancellationToken) : null;
            Message? existing = null;
            if (message.ClientMessageId is not null && snapshot is not null)
            {
                existing = await connection.Command(
                    $"""
                    SELECT {SqliteCommands.MessageColumns} FROM messages m
                    WHERE m.conversation_id = @c AND m.sender_id = @s AND m.client_message_id = @k
                    """, transaction)
                    .With("@c", message.ConversationId).With("@s", message.SenderId).With("@k", message.ClientMessageId)
                    .FirstOrDefaultAsync(r => r.ReadMessage(), cancellationToken);
            }

            if (check(new SendFacts(snapshot, replyTarget, existing)) is { } error)
            {
                return error;
            }

            if (existing is not null)
            {
                return new SendResult(existing, Created: false, snapshot!.Members);
            }

            var now = message.Now;
            var seq = await NextSeqAsync(connection, transaction, message.ConversationId, now, touchActivity: true, cancellationToken);
            await connection.Command(
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
                    last_activity_at = @now
                WHERE conversation_id = @c AND user_id = @s AND left_at IS NULL;
                """, transaction)
                .With("@id", message.Id).With("@c", message.ConversationId).With("@seq", seq).With("@s", message.SenderId)
                .With("@type", message.MessageType).With("@content", message.Content).With("@reply", message.ReplyToId)
                .WithJson("@mentions", message.Mentions, ParleyJsonContext.Default.IReadOnlyListMention)
                .WithJson("@media", message.Media, ParleyJsonContext.Default.Media)
                .WithJson("@location", message.Location, ParleyJsonContext.Default.Location)
                .With("@k", message.ClientMessageId).With("@now", now)
                .ExecuteNonQueryAsync(cancellationToken);
            await InsertEventAsync(
                connection, transaction,
                new ConversationEvent(message.ConversationId, seq, EventTypes.MessageCreated, message.Id, message.SenderId, null, null, now),
                cancellationToken);

            var stored = await LoadMessageAsync(connection, transaction, message.Id, cancellationToken);
            return new SendResult(stored!, Created: true, snapshot!.Members);
        }, cancellationToken);

    public async Task<Message?> GetMessageAsync(Guid messageId, CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken);
        return await LoadMessageAsync(connection, null, messageId, cancellationToken);
    }

    public async Task<IReadOnlyList<Message>> ListMessagesAsync(MessageQuery query, CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken);
        // Newest first when paging backwards (or from the end), oldest first when paging forward.
        var forward = query.After is not null;
        var sql = forward
            ? $"SELECT {SqliteCommands.MessageColumns} FROM messages m WHERE m.conversation_id = @c AND m.seq > @lo ORDER BY m.seq ASC LIMIT @n"
            : $"SELECT {SqliteCommands.MessageColumns} FROM messages m WHERE m.conversation_id = @c AND m.seq > @lo AND m.seq < @hi ORDER BY m.seq DESC LIMIT @n";
        var command = connection.Command(sql)
            .With("@c", query.ConversationId)
            .With("@lo", Math.Max(query.VisibleAfterSeq, query.After ?? 0))
            .With("@hi", query.Before ?? long.MaxValue)
            .With("@n", query.Limit);
        return await command.ListAsync(r => r.ReadMessage(), cancellationToken);
    }

    public Task<Result<MessageChangeResult>> EditMessageAsync(
        Guid messageId, string editorId, string? content, IReadOnlyList<Mention>? mentions,
        Func<MessageFacts, ApiError?> check, DateTimeOffset now, CancellationToken cancellationToken) =>
        WriteAsync<MessageChangeResult>(async (connection, transaction) =>
        {
            var checkedFacts = await LoadCheckedFactsAsync(connection, transaction, messageId, check, cancellationToken);
            if (!checkedFacts.IsSuccess)
            {
                return checkedFacts.Error!;
            }

            var facts = checkedFacts.Value!;

            var current = facts.Message;
            if (current.Content == content && MentionsEqual(current.Mentions, mentions))
            {
                return new MessageChangeResult(current, 0, facts.Conversation.Members);
            }

            var seq = await NextSeqAsync(connection, transaction, current.ConversationId, now, touchActivity: false, cancellationToken);
            await connection.Command(
                """
                INSERT INTO message_edits (message_id, version, content, mentions, created_at, replaced_at)
                VALUES (@id, (SELECT COUNT(*) + 1 FROM message_edits WHERE message_id = @id), @content, @mentions, @since, @now);
                UPDATE messages SET content = @new, mentions = @newMentions, edited_at = @now WHERE id = @id;
                """, transaction)
                .With("@id", messageId).With("@content", current.Content)
                .WithJson("@mentions", current.Mentions, ParleyJsonContext.Default.IReadOnlyListMention)
                .With("@since", current.EditedAt ?? current.CreatedAt).With("@now", now).With("@new", content)
                .WithJson("@newMentions", mentions is { Count: > 0 } ? mentions : null, ParleyJsonContext.Default.IReadOnlyListMention)
                .ExecuteNonQueryAsync(cancellationToken);
            await InsertEventAsync(
                connection, transaction,
                new ConversationEvent(current.ConversationId, seq, EventTypes.MessageEdited, messageId, editorId, null, null, now),
                cancellationToken);
            var updated = await LoadMessageAsync(connection, transaction, messageId, cancellationToken);
            return new MessageChangeResult(updated!, seq, facts.Conversation.Members);
        }, cancellationToken);

    public Task<Result<MessageChangeResult>> DeleteMessageAsync(
        Guid messageId, string actorId, Func<MessageFacts, ApiError?> check, DateTimeOffset now, CancellationToken cancellationToken) =>
        WriteAsync<MessageChangeResult>(async (connection, transaction) =>
        {
            var checkedFacts = await LoadCheckedFactsAsync(connection, transaction, messageId, check, cancellationToken);
            if (!checkedFacts.IsSuccess)
            {
                return checkedFacts.Error!;
            }

            var facts = checkedFacts.Value!;

            var current = facts.Message;
            if (current.DeletedAt is not null)
            {
                return new MessageChangeResult(current, 0, facts.Conversation.Members);
            }

            var seq = await NextSeqAsync(connection, transaction, current.ConversationId, now, touchActivity: false, cancellationToken);
            await connection.Command(
                """
                UPDATE messages SET content = NULL, mentions = NULL, media = NULL, location = NULL, deleted_at = @now WHERE id = @id;
                DELETE FROM message_edits WHERE message_id = @id;
                -- Members who had not read it (and could see it) have one unread message fewer.
                UPDATE participants SET unread_count = unread_count - 1
                WHERE conversation_id = @c AND left_at IS NULL AND user_id <> @sender
                  AND read_seq < @mseq AND joined_seq < @mseq AND unread_count > 0;
                """, transaction)
                .With("@now", now).With("@id", messageId).With("@c", current.ConversationId)
                .With("@sender", current.SenderId).With("@mseq", current.Seq)
                .ExecuteNonQueryAsync(cancellationToken);
            await InsertEventAsync(
                connection, transaction,
                new ConversationEvent(current.ConversationId, seq, EventTypes.MessageDeleted, messageId, actorId, null, null, now),
                cancellationToken);
            var tombstone = await LoadMessageAsync(connection, transaction, messageId, cancellationToken);
            return new MessageChangeResult(tombstone!, seq, facts.Conversation.Members);
        }, cancellationToken);

    public async Task<IReadOnlyList<MessageVersion>> GetEditsAsync(Guid messageId, CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken);
        return await connection.Command(
            "SELECT version, content, mentions, created_at, replaced_at FROM message_edits WHERE message_id = @id ORDER BY version")
            .With("@id", messageId)
            .ListAsync(
                r => new MessageVersion(
                    r.GetInt32(0), r.GetNullableString(1), r.GetJson(2, ParleyJsonContext.Default.IReadOnlyListMention), r.GetTime(3), r.GetTime(4)),
                cancellationToken);
    }

    // ---- receipts --------------------------------------------------------------------------------------

    public Task<Result<WatermarkResult>> AdvanceReadAsync(
        Guid conversationId, string userId, Guid messageId, DateTimeOffset now, CancellationToken cancellationToken) =>
        WriteAsync<WatermarkResult>(async (connection, transaction) =>
        {
            var snapshot = await LoadSnapshotAsync(connection, transaction, conversationId, cancellationToken);
            var before = snapshot?.Find(userId);
            if (before is null)
            {
                return ApiError.NotFound("Conversation");
            }

            var message = await LoadMessageAsync(connection, transaction, messageId, cancellationToken);
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
            await connection.Command(
                """
                UPDATE participants
                SET read_seq = @seq, read_message_id = @id, delivered_seq = @dseq, delivered_message_id = @did,
                    unread_count = (SELECT COUNT(*) FROM messages m
                                    WHERE m.conversation_id = @c AND m.seq > @seq AND m.seq > joined_seq
                                      AND m.sender_id <> @u AND m.deleted_at IS NULL)
                WHERE conversation_id = @c AND user_id = @u
                """, transaction)
                .With("@seq", message.Seq).With("@id", message.Id).With("@dseq", deliveredTo).With("@did", deliveredId)
                .With("@c", conversationId).With("@u", userId)
                .ExecuteNonQueryAsync(cancellationToken);
            var after = (await LoadMemberAsync(connection, transaction, conversationId, userId, cancellationToken))!;
            var senders = after.DeliveredSeq > before.DeliveredSeq
                ? await SendersBetweenAsync(connection, transaction, conversationId, userId, Math.Max(before.DeliveredSeq, before.JoinedSeq), after.DeliveredSeq, cancellationToken)
                : [];
            return new WatermarkResult(conversationId, before, after, senders, snapshot!.Members);
        }, cancellationToken);

    public async Task<IReadOnlyList<WatermarkResult>> AdvanceDeliveredAsync(
        IReadOnlyList<DeliveryReport> reports, DateTimeOffset now, CancellationToken cancellationToken)
    {
        var result = await WriteAsync<IReadOnlyList<WatermarkResult>>(async (connection, transaction) =>
        {
            var results = new List<WatermarkResult>();
            foreach (var report in reports)
            {
                var before = await LoadMemberAsync(connection, transaction, report.ConversationId, report.UserId, cancellationToken);
                if (before is null)
                {
                    continue;
                }

                var from = Math.Max(before.DeliveredSeq, before.JoinedSeq);
                var target = await connection.Command(
                    """
                    SELECT id, seq FROM messages
                    WHERE conversation_id = @c AND seq > @from AND seq <= @to
                    ORDER BY seq DESC LIMIT 1
                    """, transaction)
                    .With("@c", report.ConversationId).With("@from", from).With("@to", report.UpToSeq)
                    .FirstOrDefaultAsync(r => new Tuple<Guid, long>(r.GetGuid(0), r.GetInt64(1)), cancellationToken);
                if (target is null)
                {
                    continue;
                }

                await connection.Command(
                    "UPDATE participants SET delivered_seq = @seq, delivered_message_id = @id WHERE conversation_id = @c AND user_id = @u", transaction)
                    .With("@seq", target.Item2).With("@id", target.Item1).With("@c", report.ConversationId).With("@u", report.UserId)
                    .ExecuteNonQueryAsync(cancellationToken);
                var after = before with { DeliveredSeq = target.Item2, DeliveredMessageId = target.Item1 };
                var senders = await SendersBetweenAsync(connection, transaction, report.ConversationId, report.UserId, from, target.Item2, cancellationToken);
                results.Add(new WatermarkResult(report.ConversationId, before, after, senders, []));
            }

            return results;
        }, cancellationToken);
        return result.Value!;
    }

    public async Task<IReadOnlyList<ConversationEvent>> ListEventsAsync(Guid conversationId, long afterSeq, int limit, CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken);
        return await connection.Command(
            """
            SELECT conversation_id, seq, type, message_id, actor_id, user_id, role, created_at
            FROM conversation_events WHERE conversation_id = @c AND seq > @after ORDER BY seq LIMIT @n
            """)
            .With("@c", conversationId).With("@after", afterSeq).With("@n", limit)
            .ListAsync(
                r => new ConversationEvent(
                    r.GetGuid(0), r.GetInt64(1), r.GetString(2), r.GetNullableGuid(3), r.GetString(4), r.GetNullableString(5),
                    r.GetNullableString(6), r.GetTime(7)),
                cancellationToken);
    }

    // ---- helpers ---------------------------------------------------------------------------------------

    /// <summary>
    /// Takes the conversation's next seq. Runs inside the write transaction, which SQLite holds exclusively
    /// until commit, so seqs are committed in the order they are taken.
    /// </summary>
    private static async Task<long> NextSeqAsync(
        SqliteConnection connection, SqliteTransaction transaction, Guid conversationId, DateTimeOffset now, bool touchActivity,
        CancellationToken cancellationToken)
    {
        var sql = touchActivity
            ? "UPDATE conversations SET last_seq = last_seq + 1, last_activity_at = @now WHERE id = @c RETURNING last_seq"
            : "UPDATE conversations SET last_seq = last_seq + 1 WHERE id = @c RETURNING last_seq";
        var seq = await connection.Command(sql, transaction).With("@c", conversationId).With("@now", now)
            .ExecuteScalarAsync(cancellationToken);
        return seq is long value ? value : throw new InvalidOperationException($"Conversation {conversationId} vanished inside its transaction.");
    }

    private static Task InsertEventAsync(
        SqliteConnection connection, SqliteTransaction transaction, ConversationEvent evt, CancellationToken cancellationToken) =>
        connection.Command(
            """
            INSERT INTO conversation_events (conversation_id, seq, type, message_id, actor_id, user_id, role, created_at)
            VALUES (@c, @seq, @type, @m, @actor, @u, @role, @at)
            """, transaction)
            .With("@c", evt.ConversationId).With("@seq", evt.Seq).With("@type", evt.Type).With("@m", evt.MessageId)
            .With("@actor", evt.ActorId).With("@u", evt.UserId).With("@role", evt.Role).With("@at", evt.CreatedAt)
            .ExecuteNonQueryAsync(cancellationToken);

    /// <summary>Adds a member, or brings back one who left: history is visible after <paramref name="joinedSeq"/>, nothing is unread.</summary>
    private static Task InsertOrRejoinAsync(
        SqliteConnection connection, SqliteTransaction transaction, Guid conversationId, string userId, string role, long joinedSeq,
        DateTimeOffset now, CancellationToken cancellationToken) =>
        connection.Command(
            """
            INSERT INTO participants (conversation_id, user_id, role, joined_seq, joined_at, left_at, read_seq, read_message_id,
                                      delivered_seq, delivered_message_id, unread_count, last_activity_at)
            VALUES (@c, @u, @role, @seq, @now, NULL, @seq, NULL, @seq, NULL, 0, @now)
            ON CONFLICT (conversation_id, user_id) DO UPDATE SET
                role = excluded.role, joined_seq = excluded.joined_seq, joined_at = excluded.joined_at, left_at = NULL,
                read_seq = excluded.read_seq, read_message_id = NULL, delivered_seq = excluded.delivered_seq,
                delivered_message_id = NULL, unread_count = 0, last_activity_at = excluded.last_activity_at
            """, transaction)
            .With("@c", conversationId).With("@u", userId).With("@role", role).With("@seq", joinedSeq).With("@now", now)
            .ExecuteNonQueryAsync(cancellationToken);

    private static async Task<ConversationSnapshot?> LoadSnapshotAsync(
        SqliteConnection connection, SqliteTransaction? transaction, Guid conversationId, CancellationToken cancellationToken)
    {
        var conversation = await connection.Command($"SELECT {SqliteCommands.ConversationColumns} FROM conversations c WHERE c.id = @c", transaction)
            .With("@c", conversationId).FirstOrDefaultAsync(r => r.ReadConversation(), cancellationToken);
        if (conversation is null)
        {
            return null;
        }

        var members = await LoadMembersAsync(connection, transaction, [conversationId], cancellationToken);
        return new ConversationSnapshot(conversation, members.GetValueOrDefault(conversationId) ?? []);
    }

    private static async Task<Dictionary<Guid, List<MemberRecord>>> LoadMembersAsync(
        SqliteConnection connection, SqliteTransaction? transaction, IReadOnlyList<Guid> conversationIds, CancellationToken cancellationToken)
    {
        var command = connection.Command(
            $"""
            SELECT p.conversation_id, {SqliteCommands.MemberColumns} FROM participants p
            WHERE p.conversation_id IN ({Placeholders("@c", conversationIds.Count)}) AND p.left_at IS NULL
            ORDER BY p.conversation_id, p.joined_seq, p.joined_at, p.user_id
            """, transaction);
        for (var i = 0; i < conversationIds.Count; i++)
        {
            command.With($"@c{i}", conversationIds[i]);
        }

        var result = new Dictionary<Guid, List<MemberRecord>>();
        foreach (var (conversationId, member) in await command.ListAsync(r => (r.GetGuid(0), r.ReadMember(1)), cancellationToken))
        {
            if (!result.TryGetValue(conversationId, out var list))
            {
                result[conversationId] = list = [];
            }

            list.Add(member);
        }

        return result;
    }

    private static Task<MemberRecord?> LoadMemberAsync(
        SqliteConnection connection, SqliteTransaction? transaction, Guid conversationId, string userId, CancellationToken cancellationToken) =>
        connection.Command(
            $"SELECT {SqliteCommands.MemberColumns} FROM participants p WHERE p.conversation_id = @c AND p.user_id = @u AND p.left_at IS NULL",
            transaction)
            .With("@c", conversationId).With("@u", userId)
            .FirstOrDefaultAsync(r => r.ReadMember(), cancellationToken);

    private static Task<Message?> LoadMessageAsync(
        SqliteConnection connection, SqliteTransaction? transaction, Guid messageId, CancellationToken cancellationToken) =>
        connection.Command($"SELECT {SqliteCommands.MessageColumns} FROM messages m WHERE m.id = @id", transaction)
            .With("@id", messageId).FirstOrDefaultAsync(r => r.ReadMessage(), cancellationToken);

    private static async Task<MessageFacts?> LoadMessageFactsAsync(
        SqliteConnection connection, SqliteTransaction transaction, Guid messageId, CancellationToken cancellationToken)
    {
        var message = await LoadMessageAsync(connection, transaction, messageId, cancellationToken);
        if (message is null)
        {
            return null;
        }

        var snapshot = await LoadSnapshotAsync(connection, transaction, message.ConversationId, cancellationToken);
        return new MessageFacts(message, snapshot!);
    }

    /// <summary>The message and its conversation, accepted by the caller's rules (404 when the message is unknown).</summary>
    private static async Task<Result<MessageFacts>> LoadCheckedFactsAsync(
        SqliteConnection connection, SqliteTransaction transaction, Guid messageId, Func<MessageFacts, ApiError?> check,
        CancellationToken cancellationToken)
    {
        var facts = await LoadMessageFactsAsync(connection, transaction, messageId, cancellationToken);
        if (facts is null)
        {
            return ApiError.NotFound("Message");
        }

        return check(facts) is { } error ? error : facts;
    }

    /// <summary>
    /// Senders (other than the user) of live messages in (from, to]: who learns that the user received them.
    /// Only current members: a sender who has left receives nothing more of the conversation.
    /// </summary>
    private static async Task<IReadOnlyList<string>> SendersBetweenAsync(
        SqliteConnection connection, SqliteTransaction transaction, Guid conversationId, string userId, long from, long to,
        CancellationToken cancellationToken) =>
        await connection.Command(
            """
            SELECT DISTINCT m.sender_id FROM messages m
            JOIN participants p ON p.conversation_id = m.conversation_id AND p.user_id = m.sender_id AND p.left_at IS NULL
            WHERE m.conversation_id = @c AND m.seq > @from AND m.seq <= @to AND m.sender_id <> @u AND m.deleted_at IS NULL
            """, transaction)
            .With("@c", conversationId).With("@from", from).With("@to", to).With("@u", userId)
            .ListAsync(r => r.GetString(0), cancellationToken);

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
