using System.Runtime.InteropServices;

namespace Parley.Server.Storage.Sql;

/// <summary>
/// The event relay's side of the store (docs/events.md): the receipt log, each sink's position and lease, and the
/// batches it publishes. The outbox is <c>conversation_events</c>, read by stream position.
/// </summary>
internal abstract partial class SqlChatStore
{
    /// <summary>Whether watermark moves are written to <c>receipt_log</c> (only while an event sink is configured).</summary>
    public bool KeepReceiptLog { get; set; }

    /// <summary>The receipt log's stream position: the row id where ids grow in commit order, else the sequencer's <c>pos</c>.</summary>
    private string ReceiptPos => Dialect.IdsGrowInCommitOrder ? "id" : "pos";

    public Task<RelayLease?> TakeRelayLeaseAsync(string sink, string owner, DateTimeOffset now, TimeSpan duration, CancellationToken cancellationToken) =>
        WriteAsync<RelayLease?>(null, async s =>
        {
            // A new sink starts at the beginning of the log: nothing committed before its first pass is skipped.
            await s.Sql("INSERT INTO event_relay (sink, pos, receipt_pos) VALUES (@s, 0, 0) ON CONFLICT (sink) DO NOTHING")
                .With("@s", sink).ExecuteAsync(cancellationToken);
            return await s.Sql(
                """
                UPDATE event_relay SET owner = @o, lease_until = @until, held_at = @now
                WHERE sink = @s AND (owner = @o OR owner IS NULL OR lease_until IS NULL OR lease_until < @now)
                RETURNING pos, receipt_pos
                """)
                .With("@s", sink).With("@o", owner).With("@now", now).With("@until", now + duration)
                .FirstOrDefaultAsync(r => new RelayLease(sink, r.Long(0), r.Long(1)), cancellationToken);
        }, cancellationToken);

    public Task<bool> RecordRelayPositionAsync(
        string sink, string owner, long pos, long receiptPos, DateTimeOffset now, CancellationToken cancellationToken) =>
        WriteAsync(null, async s =>
            // Only while this instance still holds the lease: one that lost it cannot move the position.
            await s.Sql("UPDATE event_relay SET pos = @p, receipt_pos = @r, published_at = @now WHERE sink = @s AND owner = @o")
                .With("@s", sink).With("@o", owner).With("@p", pos).With("@r", receiptPos).With("@now", now)
                .ExecuteAsync(cancellationToken) == 1,
            cancellationToken);

    public Task ReleaseRelayLeaseAsync(string sink, string owner, CancellationToken cancellationToken) =>
        WriteAsync(null, async s =>
            await s.Sql("UPDATE event_relay SET owner = NULL, lease_until = NULL WHERE sink = @s AND owner = @o")
                .With("@s", sink).With("@o", owner).ExecuteAsync(cancellationToken),
            cancellationToken);

