using System.Data.Common;
using Microsoft.Data.Sqlite;
using Npgsql;

namespace Parley.Server.Storage;

/// <summary>
/// A write that came after the store began to stop (the server is shutting down): a <see cref="DbException"/> of no
/// database, so that it answers as an unreachable database does (503, retry), not as a fault.
/// </summary>
internal sealed class StoreStoppedException() : DbException("The store is stopping (the server is shutting down); retry shortly.");

/// <summary>What a storage failure means for the client that caused it.</summary>
internal enum StorageFailure
{
    /// <summary>The database is unreachable, busy, shutting down or out of resources: the same request succeeds later (503).</summary>
    Unavailable,

    /// <summary>The database refused a value as data (PostgreSQL class 22): retrying the same request fails the same way (400).</summary>
    RefusedValue,

    /// <summary>Anything else (an integrity violation, an SQL error): a bug, not the client's to fix or retry (500).</summary>
    Fault,
}

/// <summary>
/// Classifies a <see cref="DbException"/> that escaped a feature by what it means, in the store's terms: whether waiting
/// fixes it. Hosting turns that into the client's answer, the same over HTTP and the WebSocket.
/// </summary>
internal static class StorageErrors
{
    public static StorageFailure Classify(DbException exception) => exception switch
    {
        PostgresException postgres => ClassifyPostgres(postgres.SqlState),
        SqliteException sqlite => ClassifySqlite(sqlite.SqliteErrorCode),
        // No answer from the server at all: the connection failed, broke or timed out.
        _ => StorageFailure.Unavailable,
    };

    /// <summary>
    /// A failure that took a timeout to come: a command timeout, a statement cancelled by <c>statement_timeout</c>, a lock
    /// not granted within <c>lock_timeout</c>, SQLite busy past its busy timeout. Run again, a write may wait as long
    /// again. (A broken connection or a deadlock fails fast, and a write run again on a fresh connection passes.)
    /// </summary>
    public static bool IsSlowFailure(Exception exception) => exception switch
    {
        TimeoutException => true,
        PostgresException { SqlState: PostgresErrorCodes.QueryCanceled or PostgresErrorCodes.LockNotAvailable } => true,
        SqliteException { SqliteErrorCode: 5 or 6 } => true, // BUSY, LOCKED
        DbException { InnerException: TimeoutException } => true, // Npgsql's command timeout
        _ => false,
    };

    /// <summary>SQLSTATE classes: https://www.postgresql.org/docs/current/errcodes-appendix.html.</summary>
    private static StorageFailure ClassifyPostgres(string state) => state switch
    {
        // 08 connection exception, 53 insufficient resources (too many connections, disk full, out of memory),
        // 57 operator intervention (shutdown, crash recovery, cancelled by statement timeout), 58 system error (I/O).
        _ when state.StartsWith("08", StringComparison.Ordinal) || state.StartsWith("53", StringComparison.Ordinal)
            || state.StartsWith("57", StringComparison.Ordinal) || state.StartsWith("58", StringComparison.Ordinal) => StorageFailure.Unavailable,
        // Serialization failure and deadlock: the transaction was rolled back and succeeds when run again.
        PostgresErrorCodes.SerializationFailure or PostgresErrorCodes.DeadlockDetected or PostgresErrorCodes.LockNotAvailable => StorageFailure.Unavailable,
        // A read-only transaction: connected to a standby during a failover.
        PostgresErrorCodes.ReadOnlySqlTransaction => StorageFailure.Unavailable,
        // 22 data exception (e.g. 22021: U+0000 in text).
        _ when state.StartsWith("22", StringComparison.Ordinal) => StorageFailure.RefusedValue,
        _ => StorageFailure.Fault,
    };

    /// <summary>Primary result codes: https://www.sqlite.org/rescode.html.</summary>
    private static StorageFailure ClassifySqlite(int code) => code switch
    {
        // BUSY, LOCKED, NOMEM, READONLY, IOERR, CORRUPT, FULL, CANTOPEN, PROTOCOL, NOTADB: the file or the disk, not the request.
        5 or 6 or 7 or 8 or 10 or 11 or 13 or 14 or 15 or 26 => StorageFailure.Unavailable,
        // TOOBIG: a value larger than SQLite stores.
        18 => StorageFailure.RefusedValue,
        // ERROR, CONSTRAINT, MISMATCH, MISUSE, RANGE and the rest: a bug.
        _ => StorageFailure.Fault,
    };
}
