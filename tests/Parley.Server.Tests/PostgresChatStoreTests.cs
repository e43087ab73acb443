using Npgsql;
using Parley.Server.Storage;
using Parley.Server.Storage.Migrations;
using Parley.Server.Storage.Postgres;
using Parley.Server.Tests.Infrastructure;

namespace Parley.Server.Tests;

/// <summary>The storage contract on PostgreSQL (an empty database per store), plus its migration ledger and lock.</summary>
[Trait("Store", "Independent")]
public sealed class PostgresChatStoreTests : ChatStoreContractTests
{
    private readonly List<(PostgresChatStore Store, string ConnectionString)> _stores = [];

    private protected override IChatStore CreateStore() => Open(TestPostgres.CreateDatabase(fromTemplate: false));

    private protected override async Task<IReadOnlyList<ConversationEvent>> ReadEventsAsync(Guid conversationId)
    {
        await using var connection = new NpgsqlConnection(_stores[0].ConnectionString);
        await connection.OpenAsync(Ct);
        await using var command = new NpgsqlCommand(EventsSql, connection);
        command.Parameters.AddWithValue("@c", conversationId);
        var events = new List<ConversationEvent>();
        await using var reader = await command.ExecuteReaderAsync(Ct);
        while (await reader.ReadAsync(Ct))
        {
            events.Add(new ConversationEvent(
                reader.GetGuid(0), reader.GetInt64(1), reader.GetString(2), reader.IsDBNull(3) ? null : reader.GetGuid(3),
                reader.GetString(4), reader.IsDBNull(5) ? null : reader.GetString(5), reader.IsDBNull(6) ? null : reader.GetString(6),
                new DateTimeOffset(reader.GetFieldValue<DateTime>(7), TimeSpan.Zero)));
        }

        return events;
    }

    [Fact]
    public async Task AssignPositions_AMessageAndItsReceiptCommittedDuringAPass_TheReceiptIsNotNumberedBeforeTheMessage()
    {
        ((Storage.Sql.SqlChatStore)Store).KeepReceiptLog = true;
        var conversation = await CreateGroupAsync("alice", "bob");
        await PositionEverythingAsync();
        await AppendAsync(conversation, "alice", "waiting"); // for the next pass, whose events statement a trigger slows
        await ExecuteAsync(
            """
            CREATE FUNCTION slow_positions() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(3); RETURN NULL; END $$;
            CREATE TRIGGER slow_positions BEFORE UPDATE ON conversation_events FOR EACH STATEMENT EXECUTE FUNCTION slow_positions();
            """);

        var pass = Store.AssignPositionsAsync(100, Ct);
        await Task.Delay(500, Ct); // the pass is in its events statement, whose snapshot is taken
        var reply = await AppendAsync(conversation, "bob", "reply");
        Succeeded(await Store.AdvanceReadAsync(conversation, "alice", reply.Id, Now, Ct)); // alice got it: her receipt row
        Assert.Equal(1, await pass);

        // The reply's event waits for the next pass: so must alice's receipt of it, or it would be published first.
        Assert.Equal(0L, await ScalarAsync("SELECT count(*) FROM receipt_log WHERE pos IS NOT NULL"));
        await ExecuteAsync("DROP TRIGGER slow_positions ON conversation_events");
        await PositionEverythingAsync();
        var batch = await Store.ReadOutboxAsync(0, 0, 100, Ct);
        Assert.Contains(batch.Changes, e => e.Event.Seq == reply.Seq);
        Assert.NotEmpty(batch.WatermarkMoves);
        Assert.All(batch.WatermarkMoves, r => Assert.Equal(reply.Seq, r.Seq));
    }

