using Parley.Server.Protocol;
using Parley.Server.Realtime;
using Parley.Server.Storage;

namespace Parley.Server.Broadcasting;

/// <summary>
/// The frames of conversation events, built the same way for the live stream and for catch-up, so that a
/// replayed event is byte-for-byte the frame a connected device got (but for current content).
/// </summary>
internal static class EventFrames
{
    public static OutboundFrame ConversationCreated(Conversation conversation, long seq, DateTimeOffset timestamp) =>
        new(
            FrameWriter.Serialize(
                FrameTypes.ConversationCreated, new ConversationCreatedPayload(conversation, seq, timestamp), ParleyJsonContext.Default.ConversationCreatedPayload),
            FrameTypes.ConversationCreated,
            conversation.Id,
            seq);

    public static OutboundFrame NewMessage(Message message, DateTimeOffset timestamp) =>
        new(
            MessageFrames.NewMessage(message, timestamp),
            FrameTypes.NewMessage,
            message.ConversationId,
            seq: message.Seq,
            deliverySeq: message.Seq,
            senderId: message.SenderId);

    public static OutboundFrame MessageEdited(Message message, long seq, DateTimeOffset timestamp) =>
        new(
            FrameWriter.Serialize(
                FrameTypes.MessageEdited, new MessageEditedPayload(message, message.ConversationId, seq, timestamp), ParleyJsonContext.Default.MessageEditedPayload),
            FrameTypes.MessageEdited,
            message.ConversationId,
            seq);

    public static OutboundFrame MessageDeleted(Guid messageId, Guid conversationId, long seq, string deletedBy, DateTimeOffset timestamp) =>
        new(
            FrameWriter.Serialize(
                FrameTypes.MessageDeleted, new MessageDeletedPayload(messageId, conversationId, seq, deletedBy, timestamp),
                ParleyJsonContext.Default.MessageDeletedPayload),
            FrameTypes.MessageDeleted,
            conversationId,
            seq);

    /// <summary>A position whose event the recipient may not see: it fills the position without content.</summary>
    public static OutboundFrame Hidden(Guid conversationId, long seq, DateTimeOffset timestamp) =>
        new(
            FrameWriter.Serialize(FrameTypes.HiddenEvent, new HiddenEventPayload(conversationId, seq, timestamp), ParleyJsonContext.Default.HiddenEventPayload),
            FrameTypes.HiddenEvent,
            conversationId,
            seq);

    /// <summary>participant_added, participant_removed or participant_updated, from the stored event.</summary>
    public static OutboundFrame Participant(ConversationEvent evt) => evt.Type switch
    {
        EventTypes.ParticipantAdded => new(
            FrameWriter.Serialize(
                FrameTypes.ParticipantAdded,
                new ParticipantAddedPayload(evt.ConversationId, evt.Seq, evt.UserId!, evt.Role!, evt.ActorId, evt.CreatedAt),
                ParleyJsonContext.Default.ParticipantAddedPayload),
            FrameTypes.ParticipantAdded,
            evt.ConversationId,
            evt.Seq),
        EventTypes.ParticipantRemoved => new(
            FrameWriter.Serialize(
                FrameTypes.ParticipantRemoved,
                new ParticipantRemovedPayload(evt.ConversationId, evt.Seq, evt.UserId!, evt.ActorId, evt.CreatedAt),
                ParleyJsonContext.Default.ParticipantRemovedPayload),
            FrameTypes.ParticipantRemoved,
            evt.ConversationId,
            evt.Seq),
        EventTypes.ParticipantUpdated => new(
            FrameWriter.Serialize(
                FrameTypes.ParticipantUpdated,
                new ParticipantUpdatedPayload(evt.ConversationId, evt.Seq, evt.UserId!, evt.Role!, evt.ActorId, evt.CreatedAt),
                ParleyJsonContext.Default.ParticipantUpdatedPayload),
            FrameTypes.ParticipantUpdated,
            evt.ConversationId,
            evt.Seq),
        _ => throw new ArgumentException($"{evt.Type} is not a participant event.", nameof(evt)),
    };

    /// <summary><c>message_delivered</c> or <c>message_read</c> (<paramref name="type"/>, a FrameTypes constant): the user has everything up to and including the message.</summary>
    public static OutboundFrame Receipt(string type, Guid conversationId, string userId, Guid messageId, long upToSeq, DateTimeOffset timestamp) =>
        new(
            FrameWriter.Serialize(type, new ReceiptPayload(conversationId, userId, messageId, upToSeq, timestamp), ParleyJsonContext.Default.ReceiptPayload),
            type,
            conversationId);

    /// <summary>
    /// <c>presence</c>: the user came online or went offline (no conversation: it concerns every shared one). Transient
    /// like typing: not held back with the live events during a catch-up (presence is not replayed, and a
    /// reconnecting device looks it up), so a storm of presence changes cannot fill a resuming socket's hold list and
    /// close it with 4001.
    /// </summary>
    public static OutboundFrame Presence(string userId, bool online, DateTimeOffset? lastSeenAt, DateTimeOffset timestamp) =>
        new(
            FrameWriter.Serialize(FrameTypes.Presence, new PresencePayload(userId, online, lastSeenAt, timestamp), ParleyJsonContext.Default.PresencePayload),
            FrameTypes.Presence,
            transient: true);
}
