using System.Reflection;
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

    private protected override bool PositionsAtCommit => true;

    private protected override async Task<IReadOnlyList<ConversationEvent>> ReadEventsAsync(Guid conversationId)
    {
        // SQLite keeps ids as UUID text and times as Unix milliseconds.
        await using var connection = new SqliteConnection($"Data Source={DatabasePath(0)};Pooling=False");
        await connection.OpenAsync(Ct);
        await using var command = connection.CreateCommand();
        command.CommandText = EventsSql;
        command.Parameters.AddWithValue("@c", conversationId.ToString("D"));
        var events = new List<ConversationEvent>();
        await using var reader = await command.ExecuteReaderAsync(Ct);
        while (await reader.ReadAsync(Ct))
        {
            events.Add(new ConversationEvent(
                Guid.Parse(reader.GetString(0)), reader.GetInt64(1), reader.GetString(2), reader.IsDBNull(3) ? null : Guid.Parse(reader.GetString(3)),
                reader.GetString(4), reader.IsDBNull(5) ? null : reader.GetString(5), reader.IsDBNull(6) ? null : reader.GetString(6),
                DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(7))));
        }

        return events;
    }

    [Fact]
    public async Task Dispose_WhileAWriteHoldsTheWriter_WaitsForItsReleaseInsteadOfFailingIt()
    {
        // A write in progress (a read receipt, an edit) holds the single writer when the store is stopped: its release,
        // after its commit, must not fail (the caller would be told that a committed write failed).
        var conversation = await CreateGroupAsync("alice", "bob");
        var message = await AppendAsync(conversation, "alice", "one");
        var writer = (SemaphoreSlim)typeof(SqliteChatStore).GetField("_writeLock", BindingFlags.NonPublic | BindingFlags.Instance)!.GetValue(Store)!;
        await writer.WaitAsync(Ct);

        var stopping = ((IAsyncDisposable)Store).DisposeAsync().AsTask();
        await Task.Delay(300, Ct);
        Assert.False(stopping.IsCompleted);
        writer.Release();

        await stopping.WaitAsync(TimeSpan.FromSeconds(20), Ct);
        // A write after the stop is refused, not left waiting for a lock nobody releases; as a database that cannot be
        // reached is (503 and retry), not as a fault (500).
        var refused = await Assert.ThrowsAsync<StoreStoppedException>(() => Store.AdvanceReadAsync(conversation, "bob", message.Id, Now, Ct).WaitAsync(TimeSpan.FromSeconds(10), Ct));
        await Assert.ThrowsAsync<StoreStoppedException>(() => AppendAsync(conversation, "alice", "too late").WaitAsync(TimeSpan.FromSeconds(10), Ct));
        Assert.Equal(503, Hosting.ApiError.ForStorageFailure(refused).Status);
    }

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
    public async Task BackgroundCheckpoints_CopyTheLogIntoTheDatabaseFile_TheWriterAloneWouldNotYet()
    {
        // This class's store checkpoints in the background (the default): soon its database file alone holds the message.
        var conversation = await CreateGroupAsync("alice", "bob");
        var message = await AppendAsync(conversation, "alice", "checkpointed");
        Assert.True(await InFileAloneAsync(DatabasePath(0), message.Id, within: TimeSpan.FromSeconds(10)));

        // Without it, only the writer's automatic checkpoint (every 1,000 pages of log) would copy it, and one message is
        // far from that: what the first half saw is the background's doing.
        var plain = Open(DatabasePath(1), backgroundCheckpoints: false);
        await plain.MigrateAsync(Ct);
        var other = Guid.CreateVersion7();
        Assert.True((await plain.CreateConversationAsync(
            new NewConversation(other, "group", "team", "alice", [("alice", "owner"), ("bob", "member")], null, Now), Ct)).Created);
        var kept = Succeeded(await plain.AppendMessageAsync(NewText(other, "alice", "in the log only"), Accept, Ct)).Message;
        Assert.False(await InFileAloneAsync(DatabasePath(1), kept.Id, within: TimeSpan.FromMilliseconds(500)));
        Assert.Equal(kept, await plain.GetMessageAsync(kept.Id, Ct));
    }

    [Fact]
    public async Task WriterConnection_HasItsPageCache_AndWithBackgroundCheckpointsOnlyAFallbackCheckpointOfItsOwn()
    {
        var background = Open(DatabasePath(1));
        await background.MigrateAsync(Ct);
        Assert.Equal(-SqliteChatStore.DefaultWriterCacheMiB * 1024L, await background.WriterPragmaAsync("cache_size"));
        Assert.Equal(WalCheckpointer.WriterAutoCheckpointPages, await background.WriterPragmaAsync("wal_autocheckpoint"));

        var plain = Open(DatabasePath(2), backgroundCheckpoints: false, writerCacheMiB: 8);
        await plain.MigrateAsync(Ct);
        Assert.Equal(-8 * 1024L, await plain.WriterPragmaAsync("cache_size"));
        Assert.Equal(1000, await plain.WriterPragmaAsync("wal_autocheckpoint")); // SQLite's default: the writer checkpoints
    }

    /// <summary>
    /// Whether a copy of the database file without its write-ahead log holds the message, tried until
    /// <paramref name="within"/> has passed (a copy taken during a checkpoint may be torn: it is taken again).
    /// </summary>
    private async Task<bool> InFileAloneAsync(string path, Guid messageId, TimeSpan within)
    {
        var copy = Path.Combine(_directory, $"copy-{Guid.NewGuid():N}.db");
        var deadline = DateTime.UtcNow + within;
        do
        {
            File.Copy(path, copy, overwrite: true);
            try
            {
                if ((await QueryAsync(copy, $"SELECT COUNT(*) FROM messages WHERE id = '{messageId:D}'")).Single() == 1)
                {
                    return true;
                }
            }
            catch (SqliteException)
            {
                // Torn or not yet a database: try again.
            }
            finally
            {
                SqliteConnection.ClearAllPools();
                foreach (var file in new[] { copy + "-wal", copy + "-shm" })
                {
                    File.Delete(file);
                }
            }

            await Task.Delay(50, Ct);
        }
        while (DateTime.UtcNow < deadline);

        return false;
    }

    [Fact]
    public async Task FailingRule_LeavesNoRowBehind()
    {
        var conversation = await CreateGroupAsync("alice", "bob");

        var result = await Store.AppendMessageAsync(NewText(conversation, "alice", "rejected", "k-1"), _ => Hosting.ApiError.Forbidden("no"), Ct);

        Assert.False(result.IsApplied);
        Assert.Equal([0L], await QueryAsync(DatabasePath(0), "SELECT COUNT(*) FROM messages"));
        Assert.Equal([1L], await QueryAsync(DatabasePath(0), "SELECT COUNT(*) FROM conversation_events"));
        Assert.Equal([0L, 0L], await QueryAsync(DatabasePath(0), "SELECT unread_count FROM participants ORDER BY user_id"));
    }

    [Fact]
    public async Task JsonColumns_KeepTheirStoredFormat()
    {
        // Rows written by earlier versions are read by later ones (and 0003_replay_checks builds rosters in SQL with
        // these names): the store's JSON must not drift with the API's.
        var conversation = await CreateGroupAsync("alice", "bob");
        var image = Succeeded(await Store.AppendMessageAsync(
            NewText(conversation, "alice", "@bob look") with
            {
                MessageType = "image",
                Mentions = [new Mention("bob", 0, 4)],
                Media = new Media("https://cdn.example.com/p.png", "image/png", 42, 10, 20, null, "p.png", null),
            },
            Accept, Ct)).Message;
        var place = Succeeded(await Store.AppendMessageAsync(
            NewText(conversation, "alice", "here") with { MessageType = "location", Content = null, Location = new Location(52.5, 13.25, null) },
            Accept, Ct)).Message;

        var path = DatabasePath(0);
        Assert.Equal(
            """[{"user_id":"alice","role":"owner"},{"user_id":"bob","role":"member"}]""",
            await QueryTextAsync(path, "SELECT members FROM conversation_events WHERE seq = 1"));
        Assert.Equal("""[{"user_id":"bob","offset":0,"length":4}]""", await QueryTextAsync(path, $"SELECT mentions FROM messages WHERE id = '{image.Id:D}'"));
        Assert.Equal(
            """{"url":"https://cdn.example.com/p.png","mime_type":"image/png","size_bytes":42,"width":10,"height":20,"duration_ms":null,"file_name":"p.png","thumbnail_url":null}""",
            await QueryTextAsync(path, $"SELECT media FROM messages WHERE id = '{image.Id:D}'"));
        Assert.Equal("""{"latitude":52.5,"longitude":13.25,"name":null}""", await QueryTextAsync(path, $"SELECT location FROM messages WHERE id = '{place.Id:D}'"));
        var read = (await Store.GetMessageAsync(image.Id, Ct))!;
        Assert.Equal(image.Mentions!, read.Mentions!);
        Assert.Equal(image.Media, read.Media);
        Assert.Equal(place.Location, (await Store.GetMessageAsync(place.Id, Ct))!.Location);
    }

    [Fact]
    public async Task MigrateAsync_PutsTheDatabaseInWalMode()
    {
        var mode = await QueryTextAsync(DatabasePath(0), "PRAGMA journal_mode");

        Assert.Equal("wal", mode, ignoreCase: true);
    }

    [Fact]
    public async Task Reads_AfterOneThatFailed_AndMoreAtOnceThanKeptReaders_AllAnswer()
    {
        var conversation = await CreateGroupAsync("alice", "bob");
        var message = await AppendAsync(conversation, "alice", "hello");
        Assert.Equal(message, await Store.GetMessageAsync(message.Id, Ct)); // a kept reader now waits in the bag

        // A read that fails on a kept reader closes it rather than putting it back.
        using (var cancelled = new CancellationTokenSource())
        {
            await cancelled.CancelAsync();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => Store.GetMessageAsync(message.Id, cancelled.Token));
        }

        for (var round = 0; round < 3; round++)
        {
            var reads = await Task.WhenAll(Enumerable.Range(0, 40).Select(_ => Task.Run(() => Store.GetMessageAsync(message.Id, Ct))));
            Assert.All(reads, read => Assert.Equal(message, read));
        }
    }

    [Fact]
    public async Task Migration0008_GivesEveryRelayRowATimeItWasLastHeld_SoARemovedSinksRowStopsKeepingReceipts()
    {
        var path = DatabasePath(9);
        await MigratedUpToAsync(path, 7,
        [
            "INSERT INTO event_relay (sink, pos, receipt_pos, published_at) VALUES ('published', 0, 0, 1000)",
            "INSERT INTO event_relay (sink, pos, receipt_pos, lease_until, published_at) VALUES ('leased', 0, 0, 3000, 2000)",
            "INSERT INTO event_relay (sink, pos, receipt_pos, lease_until) VALUES ('released', 0, 0, 4000)",
            "INSERT INTO event_relay (sink, pos, receipt_pos) VALUES ('never', 0, 0)",
        ]);
        var before = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();

        await Open(path).MigrateAsync(Ct);

        var heldAt = await QueryAsync(path, "SELECT held_at FROM event_relay ORDER BY sink");
        Assert.Equal([2000L, 1000L, 4000L], [heldAt[0], heldAt[2], heldAt[3]]); // leased, published, released
        Assert.InRange(heldAt[1], before - 1000, before + 60_000); // never held: counted from the upgrade
    }

    [Fact]
    public async Task Migration0006_TurnsReceiptPositionsIntoRowIds_WhatWasPublishedStaysPublished()
    {
        // A database at 0005 whose receipt log was numbered by the sequencer: rows 1-6 took positions 11-14 (row 1 already
        // pruned, rows 5 and 6 not numbered yet); one sink published up to position 12 (row 2), another up to 14 (row 4).
        var path = DatabasePath(7);
        await MigratedUpToAsync(path, 5,
        [
            .. Enumerable.Range(1, 6).Select(i =>
                $"INSERT INTO receipt_log (pos, conversation_id, user_id, kind, seq, message_id, created_at) VALUES ({(i <= 4 ? (10 + i).ToString(System.Globalization.CultureInfo.InvariantCulture) : "NULL")}, 'c', 'u', 'delivered', {i}, 'm', 0)"),
            "DELETE FROM receipt_log WHERE id = 1",
            "UPDATE stream_state SET receipt_pos = 14",
            "INSERT INTO event_relay (sink, pos, receipt_pos) VALUES ('behind', 0, 12), ('caught-up', 0, 14)",
        ]);
        // A second database whose every receipt was numbered (positions 7-9) and pruned.
        var pruned = DatabasePath(8);
        await MigratedUpToAsync(pruned, 5,
        [
            .. Enumerable.Range(1, 3).Select(i => $"INSERT INTO receipt_log (pos, conversation_id, user_id, kind, seq, message_id, created_at) VALUES ({6 + i}, 'c', 'u', 'read', {i}, 'm', 0)"),
            "DELETE FROM receipt_log",
            "UPDATE stream_state SET receipt_pos = 9",
            "INSERT INTO event_relay (sink, pos, receipt_pos) VALUES ('k', 0, 9)",
        ]);

        await Open(path).MigrateAsync(Ct);
        await Open(pruned).MigrateAsync(Ct);

        Assert.Equal([2L, 4L], await QueryAsync(path, "SELECT receipt_pos FROM event_relay ORDER BY sink"));
        // 0006 leaves the readable end at row 4 (rows 5 and 6 were not numbered yet); 0007, which positions every event,
        // then makes them readable, as the sequencer's next pass would have.
        Assert.Equal([6L], await QueryAsync(path, "SELECT receipt_pos FROM stream_state"));
        Assert.Equal([0L], await QueryAsync(path, "SELECT COUNT(*) FROM pragma_table_info('receipt_log') WHERE name = 'pos'"));
        Assert.Equal([3L], await QueryAsync(pruned, "SELECT receipt_pos FROM event_relay"));
        Assert.Equal([3L], await QueryAsync(pruned, "SELECT receipt_pos FROM stream_state"));
    }

    [Fact]
    public async Task EventsAndReceipts_TakeTheirStreamPositionsInTheTransactionThatWritesThem()
    {
        // Two conversations written in turn: positions follow the order of the commits, with no sequencer pass.
        ((Storage.Sql.SqlChatStore)Store).KeepReceiptLog = true;
        var first = await CreateGroupAsync("alice", "bob");
        var second = await CreateGroupAsync("alice", "carol");
        await AppendAsync(first, "alice", "one");
        await AppendAsync(second, "carol", "two");
        await AppendAsync(first, "bob", "three");

        Assert.Equal([0L], await QueryAsync(DatabasePath(0), "SELECT COUNT(*) FROM conversation_events WHERE pos IS NULL"));
        Assert.Equal([1L, 2L, 3L, 4L, 5L], await QueryAsync(DatabasePath(0), "SELECT pos FROM conversation_events ORDER BY pos"));
        Assert.Equal(
            [1L, 3L, 5L],
            await QueryAsync(DatabasePath(0), $"SELECT pos FROM conversation_events WHERE conversation_id = '{first:D}' ORDER BY seq"));
        Assert.Equal(5, (await Store.GetStreamPositionAsync(Ct)).Pos);
        Assert.Equal(0, await Store.AssignPositionsAsync(5000, Ct));
        Assert.Equal([1L, 2L, 3L], (await Store.ReadUserEventsAsync("bob", 0, 5, 100, Ct)).Select(e => e.Event.Seq));

        // A read receipt is readable by the relay from its commit on, after the message it names.
        var read = await AppendAsync(first, "alice", "four");
        Succeeded(await Store.AdvanceReadAsync(first, "bob", read.Id, Now, Ct));
        var outbox = await Store.ReadOutboxAsync(5, 0, 100, Ct);
        Assert.Equal([read.Seq], outbox.Changes.Select(e => e.Event.Seq));
        Assert.Equal([("bob", read.Seq), ("bob", read.Seq)], outbox.WatermarkMoves.Select(r => (r.UserId, r.Seq)));
        Assert.Equal(0, await Store.AssignPositionsAsync(5000, Ct));
    }

    [Fact]
    public async Task Migration0007_PositionsTheEventsAnEarlierVersionLeftUnpositioned_AfterTheOthers()
    {
        // A database at 0006 whose sequencer had positioned three events (1-3) and not yet the last three.
        var path = DatabasePath(9);
        await MigratedUpToAsync(path, 6,
        [
            "PRAGMA foreign_keys = OFF",
            "INSERT INTO conversation_events (conversation_id, seq, type, actor_id, created_at, pos) VALUES ('b', 1, 'x', 'u', 0, 1), ('a', 1, 'x', 'u', 0, 2), ('b', 2, 'x', 'u', 0, 3)",
            "INSERT INTO conversation_events (conversation_id, seq, type, actor_id, created_at, pos) VALUES ('b', 3, 'x', 'u', 0, NULL), ('a', 2, 'x', 'u', 0, NULL), ('a', 3, 'x', 'u', 0, NULL)",
            "UPDATE stream_state SET pos = 3",
        ]);

        await Open(path).MigrateAsync(Ct);

        // Positions given stay; the rest follow in (conversation, seq) order: a2, a3, b3.
        Assert.Equal([2L, 4L, 5L, 1L, 3L, 6L], await QueryAsync(path, "SELECT pos FROM conversation_events ORDER BY conversation_id, seq"));
        Assert.Equal([6L], await QueryAsync(path, "SELECT pos FROM stream_state"));
        Assert.Equal([0L], await QueryAsync(path, "SELECT COUNT(*) FROM sqlite_master WHERE name = 'ix_conversation_events_unpositioned'"));
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

    private SqliteChatStore Open(string path, bool backgroundCheckpoints = true, int writerCacheMiB = SqliteChatStore.DefaultWriterCacheMiB)
    {
        var store = new SqliteChatStore($"Data Source={path}", backgroundCheckpoints: backgroundCheckpoints, writerCacheMiB: writerCacheMiB);
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

    /// <summary>
    /// A database as an earlier version left it: the scripts up to <paramref name="version"/> applied and recorded in
    /// the ledger, then <paramref name="statements"/> (its data) on one connection.
    /// </summary>
    private async Task MigratedUpToAsync(string path, int version, IEnumerable<string> statements)
    {
        var scripts = MigrationScripts.For("Sqlite").Where(m => m.Version <= version).ToList();
        await ExecuteAsync(path, scripts.Select(m => m.Sql));
        await ExecuteAsync(path,
        [
            "CREATE TABLE schema_migrations (version INTEGER NOT NULL PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)",
            .. scripts.Select(m => $"INSERT INTO schema_migrations VALUES ({m.Version}, '{m.Name}', 0)"),
            .. statements,
        ]);
    }

    private async Task ExecuteAsync(string path, IEnumerable<string> statements)
    {
        await using var connection = new SqliteConnection($"Data Source={path};Pooling=False");
        await connection.OpenAsync(Ct);
        foreach (var sql in statements)
        {
            await using var command = connection.CreateCommand();
            command.CommandText = sql;
            await command.ExecuteNonQueryAsync(Ct);
        }
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
