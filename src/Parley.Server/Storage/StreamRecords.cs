namespace Parley.Server.Storage;

/// <summary>Durable event types: the same names as the WebSocket frames that carry them live.</summary>
internal static class EventTypes
{
    public const string ConversationCreated = "conversation_created";
    public const string MessageCreated = "new_message";
    public const string MessageEdited = "message_edited";
    public const string MessageDeleted = "message_deleted";
    public const string ParticipantAdded = "participant_added";
    public const string ParticipantRemoved = "participant_removed";
    public const string ParticipantUpdated = "participant_updated";
}

/// <summary>
/// One durable change of a conversation at its position. It references the message or user it concerns and
/// never copies content, so that deleting a message also erases what a replay shows.
/// </summary>
internal sealed record ConversationEvent(
    Guid ConversationId, long Seq, string Type, Guid? MessageId, string ActorId, string? UserId, string? Role, DateTimeOffset CreatedAt);

/// <summary>The stream's epoch, its last assigned position, and the event at that position (null at position 0).</summary>
internal sealed record StreamPosition(Guid Epoch, long Pos, EventKey? Last = null);

/// <summary>
/// An event's identity: its conversation and seq, and when it was committed (a database restored from an earlier
/// copy reuses seqs for new events; their times differ).
/// </summary>
internal readonly record struct EventKey(Guid ConversationId, long Seq, DateTimeOffset CreatedAt);

/// <summary>An event of one of the user's conversations, with its stream position (null until assigned) and the user's joining there.</summary>
internal sealed record UserEvent(ConversationEvent Event, long? Pos, long JoinedSeq, long? LeftSeq = null);

/// <summary>
/// A member of a conversation's initial roster, as recorded (JSON) on its <c>conversation_created</c> event: a stored
/// format, read back by every later version.
/// </summary>
internal sealed record RosterEntry(string UserId, string Role);

/// <summary>A member of a conversation as it was at a seq: no watermarks (those are only known for now).</summary>
internal sealed record RosterMember(string UserId, string Role, DateTimeOffset JoinedAt);

/// <summary>A conversation as it was at a seq: the record with that last seq, and the members then.</summary>
internal sealed record ConversationAsOf(ConversationRecord Conversation, IReadOnlyList<RosterMember> Participants);
