using System.Data;
using System.Data.Common;
using System.Diagnostics;
using System.Numerics;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;
using NpgsqlTypes;
using Parley.Server.Storage.Sql;

namespace Parley.Server.Storage.Postgres;

/// <summary>
/// The production store: PostgreSQL through one pooled <see cref="NpgsqlDataSource"/>. Several Parley
/// instances may share the database: a conversation's writers are serialized by its row lock
/// (<c>SELECT ... FOR UPDATE</c>), held until commit, so seqs are gapless and committed in order.
/// </summary>
internal sealed partial class PostgresChatStore(NpgsqlDataSource dataSource, ILogger? logger = null) : SqlChatStore(new PostgresDialect()), IAsyncDisposable
{
    private readonly ILogger _logger = logger ?? NullLogger.Instance;

    /// <summary>Key of the advisory lock that lets one instance at a time migrate.</summary>
    private const long MigrationLockKey = 0x7061726c6579; // "parley"

    public async ValueTask DisposeAsync()
    {
        await DrainWritesAsync();
        await dataSource.DisposeAsync();
    }

    // Batches committed at the same time: while one lane waits for its COMMIT, the other writes. Each transaction costs
    // PostgreSQL more than its statements do, so fewer lanes (larger batches) cost less CPU per message: two, since a
    // batch's sends go together (SendTogetherAsync); one lane alone stalls behind each fsync (benchmarks.md, item 17).
    protected override int WriteLanes => 2;

    /// <summary>
    /// The data source for a connection string, with bounded waits where the string sets none: a request fails
    /// in seconds (and becomes a 503) instead of hanging while the database is unreachable.
    /// </summary>
    public static NpgsqlDataSource CreateDataSource(string connectionString)
    {
        var builder = new NpgsqlConnectionStringBuilder(connectionString);
        var given = new DbConnectionStringBuilder { ConnectionString = connectionString };
        if (!given.ContainsKey("Timeout"))
        {
            builder.Timeout = 5; // connecting, and waiting for a pooled connection
        }

        if (!given.ContainsKey("Command Timeout") && !given.ContainsKey("CommandTimeout"))
        {
            builder.CommandTimeout = 10;
        }

        if (!given.ContainsKey("Max Auto Prepare") && !given.ContainsKey("MaxAutoPrepare"))
        {
            builder.MaxAutoPrepare = 64; // the hot statements are prepared on each connection after a few uses
        }

        if (!given.ContainsKey("Maximum Pool Size") && !given.ContainsKey("Max Pool Size") && !given.ContainsKey("MaxPoolSize"))
        {
            // Npgsql's 100 is PostgreSQL's whole default max_connections: one instance would lock out a second and psql.
            builder.MaxPoolSize = 32;
        }

        if (!given.ContainsKey("No Reset On Close") && !given.ContainsKey("NoResetOnClose"))
        {
            // Parley keeps no session state on a pooled connection (its advisory locks are released in the same use or
            // end with the transaction), so the reset Npgsql runs on each return (seven statements before the next
            // command) is pure cost: one per send batch.
            builder.NoResetOnClose = true;
        }

        if (!given.ContainsKey("Keepalive"))
        {
            builder.KeepAlive = 15;
        }

        return NpgsqlDataSource.Create(builder.ConnectionString);
    }

    protected override async Task<DbConnection> OpenConnectionAsync(CancellationToken cancellationToken) =>
        await dataSource.OpenConnectionAsync(cancellationToken);

    protected override async Task<DbTransaction> BeginWriteTransactionAsync(DbConnection connection, CancellationToken cancellationToken) =>
        await connection.BeginTransactionAsync(IsolationLevel.ReadCommitted, cancellationToken);

    /// <summary>How long a transaction whose COMMIT failed may still show as running before its server process is ended.</summary>
    internal TimeSpan SettleTerminateAfter { get; init; } = TimeSpan.FromSeconds(3);

