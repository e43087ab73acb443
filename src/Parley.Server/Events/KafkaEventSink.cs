using System.Collections.Concurrent;
using System.Text;
using Confluent.Kafka;
using Parley.Server.Storage;

namespace Parley.Server.Events;

/// <summary>
/// Publishes to Kafka with an idempotent producer (acks=all, enable.idempotence): records are batched by the client
/// (<see cref="KafkaOptions.LingerMs"/>) and acknowledged asynchronously; a batch completes when every record is.
/// The producer is created with the first batch and replaced after a failed one: after a timeout or a fatal error (a
/// broker that lost the producer's state) a fresh producer session is the one that can go on; what failed is
/// published again by the relay, in order. A record refused for good (larger than <c>message.max.bytes</c>: a
/// <c>conversation.created</c> with a very large roster) goes to <c>event_dead_letters</c> through
/// <paramref name="deadLetter"/>, and the batch goes on without it: retrying would refuse it again, forever. The client
/// refuses such a record itself; a broker whose topic takes less than the client's limit refuses the whole request, and
/// the batch is then published a record at a time to find the one it refuses alone.
/// </summary>
internal sealed partial class KafkaEventSink(
    KafkaOptions options, string clientId, Func<DeadLetter, CancellationToken, Task> deadLetter, TimeProvider time, ILogger<KafkaEventSink> logger)
    : IEventSink, IDisposable
{
    private readonly Lock _lock = new();
    private IProducer<string, byte[]>? _producer;

    // Headers that repeat on every record, made once (a header is immutable, so records share them).
    private static readonly ConcurrentDictionary<string, Header> TypeHeaders = new(StringComparer.Ordinal);
    private static readonly ConcurrentDictionary<int, Header> VersionHeaders = new();

    public string Name => "kafka";

    public async Task PublishAsync(IReadOnlyList<EventRecord> records, CancellationToken cancellationToken)
    {
        if (records.Count == 0)
        {
            return;
        }

        try
        {
            await PublishBatchAsync(records, cancellationToken);
        }
        catch (ProduceException<string, byte[]> tooLarge) when (tooLarge.Error.Code == ErrorCode.MsgSizeTooLarge)
        {
            // The broker refused a request as too large (the client checked each record against its own limit): a topic
            // whose max.message.bytes is below Events:Kafka:MessageMaxBytes. Which record, or whether the batch as a
            // whole, is not said: one at a time, acknowledged before the next goes (so their order holds), each record is
            // its own request, and only one the broker refuses alone is dead-lettered.
            Log.BrokerRefusedBatch(logger, records.Count, options.MessageMaxBytes, tooLarge.Error.Reason);
            foreach (var record in records)
            {
                try
                {
                    await PublishBatchAsync([record], cancellationToken);
                }
                catch (ProduceException<string, byte[]> alone) when (alone.Error.Code == ErrorCode.MsgSizeTooLarge)
                {
                    await DeadLetterAsync(record, "the broker refuses it: " + alone.Error.Reason, cancellationToken);
                }
            }
        }
    }

    /// <summary>
    /// Publishes the records and waits for the broker's acknowledgement of every one. A record the client refuses for
    /// good is dead-lettered here; a broker's refusal as too large is thrown as it came (the caller finds the record);
    /// any other failure is an <see cref="EventSinkException"/>. After a failure a fresh producer takes the next batch.
    /// </summary>
    private async Task PublishBatchAsync(IReadOnlyList<EventRecord> records, CancellationToken cancellationToken)
    {
        var producer = Producer();
        var batch = new BatchDelivery(records.Count);
        Action<DeliveryReport<string, byte[]>> report = batch.Report;
        try
        {
            foreach (var record in records)
            {
                // Enqueued in order; the idempotent producer keeps that order per partition through its retries. One
                // completion for the batch, counted down by the client's delivery reports on its own thread (a task per
                // record put hundreds of continuations on the thread pool every pass), through one delegate.
                string? refused;
                try
                {
                    refused = await ProduceAsync(producer, TopicOf(record.Topic), ToMessage(record), report, cancellationToken);
                }
                catch (ProduceException<string, byte[]> fatal) when (fatal.Error.IsFatal || fatal.Error.Code is ErrorCode.Local_Fatal or ErrorCode.Local_GaplessGuarantee)
                {
                    // The producer stopped while this batch was still being handed to it (a request the broker refused
                    // stops it: gapless). Why is in the delivery reports of what it took, awaited below: a refusal as too
                    // large must reach the caller as such, or the batch would fail the same way on every retry.
                    break;
                }

                if (refused is not null)
                {
                    await DeadLetterAsync(record, refused, cancellationToken);
                    batch.Skip();
                }
            }

            await batch.Delivered.WaitAsync(options.DeliveryTimeout + TimeSpan.FromSeconds(5), cancellationToken);
        }
        catch (ProduceException<string, byte[]> tooLarge) when (tooLarge.Error.Code == ErrorCode.MsgSizeTooLarge)
        {
            // After a refused request the idempotent producer's session is not to be relied on (it failed: gapless).
            Replace(producer);
            throw;
        }
        catch (Exception ex) when (ex is ProduceException<string, byte[]> or KafkaException or TimeoutException)
        {
            var reason = ex is ProduceException<string, byte[]> produce ? produce.Error.Reason : ex.Message;
            Replace(producer);
            throw new EventSinkException($"Kafka did not acknowledge the batch: {reason}", ex);
        }
        catch (Exception ex) when (ex is OperationCanceledException or System.Data.Common.DbException)
        {
            // Cancelled, or a dead letter the store did not take: the batch goes again, on a fresh producer, so that
            // nothing of this one is still on its way beside the retry.
            Replace(producer);
            throw;
        }
    }

    private async Task DeadLetterAsync(EventRecord record, string reason, CancellationToken cancellationToken)
    {
        Log.DeadLettered(logger, record.EventId, record.Type, record.Body.Length, reason);
        await deadLetter(
            new DeadLetter(Name, record.EventId, record.Type, Encoding.UTF8.GetString(record.Body), reason, time.GetUtcNow()), cancellationToken);
    }

    private static Message<string, byte[]> ToMessage(EventRecord record) => new()
    {
        Key = record.Key,
        Value = record.Body,
        Headers =
        [
            new Header("event_id", Encoding.UTF8.GetBytes(record.EventId)),
            TypeHeaders.GetOrAdd(record.Type, static t => new Header("type", Encoding.UTF8.GetBytes(t))),
            VersionHeaders.GetOrAdd(record.Version, static v => new Header("version", Encoding.UTF8.GetBytes(v.ToString(System.Globalization.CultureInfo.InvariantCulture)))),
        ],
    };

    /// <summary>
    /// Hands one record to the client; when its local queue is full (a batch of more records than it holds: a pass with
    /// many notifications for large groups), waits for acknowledgements to make room, at most the delivery timeout.
    /// Failing instead would fail the same batch on every retry, and the relay would never get past it. Returns why the
    /// client refuses the record for good (too large: it was not enqueued), or null.
    /// </summary>
    private async ValueTask<string?> ProduceAsync(
        IProducer<string, byte[]> producer, string topic, Message<string, byte[]> message, Action<DeliveryReport<string, byte[]>> report,
        CancellationToken cancellationToken)
    {
        var waited = TimeSpan.Zero;
        while (true)
        {
            try
            {
                producer.Produce(topic, message, report);
                return null;
            }
            catch (ProduceException<string, byte[]> tooLarge) when (tooLarge.Error.Code == ErrorCode.MsgSizeTooLarge)
            {
                return tooLarge.Error.Reason;
            }
            catch (ProduceException<string, byte[]> full) when (full.Error.Code == ErrorCode.Local_QueueFull && waited < options.DeliveryTimeout)
            {
                await Task.Delay(QueueFullWait, cancellationToken);
                waited += QueueFullWait;
            }
        }
    }

    private static readonly TimeSpan QueueFullWait = TimeSpan.FromMilliseconds(10);

    /// <summary>A batch's records, acknowledged when the broker acknowledged every one, failed at the first that failed.</summary>
    private sealed class BatchDelivery(int count)
    {
        private readonly TaskCompletionSource _delivered = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private int _waiting = count;

        public Task Delivered => _delivered.Task;

        public void Report(DeliveryReport<string, byte[]> report)
        {
            if (report.Error.IsError)
            {
                _delivered.TrySetException(new ProduceException<string, byte[]>(report.Error, report));
            }
            else
            {
                Skip();
            }
        }

        /// <summary>One record fewer to wait for: acknowledged, or never enqueued (dead-lettered).</summary>
        public void Skip()
        {
            if (Interlocked.Decrement(ref _waiting) == 0)
            {
                _delivered.TrySetResult();
            }
        }
    }

    private string TopicOf(EventTopic topic) => topic == EventTopic.Notifications ? options.NotificationsTopic : options.EventsTopic;

    private IProducer<string, byte[]> Producer()
    {
        lock (_lock)
        {
            return _producer ??= Build();
        }
    }

    private IProducer<string, byte[]> Build()
    {
        var config = new ProducerConfig
        {
            BootstrapServers = options.BootstrapServers,
            ClientId = clientId,
            EnableIdempotence = true,
            // A request the broker refuses for good (a batch too large for the topic) fails the producer instead of
            // leaving a gap. The broker refuses the partition's later requests in flight by their sequence numbers;
            // without this, librdkafka would renumber them under a new epoch and write them, and the relay's retry of
            // the batch would put the refused records after them (a conversation's order broken). librdkafka's mock
            // broker does not check sequence numbers, so the tests cannot show this; a real broker does.
            EnableGaplessGuarantee = true,
            Acks = Confluent.Kafka.Acks.All,
            LingerMs = options.LingerMs,
            QueueBufferingMaxMessages = options.LocalQueueRecords,
            MessageMaxBytes = options.MessageMaxBytes,
            // A delivery report is only checked for its error: without this the client copies each record's key, value,
            // headers and timestamp back out of librdkafka for every report (about half of its allocations per record).
            DeliveryReportFields = "none",
            MessageTimeoutMs = (int)options.DeliveryTimeout.TotalMilliseconds,
            CompressionType = options.CompressionType switch
            {
                KafkaCompression.Gzip => CompressionType.Gzip,
                KafkaCompression.Snappy => CompressionType.Snappy,
                KafkaCompression.Lz4 => CompressionType.Lz4,
                KafkaCompression.Zstd => CompressionType.Zstd,
                _ => CompressionType.None,
            },
            SecurityProtocol = options.SecurityProtocol switch
            {
                KafkaSecurityProtocol.Ssl => SecurityProtocol.Ssl,
                KafkaSecurityProtocol.SaslPlaintext => SecurityProtocol.SaslPlaintext,
                KafkaSecurityProtocol.SaslSsl => SecurityProtocol.SaslSsl,
                _ => SecurityProtocol.Plaintext,
            },
        };
        if (options.SecurityProtocol is KafkaSecurityProtocol.SaslPlaintext or KafkaSecurityProtocol.SaslSsl)
        {
            config.SaslMechanism = options.SaslMechanism switch
            {
                KafkaSaslMechanism.ScramSha256 => SaslMechanism.ScramSha256,
                KafkaSaslMechanism.ScramSha512 => SaslMechanism.ScramSha512,
                _ => SaslMechanism.Plain,
            };
            config.SaslUsername = options.SaslUsername;
            config.SaslPassword = options.SaslPassword;
        }

        return new ProducerBuilder<string, byte[]>(config)
            // librdkafka reports each failed connection attempt while a broker is away: the relay's own log says it once.
            .SetErrorHandler((_, error) =>
            {
                if (error.IsFatal)
                {
                    Log.Fatal(logger, error.Reason);
                }
                else
                {
                    Log.ClientError(logger, error.Reason);
                }
            })
            .SetLogHandler((_, message) => Log.ClientLog(logger, message.Facility, message.Message))
            .Build();
    }

    /// <summary>Drops a producer after a failed batch (its undelivered records are failed, not kept).</summary>
    private void Replace(IProducer<string, byte[]> failed)
    {
        lock (_lock)
        {
            if (ReferenceEquals(_producer, failed))
            {
                _producer = null;
            }
        }

        failed.Dispose();
    }

    public void Dispose()
    {
        IProducer<string, byte[]>? producer;
        lock (_lock)
        {
            producer = _producer;
            _producer = null;
        }

        if (producer is not null)
        {
            producer.Flush(TimeSpan.FromSeconds(5));
            producer.Dispose();
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 7201, Level = LogLevel.Error, Message = "Kafka producer failed fatally: {Reason}; a new producer takes over")]
        public static partial void Fatal(ILogger logger, string reason);

        [LoggerMessage(EventId = 7202, Level = LogLevel.Debug, Message = "Kafka client: {Reason}")]
        public static partial void ClientError(ILogger logger, string reason);

        [LoggerMessage(EventId = 7203, Level = LogLevel.Debug, Message = "librdkafka {Facility}: {Text}")]
        public static partial void ClientLog(ILogger logger, string facility, string text);

        [LoggerMessage(EventId = 7204, Level = LogLevel.Error, Message = "Kafka refuses record {EventId} ({Type}, {Bytes} bytes): {Reason}; dead-lettered")]
        public static partial void DeadLettered(ILogger logger, string eventId, string type, int bytes, string reason);

        [LoggerMessage(EventId = 7205, Level = LogLevel.Error, Message = "Kafka broker refused a batch of {Records} records as too large ({Reason}); publishing them one at a time. Set Events:Kafka:MessageMaxBytes (now {MessageMaxBytes}) somewhat below the topics' max.message.bytes")]
        public static partial void BrokerRefusedBatch(ILogger logger, int records, int messageMaxBytes, string reason);
    }
}
