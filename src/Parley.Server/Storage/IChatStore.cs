using Parley.Server.Conversations;
using Parley.Server.Hosting;
using Parley.Server.Messages;

namespace Parley.Server.Storage;

/// <summary>
/// The storage seam. Every method that changes a conversation runs in one transaction: it gathers the facts
/// the caller's rules need, asks the rules (a pure function passed in), and either applies the change with
/// its next <c>seq</c> or changes nothing. Rules live outside the store so that every implementation
/// enforces the same ones; the store owns atomicity and ordering.
/// </summary>
internal interface IChatStore
{
    /// <summary>
    /// Creates or upgrades the schema; safe to call on every start. Returns the migrations this call applied
    /// (<c>NNNN_name</c>, in order): none when the schema was already current.
    /// </summary>
    Task<IReadOnlyList<string>> MigrateAsync(CancellationToken cancellationToken);

    /// <summary>True when the database answers and the schema is current.</summary>
    Task<bool> IsReadyAsync(CancellationToken cancellationToken);

    Task<CreateConversationResult> CreateConversationAsync(NewConversation conversation, CancellationToken cancellationToken);

    /// <summary>The conversation and its current (active) members, or null.</summary>
    Task<ConversationSnapshot?> GetConversationAsync(Guid conversationId, CancellationToken cancellationToken);

    /// <summary>The active membership of a user, or null when the user is not (or no longer) a member.</summary>
    Task<MemberRecord?> GetMemberAsync(Guid conversationId, string userId, CancellationToken cancellationToken);

    /// <summary>The user's conversations by most recent activity, after the cursor position.</summary>
    Task<IReadOnlyList<ConversationListItem>> ListConversationsAsync(
        string userId, ConversationPosition? after, int limit, CancellationToken cancellationToken);

    /// <summary>Applies a membership plan decided by <paramref name="decide"/>; each change takes its own seq.</summary>
    Task<Result<MembershipResult>> ChangeMembershipAsync(
        Guid conversationId, string actorId, Func<ConversationSnapshot, Result<IReadOnlyList<MembershipChange>>> decide,
        DateTimeOffset now, CancellationToken cancellationToken);

    Task<Result<SendResult>> AppendMessageAsync(NewMessage message, Func<SendFacts, ApiError?> check, CancellationToken cancellationToken);

    Task<Message?> GetMessageAsync(Guid messageId, CancellationToken cancellationToken);

    /// <summary>Messages with <c>seq &gt; visibleAfterSeq</c>, paged by seq (see <see cref="MessageQuery"/>).</summary>
    Task<IReadOnlyList<Message>> ListMessagesAsync(MessageQuery query, CancellationToken cancellationToken);

    Task<Result<MessageChangeResult>> EditMessageAsync(
        Guid messageId, string editorId, string? content, IReadOnlyList<Mention>? mentions,
        Func<MessageFacts, ApiError?> check, DateTimeOffset now, CancellationToken cancellationToken);

    Task<Result<MessageChangeResult>> DeleteMessageAsync(
        Guid messageId, string actorId, Func<MessageFacts, ApiError?> check, DateTimeOffset now, CancellationToken cancellationToken);

    /// <summary>Earlier versions of a message, oldest first (empty after a delete).</summary>
    Task<IReadOnlyList<MessageVersion>> GetEditsAsync(Guid messageId, CancellationToken cancellationToken);

    /// <summary>Moves the user's read watermark forward to the message (and the delivered one with it).</summary>
    Task<Result<WatermarkResult>> AdvanceReadAsync(
        Guid conversationId, string userId, Guid messageId, DateTimeOffset now, CancellationToken cancellationToken);

    /// <summary>Moves delivered watermarks forward to the newest message at or before each given seq, in one transaction.</summary>
    Task<IReadOnlyList<WatermarkResult>> AdvanceDeliveredAsync(
        IReadOnlyList<DeliveryReport> reports, DateTimeOffset now, CancellationToken cancellationToken);

    /// <summary>The conversation's durable events after <paramref name="afterSeq"/>, in seq order.</summary>
    Task<IReadOnlyList<ConversationEvent>> ListEventsAsync(Guid conversationId, long afterSeq, int limit, CancellationToken cancellationToken);

    // ---- the event stream (delivery guarantees) ----

    /// <summary>The stream's epoch and its last assigned position.</summary>
    Task<StreamPosition> GetStreamPositionAsync(CancellationToken cancellationToken);

    /// <summary>
    /// Gives the stream a new epoch (after a restore from a backup): every cursor issued before is refused from
    /// now on, so devices reload instead of trusting state the database may no longer have. Returns the epoch.
    /// </summary>
    Task<Guid> StartNewEpochAsync(CancellationToken cancellationToken);

    /// <summary>
    /// The sequencer's pass: gives the next stream positions to committed events that have none, in
    /// (conversation, seq) order, at most <paramref name="batch"/>. Returns how many it positioned; 0 also when
    /// another instance holds the sequencer.
    /// </summary>
    Task<int> AssignPositionsAsync(int batch, CancellationToken cancellationToken);

