using System.Buffers;
using System.Globalization;
using System.Security.Cryptography;
using System.Text.Unicode;
using System.Text.Json;
using System.Text.Json.Serialization;
using Parley.Server.Protocol;
using Parley.Server.Storage;

namespace Parley.Server.Events;

/// <summary>Record types and their schema versions (docs/events.md; JSON Schemas in docs/events/schemas).</summary>
internal static class RecordTypes
{
    public const int Version = 1;

    public const string ConversationCreated = "conversation.created";
    public const string MessageCreated = "message.created";
    public const string MessageEdited = "message.edited";
    public const string MessageDeleted = "message.deleted";
    public const string ParticipantAdded = "participant.added";
    public const string ParticipantRemoved = "participant.removed";
    public const string ParticipantRoleChanged = "participant.role_changed";
    public const string ReceiptDelivered = "receipt.delivered";
    public const string ReceiptRead = "receipt.read";
    public const string NotificationMessage = "notification.message";

    public static readonly IReadOnlyList<string> All =
    [
        ConversationCreated, MessageCreated, MessageEdited, MessageDeleted, ParticipantAdded, ParticipantRemoved, ParticipantRoleChanged,
        ReceiptDelivered, ReceiptRead, NotificationMessage,
    ];

    public static string? Of(string eventType) => eventType switch
    {
        EventTypes.ConversationCreated => ConversationCreated,
        EventTypes.MessageCreated => MessageCreated,
        EventTypes.MessageEdited => MessageEdited,
        EventTypes.MessageDeleted => MessageDeleted,
        EventTypes.ParticipantAdded => ParticipantAdded,
        EventTypes.ParticipantRemoved => ParticipantRemoved,
        EventTypes.ParticipantUpdated => ParticipantRoleChanged,
        _ => null,
    };
}