    [Fact]
    public async Task AdvanceDelivered_OneLanesWriteFailing_ReturnsWhatTheOtherLaneMovedAndTheReportsThatFailed()
    {
        var store = (Storage.Sql.SqlChatStore)Store;
        var first = await CreateGroupAsync("alice", "bob");
        var second = await CreateGroupAsync("alice", "bob");
        while (store.WriteLaneOf(second) == store.WriteLaneOf(first))
        {
            second = await CreateGroupAsync("alice", "bob");
        }

        var one = await AppendAsync(first, "alice", "one");
        var two = await AppendAsync(second, "alice", "two");
        await ExecuteAsync(
            $"""
            CREATE FUNCTION refuse_delivered() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$;
            CREATE TRIGGER refuse_delivered BEFORE UPDATE ON participants FOR EACH ROW
            WHEN (NEW.conversation_id = '{second}' AND NEW.delivered_seq IS DISTINCT FROM OLD.delivered_seq) EXECUTE FUNCTION refuse_delivered();
            """);

        var batch = await Store.AdvanceDeliveredAsync([new DeliveryReport(first, "bob", one.Seq), new DeliveryReport(second, "bob", two.Seq)], Now, Ct);

        // The first lane committed: its move is returned to be announced; the second lane's report is handed back.
        Assert.Equal(first, Assert.Single(batch.Moved).ConversationId);
        Assert.Equal(new DeliveryReport(second, "bob", two.Seq), Assert.Single(batch.Failed));
        Assert.Contains("refused by the test", batch.Error!.Message, StringComparison.Ordinal);
    }

    private async Task ExecuteAsync(string sql)
    {
        await using var connection = new NpgsqlConnection(_stores[0].ConnectionString);
        await connection.OpenAsync(Ct);
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync(Ct);
    }

    private async Task<object?> ScalarAsync(string sql)
    {
        await using var connection = new NpgsqlConnection(_stores[0].ConnectionString);
        await connection.OpenAsync(Ct);
        await using var command = new NpgsqlCommand(sql, connection);
        return await command.ExecuteScalarAsync(Ct);
    }

    [Fact]
    public async Task MigrateAsync_SecondStoreOnTheSameDatabase_AppliesNothingTwiceAndSeesTheData()
    {
        var conversation = await CreateGroupAsync("alice", "bob");
        var message = await AppendAsync(conversation, "alice", "persisted");

        var reopened = Open(_stores[0].ConnectionString);
        await reopened.MigrateAsync(Ct);

        Assert.True(await reopened.IsReadyAsync(Ct));
        Assert.Equal(message, await reopened.GetMessageAsync(message.Id, Ct));
        var versions = await QueryAsync(_stores[0].ConnectionString, "SELECT version FROM schema_migrations ORDER BY version");
        Assert.Equal(MigrationScripts.For("Postgres").Select(s => (long)s.Version), versions);
    }

    [Theory]
    [InlineData("Host=db;Username=parley", 32)]
    [InlineData("Host=db;Username=parley;Maximum Pool Size=80", 80)]
    [InlineData("Host=db;Username=parley;MaxPoolSize=7", 7)]
    public void CreateDataSource_PoolSize_LeavesRoomForOtherInstancesUnlessTheStringSetsIt(string connectionString, int expected)
    {
        using var dataSource = PostgresChatStore.CreateDataSource(connectionString);

        Assert.Equal(expected, new NpgsqlConnectionStringBuilder(dataSource.ConnectionString).MaxPoolSize);
    }

    [Theory]
    [InlineData("Host=db;Username=parley", true)]
    [InlineData("Host=db;Username=parley;No Reset On Close=false", false)]
    [InlineData("Host=db;Username=parley;NoResetOnClose=false", false)]
    public void CreateDataSource_PooledConnectionsAreNotResetUnlessTheStringSaysSo(string connectionString, bool expected)
    {
        using var dataSource = PostgresChatStore.CreateDataSource(connectionString);

        Assert.Equal(expected, new NpgsqlConnectionStringBuilder(dataSource.ConnectionString).NoResetOnClose);
    }

    [Fact]
    public async Task LockOrder_IsPostgresOrderOfUuids()
    {
        // Batches lock their conversations in this order and other writers in the database's: they must agree, or two
        // of them could each hold what the other waits for.
        var random = new Random(7);
        var ids = Enumerable.Range(0, 200).Select(_ =>
        {
            var bytes = new byte[16];
            random.NextBytes(bytes);
            return new Guid(bytes);
        }).Concat([Guid.CreateVersion7(), Guid.CreateVersion7(), Guid.Empty, Guid.AllBitsSet]).ToArray();
        await using var connection = new NpgsqlConnection(_stores[0].ConnectionString);
        await connection.OpenAsync(Ct);
        await using var command = new NpgsqlCommand("SELECT id FROM unnest(@ids) AS t(id) ORDER BY id", connection);
        command.Parameters.AddWithValue("ids", ids);
        var sorted = new List<Guid>();
        await using (var reader = await command.ExecuteReaderAsync(Ct))
        {
            while (await reader.ReadAsync(Ct))
            {
                sorted.Add(reader.GetGuid(0));
            }
        }

        Assert.Equal(sorted, ids.Order(Parley.Server.Storage.Sql.SqlDialect.LockOrder));
    }

