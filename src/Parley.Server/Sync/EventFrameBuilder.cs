using Parley.Server.Broadcasting;
using Parley.Server.Protocol;
using Parley.Server.Realtime;
using Parley.Server.Storage;

namespace Parley.Server.Sync;

/// <summary>
/// Stored events as the frames the live stream sends (catch-up and REST sync replay the same bytes a connected
/// device got, but for current content), and the receipts that moved since a time.
/// </summary>
internal sealed class EventFrameBuilder(IChatStore store, TimeProvider time)
{
    // Receipts carry wall-clock times from several instances: look a little further back than the cursor.
    private static readonly TimeSpan ClockSlack = TimeSpan.FromSeconds(5);

    /// <summary>
    /// The frames of stored events, as the live stream would have sent them to this member (<paramref name="userId"/>).
    /// A former member's events (its window ends at its removal) show the conversation and its messages as they were
    /// when the membership ended: nothing that happened after it leaks through a replay. A current member's
    /// <c>conversation_created</c> carries the conversation as a REST read gives it to that member now: its unread
    /// count and read position are the member's own, as they go with the current <c>last_seq</c> (zeros beside it
    /// told a client that what followed was already read).
    /// </summary>
    public async Task<List<OutboundFrame>> BuildFramesAsync(string userId, IReadOnlyList<UserEvent> events, CancellationToken cancellationToken)
    {
        var frames = new List<OutboundFrame>(events.Count);
        if (events.Count == 0)
        {
            return frames;
        }

        var current = events.Where(e => e.LeftSeq is null && e.Event.MessageId is not null).Select(e => e.Event.MessageId!.Value).ToList();
        var messages = new Dictionary<Guid, Message?>();
        foreach (var (id, message) in current.Count == 0 ? new Dictionary<Guid, Message>() : await store.GetMessagesAsync(current, cancellationToken))
        {
            messages[id] = message;
        }

        var asOf = new Dictionary<Guid, IReadOnlyDictionary<Guid, Message?>>();
        foreach (var former in events.Where(e => e.LeftSeq is not null && e.Event.MessageId is not null).GroupBy(e => (e.Event.ConversationId, e.LeftSeq!.Value)))
        {
            asOf[former.Key.ConversationId] = await store.GetMessagesAsOfAsync(
                former.Key.ConversationId, former.Key.Value, former.Select(e => e.Event.MessageId!.Value).ToList(), cancellationToken);
        }

        var conversations = new Dictionary<Guid, Conversation?>();
        foreach (var (evt, _, joinedSeq, leftSeq) in events)
        {
            var message = evt.MessageId is { } messageId
                ? (leftSeq is null ? messages : asOf[evt.ConversationId]).GetValueOrDefault(messageId)
                : null;
            switch (evt.Type)
            {
                case EventTypes.ConversationCreated:
                    if (!conversations.TryGetValue(evt.ConversationId, out var conversation))
                    {
                        conversations[evt.ConversationId] = conversation = leftSeq is { } endedAt
                            ? await store.GetConversationAsOfAsync(evt.ConversationId, endedAt, cancellationToken) is { } then
                                ? ConversationViews.ToView(then)
                                : null
                            : await store.GetConversationAsync(evt.ConversationId, cancellationToken) is { } snapshot
                                ? await CurrentViewAsync(snapshot, userId, cancellationToken)
                                : null;
                    }

                    frames.Add(conversation is null
                        ? EventFrames.Hidden(evt.ConversationId, evt.Seq, evt.CreatedAt)
                        : EventFrames.ConversationCreated(conversation, evt.Seq, evt.CreatedAt));
                    break;
                case EventTypes.MessageCreated:
                    // A former member's message deleted after the membership ended: its content is gone, and the
                    // deletion is not the former member's to learn; the position is filled without content.
                    frames.Add(message is null
                        ? EventFrames.Hidden(evt.ConversationId, evt.Seq, evt.CreatedAt)
                        : EventFrames.NewMessage(message, evt.CreatedAt));
                    break;
                case EventTypes.MessageEdited or EventTypes.MessageDeleted:
                    frames.Add(
                        message is null || message.Seq <= joinedSeq ? EventFrames.Hidden(evt.ConversationId, evt.Seq, evt.CreatedAt)
                        : evt.Type == EventTypes.MessageEdited ? EventFrames.MessageEdited(message, evt.Seq, evt.CreatedAt)
                        : EventFrames.MessageDeleted(message.Id, evt.ConversationId, evt.Seq, evt.ActorId, evt.CreatedAt));
                    break;
                default:
                    frames.Add(EventFrames.Participant(evt));
                    break;
            }
        }

        return frames;
    }

    private async Task<Conversation?> CurrentViewAsync(ConversationSnapshot snapshot, string userId, CancellationToken cancellationToken)
    {
        // Removed since its events were read: nothing of now is the user's to see (the position goes as hidden_event, and
        // the next read shows the removal), as GET of the conversation answers 404 in the same race.
        if (snapshot.Find(userId) is not { } member)
        {
            return null;
        }

        return ConversationViews.ToView(snapshot, member, await store.GetLastMessageAsync(snapshot, cancellationToken));
    }

    /// <summary>Current watermarks that moved since <paramref name="since"/>, for messages the user can see.</summary>
    public async Task<List<WatermarkFrame>> WatermarkFramesAsync(string userId, DateTimeOffset since, CancellationToken cancellationToken)
    {
        var frames = new List<WatermarkFrame>();
        var now = time.GetUtcNow();
        foreach (var (conversationId, member, viewerJoinedSeq) in await store.ListMovedWatermarksAsync(userId, since - ClockSlack, cancellationToken))
        {
            if (member.DeliveredMessageId is { } delivered && member.DeliveredSeq > viewerJoinedSeq)
            {
                frames.Add(new(EventFrames.Receipt(FrameTypes.MessageDelivered, conversationId, member.UserId, delivered, member.DeliveredSeq, now), conversationId, member.DeliveredSeq));
            }

            if (member.ReadMessageId is { } read && member.ReadSeq > viewerJoinedSeq)
            {
                frames.Add(new(EventFrames.Receipt(FrameTypes.MessageRead, conversationId, member.UserId, read, member.ReadSeq, now), conversationId, member.ReadSeq));
            }
        }

        return frames;
    }
}

/// <summary>A receipt frame of a watermark, and the message it names (conversation and seq).</summary>
internal readonly record struct WatermarkFrame(OutboundFrame Frame, Guid ConversationId, long UpToSeq);
