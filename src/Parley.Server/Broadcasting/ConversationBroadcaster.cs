using Parley.Server.Fanout;
using Parley.Server.Protocol;
using Parley.Server.Realtime;
using Parley.Server.Storage;

namespace Parley.Server.Broadcasting;

/// <summary>
/// Turns committed changes into frames and hands them to the fan-out: each frame serialized once, addressed
/// to exactly the users allowed to see it. Callers hold the conversation's lock (Conversations/ConversationLocks)
/// so a conversation's frames leave in seq order. Every member gets every position of the conversation after
/// joining: a member who may not see an event gets <c>hidden_event</c> for its position instead.
/// </summary>
internal sealed class ConversationBroadcaster(IFanout fanout, TimeProvider time)
{
    // Publishing happens after commit: it must not be cancelled by the request that caused it.
    private static readonly CancellationToken AfterCommit = CancellationToken.None;

    public ValueTask ConversationCreatedAsync(ConversationSnapshot snapshot) =>
        PublishAsync(
            UserIds(snapshot.Members),
            EventFrames.ConversationCreated(ConversationViews.ToView(snapshot, null, null), snapshot.Conversation.LastSeq, snapshot.Conversation.CreatedAt));

    /// <summary>Every device of every member, the sender's own devices included.</summary>
    public ValueTask MessageCreatedAsync(Message message, IReadOnlyList<MemberRecord> members) =>
        PublishAsync(UserIds(members), EventFrames.NewMessage(message, message.CreatedAt));

    public ValueTask MessageEditedAsync(Message message, long seq, IReadOnlyList<MemberRecord> members) =>
        PublishVisibleAsync(message, seq, members, EventFrames.MessageEdited(message, seq, message.EditedAt ?? Now));

    public ValueTask MessageDeletedAsync(Message tombstone, long seq, string deletedBy, IReadOnlyList<MemberRecord> members) =>
        PublishVisibleAsync(
            tombstone, seq, members,
            EventFrames.MessageDeleted(tombstone.Id, tombstone.ConversationId, seq, deletedBy, tombstone.DeletedAt ?? Now));

    public async ValueTask MembershipChangedAsync(MembershipResult result)
    {
        foreach (var (change, evt) in result.Applied)
        {
            // Members from their joining on: of several added at once, each gets the events from their own joining on, not
            // those before it in the same request (no catch-up or sync would return those to them). The removed user
            // learns of the removal too, and nothing after it.
            var members = result.After.Members.Where(m => m.JoinedSeq <= evt.Seq).Select(m => m.UserId);
            IReadOnlyList<string> recipients = change is MembershipChange.Remove remove ? [.. members, remove.UserId] : [.. members];
            await PublishAsync(recipients, EventFrames.Participant(evt));
        }
    }

    /// <summary><c>message_read</c> to every member's devices; <c>message_delivered</c> to the senders whose messages were newly delivered.</summary>
    public async ValueTask WatermarkMovedAsync(WatermarkResult result)
    {
        var user = result.After.UserId;
        if (result.DeliveredAdvanced && result.NotifySenders.Count > 0 && result.After.DeliveredMessageId is { } deliveredId)
        {
            await PublishAsync(
                result.NotifySenders,
                EventFrames.Receipt(FrameTypes.MessageDelivered, result.ConversationId, user, deliveredId, result.After.DeliveredSeq, Now));
        }

        if (result.ReadAdvanced && result.After.ReadMessageId is { } readId)
        {
            // Only members who can see the message: a later joiner must not learn ids and seqs of history hidden from them.
            var recipients = result.Members.Where(m => m.JoinedSeq < result.After.ReadSeq).Select(m => m.UserId).ToArray();
            await PublishAsync(recipients, EventFrames.Receipt(FrameTypes.MessageRead, result.ConversationId, user, readId, result.After.ReadSeq, Now));
        }
    }

    public ValueTask TypingAsync(Guid conversationId, string userId, bool isTyping, IReadOnlyList<MemberRecord> members)
    {
        var bytes = FrameWriter.Serialize(
            FrameTypes.Typing, new TypingPayload(conversationId, userId, isTyping, Now), ParleyJsonContext.Default.TypingPayload);
        var frame = new OutboundFrame(bytes, FrameTypes.Typing, conversationId, transient: true).HandedOff(time.GetTimestamp());
        return fanout.PublishAsync(new FanoutMessage(UserIds(members), frame, exceptUserId: userId), AfterCommit);
    }

    /// <summary><c>presence</c> to the devices of <paramref name="recipients"/> (users who share a conversation with the user).</summary>
    public ValueTask PresenceAsync(string userId, bool online, DateTimeOffset? lastSeenAt, IReadOnlyList<string> recipients) =>
        PublishAsync(recipients, EventFrames.Presence(userId, online, lastSeenAt, Now));

    private DateTimeOffset Now => time.GetUtcNow();

    /// <summary>Publishes a frame, stamped with the hand-off time from which its send-to-socket latency is measured.</summary>
    private ValueTask PublishAsync(IReadOnlyList<string> userIds, OutboundFrame frame) =>
        fanout.PublishAsync(new FanoutMessage(userIds, frame.HandedOff(time.GetTimestamp())), AfterCommit);

    /// <summary>
    /// A change to a message: the frame to members who joined before it was sent, <c>hidden_event</c> to the others;
    /// one publication, so that each instance gets the position once.
    /// </summary>
    private ValueTask PublishVisibleAsync(Message message, long seq, IReadOnlyList<MemberRecord> members, OutboundFrame frame)
    {
        var seeing = members.Where(m => m.JoinedSeq < message.Seq).Select(m => m.UserId).ToArray();
        var hidden = members.Where(m => m.JoinedSeq >= message.Seq).Select(m => m.UserId).ToArray();
        var handedOff = time.GetTimestamp();
        List<FanoutPart> parts = [new(seeing, frame.HandedOff(handedOff))];
        if (hidden.Length > 0)
        {
            parts.Add(new FanoutPart(hidden, EventFrames.Hidden(message.ConversationId, seq, Now).HandedOff(handedOff)));
        }

        return fanout.PublishAsync(new FanoutMessage(parts), AfterCommit);
    }

    private static string[] UserIds(IReadOnlyList<MemberRecord> members)
    {
        // A loop, not LINQ: this runs for every event broadcast.
        var ids = new string[members.Count];
        for (var i = 0; i < ids.Length; i++)
        {
            ids[i] = members[i].UserId;
        }

        return ids;
    }
}

internal static class BroadcastingSetup
{
    /// <summary>Committed changes turned into frames for the fan-out (<see cref="ConversationBroadcaster"/>).</summary>
    public static IHostApplicationBuilder AddBroadcasting(this IHostApplicationBuilder builder)
    {
        builder.Services.AddSingleton<ConversationBroadcaster>();
        return builder;
    }
}
