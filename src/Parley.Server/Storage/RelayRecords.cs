namespace Parley.Server.Storage;

/// <summary>Kinds of a watermark move in the receipt log.</summary>
internal static class ReceiptKinds
{
    public const string Delivered = "delivered";
    public const string Read = "read";
}

/// <summary>
/// Whether watermark moves are written to the receipt log (docs/events.md). Set, not bound from configuration: on while
/// at least one event sink is configured, so that nothing is kept for a stream nobody publishes.
/// </summary>
internal sealed class ReceiptLogOptions
{
    public bool Enabled { get; set; }
}

/// <summary>A conversation event with its stream position, and the roster it was created with (creation events only).</summary>
internal sealed record OutboxEvent(ConversationEvent Event, long Pos, IReadOnlyList<RosterEntry>? Roster);

/// <summary>A watermark move of the receipt log, at its receipt position.</summary>
internal sealed record ReceiptLogEntry(long Id, long Pos, Guid ConversationId, string UserId, string Kind, long Seq, Guid MessageId, DateTimeOffset CreatedAt);

/// <summary>
/// A sink's relay position and lease, as taken: the last published event position and receipt position.
/// </summary>
internal sealed record RelayLease(string Sink, long Pos, long ReceiptPos);

/// <summary>
/// What the relay publishes next: positioned events after a position, then (only when the events reached the end of
/// the stream, so that every receipt's message event is published first) positioned receipts. <see cref="UptoPos"/>
/// and <see cref="UptoReceiptPos"/> are the positions to record once all of it is acknowledged. The facts the records
/// need come along: the messages the events reference (as they are now), the conversations that were created, and for
/// each new message (conversation, seq) the current members who joined before it and have not had it delivered, the
/// sender aside (notification recipients, if offline).
/// </summary>
internal sealed record OutboxBatch(
    IReadOnlyList<OutboxEvent> Changes,
    IReadOnlyList<ReceiptLogEntry> WatermarkMoves,
    long UptoPos,
    long UptoReceiptPos,
    IReadOnlyDictionary<Guid, Message> Messages,
    IReadOnlyDictionary<Guid, ConversationRecord> Conversations,
    IReadOnlyDictionary<(Guid ConversationId, long Seq), IReadOnlyList<string>> Recipients)
{
    public bool IsEmpty => Changes.Count == 0 && WatermarkMoves.Count == 0;
}

/// <summary>
/// How far a sink is behind: events and receipts positioned but not published, and when the oldest of them was
/// committed (null when none waits).
/// </summary>
internal sealed record RelayBacklog(long EventCount, long ReceiptCount, DateTimeOffset? OldestAt)
{
    public long Total => EventCount + ReceiptCount;
}

/// <summary>A record a sink gave up on (a webhook endpoint that kept refusing it).</summary>
internal sealed record DeadLetter(string Sink, string EventId, string Type, string Record, string Error, DateTimeOffset FailedAt);
