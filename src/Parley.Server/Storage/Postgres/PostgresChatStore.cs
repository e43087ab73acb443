using System.Data;
using System.Data.Common;
using System.Numerics;
using Npgsql;
using NpgsqlTypes;
using Parley.Server.Storage.Sql;

namespace Parley.Server.Storage.Postgres;

/// <summary>
/// The production store: PostgreSQL through one pooled <see cref="NpgsqlDataSource"/>. Several Parley
/// instances may share the database: a conversation's writers are serialized by its row lock
/// (<c>SELECT ... FOR UPDATE</c>), held until commit, so seqs are gapless and committed in order.
/// </summary>
internal sealed class PostgresChatStore(NpgsqlDataSource dataSource) : SqlChatStore(new PostgresDialect()), IAsyncDisposable
{
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

    /// <summary>Applies missing migrations under an advisory lock, so instances starting together migrate once.</summary>
    public override async Task<IReadOnlyList<string>> MigrateAsync(CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await AdvisoryLockAsync(connection, "pg_advisory_lock", cancellationToken);
        try
        {
            return await ApplyMigrationsAsync(connection, cancellationToken);
        }
        finally
        {
            await AdvisoryLockAsync(connection, "pg_advisory_unlock", CancellationToken.None);
            // Pooled connections are not reset (No Reset On Close): this one, which held a session lock, is not pooled.
            NpgsqlConnection.ClearPool(connection);
        }
    }

    // Waiting for another instance's migration may take longer than a request: no command timeout.
    private static async Task AdvisoryLockAsync(NpgsqlConnection connection, string function, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand($"SELECT {function}({MigrationLockKey})", connection) { CommandTimeout = 0 };
        await command.ExecuteNonQueryAsync(cancellationToken);
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
