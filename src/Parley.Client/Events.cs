namespace Parley.Client;

/// <summary>
/// Something the server told this device. <see cref="ConversationEvent"/>s are positioned and arrive from
/// <see cref="ParleyRealtime.ReadEventsAsync"/> once each, in per-conversation <c>seq</c> order; receipts and
/// typing are not positioned; <see cref="SyncResetEvent"/> tells the app to reload.
/// </summary>
public abstract record ParleyEvent;

/// <summary>
/// A durable change of a conversation at position <see cref="Seq"/>. Every position of a conversation, from
/// the device's first event in it, reaches the device once and in order.
/// </summary>
public abstract record ConversationEvent : ParleyEvent
{
    /// <summary>The conversation.</summary>
    public Guid ConversationId { get; init; }

    /// <summary>The event's position in the conversation.</summary>
    public long Seq { get; init; }

    /// <summary>When the server emitted the event.</summary>
    public DateTimeOffset Timestamp { get; init; }
}

/// <summary><c>conversation_created</c>: the conversation exists and the user is a member (seq 1).</summary>
public sealed record ConversationCreatedEvent : ConversationEvent
{
    /// <summary>The conversation as the user sees it.</summary>
    public required Conversation Conversation { get; init; }
}

/// <summary><c>new_message</c>: a message was sent (by anyone, this device included). <see cref="ConversationEvent.Seq"/> is the message's.</summary>
public sealed record MessageCreatedEvent : ConversationEvent
{
    /// <summary>The message (replayed events carry it as it is now: a deleted one is a tombstone).</summary>
    public required Message Message { get; init; }
}

/// <summary><c>message_edited</c>: <see cref="ConversationEvent.Seq"/> is the edit's position, <c>Message.Seq</c> the creation's.</summary>
public sealed record MessageEditedEvent : ConversationEvent
{
    /// <summary>The message after the edit.</summary>
    public required Message Message { get; init; }
}

/// <summary><c>message_deleted</c>: the message is now a tombstone.</summary>
public sealed record MessageDeletedEvent : ConversationEvent
{
    /// <summary>The deleted message.</summary>
    public Guid MessageId { get; init; }

    /// <summary>Who deleted it.</summary>
    public string DeletedBy { get; init; } = "";
}

/// <summary><c>participant_added</c>: a member joined (for the user itself: the start of its positions in the conversation).</summary>
public sealed record ParticipantAddedEvent : ConversationEvent
{
    /// <summary>The member added.</summary>
    public string UserId { get; init; } = "";

    /// <summary>Its role.</summary>
    public string Role { get; init; } = "";

    /// <summary>Who added it.</summary>
    public string AddedBy { get; init; } = "";
}

/// <summary><c>participant_removed</c>: a member left or was removed (for the user itself: nothing more of the conversation follows).</summary>
public sealed record ParticipantRemovedEvent : ConversationEvent
{
    /// <summary>The member removed.</summary>
    public string UserId { get; init; } = "";

    /// <summary>Who removed it (the member itself when it left).</summary>
    public string RemovedBy { get; init; } = "";
}

/// <summary><c>participant_updated</c>: a member's role changed.</summary>
public sealed record ParticipantUpdatedEvent : ConversationEvent
{
    /// <summary>The member.</summary>
    public string UserId { get; init; } = "";

    /// <summary>The new role.</summary>
    public string Role { get; init; } = "";

    /// <summary>Who changed it.</summary>
    public string UpdatedBy { get; init; } = "";
}

/// <summary>
/// <c>hidden_event</c>: a position whose event the user may not see (an edit or delete of a message from
/// before it joined). Nothing to apply; it only fills the position. <see cref="ParleyRealtime"/> consumes these
/// itself; they appear in <see cref="SyncPage.Events"/>.
/// </summary>
public sealed record HiddenEvent : ConversationEvent;

/// <summary>
/// A positioned event this client could not read (a payload of a newer or faulty server that does not match what it
/// expects). Its position is applied, so the events after it are not held back, and cursors and acknowledgements go
/// on; show something like "this message cannot be displayed", and reload the conversation over REST after an update.
/// </summary>
public sealed record UnreadableEvent : ConversationEvent
{
    /// <summary>The frame's type (<c>new_message</c>, ...).</summary>
    public string Type { get; init; } = "";

    /// <summary>Why it could not be read.</summary>
    public string Reason { get; init; } = "";
}

/// <summary>A receipt watermark: <see cref="UserId"/> has received or read everything up to and including <see cref="UpToSeq"/>.</summary>
public abstract record ReceiptEvent : ParleyEvent
{
    /// <summary>The conversation.</summary>
    public Guid ConversationId { get; init; }

    /// <summary>The member whose watermark moved.</summary>
    public string UserId { get; init; } = "";

    /// <summary>The message at the watermark.</summary>
    public Guid MessageId { get; init; }

    /// <summary>The watermark: apply it as a maximum (receipts may repeat).</summary>
    public long UpToSeq { get; init; }

    /// <summary>When the server emitted it.</summary>
    public DateTimeOffset Timestamp { get; init; }
}

/// <summary><c>message_delivered</c>: a recipient's devices received the sender's messages up to the watermark.</summary>
public sealed record MessageDeliveredEvent : ReceiptEvent;

/// <summary><c>message_read</c>: a member read up to the watermark.</summary>
public sealed record MessageReadEvent : ReceiptEvent;

/// <summary><c>presence</c>: a user who shares a conversation with this user came online or went offline.</summary>
public sealed record PresenceEvent : ParleyEvent
{
    /// <summary>The user whose presence changed.</summary>
    public string UserId { get; init; } = "";

    /// <summary>Whether any device of the user is connected now.</summary>
    public bool Online { get; init; }

    /// <summary>When the user's last device disconnected (null while online).</summary>
    public DateTimeOffset? LastSeenAt { get; init; }

    /// <summary>When the server emitted it.</summary>
    public DateTimeOffset Timestamp { get; init; }
}

/// <summary><c>typing</c>: another member started or stopped typing.</summary>
public sealed record TypingEvent : ParleyEvent
{
    /// <summary>The conversation.</summary>
    public Guid ConversationId { get; init; }

    /// <summary>The member typing.</summary>
    public string UserId { get; init; } = "";

    /// <summary>Whether the indicator is on.</summary>
    public bool IsTyping { get; init; }

    /// <summary>When the server emitted it.</summary>
    public DateTimeOffset Timestamp { get; init; }
}

/// <summary>
/// The device's position could not be resumed (<c>sync_reset</c>, or REST sync answered 410): events were
/// missed. Reload conversations over REST; the events that follow in the stream continue from a fresh
/// position and may already be part of what you load (apply them idempotently, e.g. by message id).
/// </summary>
public sealed record SyncResetEvent : ParleyEvent
{
    /// <summary>The server's reason, e.g. <c>cursor_expired</c>.</summary>
    public string Reason { get; init; } = "";
}
