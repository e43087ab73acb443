using System.Data.Common;
using System.Diagnostics;
using Parley.Server.Observability;
using System.Globalization;
using System.Text;

namespace Parley.Server.Storage.Sql;

/// <summary>
/// The storage logic shared by every SQL database: the same statements, in the same transactions, with the
/// differences (value binding, transaction start, conversation locking, migrations) left to a
/// <see cref="SqlDialect"/> and the subclass. One partial file per area: conversations, membership, messages,
/// receipts and the event stream; this one holds the transactions and the reads they share.
/// <para>
/// Concurrency: every write transaction that changes a conversation first locks it
/// (<see cref="SqlDialect.LockConversationsSql"/>, in the round trip of the transaction's first statement) and only
/// then reads the facts its rules need, so rules see
/// the latest committed state and two writers of one conversation never interleave. The lock is held until
/// commit, so seqs are committed in the order they are taken. A transaction locks at most one conversation,
/// except a batch of sends (<see cref="GroupCommit"/>), which locks all of its conversations at once, in one
/// order, before it writes: no deadlocks. Delivered watermarks ride in those batches and are locked with them.
/// </para>
/// </summary>
internal abstract partial class SqlChatStore(SqlDialect dialect) : IChatStore
{
    private volatile bool _migrated;
    private readonly Lock _sendsLock = new();
    private GroupCommit? _sends;

    protected SqlDialect Dialect => dialect;

    /// <summary>Where commits (duration, writes per batch) and failed writes are counted; none when not set.</summary>
    public ParleyMetrics? Metrics { get; set; }

    private string StoreTag => dialect.Provider == "Postgres" ? ParleyMetrics.Stores.Postgres : ParleyMetrics.Stores.Sqlite;

    protected abstract Task<DbConnection> OpenConnectionAsync(CancellationToken cancellationToken);

    /// <summary>The connection for a write transaction, called by a writer admitted by <see cref="EnterWriteAsync"/>; by default a pooled one.</summary>
    protected virtual async ValueTask<WriteConnection> OpenWriteConnectionAsync(CancellationToken cancellationToken) =>
        new(await OpenConnectionAsync(cancellationToken), null);

    /// <summary>The connection a read runs on; by default a pooled one, whose driver prepares statements by itself.</summary>
    protected virtual async ValueTask<WriteConnection> OpenReadConnectionAsync(CancellationToken cancellationToken) =>
        new(await OpenConnectionAsync(cancellationToken), null);

    protected abstract Task<DbTransaction> BeginWriteTransactionAsync(DbConnection connection, CancellationToken cancellationToken);

    /// <summary>Admission to writing (SQLite: its single writer); null when writers need no queue.</summary>
    protected virtual ValueTask<IDisposable?> EnterWriteAsync(CancellationToken cancellationToken) => ValueTask.FromResult<IDisposable?>(null);

    /// <summary>Send batches committed at the same time (1 where the database has a single writer).</summary>
    protected virtual int WriteLanes => 1;

    /// <summary>
    /// Whether a write transaction runs on one thread from its first statement to the end of COMMIT (every call
    /// completes synchronously), so that the thread's CPU clock measures it (<c>parley.store.commit.cpu</c>).
    /// </summary>
    protected virtual bool CommitsOnOneThread => false;

    /// <summary>Sends waiting for their group commit, at most this many per lane before senders wait.</summary>
    private const int SendQueueCapacity = 4096;

    /// <summary>
    /// The group commit of sends, started with the first send: read on every send without allocating, and started
    /// once under a lock (two racing first sends must not start two sets of lanes).
    /// </summary>
    private GroupCommit Sends => Volatile.Read(ref _sends) ?? StartSends();

    private GroupCommit StartSends()
    {
        lock (_sendsLock)
        {
            return _sends ??= new GroupCommit(WriteLanes, SendQueueCapacity, CommitBatchAsync);
        }
    }

    public abstract Task<IReadOnlyList<string>> MigrateAsync(CancellationToken cancellationToken);

    /// <summary>Waits until every queued send was committed (or failed); later sends are refused.</summary>
    protected Task DrainWritesAsync() => _sends?.DrainAsync() ?? Task.CompletedTask;

    /// <summary>
    /// Applies the scripts the ledger does not list (<see cref="SqlMigrator"/>); then the store is ready. The caller
    /// excludes concurrent migrators.
    /// </summary>
    protected async Task<IReadOnlyList<string>> ApplyMigrationsAsync(DbConnection connection, CancellationToken cancellationToken)
    {
        var applied = await SqlMigrator.ApplyAsync(connection, dialect, cancellationToken);
        _migrated = true;
        return applied;
    }

