using System.ComponentModel.DataAnnotations;
using Microsoft.Extensions.Options;

namespace Parley.Server.Events;

/// <summary>The event stream (docs/events.md): off unless a Kafka cluster or a webhook endpoint is configured.</summary>
internal sealed class EventsOptions
{
    public const string SectionName = "Events";

    public KafkaOptions Kafka { get; set; } = new();

    public NotificationOptions Notifications { get; set; } = new();

    /// <summary>Webhook endpoints by name (<c>Events:Webhooks:&lt;name&gt;:Url</c>): each is a sink with its own position.</summary>
    public Dictionary<string, WebhookOptions> Webhooks { get; set; } = new(StringComparer.Ordinal);

    /// <summary>Rows read and published per relay pass.</summary>
    [Range(1, 10_000)]
    public int BatchSize { get; set; } = 500;

    /// <summary>
    /// The most records a pass publishes, counting each new message's notification candidates: a pass through a large
    /// group's messages is cut short of <see cref="BatchSize"/> events to stay within it (at least one event a pass).
    /// </summary>
    [Range(1, 1_000_000)]
    public int MaxBatchRecords { get; set; } = 20_000;

    /// <summary>How long the relay waits after a pass that found nothing to publish.</summary>
    [Range(typeof(TimeSpan), "00:00:00.001", "00:01:00")]
    public TimeSpan PollInterval { get; set; } = TimeSpan.FromMilliseconds(100);

    /// <summary>How long a relay's lease lasts unless renewed: a dead instance's sink is taken over after at most this.</summary>
    [Range(typeof(TimeSpan), "00:00:01", "00:10:00")]
    public TimeSpan LeaseDuration { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// A sink that no instance has held for this long counts as removed from the configuration: its position no longer
    /// keeps receipt log rows from being pruned. Until then a sink other instances run (a rolling deploy that adds it)
    /// keeps them for it.
    /// </summary>
    [Range(typeof(TimeSpan), "00:01:00", "30.00:00:00")]
    public TimeSpan RemovedSinkAfter { get; set; } = TimeSpan.FromHours(1);

    /// <summary>A backlog (events and receipts waiting for a sink) this large is reported: a warning in the log and on /ready.</summary>
    [Range(1, long.MaxValue)]
    public long BacklogAlert { get; set; } = 100_000;

    /// <summary>
    /// A backlog whose oldest entry has waited this long is reported as well, however small: a sink that publishes nothing
    /// (its broker or endpoint down) shows on every instance's /ready, not only on the one that holds its lease.
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:01", "7.00:00:00")]
    public TimeSpan BacklogAgeAlert { get; set; } = TimeSpan.FromMinutes(1);

    public bool KafkaEnabled => !string.IsNullOrWhiteSpace(Kafka.BootstrapServers);
}

internal enum KafkaSecurityProtocol
{
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

internal enum KafkaSaslMechanism
{
    Plain,
    ScramSha256,
    ScramSha512,
}

internal enum KafkaCompression
{
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

internal sealed class KafkaOptions
{
    /// <summary>The brokers (<c>host:port,host:port</c>); unset: no Kafka.</summary>
    public string? BootstrapServers { get; set; }

    [EnumDataType(typeof(KafkaSecurityProtocol))]
    public KafkaSecurityProtocol SecurityProtocol { get; set; } = KafkaSecurityProtocol.Plaintext;

    [EnumDataType(typeof(KafkaSaslMechanism))]
    public KafkaSaslMechanism SaslMechanism { get; set; } = KafkaSaslMechanism.Plain;

    public string? SaslUsername { get; set; }

    public string? SaslPassword { get; set; }

    /// <summary>Only <c>All</c>: the idempotent producer needs every in-sync replica's acknowledgement.</summary>
    public string Acks { get; set; } = "All";

    [EnumDataType(typeof(KafkaCompression))]
    public KafkaCompression CompressionType { get; set; } = KafkaCompression.Lz4;

    /// <summary>How long the producer waits to fill a batch.</summary>
    [Range(0, 10_000)]
    public int LingerMs { get; set; } = 5;

    /// <summary>
    /// The client's local queue in records (librdkafka's <c>queue.buffering.max.messages</c>); not a setting (tests make
    /// it small). A batch larger than it waits for room instead of failing.
    /// </summary>
    internal int? LocalQueueRecords { get; init; }

