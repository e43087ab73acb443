using System.Data.Common;
using Microsoft.Data.Sqlite;
using Parley.Server.Storage.Sql;

namespace Parley.Server.Storage.Sqlite;

/// <summary>
/// The embedded default store: one SQLite file in WAL mode (readers never block the writer).
/// SQLite allows one writer at a time; <see cref="_writeLock"/> queues writers in process instead of letting
/// them spin on SQLITE_BUSY, and makes every write transaction (and so every seq) strictly ordered, which is
/// why this store needs no per-conversation lock. One process per database file: several Parley processes
/// must not share one SQLite file; with <paramref name="exclusive"/> (the server and the <c>migrate</c> command)
/// the store holds <see cref="SqliteFileLock"/> for its lifetime, so a second process is refused at start.
/// </summary>
internal sealed class SqliteChatStore(string connectionString, bool exclusive = false) : SqlChatStore(new SqliteDialect()), IDisposable, IAsyncDisposable
{
    private readonly SqliteFileLock? _fileLock = exclusive ? SqliteFileLock.Acquire(connectionString) : null;
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private int _disposed;
    private readonly string _connectionString = new SqliteConnectionStringBuilder(connectionString)
    {
        Pooling = true,
        ForeignKeys = true,
    }.ToString();

    public async ValueTask DisposeAsync()
    {
        await DrainWritesAsync();
        Dispose();
    }

    /// <summary>Prefer <see cref="DisposeAsync"/>, which waits for queued sends; this waits for them up to 10 s.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1)
        {
            return;
        }

        DrainWritesAsync().Wait(TimeSpan.FromSeconds(10));
        _writeLock.Dispose();
        _fileLock?.Dispose();
    }

    protected override async Task<DbConnection> OpenConnectionAsync(CancellationToken cancellationToken)
    {
        var connection = new SqliteConnection(_connectionString);
        await connection.OpenAsync(cancellationToken);
        return connection;
    }

    /// <summary>
    /// A pooled connection with a statement cache for the transaction: compiling a send's statements costs more
    /// than running them, and a batch of sends runs the same few statements again and again.
    /// </summary>
    protected override async ValueTask<WriteConnection> OpenWriteConnectionAsync(CancellationToken cancellationToken)
    {
        var connection = await OpenConnectionAsync(cancellationToken);
        return new WriteConnection(connection, new StatementCache(connection));
    }

    protected override Task<DbTransaction> BeginWriteTransactionAsync(DbConnection connection, CancellationToken cancellationToken) =>
        // BEGIN IMMEDIATE: the write lock is taken at the start, so a transaction never fails half-way on SQLITE_BUSY.
        Task.FromResult<DbTransaction>(((SqliteConnection)connection).BeginTransaction(deferred: false));

    protected override async ValueTask<IDisposable?> EnterWriteAsync(CancellationToken cancellationToken)
    {
        await _writeLock.WaitAsync(cancellationToken);
        return new Releaser(_writeLock);
    }

    public override async Task<IReadOnlyList<string>> MigrateAsync(CancellationToken cancellationToken)
    {
        // The single writer excludes concurrent migrators of this process; one process owns the file.
        using var writer = await EnterWriteAsync(cancellationToken);
        await using var connection = await OpenConnectionAsync(cancellationToken);
        // WAL is a property of the database file: set once, kept by every later connection.
        await using (var wal = connection.CreateCommand())
        {
            wal.CommandText = "PRAGMA journal_mode=WAL;";
            await wal.ExecuteNonQueryAsync(cancellationToken);
        }

        return await ApplyMigrationsAsync(connection, cancellationToken);
    }

    private sealed class Releaser(SemaphoreSlim semaphore) : IDisposable
    {
        public void Dispose() => semaphore.Release();
    }
}

/// <summary>SQLite values: ids as canonical lower-case UUID text, timestamps as Unix milliseconds.</summary>
internal sealed class SqliteDialect : SqlDialect
{
    public override string Provider => "Sqlite";

    // The store's single writer already excludes every other writer for the whole transaction.
    public override string LockConversationSql => string.Empty;

    public override string CreateMigrationLedgerSql =>
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER NOT NULL PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)";

    public override string SequencerLockSql => "SELECT 1";

    public override void BindGuid(DbCommand command, string name, Guid? value) =>
        BindText(command, name, value?.ToString("D"));

    public override void BindTime(DbCommand command, string name, DateTimeOffset? value) =>
        ((SqliteCommand)command).Parameters.AddWithValue(name, value is null ? DBNull.Value : value.Value.ToUnixTimeMilliseconds());

    public override void BindText(DbCommand command, string name, string? value) =>
        ((SqliteCommand)command).Parameters.AddWithValue(name, (object?)value ?? DBNull.Value);

    public override void BindLong(DbCommand command, string name, long value) =>
        ((SqliteCommand)command).Parameters.AddWithValue(name, value);

    public override Guid ReadGuid(DbDataReader reader, int ordinal) => Guid.Parse(reader.GetString(ordinal));

    public override DateTimeOffset ReadTime(DbDataReader reader, int ordinal) => DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(ordinal));
}
