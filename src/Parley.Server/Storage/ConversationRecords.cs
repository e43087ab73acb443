namespace Parley.Server.Storage;

/// <summary>A conversation's row: its counter (<see cref="LastSeq"/>) and the message its list entry shows.</summary>
internal sealed record ConversationRecord(
    Guid Id, string Type, string? Name, string CreatedBy, DateTimeOffset CreatedAt, DateTimeOffset LastActivityAt, long LastSeq, Guid? LastMessageId);

/// <summary>An active member and the member's own position in the conversation.</summary>
internal sealed record MemberRecord(
    string UserId,
    string Role,
    long JoinedSeq,
    DateTimeOffset JoinedAt,
    long ReadSeq,
    Guid? ReadMessageId,
    long DeliveredSeq,
    Guid? DeliveredMessageId,
    int UnreadCount,
    DateTimeOffset LastActivityAt);

internal sealed record ConversationSnapshot(ConversationRecord Conversation, IReadOnlyList<MemberRecord> Members)
{
    public MemberRecord? Find(string userId) => Members.FirstOrDefault(m => m.UserId == userId);
}

internal static class ConversationSnapshots
{
    /// <summary>The conversation's last message as stored now (a tombstone if deleted); null before the first.</summary>
    public static async Task<Message?> GetLastMessageAsync(this IChatStore store, ConversationSnapshot snapshot, CancellationToken cancellationToken) =>
        snapshot.Conversation.LastMessageId is { } id ? await store.GetMessageAsync(id, cancellationToken) : null;
}

internal sealed record NewConversation(
    Guid Id, string Type, string? Name, string CreatedBy, IReadOnlyList<(string UserId, string Role)> Members, string? DirectKey, DateTimeOffset Now);

internal sealed record CreateConversationResult(ConversationSnapshot Snapshot, bool Created);

internal sealed record ConversationPosition(DateTimeOffset LastActivityAt, Guid ConversationId);

internal sealed record ConversationListItem(ConversationSnapshot Snapshot, MemberRecord Caller, Message? LastMessage);

/// <summary>A change to the member list; the store applies them in order.</summary>
internal abstract record MembershipChange(string UserId)
{
    internal sealed record Add(string UserId, string Role) : MembershipChange(UserId);

    internal sealed record Remove(string UserId) : MembershipChange(UserId);

    internal sealed record SetRole(string UserId, string Role) : MembershipChange(UserId);
}

internal sealed record AppliedMembershipChange(MembershipChange Change, ConversationEvent Event);

internal sealed record MembershipResult(ConversationSnapshot After, IReadOnlyList<AppliedMembershipChange> Applied);