    public Task<OutboxBatch> ReadOutboxAsync(long afterPos, long afterReceiptPos, int limit, CancellationToken cancellationToken) =>
        ReadAsync(async s =>
        {
            // One snapshot of both positions: every receipt positioned up to R had its message's event positioned up
            // to E (the sequencer positions events first, in the same transaction).
            var (streamPos, receiptPos) = (await s.Sql("SELECT pos, receipt_pos FROM stream_state WHERE id = 1")
                .ListAsync(r => (r.Long(0), r.Long(1)), cancellationToken)).Single();
            var events = await s.Sql(
                """
                SELECT conversation_id, seq, type, message_id, actor_id, user_id, role, created_at, pos, members
                FROM conversation_events WHERE pos > @after AND pos <= @upto ORDER BY pos LIMIT @n
                """)
                .With("@after", afterPos).With("@upto", streamPos).With("@n", limit)
                .ListAsync(
                    r => new OutboxEvent(
                        new ConversationEvent(r.Guid(0), r.Long(1), r.String(2), r.NullableGuid(3), r.String(4), r.NullableString(5), r.NullableString(6), r.Time(7)),
                        r.Long(8),
                        r.Json(9, StorageJsonContext.Default.IReadOnlyListRosterEntry)),
                    cancellationToken);

            // Receipts only once the events reached the snapshot's end, so a receipt never precedes its message.
            List<ReceiptLogEntry> receipts = events.Count < limit
                ? await s.Sql(
                    $"""
                    SELECT id, {ReceiptPos}, conversation_id, user_id, kind, seq, message_id, created_at
                    FROM receipt_log WHERE {ReceiptPos} > @after AND {ReceiptPos} <= @upto ORDER BY {ReceiptPos} LIMIT @n
                    """)
                    .With("@after", afterReceiptPos).With("@upto", receiptPos).With("@n", limit - events.Count)
                    .ListAsync(r => new ReceiptLogEntry(r.Long(0), r.Long(1), r.Guid(2), r.String(3), r.String(4), r.Long(5), r.Guid(6), r.Time(7)), cancellationToken)
                : [];

            // The facts the records need, read by the batch's position range (no list of ids to bind): the messages the
            // events reference, as they are now; for each new message, the current members who joined before it but the
            // sender and those it was delivered to already (notification recipients, once the relay knows who is offline).
            var messages = new Dictionary<Guid, Message>(events.Count);
            var recipients = new Dictionary<(Guid, long), IReadOnlyList<string>>();
            if (events.Count > 0)
            {
                var last = events[^1].Pos;
                foreach (var message in await s.Sql(
                    $"""
                    SELECT {SqlRow.MessageColumns} FROM conversation_events e JOIN messages m ON m.id = e.message_id
                    WHERE e.pos > @after AND e.pos <= @last
                    """)
                    .With("@after", afterPos).With("@last", last).ListAsync(r => r.Message(), cancellationToken))
                {
                    messages[message.Id] = message;
                }

                // By the conversations' ids rather than joined to the event range: a join's plan depends on statistics, and
                // without them (a young database) PostgreSQL drove it from every member row, probing the range once each.
                var newMessages = events.Where(e => e.Event.Type == EventTypes.MessageCreated).Select(e => e.Event).ToList();
                var current = new Dictionary<Guid, List<(string UserId, long JoinedSeq, long DeliveredSeq)>>();
                foreach (var (conversationId, userId, joinedSeq, deliveredSeq) in await ListByIdsAsync(
                    s, newMessages.Select(e => e.ConversationId),
                    "SELECT p.conversation_id, p.user_id, p.joined_seq, p.delivered_seq FROM participants p WHERE p.left_at IS NULL AND p.conversation_id",
                    r => (r.Guid(0), r.String(1), r.Long(2), r.Long(3)), cancellationToken))
                {
                    ref var list = ref CollectionsMarshal.GetValueRefOrAddDefault(current, conversationId, out _);
                    (list ??= []).Add((userId, joinedSeq, deliveredSeq));
                }

                // Plain loops: this runs for every message the stream publishes.
                foreach (var e in newMessages)
                {
                    List<string>? candidates = null;
                    foreach (var (userId, joinedSeq, deliveredSeq) in current.GetValueOrDefault(e.ConversationId) ?? [])
                    {
                        // Delivered already (a device got it and went away before this pass, or it was read over REST): no push.
                        if (joinedSeq < e.Seq && deliveredSeq < e.Seq && userId != e.ActorId)
                        {
                            (candidates ??= []).Add(userId);
                        }
                    }

                    if (candidates is not null)
                    {
                        recipients[(e.ConversationId, e.Seq)] = candidates;
                    }
                }
            }

            var created = events.Where(e => e.Event.Type == EventTypes.ConversationCreated).Select(e => e.Event.ConversationId).ToList();
            return new OutboxBatch(
                events,
                receipts,
                events.Count > 0 ? events[^1].Pos : afterPos,
                receipts.Count > 0 ? receipts[^1].Pos : afterReceiptPos,
                messages,
                created.Count > 0 ? await LoadConversationRecordsAsync(s, created, cancellationToken) : new Dictionary<Guid, ConversationRecord>(),
                recipients);
        }, cancellationToken);