    [Fact]
    public async Task MigrateAsync_SeveralInstancesAtOnce_MigrateOnce()
    {
        var connectionString = TestPostgres.CreateDatabase(fromTemplate: false);
        var stores = Enumerable.Range(0, 4).Select(_ => Open(connectionString)).ToList();

        await Task.WhenAll(stores.Select(s => s.MigrateAsync(Ct)));

        foreach (var store in stores)
        {
            Assert.True(await store.IsReadyAsync(Ct));
        }

        var versions = await QueryAsync(connectionString, "SELECT version FROM schema_migrations ORDER BY version");
        Assert.Equal(MigrationScripts.For("Postgres").Select(s => (long)s.Version), versions);
    }

    [Fact]
    public async Task FailingRule_LeavesNoRowBehind()
    {
        var conversation = await CreateGroupAsync("alice", "bob");

        var result = await Store.AppendMessageAsync(NewText(conversation, "alice", "rejected", "k-1"), _ => Hosting.ApiError.Forbidden("no"), Ct);

        Assert.False(result.IsApplied);
        var connectionString = _stores[0].ConnectionString;
        Assert.Equal([0L], await QueryAsync(connectionString, "SELECT COUNT(*) FROM messages"));
        Assert.Equal([1L], await QueryAsync(connectionString, "SELECT COUNT(*) FROM conversation_events"));
        Assert.Equal([1L], await QueryAsync(connectionString, "SELECT last_seq FROM conversations"));
    }

    [Theory]
    [InlineData(CommitCut.AfterCommit)] // committed: the send succeeded, though its COMMIT's answer was lost
    [InlineData(CommitCut.BeforeCommit)] // rolled back when the server lost the connection: the send runs again
    [InlineData(CommitCut.Silent)] // still open on a silent connection: ended by the store, then the send runs again
    public async Task AppendMessage_ConnectionBreaksAtCommit_TheStoreLearnsTheOutcomeAndTheMessageIsStoredOnce(CommitCut cut)
    {
        var conversation = await CreateGroupAsync("alice", "bob");
        var before = await AppendAsync(conversation, "alice", "before");
        await using var cutter = new CommitCutter(new NpgsqlConnectionStringBuilder(_stores[0].ConnectionString).Port);
        await using var store = OpenThrough(cutter);

        var broken = cutter.Arm(cut);
        var sent = Succeeded(await store.AppendMessageAsync(NewText(conversation, "bob", "through the break"), Accept, Ct));
        await broken.WaitAsync(TimeSpan.FromSeconds(5), Ct); // the connection was broken at COMMIT

        Assert.True(sent.Created);
        Assert.Equal(before.Seq + 1, sent.Message.Seq);
        var history = await Store.ListMessagesAsync(new MessageQuery(conversation, 0, null, null, 100), Ct);
        Assert.Equal(["through the break", "before"], history.Select(m => m.Content));
        Assert.Equal(sent.Message.Id, history[0].Id);
        Assert.Equal(sent.Message.Seq, (await Store.GetConversationAsync(conversation, Ct))!.Conversation.LastSeq);
    }

