using System.Collections.Concurrent;
using System.Runtime.ExceptionServices;

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
                    -- Read implies delivered; a delivered watermark already past this read stays where it is.
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
            if (KeepReceiptLog)
            {
                List<(Guid, string, string, long, Guid)> moves = [];
                if (after.DeliveredSeq > before.DeliveredSeq && after.DeliveredMessageId is { } deliveredMessage)
                {
                    moves.Add((conversationId, userId, ReceiptKinds.Delivered, after.DeliveredSeq, deliveredMessage));
                }

                moves.Add((conversationId, userId, ReceiptKinds.Read, message.Seq, message.Id));
                await LogReceiptsAsync(s, moves, now, cancellationToken);
            }

            var senders = after.DeliveredSeq > before.DeliveredSeq
                ? await SendersBetweenAsync(s, conversationId, userId, Math.Max(before.DeliveredSeq, before.JoinedSeq), after.DeliveredSeq, cancellationToken)
                : [];
            return new WatermarkResult(conversationId, before, after, senders, snapshot!.Members);
        }, r => r.IsApplied, cancellationToken);

    /// <summary>
    /// Delivered watermarks of a batch of reports. They ride in the group commits of sends (<see cref="GroupCommit"/>):
    /// one write per lane holds the reports of that lane's conversations, so a member's row is only ever changed by
    /// the lane that also writes its conversation's messages: senders never wait for a delivered batch, and the
    /// batch never waits for them. Its conversations are locked with the rest of the batch, as for every write.
    /// </summary>
    public async Task<DeliveredBatch> AdvanceDeliveredAsync(
        IReadOnlyList<DeliveryReport> reports, DateTimeOffset now, CancellationToken cancellationToken)
    {
        var writes = reports
            .GroupBy(r => Sends.LaneOf(r.ConversationId))
            .Select(lane => new PendingDelivered(
                lane.OrderBy(r => r.ConversationId).ThenBy(r => r.UserId, StringComparer.Ordinal).ToArray(), now, KeepReceiptLog))
            .ToList();
        // Once one lane's write is queued it will commit: the others are queued whatever happens, so that the outcome
        // of every queued write is known (a cancellation half-way would leave committed moves unannounced).
        for (var i = 0; i < writes.Count; i++)
        {
            await Sends.EnqueueAsync(writes[i], i == 0 ? cancellationToken : CancellationToken.None);
        }

        var moved = new List<WatermarkResult>();
        var failed = new List<DeliveryReport>();
        Exception? error = null;
        foreach (var write in writes)
        {
            try
            {
                moved.AddRange(await write.Outcome);
            }
            catch (Exception ex)
            {
                // The other lanes' moves committed all the same: they are returned, to be announced.
                error ??= ex;
                failed.AddRange(write.Reports);
            }
        }

        if (error is not null && moved.Count == 0 && failed.Count == reports.Count)
        {
            ExceptionDispatchInfo.Throw(error);
        }

        return new DeliveredBatch(moved) { Failed = failed, Error = error };
    }

    /// <summary>The write lane of a conversation's writes (tests arrange reports on different lanes with it).</summary>
    internal int WriteLaneOf(Guid conversationId) => Sends.LaneOf(conversationId);

    /// <summary>Reports per statement of a delivered batch (at most): three parameters each to read, five to move.</summary>
    private const int DeliveredChunk = 200;

    private sealed class PendingDelivered(DeliveryReport[] reports, DateTimeOffset now, bool logReceipts) : PendingWrite
    {
        private readonly TaskCompletionSource<List<WatermarkResult>> _outcome = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private List<WatermarkResult> _result = [];

        public Task<List<WatermarkResult>> Outcome => _outcome.Task;

        public IReadOnlyList<DeliveryReport> Reports => reports;

        public override Guid ConversationId => reports[0].ConversationId;

        public override IEnumerable<Guid> Conversations => reports.Select(r => r.ConversationId).Distinct();

        public override async Task RunAsync(SqlSession session)
        {
            var result = new List<WatermarkResult>();
            foreach (var chunk in reports.Chunk(session.Dialect.RowsPerStatement(DeliveredChunk, 5)))
            {
                result.AddRange(await AdvanceDeliveredChunkAsync(session, chunk, now, logReceipts, CancellationToken.None));
            }

            _result = result;
        }

        public override void Complete() => _outcome.TrySetResult(_result);

        public override void Fail(Exception exception) => _outcome.TrySetException(exception);
    }

    /// <summary>
    /// One chunk in two round trips, however many reports it holds: one reads the member rows with the newest
    /// message each may advance to; one moves them and finds whom to notify. The conversations are locked.
    /// </summary>
    private static async Task<List<WatermarkResult>> AdvanceDeliveredChunkAsync(
        SqlSession s, DeliveryReport[] chunk, DateTimeOffset now, bool logReceipts, CancellationToken cancellationToken)
    {
        var padded = s.Dialect.PaddedRows(chunk.Length);
        var select = s.Sql(DeliveredSelects.GetOrAdd((padded, s.Dialect.JoinsLaterally), DeliveredSelectSql));
        for (var i = 0; i < chunk.Length; i++)
        {
            select.With(SqlDialect.ListParameter("c", i), chunk[i].ConversationId).With(SqlDialect.ListParameter("u", i), chunk[i].UserId)
                .With(SqlDialect.ListParameter("t", i), chunk[i].UpToSeq);
        }

        for (var i = chunk.Length; i < padded; i++)
        {
            select.With(SqlDialect.ListParameter("c", i), (Guid?)null).With(SqlDialect.ListParameter("u", i), (string?)null)
                .With(SqlDialect.ListParameter("t", i), (long?)null);
        }

        var found = await select.ListAsync(
            r => (Member: r.Member(), ConversationId: r.Guid(SqlRow.MemberColumnCount),
                  Seq: r.NullableLong(SqlRow.MemberColumnCount + 1), Id: r.NullableGuid(SqlRow.MemberColumnCount + 2)),
            cancellationToken);

        // The conversations are this transaction's: each target is above its watermark.
        var moves = found.Where(f => f.Seq is not null && f.Id is not null).ToList();
        var moved = new List<WatermarkResult>();
        if (moves.Count == 0)
        {
            return moved;
        }

        var paddedMoves = s.Dialect.PaddedRows(moves.Count);
        var update = s.Sql(DeliveredUpdates.GetOrAdd((paddedMoves, s.Dialect.JoinsLaterally), DeliveredUpdateSql)).With("@now", now);
        for (var i = 0; i < moves.Count; i++)
        {
            var before = moves[i].Member;
            update.With(SqlDialect.ListParameter("c", i), moves[i].ConversationId).With(SqlDialect.ListParameter("u", i), before.UserId)
                .With(SqlDialect.ListParameter("f", i), Math.Max(before.DeliveredSeq, before.JoinedSeq))
                .With(SqlDialect.ListParameter("s", i), moves[i].Seq!.Value).With(SqlDialect.ListParameter("i", i), moves[i].Id!.Value);
        }

        for (var i = moves.Count; i < paddedMoves; i++)
        {
            update.With(SqlDialect.ListParameter("c", i), (Guid?)null).With(SqlDialect.ListParameter("u", i), (string?)null)
                .With(SqlDialect.ListParameter("f", i), (long?)null).With(SqlDialect.ListParameter("s", i), (long?)null)
                .With(SqlDialect.ListParameter("i", i), (Guid?)null);
        }

        var senders = (await update.ReadResultsAsync(
                results => results.NextAsync(r => (ConversationId: r.Guid(0), UserId: r.String(1), Sender: r.String(2))), cancellationToken))
            .ToLookup(x => (x.ConversationId, x.UserId), x => x.Sender);
        if (logReceipts)
        {
            // In the lane's transaction: the receipt log holds exactly the moves that commit.
            await LogReceiptsAsync(
                s, moves.Select(m => (m.ConversationId, m.Member.UserId, ReceiptKinds.Delivered, m.Seq!.Value, m.Id!.Value)).ToList(), now, cancellationToken);
        }

        foreach (var move in moves)
        {
            var after = move.Member with { DeliveredSeq = move.Seq!.Value, DeliveredMessageId = move.Id!.Value };
            List<string> notify = [.. senders[(move.ConversationId, move.Member.UserId)]];
            notify.Sort(StringComparer.Ordinal);
            moved.Add(new WatermarkResult(move.ConversationId, move.Member, after, notify, []));
        }

        return moved;
    }

    // The texts of a delivered-receipt chunk, made once per number of rows (at most a chunk's, or its padded lengths):
    // a busy server runs them in every batch.
    private static readonly ConcurrentDictionary<(int Rows, bool Lateral), string> DeliveredSelects = new();
    private static readonly ConcurrentDictionary<(int Rows, bool Lateral), string> DeliveredUpdates = new();

    /// <summary>
    /// The members and the newest message in (max(delivered, joined), up_to_seq] of each of the chunk's reports
    /// (<c>Rows</c>). With <c>Lateral</c>, each member row is read by its key: joined plainly, PostgreSQL hashed the
    /// whole <c>participants</c> table against the reports wherever a scan of it looked about as cheap as the look-ups.
    /// </summary>
    private static string DeliveredSelectSql((int Rows, bool Lateral) shape) =>
        $"""
        WITH r(c, u, upto) AS (VALUES {RowList(shape.Rows, "c", "u", "t")})
        SELECT {SqlRow.MemberColumns}, p.conversation_id, t.seq, t.id
        FROM r
        {(shape.Lateral
            ? "CROSS JOIN LATERAL (SELECT * FROM participants p WHERE p.conversation_id = r.c AND p.user_id = r.u AND p.left_at IS NULL LIMIT 1) p"
            : "JOIN participants p ON p.conversation_id = r.c AND p.user_id = r.u AND p.left_at IS NULL")}
        LEFT JOIN messages t ON t.conversation_id = p.conversation_id AND t.seq = (
            SELECT MAX(m.seq) FROM messages m
            WHERE m.conversation_id = p.conversation_id AND m.seq <= r.upto
              AND m.seq > CASE WHEN p.delivered_seq > p.joined_seq THEN p.delivered_seq ELSE p.joined_seq END)
        """;

    /// <summary>
    /// Moves the watermarks of a chunk (<c>Rows</c> reports), then finds whom each move notifies: the senders (other
    /// than the member) of live messages in (from, to] who are still members. With <c>Lateral</c> (see
    /// <see cref="SqlDialect.JoinsLaterally"/>) each report reads its own range of the messages index and looks each
    /// sender up by key (the <c>LIMIT</c> keeps PostgreSQL from flattening that lookup into a join it may hash over
    /// the whole table when its statistics are stale): the cost follows the messages the watermarks pass, never the
    /// conversations' history or the number of members.
    /// </summary>
    private static string DeliveredUpdateSql((int Rows, bool Lateral) shape)
    {
        var values = RowList(shape.Rows, "c", "u", "f", "s", "i");
        var senders = shape.Lateral
            ? """
              SELECT DISTINCT v.c, v.u, n.sender_id FROM v
              CROSS JOIN LATERAL (
                  SELECT m.sender_id, MAX(m.seq) AS last FROM messages m
                  WHERE m.conversation_id = v.c AND m.seq > v.lo AND m.seq <= v.hi AND m.sender_id <> v.u AND m.deleted_at IS NULL
                  GROUP BY m.sender_id) n
              CROSS JOIN LATERAL (
                  SELECT 1 FROM participants p
                  WHERE p.conversation_id = v.c AND p.user_id = n.sender_id AND p.left_at IS NULL AND p.joined_seq < n.last
                  LIMIT 1) k
              """
            : """
              SELECT DISTINCT v.c, v.u, m.sender_id FROM v
              JOIN messages m ON m.conversation_id = v.c AND m.seq > v.lo AND m.seq <= v.hi AND m.sender_id <> v.u AND m.deleted_at IS NULL
              JOIN participants p ON p.conversation_id = m.conversation_id AND p.user_id = m.sender_id AND p.left_at IS NULL
                  AND p.joined_seq < m.seq
              """;
        return $"""
            WITH v(c, u, lo, hi, id) AS (VALUES {values})
            UPDATE participants SET delivered_seq = v.hi, delivered_message_id = v.id, receipts_at = @now
            FROM v WHERE participants.conversation_id = v.c AND participants.user_id = v.u AND participants.delivered_seq < v.hi;
            -- Senders (other than the member) of live messages in (from, to]: who learns that the member received them.
            WITH v(c, u, lo, hi, id) AS (VALUES {values})
            {senders}
            """;
    }

    /// <summary>
    /// Senders (other than the user) of live messages in (from, to]: who learns that the user received them.
    /// Only current members, and only for messages they sent as such: a sender who has left receives nothing more of the
    /// conversation, and one who left and was added again learns nothing of what was sent while they were out.
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
            AND p.joined_seq < m.seq
        WHERE m.conversation_id = @c AND m.seq > @from AND m.seq <= @to AND m.sender_id <> @u AND m.deleted_at IS NULL
        """;
}
