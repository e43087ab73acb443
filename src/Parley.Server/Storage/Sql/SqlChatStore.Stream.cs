namespace Parley.Server.Storage.Sql;

/// <summary>
/// The deployment-wide event stream: positions assigned after commit, and the reads that resume and sync
/// are built on. See docs/delivery.md.
/// </summary>
internal abstract partial class SqlChatStore
{
    /// <summary>The events of the user's membership windows: from the joining (inclusive) to the removal (inclusive).</summary>
    private const string UserEventsFrom =
        """
        FROM participants p JOIN conversation_events e ON e.conversation_id = p.conversation_id
        WHERE p.user_id = @u AND e.seq >= p.joined_seq AND (p.left_at IS NULL OR e.seq <= p.left_seq)
        """;

    /// <summary>The seq where a former member's window ends (null for a current member).</summary>
    private const string LeftSeq = "CASE WHEN p.left_at IS NULL THEN NULL ELSE p.left_seq END";

    private const string ParticipantEventTypes = $"('{EventTypes.ParticipantAdded}', '{EventTypes.ParticipantRemoved}', '{EventTypes.ParticipantUpdated}')";

    private static UserEvent UserEventRow(SqlRow r) =>
        new(
            new ConversationEvent(r.Guid(0), r.Long(1), r.String(2), r.NullableGuid(3), r.String(4), r.NullableString(5), r.NullableString(6), r.Time(7)),
            r.NullableLong(8),
            r.Long(9),
            r.NullableLong(10));

    public Task<StreamPosition> GetStreamPositionAsync(CancellationToken cancellationToken) =>
        ReadAsync(
            async s => (await s.Sql(
                "SELECT s.epoch, s.pos, e.conversation_id, e.seq, e.created_at FROM stream_state s LEFT JOIN conversation_events e ON e.pos = s.pos WHERE s.id = 1")
                .FirstOrDefaultAsync(
                    r => new StreamPosition(r.Guid(0), r.Long(1), r.NullableGuid(2) is { } c ? new EventKey(c, r.Long(3), r.Time(4)) : null), cancellationToken))
                ?? throw new InvalidOperationException("The stream_state row is missing: the schema is not migrated."),
            cancellationToken);

    public async Task<Guid> StartNewEpochAsync(CancellationToken cancellationToken)
    {
        var epoch = Guid.NewGuid();
        await WriteAsync<int>(null, async s => await s.Sql("UPDATE stream_state SET epoch = @e WHERE id = 1").With("@e", epoch).ExecuteAsync(cancellationToken), cancellationToken);
        return epoch;
    }

    /// <summary>
    /// Where commits come one at a time (<see cref="SqlDialect.IdsGrowInCommitOrder"/>, SQLite) there is nothing to do:
    /// events took their positions as they were inserted (<see cref="InsertEventSql"/>), receipt log rows are positioned
    /// by their ids and made readable in their own transaction (<see cref="LogReceiptsAsync"/>). Elsewhere, one write
    /// transaction numbers a batch of committed events, then the receipt log rows committed since the last pass.
    /// </summary>
    public async Task<int> AssignPositionsAsync(int batch, CancellationToken cancellationToken)
    {
        if (Dialect.IdsGrowInCommitOrder)
        {
            return 0;
        }

        try
        {
            return await AssignPositionsOnceAsync(batch, cancellationToken);
        }
        catch (System.Data.Common.DbException ex) when (ex.SqlState == SerializationFailure)
        {
            // Another instance's pass committed between this pass's snapshot and its lock: it numbered what this one
            // would have. Nothing was written; the next pass goes on from there.
            return 0;
        }
    }

    // PostgreSQL's SQLSTATE for a transaction that could not be serialized (repeatable read met a concurrent update).
    private const string SerializationFailure = "40001";

