using System.Text;
using Microsoft.Extensions.Logging.Abstractions;
using Parley.Server.Events;
using Parley.Server.Tests.Infrastructure;

namespace Parley.Server.Tests;

/// <summary>The Kafka sink against librdkafka's mock cluster, reached over TCP like a real one.</summary>
[Trait("Store", "Independent")]
public sealed class KafkaEventSinkTests : EventSinkContractTests, IClassFixture<KafkaMockCluster>, IDisposable
{
    private readonly KafkaMockCluster _cluster;
    private readonly Dictionary<IEventSink, KafkaOptions> _sinks = [];
    private readonly System.Collections.Concurrent.ConcurrentBag<Parley.Server.Storage.DeadLetter> _deadLetters = [];

    public KafkaEventSinkTests(KafkaMockCluster cluster) => _cluster = cluster;

    private protected override IEventSink CreateSink() => Sink(_cluster.BootstrapServers, TimeSpan.FromSeconds(20));

    private protected override IEventSink CreateUnreachableSink()
    {
        // A port nothing listens on.
        return Sink($"127.0.0.1:{TestServerSettings.FreePort()}", TimeSpan.FromSeconds(2));
    }

    [Fact]
    public async Task Publish_MoreRecordsThanTheClientQueueHolds_WaitsForRoomAndDeliversThemAllInOrder()
    {
        var sink = Sink(_cluster.BootstrapServers, TimeSpan.FromSeconds(20), localQueueRecords: 100);
        var records = Enumerable.Range(0, 1000)
            .Select(n => new EventRecord(EventTopic.Events, "c1", $"e{n}", "message.created", RecordTypes.Version, Encoding.UTF8.GetBytes($"{{\"n\":{n}}}")))
            .ToList();

        await sink.PublishAsync(records, TestContext.Current.CancellationToken);

        var read = await ReadAsync(sink, EventTopic.Events, 1000);
        Assert.Equal(records.Select(r => r.EventId), read.Select(r => r.EventId));
    }

    [Fact]
    public async Task Publish_ARecordLargerThanTheClientTakes_IsDeadLetteredAndTheOthersGoOutInOrder()
    {
        var sink = Sink(_cluster.BootstrapServers, TimeSpan.FromSeconds(20), messageMaxBytes: 2_000);
        var records = Enumerable.Range(0, 5)
            .Select(n => new EventRecord(
                EventTopic.Events, "c1", $"e{n}", "conversation.created", RecordTypes.Version,
                Encoding.UTF8.GetBytes(n == 2 ? $"{{\"roster\":\"{new string('x', 5_000)}\"}}" : $"{{\"n\":{n}}}")))
            .ToList();

        await sink.PublishAsync(records, TestContext.Current.CancellationToken);

        var read = await ReadAsync(sink, EventTopic.Events, 4);
        Assert.Equal(["e0", "e1", "e3", "e4"], read.Select(r => r.EventId));
        var letter = Assert.Single(_deadLetters);
        Assert.Equal(("kafka", "e2", "conversation.created"), (letter.Sink, letter.EventId, letter.Type));
        Assert.Equal(Encoding.UTF8.GetString(records[2].Body), letter.Record);
    }

    [Fact]
    public async Task Publish_BatchTheBrokerRefusesAsTooLarge_GoesOutOneRecordAtATimeInOrder()
    {
        // A topic whose max.message.bytes is below the client's limit: the broker refuses the whole request.
        var sink = Sink(_cluster.BootstrapServers, TimeSpan.FromSeconds(20));
        var records = Enumerable.Range(0, 5)
            .Select(n => new EventRecord(EventTopic.Events, "c1", $"e{n}", "message.created", RecordTypes.Version, Encoding.UTF8.GetBytes($"{{\"n\":{n}}}")))
            .ToList();
        _cluster.FailNextProduceRequests(Confluent.Kafka.ErrorCode.MsgSizeTooLarge);

        await sink.PublishAsync(records, TestContext.Current.CancellationToken);

        var read = await ReadAsync(sink, EventTopic.Events, 5);
        Assert.Equal(["e0", "e1", "e2", "e3", "e4"], read.Select(r => r.EventId));
        Assert.Empty(_deadLetters);
    }

