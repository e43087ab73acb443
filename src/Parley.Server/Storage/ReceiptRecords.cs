namespace Parley.Server.Storage;

internal sealed record DeliveryReport(Guid ConversationId, string UserId, long UpToSeq);

/// <summary>
/// What a batch of delivery reports moved. The batch is written per write lane; when some lanes' writes failed and
/// others committed, <see cref="Failed"/> holds the reports that were not applied (to report again) and
/// <see cref="Error"/> the first failure, while <see cref="Moved"/> holds what the others committed.
/// </summary>
internal sealed record DeliveredBatch(IReadOnlyList<WatermarkResult> Moved)
{
    public IReadOnlyList<DeliveryReport> Failed { get; init; } = [];

    public Exception? Error { get; init; }
}

/// <summary>
/// A watermark move. <see cref="Before"/> and <see cref="After"/> are the member's state around it;
/// <see cref="NotifySenders"/> are the senders of messages newly delivered, who get <c>message_delivered</c>.
/// </summary>
internal sealed record WatermarkResult(
    Guid ConversationId,
    MemberRecord Before,
    MemberRecord After,
    IReadOnlyList<string> NotifySenders,
    IReadOnlyList<MemberRecord> Members)
{
    public bool ReadAdvanced => After.ReadSeq > Before.ReadSeq;

    public bool DeliveredAdvanced => After.DeliveredSeq > Before.DeliveredSeq;
}

/// <summary>A member's watermarks in a conversation of the user's (<see cref="ViewerJoinedSeq"/> is the user's own joining).</summary>
internal sealed record MovedWatermark(Guid ConversationId, MemberRecord Member, long ViewerJoinedSeq);