    private Task<int> AssignPositionsOnceAsync(int batch, CancellationToken cancellationToken) =>
        WriteAsync<int>(null, async s =>
        {
            if (Dialect.SequencerSnapshotSql is { } snapshot)
            {
                await s.Sql(snapshot).ExecuteAsync(cancellationToken);
            }

            if (await s.Sql(Dialect.SequencerLockSql).ScalarAsync(cancellationToken) is not (true or 1L))
            {
                return 0; // another instance is sequencing right now
            }

            // Only committed events are visible here, and a conversation's seq N commits before N+1 is taken,
            // so numbering the visible ones in (conversation, seq) order keeps pos growing with seq.
            var positioned = await s.Sql(
                """
                UPDATE conversation_events SET pos = b.base + r.rn
                FROM (SELECT conversation_id, seq, row_number() OVER (ORDER BY conversation_id, seq) AS rn
                      FROM conversation_events WHERE pos IS NULL ORDER BY conversation_id, seq LIMIT @n) AS r,
                     (SELECT pos AS base FROM stream_state WHERE id = 1) AS b
                WHERE conversation_events.conversation_id = r.conversation_id AND conversation_events.seq = r.seq
                """)
                .With("@n", batch).ExecuteAsync(cancellationToken);
            if (positioned > 0)
            {
                await s.Sql("UPDATE stream_state SET pos = pos + @k WHERE id = 1").With("@k", positioned).ExecuteAsync(cancellationToken);
            }

            if (!KeepReceiptLog)
            {
                return positioned;
            }

            // The receipt log, after the events and in the same transaction (docs/events.md): a receipt's message event
            // is positioned no later than the receipt, so receipts are numbered only while every visible event is
            // positioned (a full batch may have left some for the next pass). Rows of one member's watermark commit in
            // id order (each waits for the row lock of the one before), so numbering the visible ones by id keeps each
            // watermark's order.
            var receipts = positioned == batch ? 0 : await s.Sql(
                """
                UPDATE receipt_log SET pos = b.base + r.rn
                FROM (SELECT id, row_number() OVER (ORDER BY id) AS rn FROM receipt_log WHERE pos IS NULL ORDER BY id LIMIT @n) AS r,
                     (SELECT receipt_pos AS base FROM stream_state WHERE id = 1) AS b
                WHERE receipt_log.id = r.id
                """)
                .With("@n", batch).ExecuteAsync(cancellationToken);
            if (receipts > 0)
            {
                await s.Sql("UPDATE stream_state SET receipt_pos = receipt_pos + @k WHERE id = 1").With("@k", receipts).ExecuteAsync(cancellationToken);
            }

            return Math.Max(positioned, receipts);
        },
        // A pass that positioned nothing rolls back instead of committing: nothing was written, and dozens of empty commits
        // a second per instance would otherwise make most of the commit metrics (their latency, their batch sizes).
        static positioned => positioned > 0,
        cancellationToken);

    public Task<IReadOnlyList<UserEvent>> ReadUserEventsAsync(string userId, long afterPos, long uptoPos, int limit, CancellationToken cancellationToken) =>
        ReadAsync<IReadOnlyList<UserEvent>>(
            async s => await s.Sql(
                $"""
                SELECT e.conversation_id, e.seq, e.type, e.message_id, e.actor_id, e.user_id, e.role, e.created_at, e.pos, p.joined_seq, {LeftSeq}
                {UserEventsFrom} AND e.pos > @after AND e.pos <= @upto
                ORDER BY e.pos LIMIT @n
                """)
                .With("@u", userId).With("@after", afterPos).With("@upto", uptoPos).With("@n", limit)
                .ListAsync(UserEventRow, cancellationToken),
            cancellationToken);

    public Task<IReadOnlyList<UserEvent>> ReadUserEventsNewerAsync(
        string userId, long uptoPos, (Guid ConversationId, long Seq)? after, int limit, CancellationToken cancellationToken)
    {
        // Two index ranges per conversation (positioned after upto; not positioned yet), not its whole history; a next
        // page starts after the last (conversation, seq) of the one before.
        var next = after is null ? "" : " AND (e.conversation_id > @kc OR (e.conversation_id = @kc AND e.seq > @ks))";
        return ReadAsync<IReadOnlyList<UserEvent>>(
            async s =>
            {
                var command = s.Sql(
                        $"""
                         SELECT e.conversation_id, e.seq, e.type, e.message_id, e.actor_id, e.user_id, e.role, e.created_at, e.pos, p.joined_seq, {LeftSeq}
                         {UserEventsFrom} AND e.pos > @upto{next}
                         UNION ALL
                         SELECT e.conversation_id, e.seq, e.type, e.message_id, e.actor_id, e.user_id, e.role, e.created_at, e.pos, p.joined_seq, {LeftSeq}
                         {UserEventsFrom} AND e.pos IS NULL{next}
                         ORDER BY 1, 2 LIMIT @n
                         """)
                    .With("@u", userId).With("@upto", uptoPos).With("@n", limit);
                if (after is var (conversationId, seq))
                {
                    command = command.With("@kc", conversationId).With("@ks", seq);
                }

                return await command.ListAsync(UserEventRow, cancellationToken);
            },
            cancellationToken);
    }

