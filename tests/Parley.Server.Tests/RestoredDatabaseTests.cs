using System.Net;
using System.Text.Json;
using Npgsql;
using Parley.Server.Tests.Infrastructure;

namespace Parley.Server.Tests;

/// <summary>
/// A database restored from an earlier copy keeps its epoch, and devices may hold events it no longer has. Their
/// cursors must be refused (sync_reset / 410), never clamped or trusted: the restored stream reuses positions and
/// seqs for new events, which such a device would otherwise skip or drop as duplicates (docs/delivery.md).
/// </summary>
public sealed class RestoredDatabaseTests : IAsyncLifetime
{
    private readonly Dictionary<string, string?> _storage;
    private readonly string? _postgres;
    private readonly string _backup;
    private ParleyFactory? _server;

    public RestoredDatabaseTests()
    {
        var first = new ParleyFactory();
        _storage = first.StorageSettings();
        _postgres = _storage.GetValueOrDefault("ConnectionStrings:Postgres");
        _backup = _postgres is null
            ? Path.Combine(Path.GetTempPath(), "parley-tests", Guid.NewGuid().ToString("N") + ".db")
            : "parley_backup_" + Guid.NewGuid().ToString("N")[..16];
        _server = first;
    }

    public ValueTask InitializeAsync()
    {
        _server!.StartKestrel();
        return ValueTask.CompletedTask;
    }

    public async ValueTask DisposeAsync()
    {
        if (_server is not null)
        {
            await _server.DisposeKeepingDataAsync();
        }

        if (_postgres is null)
        {
            File.Delete(_backup);
            File.Delete(SqlitePath);
            return;
        }

        await TestPostgres.DropDatabaseAsync(_postgres);
        await TestPostgres.DropDatabaseAsync(new NpgsqlConnectionStringBuilder(_postgres) { Database = _backup }.ConnectionString);
    }

    [Fact]
    public async Task Resume_CursorTakenBeforeARestore_AheadOfTheRestoredStream_IsExpired()
    {
        var conversation = await CreateDirectAsync();
        await SendAsync(conversation.Id, "kept by the backup");
        await BackupAsync();
        await SendAsync(conversation.Id, "lost by the restore");
        var ahead = await CursorCoveringEverythingAsync("bob", 2);

        await RestoreAsync();

        await AssertExpiredAsync(ahead);
    }

    [Fact]
    public async Task Resume_CursorTakenBeforeARestore_TheRestoredStreamGrewPastIt_IsExpired()
    {
        // Without the check the cursor looks valid: catch-up from it would skip the new events at its positions,
        // and the device would drop the new messages, whose seqs it already applied, as duplicates.
        var conversation = await CreateDirectAsync();
        await SendAsync(conversation.Id, "kept by the backup");
        await BackupAsync();
        await SendAsync(conversation.Id, "lost 1");
        await SendAsync(conversation.Id, "lost 2");
        var ahead = await CursorCoveringEverythingAsync("bob", 3);

        await RestoreAsync();
        for (var i = 0; i < 5; i++)
        {
            await SendAsync(conversation.Id, $"new {i}");
        }

        await CursorCoveringEverythingAsync("bob", 6);
        await AssertExpiredAsync(ahead);
    }

    [Fact]
    public async Task Resume_CursorFromBeforeTheBackup_StillCatchesUpAfterTheRestore()
    {
        var conversation = await CreateDirectAsync();
        await SendAsync(conversation.Id, "one");
        var before = await CursorCoveringEverythingAsync("bob", 1);
        await BackupAsync();
        await RestoreAsync();
        var after = await SendAsync(conversation.Id, "two");

        await using var bob = await WsClient.ConnectAsync(Server, "bob", $"cursor={before}");
        await bob.NextAsync("sync_complete");

        Assert.Contains(bob.All(), f => f.GetProperty("type").GetString() == "new_message"
            && f.GetProperty("payload").GetProperty("message").GetProperty("id").GetGuid() == after.Id);
    }

    [Fact]
    public async Task NewEpoch_AfterARestore_EveryCursorIssuedBeforeIsRefused()
    {
        // The checks above cannot see a device that applied live events after its last cursor: the operator starts a
        // new epoch after every restore, and then no earlier cursor is trusted at all.
        var conversation = await CreateDirectAsync();
        await SendAsync(conversation.Id, "one");
        var before = await CursorCoveringEverythingAsync("bob", 1);
        await BackupAsync();
        await SendAsync(conversation.Id, "lost by the restore");
        await StopAsync();
        await RestoreFilesAsync();

        var run = await ConsoleCapture.RunAsync(() => App.ParleyCommandLine.RunCommandAsync(["new-epoch", .. CommandLineSettings()]));

        Assert.True(run.Result == 0, run.Error);
        Assert.Contains("new epoch", run.Output, StringComparison.Ordinal);
        Start();
        await AssertExpiredAsync(before, reason: "another deployment");
        using var bob = Server.Api("bob");
        var fresh = (await ParleyApi.ReadAsync<JsonElement>(await bob.GetAsync("/api/v1/sync/cursor"))).GetProperty("cursor").GetString()!;
        await ParleyApi.ReadAsync<JsonElement>(await bob.GetAsync($"/api/v1/sync?cursor={fresh}"));
    }

