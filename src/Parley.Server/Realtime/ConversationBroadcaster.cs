using Parley.Server.Conversations;
using Parley.Server.Fanout;
using Parley.Server.Hosting;
using Parley.Server.Messages;
using Parley.Server.Realtime.Protocol;
using Parley.Server.Storage;

namespace Parley.Server.Realtime;

/// <summary>
/// Turns committed changes into frames and hands them to the fan-out: each frame serialized once, addressed
/// to exactly the users allowed to see it. Callers hold the conversation's lock (see <see cref="ConversationLocks"/>)
/// so a conversation's frames leave in seq order.
/// </summary>
internal sealed class ConversationBroadcaster(IFanout fanout, TimeProvider time)
{
    // Publishing happens after commit: it must not be cancelled by the request that caused it.
    private static readonly CancellationToken AfterCommit = CancellationToken.None;

    public ValueTask ConversationCreatedAsync(ConversationSnapshot snapshot)
    {
        var payload = new ConversationCreatedPayload(ConversationViews.ToView(snapshot, null, null), snapshot.Conversation.LastSeq, Now);
        var bytes = FrameWriter.Serialize(FrameTypes.ConversationCreated, payload, ParleyJsonContext.Default.ConversationCreatedPayload);
        return PublishAsync(UserIds(snapshot.Members), new OutboundFrame(bytes, snapshot.Conversation.Id));
    }

    public ValueTask MessageCreatedAsync(Message message, IReadOnlyList<MemberRecord> members)
    {
        var bytes = FrameWriter.Serialize(FrameTypes.NewMessage, new NewMessagePayload(message, Now), ParleyJsonContext.Default.NewMessagePayload);
        // Every device of every member, the sender's own devices included.
        return PublishAsync(UserIds(members), new OutboundFrame(bytes, message.ConversationId, message.Seq, message.SenderId));
    }

    public ValueTask MessageEditedAsync(Message message, long seq, IReadOnlyList<MemberRecord> members)
    {
        var bytes = FrameWriter.Serialize(
            FrameTypes.MessageEdited, new MessageEditedPayload(message, seq, Now), ParleyJsonContext.Default.MessageEditedPayload);
        return PublishAsync(UsersWhoSee(message, members), new OutboundFrame(bytes, message.ConversationId));
    }

    public ValueTask MessageDeletedAsync(Message tombstone, long seq, string deletedBy, IReadOnlyList<MemberRecord> members)
    {
        var payload = new MessageDeletedPayload(tombstone.Id, tombstone.ConversationId, seq, deletedBy, Now);
        var bytes = FrameWriter.Serialize(FrameTypes.MessageDeleted, payload, ParleyJsonContext.Default.MessageDeletedPayload);
        return PublishAsync(UsersWhoSee(tombstone, members), new OutboundFrame(bytes, tombstone.ConversationId));
    }

    public async ValueTask MembershipChangedAsync(MembershipResult result)
    {
        var conversationId = result.After.Conversation.Id;
        var members = UserIds(result.After.Members);
        foreach (var (change, evt) in result.Applied)
        {
            byte[] bytes;
            IReadOnlyList<string> recipients = members;
            switch (change)
            {
                case MembershipChange.Add add:
                    bytes = FrameWriter.Serialize(
                        FrameTypes.ParticipantAdded,
                        new ParticipantAddedPayload(conversationId, evt.Seq, add.UserId, add.Role, evt.ActorId, evt.CreatedAt),
                        ParleyJsonContext.Default.ParticipantAddedPayload);
                    break;
                case MembershipChange.Remove remove:
                    bytes = FrameWriter.Serialize(
                        FrameTypes.ParticipantRemoved,
                        new ParticipantRemovedPayload(conversationId, evt.Seq, remove.UserId, evt.ActorId, evt.CreatedAt),
                        ParleyJsonContext.Default.ParticipantRemovedPayload);
                    // The removed user learns of it too, and nothing after it.
                    recipients = [.. members, remove.UserId];
                    break;
                case MembershipChange.SetRole setRole:
                    bytes = FrameWriter.Serialize(
                        FrameTypes.ParticipantUpdated,
                        new ParticipantUpdatedPayload(conversationId, evt.Seq, setRole.UserId, setRole.Role, evt.ActorId, evt.CreatedAt),
                        ParleyJsonContext.Default.ParticipantUpdatedPayload);
                    break;
                default:
                    continue;
            }

            await PublishAsync(recipients, new OutboundFrame(bytes, conversationId));
        }
    }

    /// <summary><c>message_read</c> to every member's devices; <c>message_delivered</c> to the senders whose messages were newly delivered.</summary>
    public async ValueTask WatermarkMovedAsync(WatermarkResult result)
    {
        var user = result.After.UserId;
        if (result.DeliveredAdvanced && result.NotifySenders.Count > 0 && result.After.DeliveredMessageId is { } deliveredId)
        {
            var payload = new ReceiptPayload(result.ConversationId, user, deliveredId, result.After.DeliveredSeq, Now);
            var bytes = FrameWriter.Serialize(FrameTypes.MessageDelivered, payload, ParleyJsonContext.Default.ReceiptPayload);
            await PublishAsync(result.NotifySenders, new OutboundFrame(bytes, result.ConversationId));
        }

        if (result.ReadAdvanced && result.After.ReadMessageId is { } readId)
        {
            var payload = new ReceiptPayload(result.ConversationId, user, readId, result.After.ReadSeq, Now);
            var bytes = FrameWriter.Serialize(FrameTypes.MessageRead, payload, ParleyJsonContext.Default.ReceiptPayload);
            // Only members who can see the message: a later joiner must not learn ids and seqs of history hidden from them.
            var recipients = result.Members.Where(m => m.JoinedSeq < result.After.ReadSeq).Select(m => m.UserId).ToArray();
            await PublishAsync(recipients, new OutboundFrame(bytes, result.ConversationId));
        }
    }

    public ValueTask TypingAsync(Guid conversationId, string userId, bool isTyping, IReadOnlyList<MemberRecord> members)
    {
        var bytes = FrameWriter.Serialize(
            FrameTypes.Typing, new TypingPayload(conversationId, userId, isTyping, Now), ParleyJsonContext.Default.TypingPayload);
        return fanout.PublishAsync(new FanoutMessage(UserIds(members), new OutboundFrame(bytes, conversationId), ExceptUserId: userId), AfterCommit);
    }

    private DateTimeOffset Now => time.GetUtcNow();

    private ValueTask PublishAsync(IReadOnlyList<string> userIds, OutboundFrame frame) =>
        fanout.PublishAsync(new FanoutMessage(userIds, frame), AfterCommit);

    private static string[] UserIds(IReadOnlyList<MemberRecord> members) => members.Select(m => m.UserId).ToArray();

    /// <summary>Changes to a message go only to members who can see it: those who joined before it was sent.</summary>
    private static string[] UsersWhoSee(Message message, IReadOnlyList<MemberRecord> members) =>
        members.Where(m => m.JoinedSeq < message.Seq).Select(m => m.UserId).ToArray();
}