    public Task<IReadOnlyList<UserEvent>> ReadConversationEventsAsync(
        string userId, Guid conversationId, long afterSeq, long uptoSeq, CancellationToken cancellationToken) =>
        ReadAsync<IReadOnlyList<UserEvent>>(
            async s => await s.Sql(
                $"""
                SELECT e.conversation_id, e.seq, e.type, e.message_id, e.actor_id, e.user_id, e.role, e.created_at, e.pos, p.joined_seq, {LeftSeq}
                {UserEventsFrom} AND p.conversation_id = @c AND e.seq > @a AND e.seq <= @b
                ORDER BY e.seq
                """)
                .With("@u", userId).With("@c", conversationId).With("@a", afterSeq).With("@b", uptoSeq)
                .ListAsync(UserEventRow, cancellationToken),
            cancellationToken);

    public Task<EventKey?> GetEventAtPositionAsync(long pos, CancellationToken cancellationToken) =>
        ReadAsync(
            async s => (await s.Sql("SELECT conversation_id, seq, created_at FROM conversation_events WHERE pos = @p").With("@p", pos)
                .ListAsync(r => new EventKey(r.Guid(0), r.Long(1), r.Time(2)), cancellationToken)) is [var at] ? at : (EventKey?)null,
            cancellationToken);

    public Task<ConversationAsOf?> GetConversationAsOfAsync(Guid conversationId, long seq, CancellationToken cancellationToken) =>
        ReadAsync(async s =>
        {
            var conversation = await s.Sql($"SELECT {SqlRow.ConversationColumns} FROM conversations c WHERE c.id = @c")
                .With("@c", conversationId).FirstOrDefaultAsync(r => r.Conversation(), cancellationToken);
            var created = await s.Sql("SELECT members FROM conversation_events WHERE conversation_id = @c AND seq = 1")
                .With("@c", conversationId).FirstOrDefaultAsync(r => r.Json(0, StorageJsonContext.Default.IReadOnlyListRosterEntry) ?? [], cancellationToken);
            var at = await s.Sql("SELECT created_at FROM conversation_events WHERE conversation_id = @c AND seq = @s")
                .With("@c", conversationId).With("@s", seq).ListAsync(r => r.Time(0), cancellationToken);
            if (conversation is null || created is null || at is not [var endedAt])
            {
                return null;
            }

            // The roster the conversation was created with, then every membership change up to the seq, in order.
            var roster = created.Select(m => new RosterMember(m.UserId, m.Role, conversation.CreatedAt)).ToList();
            var changes = await s.Sql(
                $"""
                SELECT type, user_id, role, created_at FROM conversation_events
                WHERE conversation_id = @c AND seq > 1 AND seq <= @s AND type IN {ParticipantEventTypes}
                ORDER BY seq
                """)
                .With("@c", conversationId).With("@s", seq)
                .ListAsync(r => (Type: r.String(0), UserId: r.String(1), Role: r.NullableString(2), At: r.Time(3)), cancellationToken);
            foreach (var change in changes)
            {
                var index = roster.FindIndex(p => p.UserId == change.UserId);
                switch (change.Type)
                {
                    case EventTypes.ParticipantAdded:
                        if (index >= 0)
                        {
                            roster.RemoveAt(index);
                        }

                        roster.Add(new RosterMember(change.UserId, change.Role!, change.At));
                        break;
                    case EventTypes.ParticipantRemoved when index >= 0:
                        roster.RemoveAt(index);
                        break;
                    case EventTypes.ParticipantUpdated when index >= 0:
                        roster[index] = roster[index] with { Role = change.Role! };
                        break;
                }
            }

            return new ConversationAsOf(conversation with { LastSeq = seq, LastActivityAt = endedAt, LastMessageId = null }, roster);
        }, cancellationToken);

