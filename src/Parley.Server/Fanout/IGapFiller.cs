using Parley.Server.Realtime;

namespace Parley.Server.Fanout;

/// <summary>
/// Reads missed events back from the store for the order gate (implemented by Sync, which knows how stored events
/// become a member's frames).
/// </summary>
internal interface IGapFiller
{
    /// <summary>
    /// The frames of the conversation's events with seq in (<paramref name="afterSeq"/>, <paramref name="uptoSeq"/>]
    /// that each of <paramref name="userIds"/> should have received live, as one-user parts in seq order.
    /// </summary>
    Task<IReadOnlyList<FanoutPart>> ReadGapAsync(
        Guid conversationId, long afterSeq, long uptoSeq, IReadOnlyCollection<string> userIds, CancellationToken cancellationToken);

    /// <summary>The current last seq of each of the user's conversations (where the gate's expectations start).</summary>
    Task<IReadOnlyDictionary<Guid, long>> ReadLastSeqsAsync(string userId, CancellationToken cancellationToken);

    /// <summary>
    /// The user's current delivered and read watermarks (receipt frames) of conversations where one moved since
    /// <paramref name="since"/>: what repairs receipts a device missed while the fan-out could not carry them.
    /// </summary>
    Task<IReadOnlyList<OutboundFrame>> ReadWatermarkFramesAsync(string userId, DateTimeOffset since, CancellationToken cancellationToken);

    /// <summary>
    /// Frames for this instance may have been lost (the fan-out was cut off): every local socket that follows cursors
    /// looks for events it lacks at its next cursor check, even if it was sent nothing since, and gets them there.
    /// </summary>
    void RecheckCursors();
}
