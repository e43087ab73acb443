using Parley.Server.Realtime;

namespace Parley.Server.Fanout;

/// <summary>
/// The fan-out seam: carries serialized frames to every connected device of a set of users, wherever those devices
/// are connected. In-process (default, one instance) or Redis pub/sub (several instances, docs/scaling.md).
/// Implementations keep the order of <see cref="PublishAsync"/> calls per publisher, hand each socket a
/// conversation's sequenced frames in seq order, never block on a slow socket or on the network, and never deliver
/// to users outside a part's <see cref="FanoutPart.UserIds"/>.
/// </summary>
internal interface IFanout
{
    ValueTask PublishAsync(FanoutMessage message, CancellationToken cancellationToken);

    /// <summary>
    /// A socket of the user connected to this instance: from the moment this completes, every frame published for the
    /// user anywhere reaches this instance (awaited before the socket reads what it missed). Never throws: when the
    /// shared transport is down, the socket still gets local events and recovers the others through its cursor.
    /// Says whether the user had no device connected anywhere before (the user came online), and the last seq of each of
    /// the user's conversations when the fan-out read them after subscribing (so the socket need not read them again).
    /// </summary>
    ValueTask<Subscription> SubscribeAsync(string userId, CancellationToken cancellationToken);

    /// <summary>
    /// A socket of the user left this instance (pairs with <see cref="SubscribeAsync"/>). Returns true when it was the
    /// user's last device anywhere (the user went offline; its last-seen time is now). Never throws.
    /// </summary>
    ValueTask<bool> UnsubscribeAsync(string userId);

    /// <summary>Whether each user has a device connected anywhere, and when the others were last seen.</summary>
    ValueTask<IReadOnlyDictionary<string, UserPresence>> GetPresenceAsync(IReadOnlyCollection<string> userIds, CancellationToken cancellationToken);

    /// <summary>
    /// A typing indicator (one per conversation and user, whichever instances its frames reach) starts or is refreshed:
    /// on until <paramref name="timeout"/> from now. True when it was off, so that the caller announces it; a refresh
    /// through another instance is not a start. Never throws.
    /// </summary>
    ValueTask<bool> StartTypingAsync(Guid conversationId, string userId, TimeSpan timeout, CancellationToken cancellationToken);

    /// <summary>
    /// The indicator ends: true when it was on, so that the caller announces its end (exactly one caller does). When the
    /// fan-out cannot tell (Redis unreachable), <paramref name="seenHere"/> decides: an instance that saw the indicator
    /// announces its end rather than leave it shown, one that did not stays silent (a message does not announce the end of
    /// an indicator nobody here knew of). Never throws.
    /// </summary>
    ValueTask<bool> StopTypingAsync(Guid conversationId, string userId, bool seenHere);

    /// <summary>
    /// An instance that saw the indicator checks it at the end of the timeout it knows: ended now (this caller announces
    /// it, exactly one does), gone (ended and announced by someone else), or refreshed (through another instance: check
    /// again when the time it gives has passed). Never throws.
    /// </summary>
    ValueTask<TypingCheck> CheckTypingAsync(Guid conversationId, string userId);
}

/// <summary>What <see cref="IFanout.CheckTypingAsync"/> found.</summary>
internal readonly record struct TypingCheck(TypingOutcome Outcome, TimeSpan Remaining)
{
    public static TypingCheck Ended => new(TypingOutcome.Ended, TimeSpan.Zero);

    public static TypingCheck Gone => new(TypingOutcome.Gone, TimeSpan.Zero);

    public static TypingCheck RefreshedFor(TimeSpan remaining) => new(TypingOutcome.Refreshed, remaining);
}

internal enum TypingOutcome
{
    /// <summary>It ran out and the caller was the one to find it: the caller announces the end.</summary>
    Ended,

    /// <summary>It had ended already (stopped, or found ended by another instance), which was announced.</summary>
    Gone,

    /// <summary>Still on: refreshed since.</summary>
    Refreshed,
}

/// <summary>
/// What <see cref="IFanout.SubscribeAsync"/> found: whether the user came online, and the last seq of each of the user's
/// conversations as read after subscribing (null when the fan-out did not read them).
/// </summary>
internal readonly record struct Subscription(bool CameOnline, IReadOnlyDictionary<Guid, long>? LastSeqs = null);

/// <summary>A user's presence: online while any device is connected to any instance; otherwise when the last one left (null if unknown).</summary>
internal readonly record struct UserPresence(bool Online, DateTimeOffset? LastSeenAt);

/// <summary>One frame and the users whose devices get it.</summary>
internal sealed record FanoutPart(IReadOnlyList<string> UserIds, OutboundFrame Frame);

/// <summary>
/// One published change: usually one frame, or a frame for the members who may see a change and <c>hidden_event</c>
/// for the same position to the others. Every frame's bytes are serialized once and shared by every socket.
/// <see cref="ExceptUserId"/>'s devices get none of it (typing goes to the other members only).
/// </summary>
internal sealed record FanoutMessage(IReadOnlyList<FanoutPart> Parts, string? ExceptUserId = null)
{
    public FanoutMessage(IReadOnlyList<string> userIds, OutboundFrame frame, string? exceptUserId = null)
        : this([new FanoutPart(userIds, frame)], exceptUserId)
    {
    }

    /// <summary>The conversation of a sequenced change (null for receipts, typing and other unsequenced frames).</summary>
    public Guid? ConversationId => Parts[0].Frame.Seq > 0 ? Parts[0].Frame.ConversationId : null;

    /// <summary>The change's seq in its conversation; 0 when it has none.</summary>
    public long Seq => Parts[0].Frame.ConversationId is null ? 0 : Parts[0].Frame.Seq;
}