    public Task<IReadOnlyDictionary<Guid, Message?>> GetMessagesAsOfAsync(
        Guid conversationId, long seq, IReadOnlyCollection<Guid> messageIds, CancellationToken cancellationToken) =>
        ReadAsync<IReadOnlyDictionary<Guid, Message?>>(async s =>
        {
            var result = new Dictionary<Guid, Message?>();
            foreach (var chunk in messageIds.Distinct().Chunk(IdsPerStatement))
            {
                // The message, its number of stored versions and its edits and deletes after seq in one statement, so that
                // all of them are of one moment: read apart, an edit committed between the reads showed a former member
                // the message as edited after they left (or its deletion).
                var ids = Placeholders("@m", chunk.Length);
                var read = s.Sql(
                    $"""
                    WITH later AS (
                        SELECT message_id,
                               SUM(CASE WHEN type = '{EventTypes.MessageEdited}' THEN 1 ELSE 0 END) AS edits,
                               SUM(CASE WHEN type = '{EventTypes.MessageDeleted}' THEN 1 ELSE 0 END) AS deletes
                        FROM conversation_events
                        WHERE conversation_id = @c AND seq > @s AND type IN ('{EventTypes.MessageEdited}', '{EventTypes.MessageDeleted}')
                          AND message_id IN ({ids})
                        GROUP BY message_id)
                    SELECT {SqlRow.MessageColumns}, (SELECT COUNT(*) FROM message_edits v WHERE v.message_id = m.id),
                           COALESCE(later.edits, 0), COALESCE(later.deletes, 0)
                    FROM messages m LEFT JOIN later ON later.message_id = m.id
                    WHERE m.id IN ({ids})
                    """)
                    .With("@c", conversationId).With("@s", seq);
                for (var i = 0; i < chunk.Length; i++)
                {
                    read.With($"@m{i}", chunk[i]);
                }

                var rows = await read.ListAsync(
                    r => (Message: r.Message(), Versions: r.Long(SqlRow.MessageColumnCount), EditsAfter: r.Long(SqlRow.MessageColumnCount + 1),
                          DeletedAfter: r.Long(SqlRow.MessageColumnCount + 2) > 0),
                    cancellationToken);
                foreach (var (message, stored, editsAfter, deletedAfter) in rows)
                {
                    if (deletedAfter)
                    {
                        // Deleted since: its content is erased, and the deletion is not the former member's to learn.
                        result[message.Id] = null;
                        continue;
                    }

                    if (editsAfter == 0)
                    {
                        result[message.Id] = message;
                        continue;
                    }

                    // Version v holds what the message said before edit v: after n of N edits, version n + 1. Versions are
                    // never rewritten, only erased by a delete (which may have come since the statement above: then hidden).
                    var n = (int)(stored - editsAfter);
                    var version = n < 0 ? null : await s.Sql($"SELECT {SqlRow.VersionColumns} FROM message_edits WHERE message_id = @id AND version = @v")
                        .With("@id", message.Id).With("@v", n + 1)
                        .FirstOrDefaultAsync(r => r.Version(), cancellationToken);
                    result[message.Id] = version is null ? null : message with
                    {
                        Content = version.Content,
                        Mentions = version.Mentions,
                        EditedAt = n == 0 ? null : version.CreatedAt,
                    };
                }
            }

            return result;
        }, cancellationToken);

    public Task<IReadOnlyDictionary<Guid, Message>> GetMessagesAsync(IReadOnlyCollection<Guid> messageIds, CancellationToken cancellationToken) =>
        ReadAsync<IReadOnlyDictionary<Guid, Message>>(
            async s => await LoadByIdsAsync(s, messageIds, $"SELECT {SqlRow.MessageColumns} FROM messages m WHERE m.id", r => r.Message(), m => m.Id, cancellationToken),
            cancellationToken);

    public Task<IReadOnlyDictionary<Guid, long>> GetLastSeqsAsync(string userId, CancellationToken cancellationToken) =>
        ReadAsync<IReadOnlyDictionary<Guid, long>>(
            async s => (await s.Sql(
                "SELECT c.id, c.last_seq FROM participants p JOIN conversations c ON c.id = p.conversation_id WHERE p.user_id = @u AND p.left_at IS NULL")
                .With("@u", userId)
                .ListAsync(r => (r.Guid(0), r.Long(1)), cancellationToken))
                .ToDictionary(x => x.Item1, x => x.Item2),
            cancellationToken);

    public Task<IReadOnlyList<MovedWatermark>> ListMovedWatermarksAsync(string userId, DateTimeOffset since, CancellationToken cancellationToken) =>
        ReadAsync<IReadOnlyList<MovedWatermark>>(
            async s => await s.Sql(
                $"""
                SELECT p.conversation_id, {SqlRow.MemberColumns}, me.joined_seq
                FROM participants me JOIN participants p ON p.conversation_id = me.conversation_id
                WHERE me.user_id = @u AND me.left_at IS NULL AND p.left_at IS NULL AND p.receipts_at > @since
                """)
                .With("@u", userId).With("@since", since)
                .ListAsync(r => new MovedWatermark(r.Guid(0), r.Member(1), r.Long(1 + SqlRow.MemberColumnCount)), cancellationToken),
            cancellationToken);
}
