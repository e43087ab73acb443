using System.Net;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
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
        Assert.Equal(2, await _factory.CountRowsAsync("receipt_log")); // delivered and read: kept until published
        Assert.DoesNotContain(_sink.Records.Of(conversation.Id), r => r.Type == "message.created");

        _sink.IsDown = false;
        var records = (await _sink.WaitForAsync(r => r.Of(conversation.Id).Count(x => x.Type == "message.created") >= 20)).Of(conversation.Id);

        Assert.Equal(Enumerable.Range(0, 20).Select(i => $"m{i}"), records.Where(r => r.Type == "message.created").Select(r => r.Payload().GetProperty("content").GetString()));
        Assert.Equal(Enumerable.Range(1, 21).Select(i => (long)i), records.Where(r => !r.Type.StartsWith("receipt.", StringComparison.Ordinal)).Select(r => r.Seq()));
        await WaitForReadyAsync(body => body.Contains("\"Healthy\"", StringComparison.Ordinal) && body.Contains("backlog 0 ", StringComparison.Ordinal));
        Assert.Contains(_sink.Records.Of(conversation.Id), r => r.Type == "receipt.read" && r.Seq() == 21);

        // Published by every sink: the receipt log is pruned.
        for (var i = 0; i < 200 && await _factory.CountRowsAsync("receipt_log") > 0; i++)
        {
            await Task.Delay(50, Ct);
        }

        Assert.Equal(0, await _factory.CountRowsAsync("receipt_log"));
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

/// <summary>
/// The relay's pacing, on a clock that moves only when the test says so (a poll interval of 10 s): a relay that caught up
/// waits a poll interval before its next pass, so that a busy server publishes (and records, a write transaction) the
/// batch of a poll interval instead of a pass for every few events; and it prunes published receipts on its schedule
/// also while every pass finds something to publish.
/// </summary>
public sealed class EventRelayPacingTests : IAsyncLifetime
{
    private static readonly TimeSpan PollInterval = TimeSpan.FromSeconds(10);
    private static readonly TimeSpan SequencerInterval = TimeSpan.FromMilliseconds(20); // Delivery:SequencerInterval
    private readonly FakeTimeProvider _time = new(DateTimeOffset.UtcNow);
    private readonly HeldSink _sink = new();
    private readonly ParleyFactory _factory;

    public EventRelayPacingTests()
    {
        _factory = new ParleyFactory(
            settings => settings["Events:PollInterval"] = PollInterval.ToString(),
            _time,
            services: services => services.AddSingleton<IEventSink>(_sink));
    }

    public ValueTask InitializeAsync() => ValueTask.CompletedTask;

    public ValueTask DisposeAsync() => _factory.DisposeAsync();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Relay_AfterABatchThatWasNotFull_WaitsAPollIntervalBeforeTheNext()
    {
        var alice = _factory.BoundedApi(NewUser("alice"));
        var conversation = await alice.CreateDirectAsync(NewUser("bob"));
        await StartedAsync(await alice.SendTextAsync(conversation.Id, "first"));

        // "third" is committed while the relay is publishing "second"'s batch: the old relay read it at once after.
        _sink.Hold();
        var second = await alice.SendTextAsync(conversation.Id, "second");
        await PositionedAsync();
        _time.Advance(PollInterval);
        await _sink.HeldAsync();
        var third = await alice.SendTextAsync(conversation.Id, "third");
        await PositionedAsync(waiting: 2);
        _sink.Release();
        await PublishedAsync(second, left: 1);
        await Task.Delay(500, Ct); // the clock has moved on by less than a second of the ten
        Assert.DoesNotContain(_sink.Records, r => IsCreated(r, third.Id));

        await PassAsync(third);
    }

    [Fact]
    public async Task Relay_EveryPassBusy_PublishedReceiptsArePrunedAllTheSame()
    {
        var bobId = NewUser("bob");
        var alice = _factory.BoundedApi(NewUser("alice"));
        var conversation = await alice.CreateDirectAsync(bobId);
        var first = await alice.SendTextAsync(conversation.Id, "first");
        await StartedAsync(first);
        await _factory.BoundedApi(bobId).MarkReadAsync(first.Id);
        Assert.True(await _factory.CountRowsAsync("receipt_log") >= 1);

        // Three poll intervals (the pruning's is five seconds), each with a message to publish: no pass finds nothing.
        for (var i = 0; i < 3; i++)
        {
            await PassAsync(await alice.SendTextAsync(conversation.Id, $"busy {i}"));
        }

        Assert.Contains(_sink.Records, r => r.Type == "receipt.read");
        Assert.Equal(0, await _factory.CountRowsAsync("receipt_log"));
    }