    [Fact]
    public async Task NewEpoch_WhileAServerUsesTheSqliteFile_Exits1AndChangesNothing()
    {
        Assert.SkipWhen(_postgres is not null, "A SQLite file's lock: the suite runs on PostgreSQL.");
        var before = await CursorCoveringEverythingAsync("bob", 0);

        var run = await ConsoleCapture.RunAsync(() => App.ParleyCommandLine.RunCommandAsync(["new-epoch", .. CommandLineSettings()]));

        Assert.Equal(1, run.Result);
        Assert.Contains("Parley cannot start a new epoch", run.Error, StringComparison.Ordinal);
        using var bob = Server.Api("bob");
        await ParleyApi.ReadAsync<JsonElement>(await bob.GetAsync($"/api/v1/sync?cursor={before}"));
    }

    private ParleyFactory Server => _server!;

    private async Task<Protocol.Conversation> CreateDirectAsync()
    {
        using var alice = Server.Api("alice");
        return await alice.CreateDirectAsync("bob");
    }

    private async Task<Storage.Message> SendAsync(Guid conversationId, string text)
    {
        using var alice = Server.Api("alice");
        return await alice.SendTextAsync(conversationId, text);
    }

    private string SqlitePath => _storage["ConnectionStrings:Sqlite"]!["Data Source=".Length..];

    private async Task AssertExpiredAsync(string cursor, string reason = "restored")
    {
        using var api = Server.Api("bob");
        var problem = await ParleyApi.ProblemAsync(await api.GetAsync($"/api/v1/sync?cursor={cursor}"), HttpStatusCode.Gone, "cursor_expired");
        Assert.Contains(reason, problem.Detail, StringComparison.Ordinal);
        await using var bob = await WsClient.ConnectAsync(Server, "bob", $"cursor={cursor}");
        var reset = await bob.NextAsync("sync_reset");
        Assert.Contains(reason, reset.GetProperty("reason").GetString(), StringComparison.Ordinal);
        Assert.DoesNotContain(bob.All(), f => f.GetProperty("type").GetString() == "sync_complete");
    }

    /// <summary>The current cursor, once the user's <paramref name="messages"/> messages all have stream positions.</summary>
    private async Task<string> CursorCoveringEverythingAsync(string userId, int messages)
    {
        using var api = Server.Api(userId);
        var start = (await ParleyApi.ReadAsync<JsonElement>(await api.GetAsync("/api/v1/sync/cursor"))).GetProperty("cursor").GetString()!;
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (true)
        {
            var all = await ParleyApi.ReadAsync<JsonElement>(await api.GetAsync($"/api/v1/sync?cursor={Uri.EscapeDataString(FromStart(start))}&limit=1000"));
            if (all.GetProperty("events").EnumerateArray().Count(e => e.GetProperty("type").GetString() == "new_message") >= messages)
            {
                // Taken after they were all positioned: it covers them.
                return (await ParleyApi.ReadAsync<JsonElement>(await api.GetAsync("/api/v1/sync/cursor"))).GetProperty("cursor").GetString()!;
            }

            Assert.True(DateTime.UtcNow < deadline, "messages were not positioned in time");
            await Task.Delay(20, TestContext.Current.CancellationToken);
        }
    }

    /// <summary>A cursor at the start of the stream (position 0), of this deployment.</summary>
    private static string FromStart(string cursor)
    {
        Assert.True(Sync.Cursor.TryDecode(cursor, out var decoded));
        return Sync.Cursor.At(decoded!.Epoch, 0, null, decoded.IssuedAt).Encode();
    }

    private async Task BackupAsync()
    {
        await StopAsync();
        if (_postgres is null)
        {
            File.Copy(SqlitePath, _backup);
        }
        else
        {
            await AdminAsync($"CREATE DATABASE {_backup} TEMPLATE {Database}");
        }

        Start();
    }

    private async Task RestoreAsync()
    {
        await StopAsync();
        await RestoreFilesAsync();
        Start();
    }

    /// <summary>Puts the backup in place of the database (no server running).</summary>
    private async Task RestoreFilesAsync()
    {
        if (_postgres is null)
        {
            File.Copy(_backup, SqlitePath, overwrite: true);
        }
        else
        {
            await AdminAsync($"DROP DATABASE {Database} WITH (FORCE)");
            await AdminAsync($"CREATE DATABASE {Database} TEMPLATE {_backup}");
        }
    }

    /// <summary>The storage settings as an operator passes them to a command.</summary>
    private IEnumerable<string> CommandLineSettings() => _storage.Select(s => $"--{s.Key}={s.Value}");

    private string Database => new NpgsqlConnectionStringBuilder(_postgres).Database!;

    private async Task StopAsync()
    {
        await _server!.DisposeKeepingDataAsync();
        _server = null;
        NpgsqlConnection.ClearAllPools();
        Assert.False(File.Exists(SqlitePath + "-wal") && new FileInfo(SqlitePath + "-wal").Length > 0, "the SQLite file was not checkpointed on stop");
    }

    private void Start()
    {
        _server = new ParleyFactory(s =>
        {
            foreach (var (key, value) in _storage)
            {
                s[key] = value;
            }
        }, sharedPostgres: _postgres);
        _server.StartKestrel();
    }

    private static async Task AdminAsync(string sql)
    {
        await using var connection = new NpgsqlConnection(TestPostgres.RequireAdmin());
        await connection.OpenAsync(TestContext.Current.CancellationToken);
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
    }
}
