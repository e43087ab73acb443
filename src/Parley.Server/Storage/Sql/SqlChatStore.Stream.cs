using Parley.Server.Messages;

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

    public Task<StreamPosition> GetStreamPositionAsync(CancellationToken cancellationToken) =>
        ReadAsync(
            async s => (await s.Sql("SELECT epoch, pos FROM stream_state WHERE id = 1")
                .FirstOrDefaultAsync(r => new StreamPosition(r.Guid(0), r.Long(1)), cancellationToken))
                ?? throw new InvalidOperationException("The stream_state row is missing: the schema is not migrated."),
            cancellationToken);

    public async Task<int> AssignPositionsAsync(int batch, CancellationToken cancellationToken)
    {
        var result = await WriteAsync<int>(null, async s =>
        {
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

            return positioned;
        }, cancellationToken);
        return result.Value;
    }

    public Task<IReadOnlyList<UserEvent>> ReadUserEventsAsync(
        string userId, long afterPos, long uptoPos, bool newerThanUpto, int limit, CancellationToken cancellationToken) =>
        ReadAsync<IReadOnlyList<UserEvent>>(
            async s => await s.Sql(
                newerThanUpto
                    ? $"""
                       SELECT e.conversation_id, e.seq, e.type, e.message_id, e.actor_id, e.user_id, e.role, e.created_at, e.pos, p.joined_seq
                       {UserEventsFrom} AND (e.pos IS NULL OR e.pos > @upto)
                       ORDER BY e.conversation_id, e.seq LIMIT @n
                       """
                    : $"""
                       SELECT e.conversation_id, e.seq, e.type, e.message_id, e.actor_id, e.user_id, e.role, e.created_at, e.pos, p.joined_seq
                       {UserEventsFrom} AND e.pos > @after AND e.pos <= @upto
                       ORDER BY e.pos LIMIT @n
                       """)
                .With("@u", userId).With("@after", afterPos).With("@upto", uptoPos).With("@n", limit)
                .ListAsync(
                    r => new UserEvent(
                        new ConversationEvent(r.Guid(0), r.Long(1), r.String(2), r.NullableGuid(3), r.String(4), r.NullableString(5), r.NullableString(6), r.Time(7)),
                        r.NullableLong(8),
                        r.Long(9)),
                    cancellationToken),
            cancellationToken);

    public Task<IReadOnlyDictionary<Guid, Message>> GetMessagesAsync(IReadOnlyCollection<Guid> messageIds, CancellationToken cancellationToken) =>
        ReadAsync<IReadOnlyDictionary<Guid, Message>>(async s =>
        {
            var result = new Dictionary<Guid, Message>();
            foreach (var chunk in messageIds.Distinct().Chunk(500))
            {
                var command = s.Sql($"SELECT {SqlRow.MessageColumns} FROM messages m WHERE m.id IN ({Placeholders("@m", chunk.Length)})");
                for (var i = 0; i < chunk.Length; i++)
                {
                    command.With($"@m{i}", chunk[i]);
                }

                foreach (var message in await command.ListAsync(r => r.Message(), cancellationToken))
                {
                    result[message.Id] = message;
                }
            }

            return result;
        }, cancellationToken);

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