    [Theory]
    [InlineData(CommitCut.AfterCommit)] // the batch committed: every send of it succeeded
    [InlineData(CommitCut.BeforeCommit)] // rolled back: its sends run again, one at a time
    [InlineData(CommitCut.Silent)]
    public async Task AppendMessage_ABatchOfSeveralBrokenAtCommit_EverySendSucceedsOnceInItsOrder(CommitCut cut)
    {
        var conversation = await CreateGroupAsync("alice", "bob");
        await using var cutter = new CommitCutter(new NpgsqlConnectionStringBuilder(_stores[0].ConnectionString).Port);
        await using var store = OpenThrough(cutter);
        await store.MigrateAsync(Ct); // nothing to apply, but its transactions are past before the cut is armed

        // One conversation's sends share a lane and queue together (a batch of several, unless the lane took the first
        // alone before the others were queued): the first COMMIT is broken.
        var broken = cutter.Arm(cut);
        var sends = Enumerable.Range(0, 8).Select(n => store.AppendMessageAsync(NewText(conversation, "alice", $"{n}", $"k-{n}"), Accept, Ct)).ToList();
        var results = await Task.WhenAll(sends);
        await broken.WaitAsync(TimeSpan.FromSeconds(5), Ct);

        Assert.All(results, r => Assert.True(Succeeded(r).Created));
        var stored = await Store.ListMessagesAsync(new MessageQuery(conversation, 0, null, null, 100), Ct);
        Assert.Equal(8, stored.Count);
        Assert.Equal(results.Select(r => r.Value!.Message).OrderByDescending(m => m.Seq).Select(m => (m.Id, m.Seq)), stored.Select(m => (m.Id, m.Seq)));
    }

    [Fact]
    public async Task AppendMessage_OutcomeOfABrokenCommitNeverLearned_TheSendFails_AndItsRetryStoresItOnce()
    {
        var conversation = await CreateGroupAsync("alice", "bob");
        await using var cutter = new CommitCutter(new NpgsqlConnectionStringBuilder(_stores[0].ConnectionString).Port);
        // The open transaction is never ended (it would be after 60 s), and the store gives up asking after 1 s.
        await using var store = new PostgresChatStore(PostgresChatStore.CreateDataSource(ThroughCutter(cutter)))
        {
            SettleTerminateAfter = TimeSpan.FromSeconds(60), SettleTimeout = TimeSpan.FromSeconds(1),
        };
        await store.MigrateAsync(Ct);

        var broken = cutter.Arm(CommitCut.Silent);
        var failed = await Record.ExceptionAsync(() => store.AppendMessageAsync(NewText(conversation, "alice", "maybe", "k-maybe"), Accept, Ct));
        await broken.WaitAsync(TimeSpan.FromSeconds(5), Ct);

        Assert.NotNull(failed); // reported as failed, never as stored: the store cannot know
        await cutter.DisposeAsync(); // the silent connection closes: the server rolls the transaction back
        var retried = Succeeded(await Store.AppendMessageAsync(NewText(conversation, "alice", "maybe", "k-maybe"), Accept, Ct));
        Assert.Equal(["maybe"], (await Store.ListMessagesAsync(new MessageQuery(conversation, 0, null, null, 100), Ct)).Select(m => m.Content));
        Assert.True(retried.Created);
    }

    /// <summary>A store on this test's database whose connections pass through <paramref name="cutter"/>.</summary>
    private PostgresChatStore OpenThrough(CommitCutter cutter) =>
        new(PostgresChatStore.CreateDataSource(ThroughCutter(cutter))) { SettleTerminateAfter = TimeSpan.FromMilliseconds(300) };

    private string ThroughCutter(CommitCutter cutter) => new NpgsqlConnectionStringBuilder(_stores[0].ConnectionString)
    {
        Host = "127.0.0.1",
        Port = cutter.Port,
        SslMode = SslMode.Disable,
    }.ConnectionString;

    public override async ValueTask DisposeAsync()
    {
        await base.DisposeAsync();
        foreach (var (store, _) in _stores)
        {
            await store.DisposeAsync();
        }

        foreach (var connectionString in _stores.Select(s => s.ConnectionString).Distinct())
        {
            await TestPostgres.DropDatabaseAsync(connectionString);
        }
    }

    private PostgresChatStore Open(string connectionString)
    {
        var store = new PostgresChatStore(PostgresChatStore.CreateDataSource(connectionString));
        _stores.Add((store, connectionString));
        return store;
    }

    private static async Task<List<long>> QueryAsync(string connectionString, string sql)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync(TestContext.Current.CancellationToken);
        await using var command = new NpgsqlCommand(sql, connection);
        await using var reader = await command.ExecuteReaderAsync(TestContext.Current.CancellationToken);
        var values = new List<long>();
        while (await reader.ReadAsync(TestContext.Current.CancellationToken))
        {
            values.Add(Convert.ToInt64(reader.GetValue(0), System.Globalization.CultureInfo.InvariantCulture));
        }

        return values;
    }
}