    public async Task<bool> IsReadyAsync(CancellationToken cancellationToken)
    {
        if (!_migrated)
        {
            return false;
        }

        return await ReadAsync(async s => await s.Sql("SELECT 1").ScalarAsync(cancellationToken) is not null, cancellationToken);
    }

    /// <summary>Runs a read on a connection of its own (for the time of the read).</summary>
    private async Task<T> ReadAsync<T>(Func<SqlSession, Task<T>> work, CancellationToken cancellationToken)
    {
        await using var connection = await OpenReadConnectionAsync(cancellationToken);
        var result = await work(new SqlSession(connection.Connection, null, dialect, connection.Statements));
        connection.Completed();
        return result;
    }

    /// <summary>Runs a write that cannot be refused (see the overload).</summary>
    private Task<T> WriteAsync<T>(Guid? conversationId, Func<SqlSession, Task<T>> work, CancellationToken cancellationToken) =>
        WriteAsync(conversationId, work, static _ => true, cancellationToken);

    /// <summary>
    /// Runs <paramref name="work"/> in a write transaction, with <paramref name="conversationId"/> locked first
    /// when given, and commits only when <paramref name="applied"/> says the result is a change (a refusal or a
    /// rejection rolls back). The commit is not cancellable: once the rules accepted a change, it is written or
    /// nothing is.
    /// </summary>
    private async Task<T> WriteAsync<T>(
        Guid? conversationId, Func<SqlSession, Task<T>> work, Func<T, bool> applied, CancellationToken cancellationToken)
    {
        using var writer = await EnterWriteAsync(cancellationToken);
        await using var connection = await OpeningAsync(() => OpenWriteConnectionAsync(cancellationToken).AsTask());
        await using var transaction = await OpeningAsync(() => BeginWriteTransactionAsync(connection.Connection, cancellationToken));
        var session = new SqlSession(connection.Connection, transaction, dialect, connection.Statements);
        if (conversationId is { } id)
        {
            session.LockWithNextCommand([id]);
        }

        var started = Stopwatch.GetTimestamp();
        var cpu = MarkCpu();
        try
        {
            var result = await work(session);
            if (applied(result))
            {
                await session.FlushPreludeAsync(CancellationToken.None);
                await transaction.CommitAsync(CancellationToken.None);
                // The CPU span ends before the duration's, so it never exceeds it.
                var used = CpuSince(cpu);
                Metrics?.RecordCommit(Stopwatch.GetElapsedTime(started), 1, StoreTag, used);
            }
            else
            {
                await transaction.RollbackAsync(CancellationToken.None);
            }

            connection.Completed();
            return result;
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            Metrics?.RecordStoreOperation("write", Stopwatch.GetElapsedTime(started), failed: true);
            throw;
        }
    }

    /// <summary>
    /// One transaction for a batch of writes (<see cref="GroupCommit"/>): their conversations are locked first, all
    /// at once and in one order (so batches and single writers never deadlock), then each write runs. When COMMIT
    /// fails (its answer lost with the connection), the transaction's outcome is asked for on another connection
    /// (<see cref="SettleCommitAsync"/>): committed, the batch succeeded; rolled back, it is reported as
    /// <see cref="CommitRolledBackException"/> (nothing was written: its writes may run again); unknown, as
    /// <see cref="CommitOutcomeUnknownException"/> (the batch may have been written).
    /// </summary>
    private async Task CommitBatchAsync(IReadOnlyList<PendingWrite> batch)
    {
        using var writer = await EnterWriteAsync(CancellationToken.None);
        await using var connection = await NotStartedIfFailing(() => OpenWriteConnectionAsync(CancellationToken.None).AsTask());
        await using var transaction = await NotStartedIfFailing(() => BeginWriteTransactionAsync(connection.Connection, CancellationToken.None));
        var session = new SqlSession(connection.Connection, transaction, dialect, connection.Statements);
        session.IdentifyWithNextCommand();
        if (batch is not [{ LocksItsConversation: true }])
        {
            // Several writes lock all their conversations first, in one order, so that batches never deadlock.
            session.LockWithNextCommand(batch.SelectMany(w => w.Conversations));
        }

        var started = Stopwatch.GetTimestamp();
        var cpu = MarkCpu();
        try
        {
            await RunBatchAsync(session, batch);
        }
        catch (Exception)
        {
            Metrics?.RecordStoreOperation("send_batch", Stopwatch.GetElapsedTime(started), failed: true);
            throw;
        }

        await session.FlushPreludeAsync(CancellationToken.None);
        try
        {
            await transaction.CommitAsync(CancellationToken.None);
        }
        catch (Exception ex)
        {
            var outcome = session.Transaction is { } identity ? await SettleOrUnknownAsync(identity, ex) : CommitOutcome.Unknown;
            if (outcome != CommitOutcome.Committed)
            {
                Metrics?.RecordStoreOperation("send_batch", Stopwatch.GetElapsedTime(started), failed: true);
                throw outcome == CommitOutcome.RolledBack ? new CommitRolledBackException(ex) : new CommitOutcomeUnknownException(ex);
            }

            // Committed, though its answer was lost: the batch succeeded. The broken connection is not kept.
            Metrics?.RecordCommit(Stopwatch.GetElapsedTime(started), batch.Count, StoreTag, null);
            return;
        }

        connection.Completed();
        var used = CpuSince(cpu);
        Metrics?.RecordCommit(Stopwatch.GetElapsedTime(started), batch.Count, StoreTag, used);
    }