    public Task<IReadOnlyDictionary<Guid, ConversationRecord>> GetConversationRecordsAsync(IReadOnlyCollection<Guid> conversationIds, CancellationToken cancellationToken) =>
        ReadAsync<IReadOnlyDictionary<Guid, ConversationRecord>>(
            async s => await LoadConversationRecordsAsync(s, conversationIds, cancellationToken), cancellationToken);

    private Task<Dictionary<Guid, ConversationRecord>> LoadConversationRecordsAsync(
        SqlSession s, IEnumerable<Guid> conversationIds, CancellationToken cancellationToken) =>
        LoadByIdsAsync(s, conversationIds, $"SELECT {SqlRow.ConversationColumns} FROM conversations c WHERE c.id", r => r.Conversation(), c => c.Id, cancellationToken);

    public Task<RelayBacklog> GetRelayBacklogAsync(string sink, CancellationToken cancellationToken) =>
        ReadAsync(async s =>
        {
            var (streamPos, streamReceipts, pos, receipts) = (await s.Sql(
                "SELECT s.pos, s.receipt_pos, r.pos, r.receipt_pos FROM stream_state s LEFT JOIN event_relay r ON r.sink = @s WHERE s.id = 1")
                .With("@s", sink)
                .ListAsync(r => (r.Long(0), r.Long(1), r.NullableLong(2) ?? 0, r.NullableLong(3) ?? 0), cancellationToken)).Single();
            var oldestEvent = (await s.Sql("SELECT created_at FROM conversation_events WHERE pos > @p ORDER BY pos LIMIT 1")
                .With("@p", pos).ListAsync(r => (DateTimeOffset?)r.Time(0), cancellationToken)).FirstOrDefault();
            var oldestReceipt = (await s.Sql($"SELECT created_at FROM receipt_log WHERE {ReceiptPos} > @p ORDER BY {ReceiptPos} LIMIT 1")
                .With("@p", receipts).ListAsync(r => (DateTimeOffset?)r.Time(0), cancellationToken)).FirstOrDefault();
            DateTimeOffset? oldest = (oldestEvent, oldestReceipt) switch
            {
                ({ } e, { } r) => e < r ? e : r,
                ({ } e, null) => e,
                (null, var r) => r,
            };
            return new RelayBacklog(Math.Max(0, streamPos - pos), Math.Max(0, streamReceipts - receipts), oldest);
        }, cancellationToken);

    public Task<int> PruneReceiptLogAsync(IReadOnlyList<string> sinks, DateTimeOffset heldSince, int limit, CancellationToken cancellationToken) =>
        sinks.Count == 0
            ? Task.FromResult(0)
            : WriteAsync(null, async s =>
            {
                // Only below the position every sink has published: the configured ones (one without a row yet holds
                // everything) and every other row an instance held since heldSince (a sink that instances of another
                // configuration run, as during a rolling deploy that adds it) or that none has held yet (created by hand).
                var mine = Placeholders("@s", sinks.Count);
                var command = s.Sql(
                    $"""
                    DELETE FROM receipt_log WHERE id IN (
                        SELECT id FROM receipt_log WHERE {ReceiptPos} <= (
                            SELECT CASE WHEN SUM(CASE WHEN sink IN ({mine}) THEN 1 ELSE 0 END) = @k THEN MIN(receipt_pos) END
                            FROM event_relay WHERE sink IN ({mine}) OR held_at IS NULL OR held_at >= @since)
                        ORDER BY {ReceiptPos} LIMIT @n)
                    """)
                    .With("@k", sinks.Count).With("@since", heldSince).With("@n", limit);
                for (var i = 0; i < sinks.Count; i++)
                {
                    command.With($"@s{i}", sinks[i]);
                }

                return await command.ExecuteAsync(cancellationToken);
            }, cancellationToken);

