using Microsoft.Data.Sqlite;

namespace Parley.Server.Storage.Sqlite;

/// <summary>
/// One SQLite file belongs to one Parley process: the store's single in-process writer is what orders every
/// write (and every <c>seq</c>), so a second process on the same file would interleave its own writes and live
/// events would reach only its own sockets. The process holds <c>&lt;file&gt;.lock</c>, opened with
/// <see cref="FileShare.None"/> (an exclusive <c>flock</c> on Linux and macOS, a share-mode lock on Windows),
/// for as long as the store lives; the operating system releases it when the process ends, also on a crash.
/// The lock file is left in place on purpose: deleting it on exit would let two processes lock two different
/// files of the same name (one opened the old file just before it was unlinked).
/// </summary>
internal sealed class SqliteFileLock : IDisposable
{
    private readonly FileStream _file;

    private SqliteFileLock(FileStream file) => _file = file;

    /// <summary>
    /// Locks the database file of <paramref name="connectionString"/>; null for in-memory databases.
    /// Throws <see cref="DatabaseInUseException"/> when another process holds it.
    /// </summary>
    public static SqliteFileLock? Acquire(string connectionString)
    {
        if (PathOf(connectionString) is not { } database)
        {
            return null;
        }

        var path = database + ".lock";
        try
        {
            return new SqliteFileLock(new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None));
        }
        // Only a sharing violation is the lock taken by someone else. Anything else (a missing directory, a read-only file
        // system, a full disk, a symbolic link loop) propagates with its own message.
        catch (IOException ex) when (IsSharingViolation(ex))
        {
            throw new DatabaseInUseException(
                $"The SQLite database {database} is in use by another Parley process (it holds {path}). One SQLite file belongs to one " +
                "process: stop the other one, or give this one its own file with ConnectionStrings:Sqlite. Several instances need PostgreSQL.",
                ex);
        }
    }

    /// <summary>
    /// The lock held by another process: flock's EWOULDBLOCK, which .NET reports as an <see cref="IOException"/> with the
    /// errno as its HResult (11 on Linux, 35 on macOS), or Windows' ERROR_SHARING_VIOLATION (32, the HRESULT's low word).
    /// </summary>
    private static bool IsSharingViolation(IOException exception) =>
        exception is not (FileNotFoundException or DirectoryNotFoundException or PathTooLongException)
        && (OperatingSystem.IsWindows() ? (exception.HResult & 0xFFFF) == 32 : exception.HResult == (OperatingSystem.IsLinux() ? 11 : 35));

    /// <summary>The full path of the database file, or null for an in-memory database.</summary>
    public static string? PathOf(string connectionString)
    {
        var builder = new SqliteConnectionStringBuilder(connectionString);
        var source = builder.DataSource;
        if (builder.Mode == SqliteOpenMode.Memory || string.IsNullOrWhiteSpace(source) || source == ":memory:")
        {
            return null;
        }

        // A URI filename (file:parley.db?cache=shared, file:///srv/parley%20chat.db): the path is between the scheme (and
        // an authority, empty or localhost, which SQLite allows) and the query, percent-decoded.
        if (source.StartsWith("file:", StringComparison.OrdinalIgnoreCase))
        {
            source = source["file:".Length..].Split('?', '#')[0];
            if (source.StartsWith("//", StringComparison.Ordinal))
            {
                var path = source.IndexOf('/', 2);
                source = path < 0 ? "" : source[path..];
            }

            source = Uri.UnescapeDataString(source);
            if (source.Length == 0 || source == ":memory:")
            {
                return null;
            }
        }

        // A symbolic link to the database file: the file it names, so that every name of one database locks one file.
        // (A link to a directory on the way needs nothing: the lock file is found through the same link.)
        var full = Path.GetFullPath(source);
        return File.Exists(full) && new FileInfo(full).LinkTarget is not null && File.ResolveLinkTarget(full, returnFinalTarget: true) is { } target
            ? target.FullName
            : full;
    }

    public void Dispose() => _file.Dispose();
}

/// <summary>The database is held by another process; start-up and the <c>migrate</c> command report it and exit with 1.</summary>
internal sealed class DatabaseInUseException(string message, Exception innerException) : IOException(message, innerException);