    /// <summary>
    /// How the transaction <paramref name="transaction"/> ended, after its COMMIT failed with <paramref name="failure"/>
    /// (typically the connection broke, so the answer was lost): asked on another connection where the database can
    /// tell. By default the outcome is unknown.
    /// </summary>
    internal virtual Task<CommitOutcome> SettleCommitAsync(TransactionIdentity transaction, Exception failure) =>
        Task.FromResult(CommitOutcome.Unknown);

    /// <summary>Whatever goes wrong while settling leaves the outcome unknown: never "rolled back", which runs writes again.</summary>
    private async Task<CommitOutcome> SettleOrUnknownAsync(TransactionIdentity transaction, Exception failure)
    {
        try
        {
            return await SettleCommitAsync(transaction, failure);
        }
        catch (Exception)
        {
            return CommitOutcome.Unknown;
        }
    }

    /// <summary>
    /// A failure to connect or to begin (thrown by the call itself, as SQLite's synchronous BEGIN does, or by its task): no
    /// write of the batch ran (<see cref="GroupCommit"/> fails them together). Npgsql sends BEGIN with the first command.
    /// </summary>
    private async Task<T> NotStartedIfFailing<T>(Func<Task<T>> step)
    {
        try
        {
            return await OpeningAsync(step);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            throw new BatchNotStartedException(ex);
        }
    }

    /// <summary>The operations <c>parley.store.errors</c> counts for a store: started at 0 (ParleyMetrics.StartStoreErrors).</summary>
    public static readonly IReadOnlyList<string> FailingOperations = ["open", "write", "send_batch"];

    /// <summary>
    /// Getting a write connection or beginning its transaction: a failure here is counted as <c>open</c> (a database that
    /// cannot be reached shows in the errors counter, not only the writes that got as far as a statement).
    /// </summary>
    private async Task<T> OpeningAsync<T>(Func<Task<T>> step)
    {
        var started = Stopwatch.GetTimestamp();
        try
        {
            return await step();
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            Metrics?.RecordStoreOperation("open", Stopwatch.GetElapsedTime(started), failed: true);
            throw;
        }
    }

    /// <summary>The committing thread and its CPU clock at a transaction's start, where a commit runs on one thread.</summary>
    private readonly record struct CpuMark(int Thread, TimeSpan Cpu);

    private CpuMark? MarkCpu() =>
        CommitsOnOneThread && ThreadCpuClock.IsSupported ? new CpuMark(Environment.CurrentManagedThreadId, ThreadCpuClock.Now()) : null;

    /// <summary>The CPU the thread used since <paramref name="mark"/>; null if not measured, or if the work moved thread.</summary>
    private static TimeSpan? CpuSince(CpuMark? mark) =>
        mark is { } m && m.Thread == Environment.CurrentManagedThreadId ? ThreadCpuClock.Now() - m.Cpu : null;

    // ---- shared by the areas ---------------------------------------------------------------------------

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
        s.Sql(InsertEventSqlFor[PositionForm(s)])
            .With("@c", evt.ConversationId).With("@seq", evt.Seq).With("@type", evt.Type).With("@m", evt.MessageId)
            .With("@actor", evt.ActorId).With("@u", evt.UserId).With("@role", evt.Role).With("@at", evt.CreatedAt)
            .ExecuteAsync(cancellationToken);

    private const string EventValues = "@c, @seq, @type, @m, @actor, @u, @role, @at";

    private static readonly string[] InsertEventSqlFor = [InsertEventSql(EventValues, false), InsertEventSql(EventValues, true)];

    /// <summary>
    /// Which form of a statement that inserts events the session runs: [0] leaves the positions to the sequencer, [1]
    /// takes them at insert (<see cref="InsertEventSql"/>, where write transactions commit one at a time).
    /// </summary>
    private static int PositionForm(SqlSession s) => s.Dialect.IdsGrowInCommitOrder ? 1 : 0;