    /// <summary>
    /// The events of the user's membership windows with a position in (<paramref name="afterPos"/>,
    /// <paramref name="uptoPos"/>], by position; or, with <paramref name="newerThanUpto"/>, those positioned after
    /// <paramref name="uptoPos"/> or not yet positioned, by conversation and seq.
    /// </summary>
    Task<IReadOnlyList<UserEvent>> ReadUserEventsAsync(
        string userId, long afterPos, long uptoPos, bool newerThanUpto, int limit, CancellationToken cancellationToken);

    /// <summary>The event at a stream position; null when no event has that position.</summary>
    Task<EventKey?> GetEventAtPositionAsync(long pos, CancellationToken cancellationToken);

    /// <summary>The conversation as it was right after <paramref name="seq"/> (its roster then); null if unknown.</summary>
    Task<ConversationAsOf?> GetConversationAsOfAsync(Guid conversationId, long seq, CancellationToken cancellationToken);

    /// <summary>
    /// Messages of the conversation as they were right after <paramref name="seq"/>: the content of that time
    /// for messages edited since; null for messages deleted since (their content is erased).
    /// </summary>
    Task<IReadOnlyDictionary<Guid, Message?>> GetMessagesAsOfAsync(
        Guid conversationId, long seq, IReadOnlyCollection<Guid> messageIds, CancellationToken cancellationToken);

    /// <summary>Messages by id (those that exist).</summary>
    Task<IReadOnlyDictionary<Guid, Message>> GetMessagesAsync(IReadOnlyCollection<Guid> messageIds, CancellationToken cancellationToken);

    /// <summary>The current last seq of each of the user's conversations.</summary>
    Task<IReadOnlyDictionary<Guid, long>> GetLastSeqsAsync(string userId, CancellationToken cancellationToken);

    /// <summary>Watermarks, in the user's current conversations, that moved after <paramref name="since"/>.</summary>
    Task<IReadOnlyList<MovedWatermark>> ListMovedWatermarksAsync(string userId, DateTimeOffset since, CancellationToken cancellationToken);
}

/// <summary>The stream's epoch, its last assigned position, and the event at that position (null at position 0).</summary>
internal sealed record StreamPosition(Guid Epoch, long Pos, EventKey? Last = null);

/// <summary>
/// An event's identity: its conversation and seq, and when it was committed (a database restored from an earlier
/// copy reuses seqs for new events; their times differ).
/// </summary>
internal readonly record struct EventKey(Guid ConversationId, long Seq, DateTimeOffset CreatedAt);

/// <summary>An event of one of the user's conversations, with its stream position (null until assigned) and the user's joining there.</summary>
internal sealed record UserEvent(ConversationEvent Event, long? Pos, long JoinedSeq, long? LeftSeq = null);

/// <summary>A member of a conversation's initial roster, as recorded on its <c>conversation_created</c> event.</summary>
internal sealed record RosterEntry(string UserId, string Role);

/// <summary>A conversation as it was at a seq: the record with that last seq, and the members then.</summary>
internal sealed record ConversationAsOf(ConversationRecord Conversation, IReadOnlyList<Participant> Participants);

/// <summary>A member's watermarks in a conversation of the user's (<see cref="ViewerJoinedSeq"/> is the user's own joining).</summary>
internal sealed record MovedWatermark(Guid ConversationId, MemberRecord Member, long ViewerJoinedSeq);

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

internal sealed record NewMessage(
    Guid Id,
    Guid ConversationId,
    string SenderId,
    bool SenderIsService,
    string MessageType,
    string? Content,
    Guid? ReplyToId,
    IReadOnlyList<Mention>? Mentions,
    Media? Media,
    Location? Location,
    string? ClientMessageId,
    DateTimeOffset Now);

/// <summary>
/// What the send rules need, read inside the send transaction. <see cref="Existing"/> is an earlier message with the
/// same client_message_id; when it was edited since, <see cref="ExistingOriginal"/> is its first version (what the
/// retried send carried).
/// </summary>
internal sealed record SendFacts(ConversationSnapshot? Conversation, Message? ReplyTarget, Message? Existing, MessageVersion? ExistingOriginal = null);

/// <summary>The stored message; <see cref="Created"/> is false when a retry with the same client_message_id found it.</summary>
internal sealed record SendResult(Message Message, bool Created, IReadOnlyList<MemberRecord> Members);

/// <summary>What edit and delete rules need: the message, its conversation and members (null when unknown).</summary>
internal sealed record MessageFacts(Message Message, ConversationSnapshot Conversation);

/// <summary>The message after an edit or delete; <see cref="Seq"/> is 0 when nothing changed (an idempotent repeat).</summary>
internal sealed record MessageChangeResult(Message Message, long Seq, IReadOnlyList<MemberRecord> Members);

internal sealed record DeliveryReport(Guid ConversationId, string UserId, long UpToSeq);

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

internal sealed record MessageQuery(Guid ConversationId, long VisibleAfterSeq, long? Before, long? After, int Limit);

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
