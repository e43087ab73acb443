using Microsoft.Data.Sqlite;
using Parley.Server.Storage;
using Parley.Server.Storage.Migrations;
using Parley.Server.Storage.Sqlite;

namespace Parley.Server.Tests;

/// <summary>The storage contract on SQLite (a temp file per store), plus what only SQLite has: its migration ledger.</summary>
[Trait("Store", "Independent")]
public sealed class SqliteChatStoreTests : ChatStoreContractTests
{
    private readonly string _directory = Path.Combine(Path.GetTempPath(), "parley-store-tests", Guid.NewGuid().ToString("N"));
    private readonly List<SqliteChatStore> _stores = [];

    public SqliteChatStoreTests() => Directory.CreateDirectory(_directory);

    private string DatabasePath(int index) => Path.Combine(_directory, $"store-{index}.db");

    private protected override IChatStore CreateStore() => Open(DatabasePath(_stores.Count));

    [Fact]
    public async Task MigrateAsync_SecondStoreOnTheSameFile_AppliesNothingTwiceAndSeesTheData()
    {
        var conversation = await CreateGroupAsync("alice", "bob");
        var message = await AppendAsync(conversation, "alice", "persisted");

        var reopened = Open(DatabasePath(0));
        await reopened.MigrateAsync(Ct);

        Assert.True(await reopened.IsReadyAsync(Ct));
        Assert.Equal(message, await reopened.GetMessageAsync(message.Id, Ct));
        var versions = await QueryAsync(DatabasePath(0), "SELECT version FROM schema_migrations ORDER BY version");
        Assert.Equal(MigrationScripts.For("Sqlite").Select(s => (long)s.Version), versions);
    }

    [Fact]
    public async Task FailingRule_LeavesNoRowBehind()
    {
        var conversation = await CreateGroupAsync("alice", "bob");

        var result = await Store.AppendMessageAsync(NewText(conversation, "alice", "rejected", "k-1"), _ => Hosting.ApiError.Forbidden("no"), Ct);

        Assert.False(result.IsSuccess);
        Assert.Equal([0L], await QueryAsync(DatabasePath(0), "SELECT COUNT(*) FROM messages"));
        Assert.Equal([1L], await QueryAsync(DatabasePath(0), "SELECT COUNT(*) FROM conversation_events"));
        Assert.Equal([0L, 0L], await QueryAsync(DatabasePath(0), "SELECT unread_count FROM participants ORDER BY user_id"));
    }

    [Fact]
    public async Task MigrateAsync_PutsTheDatabaseInWalMode()
    {
        var mode = await QueryTextAsync(DatabasePath(0), "PRAGMA journal_mode");

        Assert.Equal("wal", mode, ignoreCase: true);
    }

    public override async ValueTask DisposeAsync()
    {
        await base.DisposeAsync();
        foreach (var store in _stores)
        {
            store.Dispose();
        }

        SqliteConnection.ClearAllPools();
        try
        {
            Directory.Delete(_directory, recursive: true);
        }
        catch (IOException)
        {
            // A leftover temp directory is harmless.
        }
    }

    private SqliteChatStore Open(string path)
    {
        var store = new SqliteChatStore($"Data Source={path}");
        _stores.Add(store);
        return store;
    }

    private async Task<List<long>> QueryAsync(string path, string sql)
    {
        await using var connection = new SqliteConnection($"Data Source={path};Pooling=False");
        await connection.OpenAsync(Ct);
        await using var command = connection.CreateCommand();
        command.CommandText = sql;
        var values = new List<long>();
        await using var reader = await command.ExecuteReaderAsync(Ct);
        while (await reader.ReadAsync(Ct))
        {
            values.Add(reader.GetInt64(0));
        }

        return values;
    }

    private async Task<string?> QueryTextAsync(string path, string sql)
    {
        await using var connection = new SqliteConnection($"Data Source={path};Pooling=False");
        await connection.OpenAsync(Ct);
        await using var command = connection.CreateCommand();
        command.CommandText = sql;
        return (string?)await command.ExecuteScalarAsync(Ct);
    }
}
