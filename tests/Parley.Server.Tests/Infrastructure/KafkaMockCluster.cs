using System.Reflection;
using System.Runtime.InteropServices;
using Confluent.Kafka;

namespace Parley.Server.Tests.Infrastructure;

/// <summary>
/// librdkafka's mock Kafka cluster: the real protocol over TCP on 127.0.0.1, owned by an admin client of this process and
/// gone when it is disposed. Producers and consumers reach it with <see cref="BootstrapServers"/> like a real cluster.
/// Topics are created by a producer's first request (4 partitions); a consumer does not create them.
/// </summary>
public sealed partial class KafkaMockCluster : IDisposable
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

    /// <summary>
    /// The cluster answers its next produce requests (from any client) with these errors, one request each, in order: a
    /// broker refusing what the client sent (librdkafka's <c>rd_kafka_mock_push_request_errors_array</c>).
    /// </summary>
    public void FailNextProduceRequests(params ErrorCode[] errors)
    {
        // The admin client's rd_kafka_t, which owns the cluster; Confluent.Kafka keeps it internal.
        var handle = (SafeHandle)typeof(Handle).GetProperty("LibrdkafkaHandle", BindingFlags.NonPublic | BindingFlags.Instance)!.GetValue(_owner.Handle)!;
        var cluster = HandleMockCluster(handle.DangerousGetHandle());
        Assert.NotEqual(IntPtr.Zero, cluster);
        int[] codes = [.. errors.Select(e => (int)e)];
        PushRequestErrors(cluster, ProduceApiKey, (nuint)codes.Length, codes);
    }

    private const short ProduceApiKey = 0;

    // Confluent.Kafka picks one of librdkafka.redist's builds for this system (a plain "librdkafka" may need libraries
    // the system lacks): the controls below bind to the build it loaded, found among the process's mapped files.
    static KafkaMockCluster() => NativeLibrary.SetDllImportResolver(typeof(KafkaMockCluster).Assembly, static (name, _, _) =>
        name == "librdkafka"
            ? NativeLibrary.Load(File.ReadLines("/proc/self/maps").Select(line => line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[^1])
                .First(path => path.EndsWith("librdkafka.so", StringComparison.Ordinal)))
            : IntPtr.Zero);

    [LibraryImport("librdkafka", EntryPoint = "rd_kafka_handle_mock_cluster")]
    private static partial IntPtr HandleMockCluster(IntPtr kafka);

    [LibraryImport("librdkafka", EntryPoint = "rd_kafka_mock_push_request_errors_array")]
    private static partial void PushRequestErrors(IntPtr cluster, short apiKey, nuint count, int[] errors);

    public void Dispose() => _owner.Dispose();
}
