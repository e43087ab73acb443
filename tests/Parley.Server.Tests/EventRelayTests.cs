using System.Net;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Parley.Server.Events;
using Parley.Server.Storage;
using Parley.Server.Tests.Infrastructure;
using static Parley.Server.Tests.Infrastructure.MembershipCalls;

namespace Parley.Server.Tests;

/// <summary>
/// The relay publishes the committed log (docs/events.md): every event once a sink is configured, in each conversation's
/// order, with stable ids; receipts after their messages; nothing of a rejected change; the backlog kept in the database
/// while the sink is down, then drained in order. On both stores (the suite's passes).
/// </summary>
public sealed class EventRelayTests : IAsyncLifetime
{
    private readonly InMemoryEventSink _sink = new();
    private readonly LogCapture _log = new();
    private readonly ParleyFactory _factory;

    public EventRelayTests()
    {
        _factory = new ParleyFactory(
            settings => settings["Events:PollInterval"] = "00:00:00.010",
            services: services =>
            {
                services.AddSingleton<IEventSink>(_sink);
                services.AddSingleton<Microsoft.Extensions.Logging.ILoggerProvider>(_log);
            });
    }

    public ValueTask InitializeAsync() => ValueTask.CompletedTask;

    public async ValueTask DisposeAsync()
    {
        await _factory.DisposeAsync();
        foreach (var entry in _log.Entries.Where(e => e.Category.Contains("Event", StringComparison.Ordinal) || e.Level >= Microsoft.Extensions.Logging.LogLevel.Error))
        {
            TestContext.Current.TestOutputHelper?.WriteLine(entry.Everything);
        }
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Relay_EveryKindOfChange_PublishedOnceInSeqOrderMatchingItsSchema()
    {
        var alice = _factory.BoundedApi(NewUser("alice"));
        var (bob, carol, dave) = (NewUser("bob"), NewUser("carol"), NewUser("dave"));
        var group = await alice.CreateGroupAsync("Launch", bob, carol);
        var first = await alice.SendTextAsync(group.Id, "hello");
        await alice.SendTextAsync(group.Id, "second");
        await alice.EditAsync(first.Id, "hello again");
        await alice.DeleteMessageAsync(first.Id);
        await AddOkAsync(alice, group.Id, dave);
        await SetRoleOkAsync(alice, group.Id, dave, "admin");
        await RemoveOkAsync(alice, group.Id, carol);

        var records = (await _sink.WaitForAsync(r => r.Of(group.Id).Count(x => !x.Type.StartsWith("receipt.", StringComparison.Ordinal)) >= 8))
            .Of(group.Id).Where(r => !r.Type.StartsWith("receipt.", StringComparison.Ordinal)).ToList();

        Assert.Equal(
            ["conversation.created", "message.created", "message.created", "message.edited", "message.deleted", "participant.added", "participant.role_changed", "participant.removed"],
            records.Select(r => r.Type));
        Assert.Equal(Enumerable.Range(1, 8).Select(i => (long)i), records.Select(r => r.Seq()));
        var positions = records.Select(r => r.Json().GetProperty("pos").GetInt64()).ToList();
        Assert.Equal(positions.Order(), positions);
        Assert.Equal(records.Count, records.Select(r => r.EventId).Distinct().Count());
        Assert.All(records, r => Assert.Equal(r.EventId, r.Json().GetProperty("event_id").GetString()));
        Assert.All(records, r => EventRecords.AssertMatchesSchema(r.Body));
        Assert.Equal(first.Id.ToString(), records[4].Payload().GetProperty("message_id").GetString());
        Assert.Equal("second", records[2].Payload().GetProperty("content").GetString());
        Assert.Equal(dave, records[5].Payload().GetProperty("user_id").GetString());
        Assert.Equal("admin", records[6].Payload().GetProperty("role").GetString());
        Assert.Equal(3, records[0].Payload().GetProperty("members").GetArrayLength());
    }

    [Fact]
    public async Task Relay_ARejectedChange_IsNeverPublished()
    {
        var alice = _factory.BoundedApi(NewUser("alice"));
        var mallory = _factory.BoundedApi(NewUser("mallory"));
        var conversation = await alice.CreateDirectAsync(NewUser("bob"));

        using var refused = await mallory.PostMessageAsync(MessagingKit.TextBody(conversation.Id, "not a member"));
        Assert.False(refused.IsSuccessStatusCode);
        var sent = await alice.SendTextAsync(conversation.Id, "only this");
        var records = (await _sink.WaitForAsync(r => r.Of(conversation.Id).Any(x => x.Type == "message.created"))).Of(conversation.Id);

        Assert.Equal(["conversation.created", "message.created"], records.Select(r => r.Type));
        Assert.Equal(sent.Id.ToString(), records[1].Payload().GetProperty("message_id").GetString());
        Assert.DoesNotContain(_sink.Records, r => r.Body.AsSpan().IndexOf("not a member"u8) >= 0);
    }

    [Fact]
    public async Task Relay_AReadReceipt_PublishedAfterItsMessage()
    {
        var bobId = NewUser("bob");
        var alice = _factory.BoundedApi(NewUser("alice"));
        var bob = _factory.BoundedApi(bobId);
        var conversation = await alice.CreateDirectAsync(bobId);
        var message = await alice.SendTextAsync(conversation.Id, "read me");

        await bob.MarkReadAsync(message.Id);
        var records = (await _sink.WaitForAsync(r => r.Of(conversation.Id).Any(x => x.Type == "receipt.read"))).Of(conversation.Id);

        var read = records.Single(r => r.Type == "receipt.read");
        Assert.True(records.IndexOf(read) > records.FindIndex(r => r.Type == "message.created"));
        Assert.Equal(message.Seq, read.Seq());
        Assert.Equal(bobId, read.Payload().GetProperty("user_id").GetString());
        Assert.Equal(message.Id.ToString(), read.Payload().GetProperty("message_id").GetString());
        // Read carries delivered along: a delivered receipt for the same message, before the read one.
        var delivered = records.Single(r => r.Type == "receipt.delivered");
        Assert.True(records.IndexOf(delivered) < records.IndexOf(read));
        EventRecords.AssertMatchesSchema(read.Body);
        EventRecords.AssertMatchesSchema(delivered.Body);
    }

    [Fact]
    public async Task Relay_SinkDown_BacklogKeptAndReported_ThenDrainedInOrder()
    {
        var alice = _factory.BoundedApi(NewUser("alice"));
        var bobId = NewUser("bob");
        var conversation = await alice.CreateDirectAsync(bobId);
        await _sink.WaitForAsync(r => r.Of(conversation.Id).Count >= 1);
        _sink.IsDown = true;

        Message? last = null;
        for (var i = 0; i < 20; i++)
        {
            last = await alice.SendTextAsync(conversation.Id, $"m{i}");
        }

        await _factory.BoundedApi(bobId).MarkReadAsync(last!.Id);

        var ready = await WaitForReadyAsync(body => body.Contains("Degraded", StringComparison.Ordinal) && body.Contains("backlog 22 ", StringComparison.Ordinal));
        Assert.Contains("publishing fails", ready, StringComparison.Ordinal);
        Assert.Equal(2, await CountRowsAsync("receipt_log")); // delivered and read: kept until published
        Assert.DoesNotContain(_sink.Records.Of(conversation.Id), r => r.Type == "message.created");

        _sink.IsDown = false;
        var records = (await _sink.WaitForAsync(r => r.Of(conversation.Id).Count(x => x.Type == "message.created") >= 20)).Of(conversation.Id);

        Assert.Equal(Enumerable.Range(0, 20).Select(i => $"m{i}"), records.Where(r => r.Type == "message.created").Select(r => r.Payload().GetProperty("content").GetString()));
        Assert.Equal(Enumerable.Range(1, 21).Select(i => (long)i), records.Where(r => !r.Type.StartsWith("receipt.", StringComparison.Ordinal)).Select(r => r.Seq()));
        await WaitForReadyAsync(body => body.Contains("\"Healthy\"", StringComparison.Ordinal) && body.Contains("backlog 0 ", StringComparison.Ordinal));
        Assert.Contains(_sink.Records.Of(conversation.Id), r => r.Type == "receipt.read" && r.Seq() == 21);

        // Published by every sink: the receipt log is pruned.
        for (var i = 0; i < 200 && await CountRowsAsync("receipt_log") > 0; i++)
        {
            await Task.Delay(50, Ct);
        }

        Assert.Equal(0, await CountRowsAsync("receipt_log"));
    }

    private async Task<long> CountRowsAsync(string table)
    {
        var settings = _factory.StorageSettings();
        System.Data.Common.DbConnection connection = settings.TryGetValue("Storage:Provider", out var provider) && provider == "Postgres"
            ? new Npgsql.NpgsqlConnection(settings["ConnectionStrings:Postgres"])
            : new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={_factory.DatabasePath}");
        await using (connection)
        {
            await connection.OpenAsync(Ct);
            await using var command = connection.CreateCommand();
            command.CommandText = $"SELECT COUNT(*) FROM {table}";
            return Convert.ToInt64(await command.ExecuteScalarAsync(Ct), System.Globalization.CultureInfo.InvariantCulture);
        }
    }

    private async Task<string> WaitForReadyAsync(Func<string, bool> done)
    {
        using var client = _factory.CreateClient();
        var until = DateTime.UtcNow + TimeSpan.FromSeconds(20);
        var body = "";
        while (DateTime.UtcNow < until)
        {
            using var response = await client.GetAsync("/ready", Ct);
            body = await response.Content.ReadAsStringAsync(Ct);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode); // degraded, never unready: messaging works
            using var report = JsonDocument.Parse(body);
            var events = report.RootElement.GetProperty("checks").EnumerateArray().Single(e => e.GetProperty("name").GetString() == "events").ToString();
            if (done(events))
            {
                return events;
            }

            await Task.Delay(50, Ct);
        }

        Assert.Fail($"/ready never reported what was expected; last: {body}");
        return body;
    }
}

/// <summary>Without a sink nothing runs for the stream and nothing is kept for it.</summary>
public sealed class EventStreamOffTests : IAsyncLifetime
{
    private readonly ParleyFactory _factory = new();

    public ValueTask InitializeAsync() => ValueTask.CompletedTask;

    public ValueTask DisposeAsync() => _factory.DisposeAsync();

    [Fact]
    public async Task NoSink_ReceiptsAreNotLogged_AndNoRelayRuns()
    {
        var bobId = NewUser("bob");
        var alice = _factory.BoundedApi(NewUser("alice"));
        var conversation = await alice.CreateDirectAsync(bobId);
        var message = await alice.SendTextAsync(conversation.Id, "hi");
        await _factory.BoundedApi(bobId).MarkReadAsync(message.Id);
        await Task.Delay(300, TestContext.Current.CancellationToken); // a few sequencer passes

        var store = _factory.Services.GetRequiredService<IChatStore>();
        var backlog = await store.GetRelayBacklogAsync("kafka", TestContext.Current.CancellationToken);
        Assert.Equal(0, backlog.ReceiptCount);
        Assert.True(backlog.EventCount >= 2);
        Assert.Empty(_factory.Services.GetRequiredService<EventSinks>().All);
    }
}
