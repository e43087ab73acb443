namespace Parley.Server.Storage;

/// <summary>
/// The storage seam. Every method that changes a conversation runs in one transaction: it gathers the facts
/// the caller's rules need, asks the rules (a pure function passed in), and either applies the change with
/// its next <c>seq</c> or changes nothing. Rules live outside the store so that every implementation
/// enforces the same ones; the store owns atomicity and ordering.
/// <para>
/// The store speaks in its own terms: a rule's rejection is whatever the rule returned (<c>TRejection</c>), passed
/// back untouched, and what the store refuses by itself is a <see cref="StoreRefusal"/>. The features say what
/// either means for their callers. Records of the signatures live beside this interface, one file per area.
/// </para>
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

    /// <summary>
    /// The active membership of a user with the conversation's last seq, read together; null when the user is not (or
    /// no longer) a member. What an acknowledgement is checked against: nothing past the last seq can have reached a device.
    /// </summary>
    Task<(MemberRecord Member, long LastSeq)?> GetMemberWithLastSeqAsync(Guid conversationId, string userId, CancellationToken cancellationToken);

    /// <summary>Whether both users are current members of at least one common conversation.</summary>
    Task<bool> SharesConversationAsync(string userId, string otherUserId, CancellationToken cancellationToken);

    /// <summary>
    /// Users who are current members of a conversation the user is a current member of, counting only conversations
    /// of at most <paramref name="maxMembers"/> members; at most <paramref name="limit"/> of them (presence events).
    /// </summary>
    Task<IReadOnlyList<string>> ListContactsAsync(string userId, int maxMembers, int limit, CancellationToken cancellationToken);

    /// <summary>The user's conversations by most recent activity, after the cursor position.</summary>
    Task<IReadOnlyList<ConversationListItem>> ListConversationsAsync(
        string userId, ConversationPosition? after, int limit, CancellationToken cancellationToken);

    /// <summary>
    /// Applies the membership changes <paramref name="decide"/> plans (or its rejection); each change takes its own seq.
    /// Refused with <see cref="StoreRefusal.ConversationNotFound"/> for an unknown conversation.
    /// </summary>
    Task<StoreResult<MembershipResult, TRejection>> ChangeMembershipAsync<TRejection>(
        Guid conversationId, string actorId, Func<ConversationSnapshot, StoreResult<IReadOnlyList<MembershipChange>, TRejection>> decide,
        DateTimeOffset now, CancellationToken cancellationToken)
        where TRejection : class;

    /// <summary>
    /// Stores the message unless <paramref name="check"/> rejects it. Never refused by the store itself: an unknown
    /// conversation reaches the rule as <see cref="SendFacts.Conversation"/> = null.
    /// </summary>
    Task<StoreResult<SendResult, TRejection>> AppendMessageAsync<TRejection>(
        NewMessage message, Func<SendFacts, TRejection?> check, CancellationToken cancellationToken)
        where TRejection : class;

    Task<Message?> GetMessageAsync(Guid messageId, CancellationToken cancellationToken);

    /// <summary>Messages with <c>seq &gt; VisibleAfterSeq</c>, paged by seq (see <see cref="MessageQuery"/>).</summary>
    Task<IReadOnlyList<Message>> ListMessagesAsync(MessageQuery query, CancellationToken cancellationToken);

    /// <summary>Replaces the content unless <paramref name="check"/> rejects it; refused with <see cref="StoreRefusal.MessageNotFound"/>.</summary>
    Task<StoreResult<MessageChangeResult, TRejection>> EditMessageAsync<TRejection>(
        Guid messageId, string editorId, string? content, IReadOnlyList<Mention>? mentions,
        Func<MessageFacts, TRejection?> check, DateTimeOffset now, CancellationToken cancellationToken)
        where TRejection : class;

    /// <summary>Leaves a tombstone unless <paramref name="check"/> rejects it; refused with <see cref="StoreRefusal.MessageNotFound"/>.</summary>
    Task<StoreResult<MessageChangeResult, TRejection>> DeleteMessageAsync<TRejection>(
        Guid messageId, string actorId, Func<MessageFacts, TRejection?> check, DateTimeOffset now, CancellationToken cancellationToken)
        where TRejection : class;

    /// <summary>Earlier versions of a message, oldest first (empty after a delete).</summary>
    Task<IReadOnlyList<MessageVersion>> GetEditsAsync(Guid messageId, CancellationToken cancellationToken);

    /// <summary>
    /// Moves the user's read watermark forward to the message (and the delivered one with it). Refused with
    /// <see cref="StoreRefusal.NotAMember"/>, or <see cref="StoreRefusal.MessageNotFound"/> for a message that is not
    /// one of the conversation's the member can see.
    /// </summary>
    Task<StoreResult<WatermarkResult>> AdvanceReadAsync(
        Guid conversationId, string userId, Guid messageId, DateTimeOffset now, CancellationToken cancellationToken);

    /// <summary>
    /// Moves delivered watermarks forward to the newest message at or before each given seq. Reports of
    /// non-members and reports behind the watermark move nothing.
    /// </summary>
    Task<DeliveredBatch> AdvanceDeliveredAsync(
        IReadOnlyList<DeliveryReport> reports, DateTimeOffset now, CancellationToken cancellationToken);

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
    /// <paramref name="uptoPos"/>], by position, at most <paramref name="limit"/>.
    /// </summary>
    Task<IReadOnlyList<UserEvent>> ReadUserEventsAsync(string userId, long afterPos, long uptoPos, int limit, CancellationToken cancellationToken);

    /// <summary>
    /// The events of the user's membership windows positioned after <paramref name="uptoPos"/> or not positioned yet,
    /// by conversation and seq, at most <paramref name="limit"/>: with <paramref name="after"/>, only those after that
    /// conversation and seq in this order (the next page).
    /// </summary>
    Task<IReadOnlyList<UserEvent>> ReadUserEventsNewerAsync(
        string userId, long uptoPos, (Guid ConversationId, long Seq)? after, int limit, CancellationToken cancellationToken);

    /// <summary>
    /// The events of one conversation with seq in (<paramref name="afterSeq"/>, <paramref name="uptoSeq"/>] inside the
    /// user's membership window there, by seq, positioned or not (an instance filling a gap in live delivery).
    /// </summary>
    Task<IReadOnlyList<UserEvent>> ReadConversationEventsAsync(
        string userId, Guid conversationId, long afterSeq, long uptoSeq, CancellationToken cancellationToken);

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

    // ---- the event relay (docs/events.md) ----

    /// <summary>
    /// Takes or renews the sink's lease for <paramref name="duration"/> (creating the sink's row at position 0 the first
    /// time) and returns its published positions; null while another owner's lease runs.
    /// </summary>
    Task<RelayLease?> TakeRelayLeaseAsync(string sink, string owner, DateTimeOffset now, TimeSpan duration, CancellationToken cancellationToken);

    /// <summary>Records the sink's published positions; false (and nothing recorded) when <paramref name="owner"/> lost the lease.</summary>
    Task<bool> RecordRelayPositionAsync(string sink, string owner, long pos, long receiptPos, DateTimeOffset now, CancellationToken cancellationToken);

    /// <summary>Gives the lease up (a graceful stop), so another instance takes over at once.</summary>
    Task ReleaseRelayLeaseAsync(string sink, string owner, CancellationToken cancellationToken);

    /// <summary>The next positioned events after <paramref name="afterPos"/> and receipts after <paramref name="afterReceiptPos"/>, with the facts their records need.</summary>
    Task<OutboxBatch> ReadOutboxAsync(long afterPos, long afterReceiptPos, int limit, CancellationToken cancellationToken);

    /// <summary>The conversations of <paramref name="conversationIds"/> that exist, by id.</summary>
    Task<IReadOnlyDictionary<Guid, ConversationRecord>> GetConversationRecordsAsync(IReadOnlyCollection<Guid> conversationIds, CancellationToken cancellationToken);

    /// <summary>What waits for the sink.</summary>
    Task<RelayBacklog> GetRelayBacklogAsync(string sink, CancellationToken cancellationToken);

    /// <summary>
    /// Deletes up to <paramref name="limit"/> receipt log rows published by every one of <paramref name="sinks"/> and by
    /// every other sink an instance held since <paramref name="heldSince"/> or none has held yet.
    /// </summary>
    Task<int> PruneReceiptLogAsync(IReadOnlyList<string> sinks, DateTimeOffset heldSince, int limit, CancellationToken cancellationToken);

    Task AddDeadLetterAsync(DeadLetter letter, CancellationToken cancellationToken);

    Task<IReadOnlyList<DeadLetter>> ListDeadLettersAsync(string sink, CancellationToken cancellationToken);

    /// <summary>Each user's unread messages over all of the user's conversations (users without any are absent).</summary>
    Task<IReadOnlyDictionary<string, long>> GetUnreadTotalsAsync(IReadOnlyCollection<string> userIds, CancellationToken cancellationToken);
}
