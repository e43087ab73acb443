using System.Text.Json;
using Confluent.Kafka;
using Microsoft.Extensions.Options;

namespace Parley.Notifications.Sample;

public sealed class ConsumerOptions
{
    public const string SectionName = "Kafka";

    public string BootstrapServers { get; set; } = "";

    public string Topic { get; set; } = "parley.notifications";

    public string GroupId { get; set; } = "parley-push";

    /// <summary>How many recent event ids are remembered to skip a republished record.</summary>
    public int RememberedIds { get; set; } = 100_000;
}

/// <summary>A <c>notification.message</c> record's payload (docs/events.md).</summary>
public sealed record Notification(
    string EventId, string UserId, Guid ConversationId, string ConversationType, string? ConversationName, string SenderId,
    string? Preview, bool Mentioned, long UnreadCount);

/// <summary>Where a push goes: APNs, FCM, a web push service... The sample only logs it.</summary>
public interface IPushSender
{
    Task SendAsync(Notification notification, CancellationToken cancellationToken);
}

public sealed partial class LoggingPushSender(ILogger<LoggingPushSender> logger) : IPushSender
{
    public Task SendAsync(Notification notification, CancellationToken cancellationToken)
    {
        var n = notification;
        var title = n.ConversationType == "direct" ? n.SenderId : $"{n.SenderId} in {n.ConversationName}";
        Log.Push(logger, n.UserId, title, n.Preview ?? "New message", n.Mentioned, n.UnreadCount);
        return Task.CompletedTask;
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 1, Level = LogLevel.Information, Message = "Push to {UserId}: {Title}: {Body} (mention: {Mentioned}, badge {Badge})")]
        public static partial void Push(ILogger logger, string userId, string title, string body, bool mentioned, long badge);
    }
}

/// <summary>
/// Reads the notifications topic in a consumer group and sends one push per record. Parley publishes at least once: a
/// record can come again (same <c>event_id</c>) after a relay restart, so ids already handled are skipped. The offset is
/// committed after the push, so a crash of this worker repeats a push rather than losing one; the ids it remembers live
/// in memory here (a real service keeps them in its own store, e.g. with a TTL, to de-duplicate across its restarts too).
/// </summary>
public sealed partial class NotificationConsumer(IPushSender push, IOptions<ConsumerOptions> options, ILogger<NotificationConsumer> logger) : BackgroundService
{
    private readonly HashSet<string> _seen = [];
    private readonly Queue<string> _order = new();

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var settings = options.Value;
        using var consumer = new ConsumerBuilder<string, byte[]>(new ConsumerConfig
        {
            BootstrapServers = settings.BootstrapServers,
            GroupId = settings.GroupId,
            EnableAutoCommit = false,
            AutoOffsetReset = AutoOffsetReset.Earliest,
        }).Build();
        consumer.Subscribe(settings.Topic);
        await Task.Yield();
        while (!stoppingToken.IsCancellationRequested)
        {
            ConsumeResult<string, byte[]>? result;
            try
            {
                // A short wait, so a stop request is noticed; Consume blocks the thread meanwhile.
                result = consumer.Consume(TimeSpan.FromMilliseconds(250));
            }
            catch (ConsumeException ex) when (!ex.Error.IsFatal)
            {
                Log.ConsumeFailed(logger, ex.Error.Reason);
                continue;
            }

            if (result?.Message is null)
            {
                continue;
            }

            Notification? notification;
            try
            {
                notification = Parse(result.Message.Value);
            }
            catch (Exception ex) when (ex is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
            {
                // Not a record of Parley's (another producer, a tombstone): skipped, or the worker would stop on it for good.
                Log.Unreadable(logger, result.TopicPartitionOffset.ToString(), ex.Message);
                notification = null;
            }

            if (notification is not null && _seen.Contains(notification.EventId))
            {
                Log.Duplicate(logger, notification.EventId);
            }
            else if (notification is not null && await PushAsync(notification, stoppingToken))
            {
                // Remembered once pushed: a push that failed was tried again, and is not counted as sent.
                Remember(notification.EventId, settings.RememberedIds);
            }

            try
            {
                consumer.Commit(result);
            }
            catch (KafkaException ex)
            {
                // The partition went to another member meanwhile (a rebalance): it reads on from the last commit.
                Log.CommitFailed(logger, result.TopicPartitionOffset.ToString(), ex.Error.Reason);
            }
        }

        consumer.Close();
    }

