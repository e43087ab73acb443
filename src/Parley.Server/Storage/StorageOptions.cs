using System.ComponentModel.DataAnnotations;

namespace Parley.Server.Storage;

internal enum StorageProvider
{
    /// <summary>An embedded SQLite file (<c>ConnectionStrings:Sqlite</c>): one instance, nothing to install.</summary>
    Sqlite,

    /// <summary>PostgreSQL (<c>ConnectionStrings:Postgres</c>, an Npgsql connection string): production, several instances.</summary>
    Postgres,
}

internal sealed class StorageOptions
{
    public const string SectionName = "Storage";

    /// <summary>Which database holds conversations and messages. <c>Sqlite</c> (default) needs nothing installed; <c>Postgres</c> for production.</summary>
    [EnumDataType(typeof(StorageProvider))]
    public StorageProvider Provider { get; set; } = StorageProvider.Sqlite;

    /// <summary>
    /// SQLite only: copy the write-ahead log into the database file on a connection of its own, instead of in the
    /// single writer after its commits (docs/storage.md). <c>false</c>: SQLite's automatic checkpoint in the writer.
    /// </summary>
    public bool SqliteBackgroundCheckpoints { get; set; } = true;

    /// <summary>
    /// SQLite only: the single writer's page cache in MiB (SQLite's default is 2 MiB). Large enough for the hot pages of
    /// the indexes ordered by conversation, which a growing database otherwise reads again and again (benchmarks.md, item 19);
    /// no larger than those need, since a commit after a page split walks every page the cache holds (item 21).
    /// </summary>
    [Range(1, 65536)]
    public int SqliteWriterCacheMiB { get; set; } = Sqlite.SqliteChatStore.DefaultWriterCacheMiB;

    /// <summary>
    /// SQLite only: the single writer writes a commit's log frames in calls of up to 124 KiB before its sync instead of
    /// two calls a frame (docs/storage.md, benchmarks.md item 27). Equally durable; <c>false</c> writes through SQLite's
    /// default VFS. A connection string that names a VFS (<c>Vfs=</c>) keeps it, without gathering.
    /// </summary>
    public bool SqliteGatherWalWrites { get; set; } = true;
}