    /// <summary>
    /// The largest request the client sends, and so the largest record and record batch (librdkafka's
    /// <c>message.max.bytes</c>). Set it somewhat below the topics' <c>max.message.bytes</c> when that is lower than the
    /// default (the client may exceed it by one record): a record larger than it is then dead-lettered, and batches are
    /// built small enough for the broker to take.
    /// </summary>
    [Range(1_000, 1_000_000_000)]
    public int MessageMaxBytes { get; set; } = 1_000_000;

    /// <summary>A record not acknowledged by then fails its batch, which the relay publishes again.</summary>
    [Range(typeof(TimeSpan), "00:00:01", "00:10:00")]
    public TimeSpan DeliveryTimeout { get; set; } = TimeSpan.FromSeconds(20);

    public string EventsTopic { get; set; } = "parley.events";

    public string NotificationsTopic { get; set; } = "parley.notifications";
}

internal enum NotificationPreview
{
    /// <summary>The message's content.</summary>
    Full,

    /// <summary>The first <see cref="NotificationOptions.PreviewLength"/> characters.</summary>
    Truncated,

    /// <summary>No content: the push says only who wrote.</summary>
    None,
}

internal sealed class NotificationOptions
{
    /// <summary>Publish <c>notification.message</c> records for offline recipients.</summary>
    public bool Enabled { get; set; } = true;

    [EnumDataType(typeof(NotificationPreview))]
    public NotificationPreview Preview { get; set; } = NotificationPreview.Truncated;

    [Range(1, 4000)]
    public int PreviewLength { get; set; } = 100;

    /// <summary>
    /// A message older than this when the relay publishes it gets no notification: after a long outage, a replay, or a
    /// sink that starts at the beginning of an existing log, a push would announce old news.
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:01", "365.00:00:00")]
    public TimeSpan MaxAge { get; set; } = TimeSpan.FromDays(1);
}

internal sealed class WebhookOptions
{
    public Uri? Url { get; set; }

    /// <summary>The HMAC-SHA256 key of the <c>Parley-Signature</c> header.</summary>
    public string? Secret { get; set; }

    /// <summary>Record types to send; empty: every record of the events topic.</summary>
    public List<string> EventTypes { get; set; } = [];

    [Range(1, 100)]
    public int MaxAttempts { get; set; } = 8;

    /// <summary>The wait before the first retry; doubled for each next one, up to <see cref="MaxBackoff"/>.</summary>
    [Range(typeof(TimeSpan), "00:00:00.001", "00:10:00")]
    public TimeSpan InitialBackoff { get; set; } = TimeSpan.FromSeconds(1);

    [Range(typeof(TimeSpan), "00:00:00.001", "01:00:00")]
    public TimeSpan MaxBackoff { get; set; } = TimeSpan.FromSeconds(60);