    /// <summary>Moves the clock on until the relay (waiting for the schema, taking its lease, idling) published the message.</summary>
    private async Task StartedAsync(Message message)
    {
        var until = DateTime.UtcNow + TimeSpan.FromSeconds(20);
        while (!_sink.Records.Any(r => IsCreated(r, message.Id)))
        {
            Assert.True(DateTime.UtcNow < until, $"message {message.Id} not published");
            _time.Advance(PollInterval);
            await Task.Delay(50, Ct);
        }

        await CaughtUpAsync();
    }

    /// <summary>One poll interval of the caught-up relay: the message's pass, and nothing else.</summary>
    private async Task PassAsync(Message message)
    {
        await PositionedAsync();
        _time.Advance(PollInterval);
        await PublishedAsync(message);
    }

    private async Task PublishedAsync(Message message, int left = 0)
    {
        var until = DateTime.UtcNow + TimeSpan.FromSeconds(20);
        var again = DateTime.UtcNow + TimeSpan.FromSeconds(3);
        while (!_sink.Records.Any(r => IsCreated(r, message.Id)))
        {
            Assert.True(DateTime.UtcNow < until, $"message {message.Id} not published");
            if (DateTime.UtcNow > again)
            {
                // The relay had not begun its wait when the clock moved (a slow machine): move it once more.
                again = DateTime.UtcNow + TimeSpan.FromSeconds(3);
                _time.Advance(PollInterval);
            }

            await Task.Delay(20, Ct);
        }

        await CaughtUpAsync(left);
    }

    /// <summary>
    /// Moves the clock on by the sequencer's interval until <paramref name="waiting"/> events wait to be published (the
    /// last message sent positioned), so that the next pass will find it (a few steps: far from the relay's poll interval).
    /// </summary>
    private async Task PositionedAsync(int waiting = 1)
    {
        var until = DateTime.UtcNow + TimeSpan.FromSeconds(20);
        while ((await Backlog()).EventCount < waiting)
        {
            Assert.True(DateTime.UtcNow < until, "the message was never positioned");
            _time.Advance(SequencerInterval);
            await Task.Delay(20, Ct);
        }
    }

    /// <summary>Waits until the relay recorded its position (<paramref name="left"/> events after it), then a moment for it to begin its wait.</summary>
    private async Task CaughtUpAsync(int left = 0)
    {
        var until = DateTime.UtcNow + TimeSpan.FromSeconds(20);
        while ((await Backlog()).EventCount > left)
        {
            Assert.True(DateTime.UtcNow < until, "the relay never recorded its position");
            await Task.Delay(20, Ct);
        }

        await Task.Delay(200, Ct);
    }

    private Task<RelayBacklog> Backlog() =>
        _factory.Services.GetRequiredService<IChatStore>().GetRelayBacklogAsync(_sink.Name, Ct);

    private static bool IsCreated(EventRecord record, Guid messageId) =>
        record.Type == "message.created" && record.Payload().GetProperty("message_id").GetString() == messageId.ToString();

    /// <summary>The in-memory sink, whose next batch can be held until the test releases it.</summary>
    private sealed class HeldSink : IEventSink
    {
        private readonly InMemoryEventSink _inner = new();
        private TaskCompletionSource? _release;
        private readonly TaskCompletionSource _held = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public string Name => _inner.Name;

        public IReadOnlyList<EventRecord> Records => _inner.Records;

        public void Hold() => _release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);

        public Task HeldAsync() => _held.Task.WaitAsync(TimeSpan.FromSeconds(20), Ct);

        public void Release() => _release?.TrySetResult();

        public async Task PublishAsync(IReadOnlyList<EventRecord> records, CancellationToken cancellationToken)
        {
            if (_release is { } release)
            {
                _held.TrySetResult();
                await release.Task.WaitAsync(cancellationToken);
                _release = null;
            }

            await _inner.PublishAsync(records, cancellationToken);
        }
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