    /// <summary>How long the outcome of a failed COMMIT is asked for before it is given up as unknown.</summary>
    internal TimeSpan SettleTimeout { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>
    /// Asks PostgreSQL, on another connection, how the transaction ended (<c>pg_xact_status</c>). A COMMIT that reached
    /// the server commits there even when its answer is lost; one that did not is rolled back when the server notices
    /// the connection is gone. While the transaction still shows as running (its server process has not noticed yet,
    /// as on a network path that went silent), it is asked again; after <see cref="SettleTerminateAfter"/> its server
    /// process is ended (only while it still runs that transaction), which settles it either way; but not while it waits
    /// for a synchronous standby (<c>SyncRep</c>): ended there, PostgreSQL keeps the commit without the standby's copy and
    /// reports it committed. Such a batch stays unknown (its callers get 503 and retry by <c>client_message_id</c>).
    /// </summary>
    internal override async Task<CommitOutcome> SettleCommitAsync(TransactionIdentity transaction, Exception failure)
    {
        var started = Stopwatch.GetTimestamp();
        var terminated = false;
        string? last = null;
        while (true)
        {
            // Each try (connecting, asking, ending the process) within the time left, so the whole stays within SettleTimeout.
            var left = SettleTimeout - Stopwatch.GetElapsedTime(started);
            using var budget = new CancellationTokenSource(left > TimeSpan.FromMilliseconds(100) ? left : TimeSpan.FromMilliseconds(100));
            try
            {
                await using var connection = await dataSource.OpenConnectionAsync(budget.Token);
                await using var status = new NpgsqlCommand("SELECT pg_xact_status(@x::xid8)", connection);
                status.Parameters.AddWithValue("x", transaction.Id);
                last = await status.ExecuteScalarAsync(budget.Token) as string;
                switch (last)
                {
                    case "committed":
                        Log.Settled(_logger, transaction.Id, "committed", failure.Message);
                        return CommitOutcome.Committed;
                    case "aborted":
                        Log.Settled(_logger, transaction.Id, "rolled back", failure.Message);
                        return CommitOutcome.RolledBack;
                    case null:
                        // Too old for the server to remember (or never assigned): nothing more can be learned.
                        last = "not known to the server";
                        Log.Unsettled(_logger, transaction.Id, last, failure.Message);
                        return CommitOutcome.Unknown;
                }

                if (!terminated && Stopwatch.GetElapsedTime(started) >= SettleTerminateAfter)
                {
                    await using var terminate = new NpgsqlCommand(
                        """
                        SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                        WHERE pid = @pid AND backend_xid::text = (@x::numeric % 4294967296)::text
                          AND wait_event IS DISTINCT FROM 'SyncRep'
                        """, connection);
                    terminate.Parameters.AddWithValue("pid", transaction.ServerProcess);
                    terminate.Parameters.AddWithValue("x", transaction.Id);
                    await terminate.ExecuteNonQueryAsync(budget.Token);
                    terminated = true;
                }
            }
            catch (Exception ex) when (ex is DbException or TimeoutException or IOException or System.Net.Sockets.SocketException or OperationCanceledException)
            {
                last = ex.Message; // the database is not answering (in time): ask again until the time is up
            }

            if (Stopwatch.GetElapsedTime(started) >= SettleTimeout)
            {
                Log.Unsettled(_logger, transaction.Id, last ?? "no answer", failure.Message);
                return CommitOutcome.Unknown;
            }

            await Task.Delay(TimeSpan.FromMilliseconds(100));
        }
    }

    /// <summary>Applies missing migrations under an advisory lock, so instances starting together migrate once.</summary>
    public override async Task<IReadOnlyList<string>> MigrateAsync(CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        try
        {
            // Waiting for another instance's migration may take longer than a request: no command timeout.
            await using (var lockCommand = new NpgsqlCommand($"SELECT pg_advisory_lock({MigrationLockKey})", connection) { CommandTimeout = 0 })
            {
                await lockCommand.ExecuteNonQueryAsync(cancellationToken);
            }

            return await ApplyMigrationsAsync(connection, cancellationToken);
        }
        finally
        {
            // The connection goes back to the pool, which does not reset it (No Reset On Close): it must hold no lock then,
            // also when the wait above was cancelled just as the lock was granted. If this fails the connection is broken,
            // and the pool drops it (and the server its session, with the lock).
            await using var unlock = new NpgsqlCommand("SELECT pg_advisory_unlock_all()", connection);
            await unlock.ExecuteNonQueryAsync(CancellationToken.None);
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 5005, Level = LogLevel.Warning, Message = "A batch's COMMIT failed ({Reason}); PostgreSQL says transaction {TransactionId} {Outcome}")]
        public static partial void Settled(ILogger logger, string transactionId, string outcome, string reason);

        [LoggerMessage(EventId = 5006, Level = LogLevel.Error, Message = "A batch's COMMIT failed ({Reason}) and the outcome of transaction {TransactionId} could not be learned ({Status}): its sends are reported as failed, though they may have been written")]
        public static partial void Unsettled(ILogger logger, string transactionId, string status, string reason);
    }
}