    /// <summary>
    /// Statements that insert one conversation event with <paramref name="values"/>, the SQL for its conversation_id,
    /// seq, type, message_id, actor_id, user_id, role and created_at. With <paramref name="positionAtInsert"/> (where
    /// write transactions commit one at a time, <see cref="SqlDialect.IdsGrowInCommitOrder"/>) the event takes the
    /// stream's next position in its own transaction, so positions grow in commit order; without, it is inserted
    /// without one, for the sequencer to number after commit (<see cref="AssignPositionsAsync"/>).
    /// </summary>
    private static string InsertEventSql(string values, bool positionAtInsert) =>
        positionAtInsert
            ? $"""
              UPDATE stream_state SET pos = pos + 1 WHERE id = 1;
              INSERT INTO conversation_events (conversation_id, seq, type, message_id, actor_id, user_id, role, created_at, pos)
              VALUES ({values}, (SELECT pos FROM stream_state WHERE id = 1));
              """
            : $"""
              INSERT INTO conversation_events (conversation_id, seq, type, message_id, actor_id, user_id, role, created_at)
              VALUES ({values});
              """;

    /// <summary>
    /// The conversation row and its member rows in one statement, so one snapshot: read in two outside a transaction, a
    /// send committed between them showed its member's unread count beside the last_seq from before it, and a client
    /// that counts what lies past last_seq counted that message twice.
    /// </summary>
    private static async Task<ConversationSnapshot?> LoadSnapshotAsync(SqlSession s, Guid conversationId, CancellationToken cancellationToken)
    {
        var rows = await s.Sql(
            $"""
            SELECT {SqlRow.ConversationColumns}, {SqlRow.MemberColumns} FROM conversations c
            LEFT JOIN participants p ON p.conversation_id = c.id AND p.left_at IS NULL
            WHERE c.id = @c
            ORDER BY p.joined_seq, p.joined_at, p.user_id
            """)
            .With("@c", conversationId)
            .ListAsync(
                r => (Conversation: r.Conversation(), Member: r.NullableString(SqlRow.ConversationColumnCount) is null ? null : r.Member(SqlRow.ConversationColumnCount)),
                cancellationToken);
        return rows.Count == 0
            ? null
            : new ConversationSnapshot(rows[0].Conversation, rows.Where(r => r.Member is not null).Select(r => r.Member!).ToList());
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

    /// <summary>Ids per statement of an IN list (<see cref="Placeholders"/>): 500, or fewer where the dialect's parameter budget says so.</summary>
    private int IdsPerStatement => Dialect.RowsPerStatement(500, 1);

    /// <summary>
    /// The rows of <paramref name="ids"/> by id, <see cref="IdsPerStatement"/> ids a statement:
    /// <paramref name="select"/> ends with the id column, to which <c>IN (...)</c> is appended.
    /// </summary>
    private async Task<Dictionary<Guid, T>> LoadByIdsAsync<T>(
        SqlSession s, IEnumerable<Guid> ids, string select, Func<SqlRow, T> read, Func<T, Guid> idOf, CancellationToken cancellationToken)
    {
        var result = new Dictionary<Guid, T>();
        foreach (var row in await ListByIdsAsync(s, ids, select, read, cancellationToken))
        {
            result[idOf(row)] = row;
        }

        return result;
    }

    /// <summary>Every row <paramref name="select"/> finds for <paramref name="ids"/> (see <see cref="LoadByIdsAsync"/>), several per id or none.</summary>
    private async Task<List<T>> ListByIdsAsync<T>(
        SqlSession s, IEnumerable<Guid> ids, string select, Func<SqlRow, T> read, CancellationToken cancellationToken)
    {
        var result = new List<T>();
        foreach (var chunk in ids.Distinct().Chunk(IdsPerStatement))
        {
            var command = s.Sql($"{select} IN ({Placeholders("@i", chunk.Length)})");
            for (var i = 0; i < chunk.Length; i++)
            {
                command.With($"@i{i}", chunk[i]);
            }

            result.AddRange(await command.ListAsync(read, cancellationToken));
        }

        return result;
    }

    /// <summary>
    /// A multi-row VALUES list of <paramref name="rows"/> rows whose parameters are the <paramref name="columns"/>' names
    /// suffixed by the row's index: <c>(@c0, @u0), (@c1, @u1)</c> for columns <c>c</c> and <c>u</c>.
    /// </summary>
    private static string RowList(int rows, params string[] columns)
    {
        var builder = new StringBuilder();
        for (var i = 0; i < rows; i++)
        {
            builder.Append(i == 0 ? "(" : ", (");
            for (var c = 0; c < columns.Length; c++)
            {
                builder.Append(c == 0 ? "@" : ", @").Append(columns[c]).Append(i);
            }

            builder.Append(')');
        }

        return builder.ToString();
    }

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
