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
internal sealed class SqliteChatStore(
    string connectionString,
    bool exclusive = false,
    bool backgroundCheckpoints = true,
    int writerCacheMiB = SqliteChatStore.DefaultWriterCacheMiB,
    bool gatherWalWrites = true)
    : SqlChatStore(new SqliteDialect()), IDisposable, IAsyncDisposable
{
    /// <summary>
    /// The single writer's page cache (<c>Storage:SqliteWriterCacheMiB</c>); SQLite's own default is 2 MiB. Not larger:
    /// a commit after a page split walks every page the cache holds (benchmarks.md, item 21).
    /// </summary>
    public const int DefaultWriterCacheMiB = 32;

    private readonly SqliteFileLock? _fileLock = exclusive ? SqliteFileLock.Acquire(connectionString) : null;
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private WriteConnection? _writer; // used only under _writeLock
    private readonly System.Collections.Concurrent.ConcurrentBag<WriteConnection> _readers = [];
    private int _openReaders; // kept readers open, in the bag or in use
    private Lazy<Task>? _stopping;
    private readonly string _connectionString = new SqliteConnectionStringBuilder(connectionString)
    {
        Pooling = true,
        ForeignKeys = true,
    }.ToString();

    // The kept readers' connections are not pooled: closing one closes it.
    private readonly string _keptReaderConnectionString = new SqliteConnectionStringBuilder(connectionString)
    {
        Pooling = false,
        ForeignKeys = true,
    }.ToString();

    // The single writer's own, not pooled either, with a commit's log writes gathered into few calls
    // (Storage:SqliteGatherWalWrites) unless the connection string names a VFS of its own.
    private readonly string _writerConnectionString = WriterConnectionString(connectionString, gatherWalWrites);

    /// <summary>For tests: the VFS the single writer opens its connection with (null: SQLite's default).</summary>
    internal string? WriterVfs => new SqliteConnectionStringBuilder(_writerConnectionString).Vfs;

    private static string WriterConnectionString(string connectionString, bool gatherWalWrites)
    {
        var builder = new SqliteConnectionStringBuilder(connectionString) { Pooling = false, ForeignKeys = true };
        if (gatherWalWrites && builder.Vfs is null)
        {
            WalWriteGathering.Register();
            builder.Vfs = WalWriteGathering.Name;
        }

        return builder.ToString();
    }

    // Checkpoints off the single writer (Storage:SqliteBackgroundCheckpoints).
    private readonly WalCheckpointer? _checkpointer = backgroundCheckpoints
        ? new WalCheckpointer(new SqliteConnectionStringBuilder(connectionString) { Pooling = false }.ToString())
        : null;

    public ValueTask DisposeAsync() => new(Stopping());

    /// <summary>Prefer <see cref="DisposeAsync"/>, which waits for queued sends; this waits for them up to 10 s.</summary>
    public void Dispose() => Stopping().Wait(TimeSpan.FromSeconds(10));

    /// <summary>One stop, however many callers (the host may dispose the store twice, and not wait for the first).</summary>
    private Task Stopping()
    {
        Interlocked.CompareExchange(ref _stopping, new Lazy<Task>(StopAsync), null);
        return _stopping.Value;
    }

    /// <summary>
    /// Readers kept open with their prepared statements, at most this many (more reads at once get pooled connections
    /// that prepare each statement again). A reconnect storm spent a fifth of the server's CPU in SQLite's parser and
    /// planner, compiling the same few reads for every device.
    /// </summary>
    private const int KeptReaders = 16;

    private async Task StopAsync()
    {
        await DrainWritesAsync();
        if (_checkpointer is not null)
        {
            await _checkpointer.DisposeAsync();
        }

        List<WriteConnection> readers = [];
        lock (_readers)
        {
            while (_readers.TryTake(out var reader))
            {
                readers.Add(reader);
            }
        }

        foreach (var reader in readers)
        {
            await reader.CloseAsync();
        }

        // A write in progress (a read receipt, an edit: writes outside the group commit, which was drained) ends first:
        // its commit, then its release of the lock (disposing the lock under it failed that release, and its caller
        // got an error for a committed write). Writers that come after the stop began are refused when they get the
        // lock (never left waiting on it). The lock is not disposed: a SemaphoreSlim without a wait handle holds nothing.
        _stopped = true;
        if (await _writeLock.WaitAsync(StopWaitForWriter))
        {
            if (_writer is { IsClosed: false } writer)
            {
                CheckpointOnStop(writer.Connection);
                await writer.CloseAsync();
            }

            _writer = null;
            _writeLock.Release();
            _fileLock?.Dispose();
        }

        // Else a writer is still busy: the file stays locked until the process ends, rather than be let go under it.
    }

    /// <summary>Set when the store stops: a writer that gets the lock after it is refused.</summary>
    private volatile bool _stopped;

    /// <summary>How long a stop waits for a write in progress (a write waits at most its command timeout for the file).</summary>
    private static readonly TimeSpan StopWaitForWriter = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Moves the write-ahead log into the database file and empties it, so that a stopped server leaves one
    /// self-contained file to copy (the last connection to close would do it too, unless a read was still returning
    /// its connection to the pool). Best effort: a failure leaves the log to the next start.
    /// </summary>
    private static void CheckpointOnStop(DbConnection connection)
    {
        try
        {
            using var command = connection.CreateCommand();
            command.CommandText = "PRAGMA wal_checkpoint(TRUNCATE);";
            command.ExecuteNonQuery();
        }
        catch (SqliteException)
        {
            // The file stays consistent either way: SQLite replays the log when it is next opened.
        }
    }

    protected override async Task<DbConnection> OpenConnectionAsync(CancellationToken cancellationToken)
    {
        var connection = new SqliteConnection(_connectionString);
        await connection.OpenAsync(cancellationToken);
        return connection;
    }

    /// <summary>
    /// The single writer's connection, kept open with its prepared statements from one write transaction to the next
    /// (compiling a statement costs more than running it, and every transaction runs the same few): opened again only
    /// after a transaction that did not end cleanly. Called under <see cref="_writeLock"/>.
    /// </summary>
    protected override async ValueTask<WriteConnection> OpenWriteConnectionAsync(CancellationToken cancellationToken)
    {
        if (_writer is { IsClosed: false } writer)
        {
            writer.Begin();
            return writer;
        }

        // Not from the pool: closing it (after a failed transaction, or when the store stops) really closes it. Kept only
        // while the store has not begun to stop, so a write that runs during the stop closes it after itself.
        var connection = new SqliteConnection(_writerConnectionString);
        await connection.OpenAsync(cancellationToken);
        await using (var pragma = connection.CreateCommand())
        {
            // A page cache that holds the hot pages of the indexes ordered by conversation as the file grows (a negative
            // size is in KiB); and, with checkpoints in the background, the writer's own only as their fallback. Every
            // commit synced (SQLite's default, stated: gathered log writes rely on a sync at every commit).
            pragma.CommandText = $"PRAGMA synchronous=FULL;PRAGMA cache_size=-{writerCacheMiB * 1024L};"
                + (_checkpointer is null ? string.Empty : $"PRAGMA wal_autocheckpoint={WalCheckpointer.WriterAutoCheckpointPages};");
            await pragma.ExecuteNonQueryAsync(cancellationToken);
        }

        _writer = new WriteConnection(connection, StatementsOf(connection), keep: () => Volatile.Read(ref _stopping) is null);
        return _writer;
    }

    /// <summary>
    /// A kept reader with its prepared statements when one is free or may be opened (<see cref="KeptReaders"/>); a pooled
    /// connection otherwise. A kept reader goes back to the bag after a read that ended cleanly, and is closed after
    /// one that did not, or once the store stops.
    /// </summary>
    protected override async ValueTask<WriteConnection> OpenReadConnectionAsync(CancellationToken cancellationToken)
    {
        while (_readers.TryTake(out var kept))
        {
            if (!kept.IsClosed)
            {
                kept.Begin();
                return kept;
            }
        }

        var stopping = Volatile.Read(ref _stopping) is not null;
        if (stopping || Interlocked.Increment(ref _openReaders) > KeptReaders)
        {
            if (!stopping)
            {
                Interlocked.Decrement(ref _openReaders);
            }

            return new WriteConnection(await OpenConnectionAsync(cancellationToken), null);
        }

        var connection = new SqliteConnection(_keptReaderConnectionString);
        try
        {
            await connection.OpenAsync(cancellationToken);
        }
        catch
        {
            Interlocked.Decrement(ref _openReaders);
            await connection.DisposeAsync();
            throw;
        }

        WriteConnection? reader = null;
        reader = new WriteConnection(
            connection,
            StatementsOf(connection),
            keep: () =>
            {
                lock (_readers)
                {
                    // Once the store stops, no reader goes back: the stop closes those in the bag.
                    if (Volatile.Read(ref _stopping) is not null)
                    {
                        return false;
                    }

                    _readers.Add(reader!);
                    return true;
                }
            },
            closed: () => Interlocked.Decrement(ref _openReaders));
        return reader;
    }

    /// <summary>For tests: a pragma's value on the single writer's connection (opened if need be).</summary>
    internal async Task<long> WriterPragmaAsync(string name)
    {
        using var writer = await EnterWriteAsync(CancellationToken.None);
        var connection = await OpenWriteConnectionAsync(CancellationToken.None);
        await using var command = connection.Connection.CreateCommand();
        command.CommandText = $"PRAGMA {name};";
        var value = (long)(await command.ExecuteScalarAsync())!;
        connection.Completed();
        await connection.DisposeAsync();
        return value;
    }

    /// <summary>Microsoft.Data.Sqlite completes every call synchronously: a transaction stays on its thread.</summary>
    protected override bool CommitsOnOneThread => true;

    protected override Task<DbTransaction> BeginWriteTransactionAsync(DbConnection connection, CancellationToken cancellationToken) =>
        // BEGIN IMMEDIATE: the write lock is taken at the start, so a transaction never fails half-way on SQLITE_BUSY.
        Task.FromResult<DbTransaction>(((SqliteConnection)connection).BeginTransaction(deferred: false));

    protected override async ValueTask<IDisposable?> EnterWriteAsync(CancellationToken cancellationToken)
    {
        await _writeLock.WaitAsync(cancellationToken);
        if (_stopped)
        {
            _writeLock.Release();
            throw new StoreStoppedException();
        }

        return new Releaser(_writeLock, _checkpointer);
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

    /// <summary>The statement cache of a kept connection: its commands bind by position (<see cref="SqliteStatementCommand"/>).</summary>
    private static StatementCache StatementsOf(SqliteConnection connection) =>
        new(connection, text => new SqliteStatementCommand(connection, text));

    /// <summary>Ends a write: the next writer may begin, and the log it wrote is copied soon after (<see cref="WalCheckpointer"/>).</summary>
    private sealed class Releaser(SemaphoreSlim semaphore, WalCheckpointer? checkpointer) : IDisposable
    {
        public void Dispose()
        {
            semaphore.Release();
            checkpointer?.Written();
        }
    }
}

/// <summary>SQLite values: ids as canonical lower-case UUID text, timestamps as Unix milliseconds.</summary>
internal sealed class SqliteDialect : SqlDialect
{
    public override string Provider => "Sqlite";

    // The store's single writer already excludes every other writer for the whole transaction.

    public override string CreateMigrationLedgerSql =>
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER NOT NULL PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)";

    public override string SequencerLockSql => "SELECT 1";

    /// <summary>Statements of up to 100 parameters: the name lookups stay short, the statements few (see the base).</summary>
    public override int ParameterBudget => 100;

    /// <summary>One writer at a time (the store's write lock and SQLite's own): ids are taken in commit order.</summary>
    public override bool IdsGrowInCommitOrder => true;

    // A cached statement (SqliteStatementCommand) binds by position, without parameter objects; any other command by name.

    public override void BindGuid(DbCommand command, string name, Guid? value)
    {
        if (command is SqliteStatementCommand statement)
        {
            statement.BindGuid(name, value);
        }
        else
        {
            BindText(command, name, value?.ToString("D"));
        }
    }

    public override void BindTime(DbCommand command, string name, DateTimeOffset? value) =>
        BindLong(command, name, value?.ToUnixTimeMilliseconds());

    public override void BindText(DbCommand command, string name, string? value)
    {
        if (command is SqliteStatementCommand statement)
        {
            statement.BindText(name, value);
        }
        else
        {
            ((SqliteCommand)command).Parameters.AddWithValue(name, (object?)value ?? DBNull.Value);
        }
    }

    public override void BindLong(DbCommand command, string name, long? value)
    {
        if (command is SqliteStatementCommand statement)
        {
            statement.BindLong(name, value);
        }
        else
        {
            ((SqliteCommand)command).Parameters.AddWithValue(name, (object?)value ?? DBNull.Value);
        }
    }

    public override Guid ReadGuid(DbDataReader reader, int ordinal) =>
        reader is SqliteStatementReader statement ? statement.GetIdFromText(ordinal) : Guid.Parse(reader.GetString(ordinal));

    /// <summary>Every integer SQLite stores is a 64-bit one: read without boxing.</summary>
    public override long ReadLong(DbDataReader reader, int ordinal) => reader.GetInt64(ordinal);

    public override DateTimeOffset ReadTime(DbDataReader reader, int ordinal) => DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(ordinal));
}