    public async Task AddDeadLetterAsync(DeadLetter letter, CancellationToken cancellationToken)
    {
        var added = await WriteAsync(null, async s =>
            await s.Sql(
                """
                INSERT INTO event_dead_letters (sink, event_id, type, record, error, failed_at) VALUES (@s, @id, @t, @r, @e, @at)
                ON CONFLICT (sink, event_id) DO NOTHING
                """)
                .With("@s", letter.Sink).With("@id", letter.EventId).With("@t", letter.Type).With("@r", letter.Record)
                .With("@e", letter.Error).With("@at", letter.FailedAt)
                .ExecuteAsync(cancellationToken),
            cancellationToken);
        if (added > 0)
        {
            Metrics?.EventDeadLettered(letter.Sink);
        }
    }

    public Task<IReadOnlyList<DeadLetter>> ListDeadLettersAsync(string sink, CancellationToken cancellationToken) =>
        ReadAsync<IReadOnlyList<DeadLetter>>(
            async s => await s.Sql("SELECT sink, event_id, type, record, error, failed_at FROM event_dead_letters WHERE sink = @s ORDER BY id")
                .With("@s", sink)
                .ListAsync(r => new DeadLetter(r.String(0), r.String(1), r.String(2), r.String(3), r.String(4), r.Time(5)), cancellationToken),
            cancellationToken);

    public Task<IReadOnlyDictionary<string, long>> GetUnreadTotalsAsync(IReadOnlyCollection<string> userIds, CancellationToken cancellationToken) =>
        ReadAsync<IReadOnlyDictionary<string, long>>(async s =>
        {
            var result = new Dictionary<string, long>(StringComparer.Ordinal);
            foreach (var chunk in userIds.Distinct().Chunk(IdsPerStatement))
            {
                var command = s.Sql(
                    $"SELECT user_id, SUM(unread_count) FROM participants WHERE user_id IN ({Placeholders("@u", chunk.Length)}) AND left_at IS NULL GROUP BY user_id");
                for (var i = 0; i < chunk.Length; i++)
                {
                    command.With($"@u{i}", chunk[i]);
                }

                foreach (var (user, total) in await command.ListAsync(r => (r.String(0), r.Long(1)), cancellationToken))
                {
                    result[user] = total;
                }
            }

            return result;
        }, cancellationToken);

    /// <summary>Writes watermark moves to the receipt log, inside the transaction that moved them (when the log is kept).</summary>
    private static async Task LogReceiptsAsync(
        SqlSession s, IReadOnlyList<(Guid ConversationId, string UserId, string Kind, long Seq, Guid MessageId)> moves, DateTimeOffset now,
        CancellationToken cancellationToken)
    {
        foreach (var chunk in moves.Chunk(s.Dialect.RowsPerStatement(150, 5)))
        {
            var padded = s.Dialect.PaddedRows(chunk.Length);
            var values = RowList(padded, "c", "u", "k", "s", "m");

            var command = s.Sql(
                $"""
                WITH v(c, u, k, s, m) AS (VALUES {values})
                INSERT INTO receipt_log (conversation_id, user_id, kind, seq, message_id, created_at)
                SELECT c, u, k, s, m, @now FROM v WHERE c IS NOT NULL
                """).With("@now", now);
            for (var i = 0; i < chunk.Length; i++)
            {
                command.With($"@c{i}", chunk[i].ConversationId).With($"@u{i}", chunk[i].UserId).With($"@k{i}", chunk[i].Kind)
                    .With($"@s{i}", chunk[i].Seq).With($"@m{i}", chunk[i].MessageId);
            }

            for (var i = chunk.Length; i < padded; i++)
            {
                command.With($"@c{i}", (Guid?)null).With($"@u{i}", (string?)null).With($"@k{i}", (string?)null)
                    .With($"@s{i}", (long?)null).With($"@m{i}", (Guid?)null);
            }

            await command.ExecuteAsync(cancellationToken);
        }

        if (s.Dialect.IdsGrowInCommitOrder && moves.Count > 0)
        {
            // One commit at a time: a row's id is its position, and the rows are readable from this commit on (their
            // message events took their positions when they were written, in this transaction or an earlier one).
            await s.Sql(
                """
                UPDATE stream_state SET receipt_pos = MAX(receipt_pos, COALESCE((SELECT MAX(id) FROM receipt_log), 0)) WHERE id = 1
                """).ExecuteAsync(cancellationToken);
        }
    }
}
