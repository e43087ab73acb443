namespace Parley.Server.Events;

/// <summary>Where a record goes: every conversation event, or a notification for an offline recipient.</summary>
internal enum EventTopic
{
    Events,
    Notifications,
}

/// <summary>
/// A record as published: its topic, key (conversation id, or recipient user id for notifications) and JSON body.
/// <see cref="EventId"/> is stable across republishing: consumers de-duplicate by it.
/// </summary>
internal sealed record EventRecord(EventTopic Topic, string Key, string EventId, string Type, int Version, byte[] Body);

/// <summary>
/// The event stream's seam (docs/events.md): Kafka, webhooks, and an in-memory sink for tests; one contract suite
/// (<c>EventSinkContractTests</c>) for all. The relay hands a sink one batch at a time, in stream order.
/// </summary>
internal interface IEventSink
{
    /// <summary>The sink's name: its relay position and lease are stored under it (<c>kafka</c>, <c>webhook:&lt;name&gt;</c>).</summary>
    string Name { get; }

    /// <summary>
    /// Publishes the records, keeping their order per key, and completes only once every record is durably accepted
    /// (a Kafka acknowledgement from all in-sync replicas; a webhook's 2xx, or its dead letter). Throws
    /// <see cref="EventSinkException"/> when any was not: the relay then publishes the whole batch again.
    /// </summary>
    Task PublishAsync(IReadOnlyList<EventRecord> records, CancellationToken cancellationToken);

    /// <summary>
    /// Whether the sink publishes <c>notification.message</c> records: building them costs reads (who is online, unread
    /// totals, conversations), so a sink that drops them is not handed any.
    /// </summary>
    bool WantsNotifications => true;
}

/// <summary>A batch a sink could not publish (the broker is unreachable, a record timed out, ...).</summary>
internal sealed class EventSinkException(string message, Exception? inner = null) : Exception(message, inner);