    [Fact]
    public async Task Publish_BrokerRefusesABatchWhileTheRestIsStillBeingHandedOver_StillGoesOutOneRecordAtATime()
    {
        // e1 is too large for the client: while it is dead-lettered (a slow write), the broker refuses the request that
        // holds e0, which stops the producer. The records after e1 then meet a stopped producer; that used to fail the
        // batch as a whole, on every retry, instead of finding the refused record.
        var sink = Sink(_cluster.BootstrapServers, TimeSpan.FromSeconds(20), messageMaxBytes: 2_000, deadLetterDelay: TimeSpan.FromMilliseconds(500));
        var records = Enumerable.Range(0, 5)
            .Select(n => new EventRecord(
                EventTopic.Events, "c1", $"e{n}", "message.created", RecordTypes.Version,
                Encoding.UTF8.GetBytes(n == 1 ? $"{{\"text\":\"{new string('x', 5_000)}\"}}" : $"{{\"n\":{n}}}")))
            .ToList();
        _cluster.FailNextProduceRequests(Confluent.Kafka.ErrorCode.MsgSizeTooLarge);

        await sink.PublishAsync(records, TestContext.Current.CancellationToken);

        var read = await ReadAsync(sink, EventTopic.Events, 4);
        Assert.Equal(["e0", "e2", "e3", "e4"], read.Select(r => r.EventId));
        Assert.All(_deadLetters, letter => Assert.Equal("e1", letter.EventId));
    }

    [Fact]
    public async Task Publish_ARecordTheBrokerRefusesAloneAsTooLarge_IsDeadLetteredAndTheNextBatchGoesOut()
    {
        var sink = Sink(_cluster.BootstrapServers, TimeSpan.FromSeconds(20));
        var big = new EventRecord(EventTopic.Events, "c1", "big", "conversation.created", RecordTypes.Version, Encoding.UTF8.GetBytes("{\"roster\":[]}"));
        _cluster.FailNextProduceRequests(Confluent.Kafka.ErrorCode.MsgSizeTooLarge, Confluent.Kafka.ErrorCode.MsgSizeTooLarge);

        // Refused as a batch, then alone: dead-lettered, and the batch completes (retrying it would be refused forever).
        await sink.PublishAsync([big], TestContext.Current.CancellationToken);
        await sink.PublishAsync(
            [new EventRecord(EventTopic.Events, "c1", "next", "message.created", RecordTypes.Version, Encoding.UTF8.GetBytes("{}"))],
            TestContext.Current.CancellationToken);

        var letter = Assert.Single(_deadLetters);
        Assert.Equal(("kafka", "big"), (letter.Sink, letter.EventId));
        Assert.Contains("broker", letter.Error, StringComparison.Ordinal);
        Assert.Equal(["next"], (await ReadAsync(sink, EventTopic.Events, 1)).Select(r => r.EventId));
    }

    private KafkaEventSink Sink(
        string bootstrap, TimeSpan deliveryTimeout, int? localQueueRecords = null, int? messageMaxBytes = null, TimeSpan? deadLetterDelay = null)
    {
        var id = Guid.NewGuid().ToString("N")[..8];
        var options = new KafkaOptions
        {
            BootstrapServers = bootstrap,
            EventsTopic = $"events-{id}",
            NotificationsTopic = $"notifications-{id}",
            DeliveryTimeout = deliveryTimeout,
            LocalQueueRecords = localQueueRecords,
            MessageMaxBytes = messageMaxBytes ?? 1_000_000,
        };
        var sink = new KafkaEventSink(
            options,
            "parley-tests",
            async (letter, cancellationToken) =>
            {
                await Task.Delay(deadLetterDelay ?? TimeSpan.Zero, cancellationToken);
                _deadLetters.Add(letter);
            },
            TimeProvider.System,
            NullLogger<KafkaEventSink>.Instance);
        _sinks.Add(sink, options);
        return sink;
    }

    private protected override Task<IReadOnlyList<(string Key, string EventId, string Type, byte[] Body)>> ReadAsync(IEventSink sink, EventTopic topic, int count)
    {
        var options = _sinks[sink];
        var name = topic == EventTopic.Events ? options.EventsTopic : options.NotificationsTopic;
        var read = _cluster.Read(name, count, count == 0 ? TimeSpan.FromSeconds(1) : TimeSpan.FromSeconds(20));
        Assert.All(read, r => Assert.Equal(RecordTypes.Version.ToString(System.Globalization.CultureInfo.InvariantCulture), Header(r.Message.Headers, "version")));
        return Task.FromResult<IReadOnlyList<(string, string, string, byte[])>>(
            [.. read.Select(r => (r.Message.Key, Header(r.Message.Headers, "event_id"), Header(r.Message.Headers, "type"), r.Message.Value))]);
    }

    private static string Header(Confluent.Kafka.Headers headers, string name) =>
        headers.TryGetLastBytes(name, out var value) ? Encoding.UTF8.GetString(value) : "";

    public void Dispose()
    {
        foreach (var sink in _sinks.Keys)
        {
            ((KafkaEventSink)sink).Dispose();
        }
    }
}