    /// <summary>
    /// Pushes, trying again after 1, 2, 4 and 8 s when the push service fails: within the consumer's poll interval
    /// (<c>max.poll.interval.ms</c>, 5 minutes), so the worker keeps its partitions. A push that still fails is logged
    /// and given up (false): a push is worth little minutes late, and one that can never go (a device token gone)
    /// must not hold every later notification of its partition.
    /// </summary>
    private async Task<bool> PushAsync(Notification notification, CancellationToken stoppingToken)
    {
        var wait = TimeSpan.FromSeconds(1);
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                await push.SendAsync(notification, stoppingToken);
                return true;
            }
            catch (Exception ex) when (ex is not OperationCanceledException || !stoppingToken.IsCancellationRequested)
            {
                if (attempt == PushAttempts)
                {
                    Log.PushGivenUp(logger, notification.EventId, attempt, ex.Message);
                    return false;
                }

                Log.PushFailed(logger, notification.EventId, wait.TotalSeconds, ex.Message);
                await Task.Delay(wait, stoppingToken);
                wait *= 2;
            }
        }
    }

    private const int PushAttempts = 5;

    /// <summary>Remembers a pushed id, forgetting the oldest beyond <paramref name="capacity"/>.</summary>
    private void Remember(string eventId, int capacity)
    {
        if (!_seen.Add(eventId))
        {
            return;
        }

        _order.Enqueue(eventId);
        if (_order.Count > capacity)
        {
            _seen.Remove(_order.Dequeue());
        }
    }

    public static Notification? Parse(byte[] value)
    {
        using var document = JsonDocument.Parse(value);
        var root = document.RootElement;
        if (root.GetProperty("type").GetString() != "notification.message" || root.GetProperty("version").GetInt32() != 1)
        {
            return null; // a type or version this worker does not know
        }

        var p = root.GetProperty("payload");
        return new Notification(
            root.GetProperty("event_id").GetString()!,
            p.GetProperty("user_id").GetString()!,
            root.GetProperty("conversation_id").GetGuid(),
            p.GetProperty("conversation_type").GetString()!,
            p.GetProperty("conversation_name").GetString(),
            p.GetProperty("sender_id").GetString()!,
            p.GetProperty("preview").GetString(),
            p.GetProperty("mentioned").GetBoolean(),
            p.GetProperty("unread_count").GetInt64());
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 2, Level = LogLevel.Information, Message = "Skipped {EventId}: already sent")]
        public static partial void Duplicate(ILogger logger, string eventId);

        [LoggerMessage(EventId = 3, Level = LogLevel.Warning, Message = "Consume failed: {Reason}")]
        public static partial void ConsumeFailed(ILogger logger, string reason);

        [LoggerMessage(EventId = 4, Level = LogLevel.Warning, Message = "Skipped the record at {Position}: not a notification record ({Reason})")]
        public static partial void Unreadable(ILogger logger, string position, string reason);

        [LoggerMessage(EventId = 5, Level = LogLevel.Warning, Message = "Push of {EventId} failed; trying again in {DelaySeconds} s: {Reason}")]
        public static partial void PushFailed(ILogger logger, string eventId, double delaySeconds, string reason);

        [LoggerMessage(EventId = 6, Level = LogLevel.Error, Message = "Push of {EventId} given up after {Attempts} attempts: {Reason}")]
        public static partial void PushGivenUp(ILogger logger, string eventId, int attempts, string reason);

        [LoggerMessage(EventId = 7, Level = LogLevel.Warning, Message = "Commit of {Position} failed ({Reason}); the partition's new reader goes on from the last commit")]
        public static partial void CommitFailed(ILogger logger, string position, string reason);
    }
}