    [Range(typeof(TimeSpan), "00:00:00.1", "00:05:00")]
    public TimeSpan Timeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// POSTs in flight at once. 1: every record after the one before, in stream order. More: records of different keys
    /// (conversations; recipients for notifications) go side by side, those of one key still one after another, in order.
    /// </summary>
    [Range(1, 64)]
    public int Concurrency { get; set; } = 1;
}

/// <summary>
/// Rules between settings, checked at start-up. Given the configuration, it also names a webhook endpoint whose settings
/// could not be read at all (a value of the wrong type): the binder skips such a dictionary entry without a word, which
/// would leave the endpoint silently unconfigured.
/// </summary>
internal sealed class EventsOptionsValidator(IConfiguration? configuration = null) : IValidateOptions<EventsOptions>
{
    public ValidateOptionsResult Validate(string? name, EventsOptions options)
    {
        var errors = new List<string>();
        foreach (var section in configuration?.GetSection($"{EventsOptions.SectionName}:Webhooks").GetChildren() ?? [])
        {
            if (!options.Webhooks.ContainsKey(section.Key))
            {
                try
                {
                    section.Get<WebhookOptions>();
                    errors.Add($"Events:Webhooks:{section.Key} could not be read.");
                }
                catch (InvalidOperationException ex)
                {
                    errors.Add($"Events:Webhooks:{section.Key}: {ex.Message}");
                }
            }
        }

        var kafka = options.Kafka;
        if (options.KafkaEnabled)
        {
            foreach (var server in kafka.BootstrapServers!.Split(',', StringSplitOptions.TrimEntries))
            {
                var colon = server.LastIndexOf(':');
                if (colon <= 0 || !int.TryParse(server[(colon + 1)..], out var port) || port is < 1 or > 65535)
                {
                    errors.Add($"Events:Kafka:BootstrapServers has '{server}'; expected host:port (e.g. kafka-1:9092).");
                }
            }

            if (!string.Equals(kafka.Acks, "All", StringComparison.OrdinalIgnoreCase))
            {
                errors.Add($"Events:Kafka:Acks is '{kafka.Acks}'; the idempotent producer needs All.");
            }

            if (kafka.SecurityProtocol is KafkaSecurityProtocol.SaslPlaintext or KafkaSecurityProtocol.SaslSsl
                && (string.IsNullOrEmpty(kafka.SaslUsername) || string.IsNullOrEmpty(kafka.SaslPassword)))
            {
                errors.Add($"Events:Kafka:SecurityProtocol is {kafka.SecurityProtocol}; set Events:Kafka:SaslUsername and Events:Kafka:SaslPassword.");
            }

            if (string.IsNullOrWhiteSpace(kafka.EventsTopic) || string.IsNullOrWhiteSpace(kafka.NotificationsTopic))
            {
                errors.Add("Events:Kafka:EventsTopic and Events:Kafka:NotificationsTopic must not be empty.");
            }

            // librdkafka refuses a producer whose message timeout is not longer than its linger: every pass would fail.
            if (kafka.DeliveryTimeout.TotalMilliseconds <= kafka.LingerMs)
            {
                errors.Add($"Events:Kafka:DeliveryTimeout ({kafka.DeliveryTimeout}) must be longer than Events:Kafka:LingerMs ({kafka.LingerMs} ms).");
            }
        }

        // The data annotations of the nested sections (the options' own validation does not descend into them).
        AddAnnotationErrors(errors, "Events:Kafka", kafka);
        AddAnnotationErrors(errors, "Events:Notifications", options.Notifications);

        // A sink's held_at is refreshed every third of the lease, and a takeover may wait a whole lease.
        if (options.RemovedSinkAfter < 2 * options.LeaseDuration)
        {
            errors.Add($"Events:RemovedSinkAfter ({options.RemovedSinkAfter}) must be at least twice Events:LeaseDuration ({options.LeaseDuration}).");
        }

        foreach (var (endpoint, webhook) in options.Webhooks)
        {
            if (webhook.Url is not { IsAbsoluteUri: true } url || (url.Scheme != Uri.UriSchemeHttp && url.Scheme != Uri.UriSchemeHttps))
            {
                errors.Add($"Events:Webhooks:{endpoint}:Url must be an absolute http or https URL.");
            }

            if (string.IsNullOrEmpty(webhook.Secret) || webhook.Secret.Length < 16)
            {
                errors.Add($"Events:Webhooks:{endpoint}:Secret must be set, at least 16 characters.");
            }

            if (webhook.MaxBackoff < webhook.InitialBackoff)
            {
                errors.Add($"Events:Webhooks:{endpoint}:MaxBackoff must not be shorter than InitialBackoff.");
            }

            // A misspelt type would match no record: the endpoint would silently get nothing while its position moves on.
            foreach (var type in webhook.EventTypes.Where(t => !RecordTypes.All.Contains(t, StringComparer.Ordinal)))
            {
                errors.Add($"Events:Webhooks:{endpoint}:EventTypes has '{type}', which is no record type ({string.Join(", ", RecordTypes.All)}).");
            }

            if (!options.Notifications.Enabled && webhook.EventTypes.Contains(RecordTypes.NotificationMessage, StringComparer.Ordinal))
            {
                errors.Add(
                    $"Events:Webhooks:{endpoint}:EventTypes has '{RecordTypes.NotificationMessage}', but Events:Notifications:Enabled is false: none would be sent.");
            }

            AddAnnotationErrors(errors, $"Events:Webhooks:{endpoint}", webhook);
        }

        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }

    private static void AddAnnotationErrors(List<string> errors, string section, object settings)
    {
        var results = new List<ValidationResult>();
        if (!Validator.TryValidateObject(settings, new ValidationContext(settings), results, validateAllProperties: true))
        {
            errors.AddRange(results.Select(r => $"{section}: {r.ErrorMessage}"));
        }
    }
}
