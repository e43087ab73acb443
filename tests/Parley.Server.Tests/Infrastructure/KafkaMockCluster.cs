using Confluent.Kafka;

namespace Parley.Server.Tests.Infrastructure;

/// <summary>
/// librdkafka's mock Kafka cluster: the real protocol over TCP on 127.0.0.1, owned by an admin client of this process and
/// gone when it is disposed. Producers and consumers reach it with <see cref="BootstrapServers"/> like a real cluster.
/// Topics are created by a producer's first request (4 partitions); a consumer does not create them.
/// </summary>
public sealed class KafkaMockCluster : IDisposable
{
    private readonly IAdminClient _owner;

    public KafkaMockCluster()
    {
        _owner = new AdminClientBuilder(new Dictionary<string, string> { ["test.mock.num.brokers"] = "1" }).Build();
        var metadata = _owner.GetMetadata(TimeSpan.FromSeconds(10));
        BootstrapServers = string.Join(",", metadata.Brokers.Select(b => $"{b.Host}:{b.Port}"));
    }

    public string BootstrapServers { get; }

    /// <summary>Reads a topic from the beginning of every partition until <paramref name="count"/> records arrived or the time ran out.</summary>
    public IReadOnlyList<ConsumeResult<string, byte[]>> Read(string topic, int count, TimeSpan timeout) => Read(BootstrapServers, topic, count, timeout);

    public static IReadOnlyList<ConsumeResult<string, byte[]>> Read(string bootstrapServers, string topic, int count, TimeSpan timeout) =>
        Read(bootstrapServers, topic, records => records.Count >= count, timeout);

    /// <summary>Reads a topic from the beginning until <paramref name="done"/> holds for what was read or the time ran out.</summary>
    public static IReadOnlyList<ConsumeResult<string, byte[]>> Read(
        string bootstrapServers, string topic, Func<IReadOnlyList<ConsumeResult<string, byte[]>>, bool> done, TimeSpan timeout)
    {
        var until = DateTime.UtcNow + timeout;
        var result = new List<ConsumeResult<string, byte[]>>();
        using var admin = new AdminClientBuilder(new AdminClientConfig { BootstrapServers = bootstrapServers }).Build();
        List<TopicPartition> partitions = [];
        while (partitions.Count == 0 && DateTime.UtcNow < until)
        {
            var meta = admin.GetMetadata(topic, TimeSpan.FromSeconds(5)).Topics.FirstOrDefault(t => t.Topic == topic);
            partitions = meta is null || meta.Error.IsError ? [] : [.. meta.Partitions.Select(p => new TopicPartition(topic, p.PartitionId))];
            if (partitions.Count == 0)
            {
                Thread.Sleep(100);
            }
        }

        if (partitions.Count == 0)
        {
            return result;
        }

        using var consumer = new ConsumerBuilder<string, byte[]>(new ConsumerConfig
        {
            BootstrapServers = bootstrapServers,
            GroupId = "test-" + Guid.NewGuid().ToString("N"),
            EnableAutoCommit = false,
            AutoOffsetReset = AutoOffsetReset.Earliest,
        }).Build();
        consumer.Assign(partitions.Select(p => new TopicPartitionOffset(p, Offset.Beginning)));
        while (!done(result) && DateTime.UtcNow < until)
        {
            if (consumer.Consume(TimeSpan.FromMilliseconds(200)) is { IsPartitionEOF: false, Message: not null } record)
            {
                result.Add(record);
            }
        }

        return result;
    }

    public void Dispose() => _owner.Dispose();
}