/// <summary>
/// Builds the records of a batch read from the outbox: each event's record in stream order, the notifications of each new
/// message right after it, then the receipts. Content is the message as the store has it now (the log references
/// messages, it never copies them). Notification recipients are decided here, when the relay publishes (docs/events.md
/// says why): the conversation's current members who joined before the message and have not had it delivered yet, but
/// the sender, with no device connected according to <see cref="IDeviceDirectory"/>, for messages younger than
/// <see cref="NotificationOptions.MaxAge"/>; their conversations are read only for the notifications that go out. None at
/// all for a sink that takes none (<see cref="IEventSink.WantsNotifications"/>, the constructor's last argument).
/// </summary>
internal sealed class EventRecordBuilder(
    IChatStore store, IDeviceDirectory devices, NotificationOptions notifications, TimeProvider time, bool buildNotifications = true)
{
    /// <summary>
    /// The batch cut so that its records stay within <paramref name="maxRecords"/>, counting every notification candidate
    /// (an upper bound: only the offline ones get one): its changes and receipts up to the one that would pass it (at least
    /// one), positions to record moved back to match. Receipts follow the events of a snapshot, so a batch cut among its
    /// events keeps none. Without the cut, a catch-up through a busy large group makes one pass of hundreds of thousands
    /// of notifications, built in memory and published before any position is recorded. <c>Cut</c>: more is waiting.
    /// </summary>
    public (OutboxBatch Batch, bool Cut) Bounded(OutboxBatch batch, int maxRecords, long afterReceiptPos)
    {
        var notify = notifications.Enabled && buildNotifications;
        long records = 0;
        for (var i = 0; i < batch.Changes.Count; i++)
        {
            var e = batch.Changes[i].Event;
            records += 1 + (notify && e.Type == EventTypes.MessageCreated ? batch.Recipients.GetValueOrDefault((e.ConversationId, e.Seq))?.Count ?? 0 : 0);
            if (records > maxRecords && i > 0)
            {
                return (batch with { Changes = batch.Changes.Take(i).ToList(), WatermarkMoves = [], UptoPos = batch.Changes[i - 1].Pos, UptoReceiptPos = afterReceiptPos }, true);
            }
        }

        var room = maxRecords - records;
        if (batch.WatermarkMoves.Count > room && (room > 0 || batch.Changes.Count > 0))
        {
            var kept = (int)Math.Max(room, 0);
            return (batch with
            {
                WatermarkMoves = batch.WatermarkMoves.Take(kept).ToList(),
                UptoReceiptPos = kept > 0 ? batch.WatermarkMoves[kept - 1].Pos : afterReceiptPos,
            }, true);
        }

        return (batch, false);
    }

    public async Task<IReadOnlyList<EventRecord>> BuildAsync(OutboxBatch batch, CancellationToken cancellationToken)
    {
        var pending = new List<(OutboxEvent Event, Message Message, IReadOnlyList<string> Recipients)>();
        var offline = new HashSet<string>(StringComparer.Ordinal);
        if (notifications.Enabled && buildNotifications)
        {
            var oldest = time.GetUtcNow() - notifications.MaxAge;
            foreach (var outbox in batch.Changes.Where(e => e.Event.Type == EventTypes.MessageCreated))
            {
                if (outbox.Event.MessageId is not { } id || !batch.Messages.TryGetValue(id, out var message) || message.DeletedAt is not null)
                {
                    continue; // a message deleted before its notification went out needs no push
                }

                if (message.CreatedAt < oldest)
                {
                    continue; // published late (a sink new to an old log, a long outage, a replay): a push would be stale
                }

                // The store's candidates leave the sender out already.
                if (batch.Recipients.GetValueOrDefault((outbox.Event.ConversationId, outbox.Event.Seq)) is { Count: > 0 } recipients)
                {
                    pending.Add((outbox, message, recipients));
                }
            }

            var candidates = pending.SelectMany(p => p.Recipients).ToHashSet(StringComparer.Ordinal);
            if (candidates.Count > 0)
            {
                var online = await devices.OnlineAmongAsync(candidates, cancellationToken);
                offline.UnionWith(candidates.Where(u => !online.Contains(u)));
            }
        }

        var unread = offline.Count > 0 ? await store.GetUnreadTotalsAsync(offline, cancellationToken) : new Dictionary<string, long>();
        pending.RemoveAll(p => !p.Recipients.Any(offline.Contains));
        // The conversations of the notifications that go out (most recipients are online: usually none).
        var conversations = pending.Count > 0
            ? await store.GetConversationRecordsAsync(pending.Select(p => p.Event.Event.ConversationId).ToHashSet(), cancellationToken)
            : new Dictionary<Guid, ConversationRecord>();
        var byEvent = pending.ToDictionary(p => (p.Event.Event.ConversationId, p.Event.Event.Seq));
        var records = new List<EventRecord>(batch.Changes.Count + batch.WatermarkMoves.Count);
        foreach (var outbox in batch.Changes)
        {
            if (Event(outbox, batch) is { } record)
            {
                records.Add(record);
            }

            if (byEvent.TryGetValue((outbox.Event.ConversationId, outbox.Event.Seq), out var notify))
            {
                var conversation = conversations.GetValueOrDefault(outbox.Event.ConversationId);
                foreach (var user in notify.Recipients.Where(offline.Contains))
                {
                    records.Add(Notification(outbox, notify.Message, conversation, user, unread.GetValueOrDefault(user)));
                }
            }
        }

        foreach (var receipt in batch.WatermarkMoves)
        {
            records.Add(Receipt(receipt));
        }

        return records;
    }

    private static EventRecord? Event(OutboxEvent outbox, OutboxBatch batch)
    {
        var e = outbox.Event;
        if (RecordTypes.Of(e.Type) is not { } type)
        {
            return null;
        }

        var message = e.MessageId is { } id ? batch.Messages.GetValueOrDefault(id) : null;
        var eventId = StableId(
            e, static (Span<byte> d, ConversationEvent e, out int n) =>
                Utf8.TryWrite(d, CultureInfo.InvariantCulture, $"event:{e.ConversationId:N}:{e.Seq}:{e.CreatedAt.ToUnixTimeMilliseconds()}", out n));
        var envelope = new Envelope(eventId, type, e.CreatedAt, e.ConversationId, e.Seq, outbox.Pos);
        var body = Write(envelope, (Outbox: outbox, Batch: batch, Message: message), static (w, type, state) =>
        {
            var (outbox, batch, message) = state;
            var e = outbox.Event;
            switch (type)
            {
                case RecordTypes.ConversationCreated:
                    var conversation = batch.Conversations.GetValueOrDefault(e.ConversationId);
                    w.WriteString("conversation_type", conversation?.Type);
                    w.WriteString("name", conversation?.Name);
                    w.WriteString("created_by", e.ActorId);
                    w.WriteStartArray("members");
                    foreach (var member in outbox.Roster ?? [])
                    {
                        w.WriteStartObject();
                        w.WriteString("user_id", member.UserId);
                        w.WriteString("role", member.Role);
                        w.WriteEndObject();
                    }

                    w.WriteEndArray();
                    break;
                case RecordTypes.MessageCreated:
                    w.WriteNullable("message_id"u8, e.MessageId);
                    w.WriteString("sender_id", message?.SenderId ?? e.ActorId);
                    w.WriteString("message_type", message?.MessageType);
                    w.WriteString("content", message?.Content);
                    w.WriteNullable("reply_to_id"u8, message?.ReplyToId);
                    w.WritePropertyName("mentions");
                    JsonSerializer.Serialize(w, message?.Mentions, EventsJsonContext.Default.IReadOnlyListMention);
                    w.WritePropertyName("media");
                    JsonSerializer.Serialize(w, message?.Media, EventsJsonContext.Default.Media);
                    w.WritePropertyName("location");
                    JsonSerializer.Serialize(w, message?.Location, EventsJsonContext.Default.Location);
                    w.WriteNullable("created_at"u8, message?.CreatedAt ?? e.CreatedAt);
                    w.WriteNullable("edited_at"u8, message?.EditedAt);
                    w.WriteNullable("deleted_at"u8, message?.DeletedAt);
                    break;
                case RecordTypes.MessageEdited:
                    w.WriteNullable("message_id"u8, e.MessageId);
                    w.WriteString("actor_id", e.ActorId);
                    w.WriteString("content", message?.Content);
                    w.WritePropertyName("mentions");
                    JsonSerializer.Serialize(w, message?.Mentions, EventsJsonContext.Default.IReadOnlyListMention);
                    w.WriteNullable("edited_at"u8, message?.EditedAt ?? e.CreatedAt);
                    w.WriteNullable("deleted_at"u8, message?.DeletedAt);
                    break;
                case RecordTypes.MessageDeleted:
                    w.WriteNullable("message_id"u8, e.MessageId);
                    w.WriteString("actor_id", e.ActorId);
                    break;
                default: // participant changes
                    w.WriteString("user_id", e.UserId);
                    w.WriteString("role", type == RecordTypes.ParticipantRemoved ? null : e.Role);
                    w.WriteString("actor_id", e.ActorId);
                    break;
            }
        });
        return new EventRecord(EventTopic.Events, e.ConversationId.ToString(), eventId, type, RecordTypes.Version, body);
    }

    private EventRecord Notification(OutboxEvent outbox, Message message, ConversationRecord? conversation, string userId, long unread)
    {
        var e = outbox.Event;
        var eventId = StableId(
            (Event: e, UserId: userId), static (Span<byte> d, (ConversationEvent Event, string UserId) s, out int n) =>
                Utf8.TryWrite(
                    d, CultureInfo.InvariantCulture,
                    $"notification:{s.Event.ConversationId:N}:{s.Event.Seq}:{s.Event.CreatedAt.ToUnixTimeMilliseconds()}:{s.UserId}", out n));
        var (preview, truncated) = Preview(message.Content);
        var envelope = new Envelope(eventId, RecordTypes.NotificationMessage, e.CreatedAt, e.ConversationId, e.Seq, outbox.Pos);
        var body = Write(envelope, (Message: message, Conversation: conversation, UserId: userId, Unread: unread, Preview: preview, Truncated: truncated), static (w, _, s) =>
        {
            w.WriteString("user_id", s.UserId);
            w.WriteString("conversation_type", s.Conversation?.Type);
            w.WriteString("conversation_name", s.Conversation?.Name);
            w.WriteString("message_id", s.Message.Id);
            w.WriteString("sender_id", s.Message.SenderId);
            w.WriteString("message_type", s.Message.MessageType);
            w.WriteString("preview", s.Preview);
            w.WriteBoolean("preview_truncated", s.Truncated);
            w.WriteBoolean("mentioned", s.Message.Mentions?.Any(m => m.UserId == s.UserId) == true);
            w.WriteNumber("unread_count", s.Unread);
        });
        return new EventRecord(EventTopic.Notifications, userId, eventId, RecordTypes.NotificationMessage, RecordTypes.Version, body);
    }

    private static EventRecord Receipt(ReceiptLogEntry receipt)
    {
        var type = receipt.Kind == ReceiptKinds.Read ? RecordTypes.ReceiptRead : RecordTypes.ReceiptDelivered;
        var eventId = StableId(
            receipt, static (Span<byte> d, ReceiptLogEntry r, out int n) =>
                Utf8.TryWrite(d, CultureInfo.InvariantCulture, $"receipt:{r.Id}:{r.ConversationId:N}:{r.UserId}:{r.Kind}:{r.Seq}", out n));
        var envelope = new Envelope(eventId, type, receipt.CreatedAt, receipt.ConversationId, receipt.Seq, null);
        var body = Write(envelope, receipt, static (w, _, receipt) =>
        {
            w.WriteString("user_id", receipt.UserId);
            w.WriteString("message_id", receipt.MessageId);
        });
        return new EventRecord(EventTopic.Events, receipt.ConversationId.ToString(), eventId, type, RecordTypes.Version, body);
    }

    private (string? Preview, bool Truncated) Preview(string? content)
    {
        if (content is null || notifications.Preview == NotificationPreview.None)
        {
            return (null, false);
        }

        if (notifications.Preview == NotificationPreview.Full || content.Length <= notifications.PreviewLength)
        {
            return (content, false);
        }

        // Cut at a text element boundary: never half of a surrogate pair or of a combined character. The first element
        // stays even when it alone is longer than the preview (an emoji of many code units): never an empty preview.
        var length = 0;
        var elements = StringInfo.GetTextElementEnumerator(content);
        while (elements.MoveNext() && (length == 0 || elements.ElementIndex + elements.GetTextElement().Length <= notifications.PreviewLength))
        {
            length = elements.ElementIndex + elements.GetTextElement().Length;
        }

        return (content[..length], true);
    }

    /// <summary>What every record starts with, before its payload.</summary>
    private readonly record struct Envelope(string EventId, string Type, DateTimeOffset OccurredAt, Guid ConversationId, long Seq, long? Pos);

    /// <summary>A record's bytes: the envelope, then the payload <paramref name="payload"/> writes (given the type and its state).</summary>
    private static byte[] Write<TState>(Envelope envelope, TState state, Action<Utf8JsonWriter, string, TState> payload) =>
        Utf8Scratch.WriteJson((Envelope: envelope, State: state, Payload: payload), static (w, r) =>
        {
            var e = r.Envelope;
            w.WriteStartObject();
            w.WriteString("event_id", e.EventId);
            w.WriteString("type", e.Type);
            w.WriteNumber("version", RecordTypes.Version);
            w.WriteNullable("occurred_at"u8, e.OccurredAt);
            w.WriteString("conversation_id", e.ConversationId);
            w.WriteNumber("seq", e.Seq);
            if (e.Pos is { } p)
            {
                w.WriteNumber("pos", p);
            }
            else
            {
                w.WriteNull("pos");
            }

            w.WriteStartObject("payload");
            r.Payload(w, e.Type, r.State);
            w.WriteEndObject();
            w.WriteEndObject();
        });

    /// <summary>Writes a record's identity as UTF-8 into the span; false when it does not fit.</summary>
    private delegate bool IdentityWriter<TState>(Span<byte> destination, TState state, out int written);

    /// <summary>
    /// A name-based UUID (SHA-256 of the record's identity, version 8): the same record always gets the same id. The
    /// identity is written as UTF-8 on the stack (a larger pooled buffer for a long one), not built as a string first.
    /// </summary>
    private static string StableId<TState>(TState state, IdentityWriter<TState> identity)
    {
        Span<byte> text = stackalloc byte[256];
        if (identity(text, state, out var written))
        {
            return StableId(text[..written]);
        }

        for (var size = 1024; ; size *= 2)
        {
            var rented = ArrayPool<byte>.Shared.Rent(size);
            try
            {
                if (identity(rented, state, out written))
                {
                    return StableId(rented.AsSpan(0, written));
                }
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(rented);
            }
        }
    }

    private static string StableId(ReadOnlySpan<byte> identity)
    {
        Span<byte> hash = stackalloc byte[32];
        SHA256.HashData(identity, hash);
        hash[6] = (byte)((hash[6] & 0x0F) | 0x80);
        hash[8] = (byte)((hash[8] & 0x3F) | 0x80);
        return new Guid(hash[..16], bigEndian: true).ToString();
    }
}

/// <summary>The message parts as records carry them: snake_case, nulls written.</summary>
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower)]
[JsonSerializable(typeof(IReadOnlyList<Mention>))]
[JsonSerializable(typeof(Media))]
[JsonSerializable(typeof(Location))]
internal sealed partial class EventsJsonContext : JsonSerializerContext;