/// <summary>PostgreSQL values: native uuid and timestamptz (truncated to milliseconds, the API's precision).</summary>
internal sealed class PostgresDialect : SqlDialect
{
    public override string Provider => "Postgres";

    /// <summary>
    /// One statement per conversation, sent in one round trip, each run after the one before: the same statement
    /// text every time, so PostgreSQL plans it once per connection (an <c>id = ANY(@ids)</c> list was planned anew
    /// on nine locks in ten, costing more than running it).
    /// </summary>
    public override string LockConversationsSql(int count) =>
        count < _lockStatements.Length ? _lockStatements[count] ??= LockStatements(count) : LockStatements(count);

    private readonly string?[] _lockStatements = new string?[129];

    private static string LockStatements(int count) =>
        string.Join(";\n", Enumerable.Range(0, count).Select(i => $"SELECT 1 FROM conversations WHERE id = {LockParameter(i)} FOR UPDATE"));

    // One row: the transaction's id (an xid8, as text: assigning it now costs nothing, as the transaction writes) and
    // its server process, for SettleCommitAsync. PostgreSQL 13 or later.
    public override string? TransactionIdSql => "SELECT pg_current_xact_id()::text, pg_backend_pid()";

    public override string CreateMigrationLedgerSql =>
        "CREATE TABLE IF NOT EXISTS schema_migrations (version integer NOT NULL PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL)";

    // Transaction-scoped: released at commit; an instance that does not get it skips this pass.
    public override string SequencerLockSql => "SELECT pg_try_advisory_xact_lock(7102019)";

    // One snapshot for the pass's events and receipts statements (read committed gives each its own): a receipt
    // committed between the two would be numbered while its message's event, committed just before it, waits for the
    // next pass, and the stream would carry the receipt first. The pass is the only writer of the rows it numbers.
    public override string SequencerSnapshotSql => "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ";

    public override void BindGuid(DbCommand command, string name, Guid? value) =>
        Add(command, name, NpgsqlDbType.Uuid, value);

    public override void BindTime(DbCommand command, string name, DateTimeOffset? value) =>
        Add(command, name, NpgsqlDbType.TimestampTz, value is null ? null : Milliseconds(value.Value).UtcDateTime);

    public override void BindText(DbCommand command, string name, string? value) =>
        Add(command, name, NpgsqlDbType.Text, value);

    public override bool BindsByPosition => true;

    public override bool WritesInOneStatement => true;

    public override bool JoinsLaterally => true;

    public override DbParameter PositionalCopy(DbParameter parameter)
    {
        var named = (NpgsqlParameter)parameter;
        return new NpgsqlParameter { NpgsqlDbType = named.NpgsqlDbType, Value = named.Value };
    }

    public override int PaddedRows(int rows) => rows is > 1 and <= 128 ? (int)BitOperations.RoundUpToPowerOf2((uint)rows) : rows;

    public override void BindLong(DbCommand command, string name, long? value) =>
        Add(command, name, NpgsqlDbType.Bigint, value);

    public override Guid ReadGuid(DbDataReader reader, int ordinal) => reader.GetGuid(ordinal);

    public override DateTimeOffset ReadTime(DbDataReader reader, int ordinal) =>
        new(reader.GetFieldValue<DateTime>(ordinal), TimeSpan.Zero);

    // Typed even when null: PostgreSQL cannot infer the type of an untyped NULL parameter.
    private static void Add(DbCommand command, string name, NpgsqlDbType type, object? value) =>
        ((NpgsqlCommand)command).Parameters.Add(new NpgsqlParameter(name, type) { Value = value ?? DBNull.Value });
}
