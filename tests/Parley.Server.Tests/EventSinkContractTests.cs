using System.Text;
using Parley.Server.Events;

namespace Parley.Server.Tests;

/// <summary>
/// What every event sink promises the relay (docs/events.md): a batch completes only when every record is accepted; each
/// record lands on its topic with its key, id, type and body; a key's records keep their order; an unreachable sink
/// fails the batch instead of completing it. Run by each sink's test class.
/// </summary>
public abstract class EventSinkContractTests
{
    private protected static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>A working sink; <see cref="ReadAsync"/> reads what it published.</summary>
    private protected abstract IEventSink CreateSink();

    /// <summary>A sink whose destination cannot be reached.</summary>
    private protected abstract IEventSink CreateUnreachableSink();

    /// <summary>The records published to <paramref name="topic"/> by the sink from <see cref="CreateSink"/>, in the order a reader of one key sees them.</summary>
    private protected abstract Task<IReadOnlyList<(string Key, string EventId, string Type, byte[] Body)>> ReadAsync(
        IEventSink sink, EventTopic topic, int count);

    private static EventRecord Record(EventTopic topic, string key, int n) =>
        new(topic, key, Guid.NewGuid().ToString(), topic == EventTopic.Events ? "message.created" : "notification.message", 1,
            Encoding.UTF8.GetBytes($"{{\"key\":\"{key}\",\"n\":{n}}}"));

    [Fact]
    public async Task PublishAsync_ABatch_EveryRecordOnItsTopicWithKeyIdTypeAndBody()
    {
        var sink = CreateSink();
        EventRecord[] records = [Record(EventTopic.Events, "c1", 1), Record(EventTopic.Notifications, "bob", 2), Record(EventTopic.Events, "c2", 3)];

        await sink.PublishAsync(records, Ct);

        var events = await ReadAsync(sink, EventTopic.Events, 2);
        var notifications = await ReadAsync(sink, EventTopic.Notifications, 1);
        Assert.Equal(
            records.Where(r => r.Topic == EventTopic.Events).Select(r => (r.Key, r.EventId, r.Type, Encoding.UTF8.GetString(r.Body))).OrderBy(r => r.EventId),
            events.Select(r => (r.Key, r.EventId, r.Type, Encoding.UTF8.GetString(r.Body))).OrderBy(r => r.EventId));
        var notification = Assert.Single(notifications);
        Assert.Equal(("bob", records[1].EventId, "notification.message"), (notification.Key, notification.EventId, notification.Type));
    }

    [Fact]
    public async Task PublishAsync_ManyRecordsOfManyKeys_EachKeysRecordsInOrder()
    {
        var sink = CreateSink();
        var records = Enumerable.Range(0, 300).Select(n => Record(EventTopic.Events, $"c{n % 7}", n)).ToList();

        await sink.PublishAsync(records[..150], Ct);
        await sink.PublishAsync(records[150..], Ct);

        var read = await ReadAsync(sink, EventTopic.Events, records.Count);
        Assert.Equal(records.Count, read.Count);
        foreach (var key in records.Select(r => r.Key).Distinct())
        {
            Assert.Equal(records.Where(r => r.Key == key).Select(r => r.EventId), read.Where(r => r.Key == key).Select(r => r.EventId));
        }
    }

    [Fact]
    public async Task PublishAsync_AnEmptyBatch_Completes()
    {
        var sink = CreateSink();

        await sink.PublishAsync([], Ct);

        Assert.Empty(await ReadAsync(sink, EventTopic.Events, 0));
    }

    [Fact]
    public async Task PublishAsync_AnUnreachableSink_FailsTheBatch()
    {
        var sink = CreateUnreachableSink();

        await Assert.ThrowsAsync<EventSinkException>(() => sink.PublishAsync([Record(EventTopic.Events, "c1", 1)], Ct));
    }
}

[Trait("Store", "Independent")]
public sealed class InMemoryEventSinkTests : EventSinkContractTests
{
    private protected override IEventSink CreateSink() => new InMemoryEventSink();

    private protected override IEventSink CreateUnreachableSink() => new InMemoryEventSink { IsDown = true };

    private protected override Task<IReadOnlyList<(string Key, string EventId, string Type, byte[] Body)>> ReadAsync(IEventSink sink, EventTopic topic, int count) =>
        Task.FromResult<IReadOnlyList<(string, string, string, byte[])>>(
            [.. ((InMemoryEventSink)sink).Records.Where(r => r.Topic == topic).Select(r => (r.Key, r.EventId, r.Type, r.Body))]);

    [Fact]
    public async Task PublishAsync_WhileDown_KeepsNothingOfTheBatch()
    {
        var sink = new InMemoryEventSink { IsDown = true };

        await Assert.ThrowsAsync<EventSinkException>(() => sink.PublishAsync([new EventRecord(EventTopic.Events, "c", "1", "t", 1, [])], Ct));
        sink.IsDown = false;
        await sink.PublishAsync([new EventRecord(EventTopic.Events, "c", "2", "t", 1, [])], Ct);

        Assert.Equal(["2"], sink.Records.Select(r => r.EventId));
    }
}
