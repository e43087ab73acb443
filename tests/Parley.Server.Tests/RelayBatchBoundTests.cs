using Microsoft.Extensions.DependencyInjection;
using Parley.Server.Events;
using Parley.Server.Tests.Infrastructure;

namespace Parley.Server.Tests;

/// <summary>
/// Events:MaxBatchRecords: a backlog of a group's messages, each with a notification for every offline member, is published
/// in passes of at most that many records, in order, each record once. Without the bound one pass took the whole
/// backlog's notifications (a 1,000-member group's 500 messages: about 500,000 records in memory at once).
/// </summary>
public sealed class RelayBatchBoundTests : IAsyncLifetime
{
    private const int MaxBatchRecords = 10;

    private readonly InMemoryEventSink _sink = new();
    private readonly ParleyFactory _factory;

    public RelayBatchBoundTests()
    {
        _factory = new ParleyFactory(
            settings =>
            {
                settings["Events:PollInterval"] = "00:00:00.010";
                settings["Events:MaxBatchRecords"] = MaxBatchRecords.ToString(System.Globalization.CultureInfo.InvariantCulture);
            },
            services: services => services.AddSingleton<IEventSink>(_sink));
    }

    public ValueTask InitializeAsync() => ValueTask.CompletedTask;

    public ValueTask DisposeAsync() => _factory.DisposeAsync();

    [Fact]
    public async Task Relay_ABacklogOfNotifications_GoesOutInBoundedPassesInOrder()
    {
        var alice = _factory.BoundedApi(MembershipCalls.NewUser("alice"));
        var members = Enumerable.Range(0, 4).Select(i => MembershipCalls.NewUser($"m{i}")).ToArray();
        var group = await alice.CreateGroupAsync("Backlog", members);
        await _sink.WaitForAsync(r => r.Of(group.Id).Count > 0);

        // Down while six messages are sent: each has 1 + 4 records (its event and a notification per offline member).
        _sink.IsDown = true;
        var sent = new List<Guid>();
        for (var i = 0; i < 6; i++)
        {
            sent.Add((await alice.SendTextAsync(group.Id, $"message {i}")).Id);
        }

        var before = _sink.Batches.Count;
        _sink.IsDown = false;
        var records = await _sink.WaitForAsync(r => r.Count(x => x.Type == "notification.message") >= 24);

        var passes = _sink.Batches.Skip(before).Where(n => n > 0).ToList();
        Assert.All(passes, n => Assert.True(n <= MaxBatchRecords, $"a pass of {n} records"));
        Assert.True(passes.Count >= 3, $"{passes.Count} passes: {string.Join(", ", passes)}");
        var created = records.Of(group.Id).Where(r => r.Type == "message.created").ToList();
        Assert.Equal(sent.Select(id => id.ToString()), created.Select(r => r.Payload().GetProperty("message_id").GetString()));
        var notifications = records.Where(r => r.Type == "notification.message").ToList();
        Assert.Equal(notifications.Count, notifications.Select(r => r.EventId).Distinct().Count());
        Assert.Equal(
            sent.SelectMany(id => members.Select(m => $"{id} {m}")).Order(StringComparer.Ordinal),
            notifications.Select(r => $"{r.Payload().GetProperty("message_id").GetString()} {r.Key}").Order(StringComparer.Ordinal));
        // Each notification right after its message's event: the order a consumer of both topics relies on.
        foreach (var (record, index) in records.Select((r, i) => (r, i)).Where(x => x.r.Type == "notification.message"))
        {
            var message = records.Take(index).Last(r => r.Type == "message.created");
            Assert.Equal(message.Payload().GetProperty("message_id").GetString(), record.Payload().GetProperty("message_id").GetString());
        }
    }
}
