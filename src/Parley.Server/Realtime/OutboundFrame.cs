namespace Parley.Server.Realtime;

/// <summary>
/// A serialized server frame, shared by every socket it goes to. <see cref="Type"/> is its frame type (a constant
/// of <c>FrameTypes</c>, for metrics). <see cref="Seq"/> is the conversation
/// position of a sequenced event (0 for receipts, typing and replies): sockets track what they sent, so
/// catch-up and live never send a position twice and cursors only cover what was sent.
/// <see cref="DeliverySeq"/> is set on <c>new_message</c> frames: once such a frame is written to the socket of
/// a device that does not acknowledge, that device's user counts as having received the message (unless the
/// user sent it). A <see cref="Transient"/> frame (typing, presence) is not held back during a catch-up: it would be
/// stale by its end, and nothing depends on its order.
/// </summary>
internal sealed class OutboundFrame(
    byte[] utf8, string type, Guid? conversationId = null, long seq = 0, long deliverySeq = 0, string? senderId = null, bool transient = false)
{
    private readonly byte[] _utf8 = utf8;

    public string Type { get; } = type;

    public bool Transient { get; } = transient;

    public ReadOnlyMemory<byte> Utf8 => _utf8;

    public Guid? ConversationId { get; } = conversationId;

    public long Seq { get; } = seq;

    public long DeliverySeq { get; } = deliverySeq;

    public string? SenderId { get; } = senderId;

    /// <summary>
    /// Sent by the cursor check because the socket lacks it (it never arrived live): written even below seqs the
    /// socket already has, where a live copy would be skipped as a duplicate.
    /// </summary>
    public bool Redelivery { get; private init; }

    /// <summary>
    /// When a committed change's frame was handed to the fan-out (<see cref="TimeProvider.GetTimestamp"/>), for the
    /// send-to-socket latency; 0 for frames that were not (replies, catch-up pages, redeliveries).
    /// </summary>
    public long HandedOffAt { get; private set; }

    /// <summary>
    /// Stamps the hand-off time; by the broadcaster, once, before the frame is published. Publishing (a channel
    /// write) makes the stamp visible to the send loops that read the frame.
    /// </summary>
    public OutboundFrame HandedOff(long timestamp)
    {
        HandedOffAt = timestamp;
        return this;
    }

    /// <summary>The same bytes, marked as a redelivery.</summary>
    public OutboundFrame AsRedelivery() =>
        new(_utf8, Type, ConversationId, Seq, DeliverySeq, SenderId, Transient) { Redelivery = true };
}
