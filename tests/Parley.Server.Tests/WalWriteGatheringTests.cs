using Microsoft.Data.Sqlite;
using Parley.Server.Storage.Sqlite;

namespace Parley.Server.Tests;

/// <summary>
/// The single writer's VFS (<see cref="WalWriteGathering"/>) writes a commit's log frames in one call, and what it writes is
/// what SQLite wrote: read back through SQLite's default VFS by another connection, after checkpoints, a log started
/// over, a rolled-back transaction that spilled into the log, and a transaction larger than the buffer; and recovered
/// from a copy taken while the writer had the files open (what a crash leaves).
/// </summary>
[Trait("Store", "Independent")]
public sealed class WalWriteGatheringTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("parley-gather-").FullName;

    private string Database => Path.Combine(_directory, "gather.db");

    public void Dispose()
    {
        SqliteConnection.ClearAllPools();
        Directory.Delete(_directory, recursive: true);
    }

    /// <summary>A writer's connection to <paramref name="dataSource"/> (the test's database unless given), in WAL mode with a sync at every commit.</summary>
    private SqliteConnection Open(bool gathering, string? dataSource = null)
    {
        if (gathering)
        {
            WalWriteGathering.Register();
        }

        var connection = new SqliteConnection(new SqliteConnectionStringBuilder
        {
            DataSource = dataSource ?? Database,
            Pooling = false,
            Vfs = gathering ? WalWriteGathering.Name : null,
        }.ToString());
        connection.Open();
        Execute(connection, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;");
        return connection;
    }

    private static void Execute(SqliteConnection connection, string sql, params (string Name, object Value)[] parameters)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        foreach (var (name, value) in parameters)
        {
            command.Parameters.AddWithValue(name, value);
        }

        command.ExecuteNonQuery();
    }

    private static T Scalar<T>(SqliteConnection connection, string sql)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        return (T)command.ExecuteScalar()!;
    }

    private static byte[] Row(int i) => [.. Enumerable.Range(0, 3000).Select(b => (byte)(b * 31 + i))];

    private static void Insert(SqliteConnection connection, int from, int count)
    {
        using var transaction = connection.BeginTransaction();
        for (var i = from; i < from + count; i++)
        {
            Execute(connection, "INSERT INTO t (id, body) VALUES ($id, $body)", ("$id", i), ("$body", Row(i)));
        }

        transaction.Commit();
    }

    /// <summary>Every row, checked byte for byte, and the file's integrity, through SQLite's default VFS (another connection).</summary>
    private void AssertReadBack(IEnumerable<int> ids, string? database = null)
    {
        using var reader = new SqliteConnection($"Data Source={database ?? Database};Pooling=False");
        reader.Open();
        Assert.Equal("ok", Scalar<string>(reader, "PRAGMA integrity_check"));
        var expected = ids.Order().ToList();
        using var command = reader.CreateCommand();
        command.CommandText = "SELECT id, body FROM t ORDER BY id";
        using var rows = command.ExecuteReader();
        var seen = new List<int>();
        while (rows.Read())
        {
            var id = rows.GetInt32(0);
            seen.Add(id);
            Assert.Equal(Row(id), (byte[])rows.GetValue(1));
        }

        Assert.Equal(expected, seen);
    }

    [Fact]
    public void ACommitsFrames_ReachTheFileInFewWrites_AndReadBackAsWritten()
    {
        using var writer = Open(gathering: true);
        Execute(writer, "CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB NOT NULL)");
        var (gathered, written) = WalWriteGathering.ThreadCounters;

        Insert(writer, 0, 200); // a page a row: some 400 frame writes without gathering, about 0.8 MB

        var after = WalWriteGathering.ThreadCounters;
        Assert.True(after.Gathered - gathered >= 400, $"{after.Gathered - gathered} writes gathered");
        Assert.InRange(after.Written - written, 1, 10); // 124 KiB a call
        AssertReadBack(Enumerable.Range(0, 200));
    }

    [Fact]
    public void ALogStartedOver_ARolledBackSpill_AndATransactionLargerThanTheBuffer_ReadBackAsWritten()
    {
        using var writer = Open(gathering: true);
        Execute(writer, "CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB NOT NULL)");
        Insert(writer, 0, 50);

        // Another connection (as the store's checkpointer does) copies the log into the file and empties it: the writer's
        // next commit starts the log over at offset 0, behind the frames it wrote before.
        using (var checkpointer = Open(gathering: false))
        {
            Execute(checkpointer, "PRAGMA wal_checkpoint(TRUNCATE)");
        }

        Insert(writer, 50, 50);

        // A transaction larger than the page cache spills pages into the log before it commits, and reads them back
        // from there; rolled back, its frames are never part of the log, and the next commit writes over them.
        Execute(writer, "PRAGMA cache_size=10");
        using (var transaction = writer.BeginTransaction())
        {
            for (var i = 1000; i < 1300; i++)
            {
                Execute(writer, "INSERT INTO t (id, body) VALUES ($id, $body)", ("$id", i), ("$body", Row(i)));
            }

            using (var command = writer.CreateCommand())
            {
                command.CommandText = "SELECT id, body FROM t WHERE id >= 1000 ORDER BY id";
                using var spilled = command.ExecuteReader();
                var read = 0;
                while (spilled.Read())
                {
                    Assert.Equal(Row(spilled.GetInt32(0)), (byte[])spilled.GetValue(1));
                    read++;
                }

                Assert.Equal(300, read);
            }

            transaction.Rollback();
        }

        Insert(writer, 100, 20);

        // More than the buffer holds in one commit (4 MiB): written out as it fills, in order.
        Execute(writer, "PRAGMA cache_size=-65536");
        var rows = (WalWriteGathering.MaxBuffered / 3000) + 500;
        Insert(writer, 2000, rows);

        AssertReadBack([.. Enumerable.Range(0, 120), .. Enumerable.Range(2000, rows)]);

        // What a crash leaves: the database file and the log as they are while the writer has them open, copied; SQLite's
        // default VFS recovers the copy from the log that went through the gathering VFS.
        Assert.True(new FileInfo(Database + "-wal").Length > 0);
        File.Copy(Database, Path.Combine(_directory, "crashed.db"));
        File.Copy(Database + "-wal", Path.Combine(_directory, "crashed.db-wal"));
        AssertReadBack([.. Enumerable.Range(0, 120), .. Enumerable.Range(2000, rows)], Path.Combine(_directory, "crashed.db"));
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task TheStore_WritesThroughTheGatheringVfs_UnlessTurnedOff(bool gather)
    {
        await using var store = new SqliteChatStore($"Data Source={Path.Combine(_directory, $"store-{gather}.db")}", gatherWalWrites: gather);
        await store.MigrateAsync(TestContext.Current.CancellationToken);

        Assert.Equal(gather ? WalWriteGathering.Name : null, store.WriterVfs);
        Assert.Equal(2, await store.WriterPragmaAsync("synchronous")); // FULL: a sync at every commit
    }

    [Fact]
    public void AConnectionStringWithAVfsOfItsOwn_KeepsIt()
    {
        using var store = new SqliteChatStore($"Data Source={_directory}/own.db;Vfs=unix-none", gatherWalWrites: true);

        Assert.Equal("unix-none", store.WriterVfs);
    }

    /// <summary>
    /// Without power-safe overwrite SQLite writes a commit's last padding frame after its sync, so such a log is not
    /// gathered; SQLite's own reading of the URI decides (any spelling it takes for false), and psow=1 is gathered.
    /// </summary>
    [Theory]
    [InlineData("psow=0", false)]
    [InlineData("cache=private&psow=off", false)]
    [InlineData("psow=no", false)]
    [InlineData("psow=1", true)]
    [InlineData("cache=private", true)]
    public void ALogWithoutPowersafeOverwrite_IsNotGathered_AndReadsBackAsWritten(string query, bool gathers)
    {
        using var writer = Open(gathering: true, $"file:{Database}?{query}");
        Execute(writer, "CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB NOT NULL)");
        var (gathered, _) = WalWriteGathering.ThreadCounters;

        Insert(writer, 0, 20);

        var count = WalWriteGathering.ThreadCounters.Gathered - gathered;
        Assert.True(gathers ? count >= 40 : count == 0, $"{count} writes gathered");
        AssertReadBack(Enumerable.Range(0, 20));
    }
}
