using System.Globalization;
using System.Security.Cryptography;
using System.Text;
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
/// says why): the conversation's current members who joined before the message, but the sender, with no device
/// connected according to <see cref="IDeviceDirectory"/>; their conversations are read only for the notifications that go out.
/// </summary>
internal sealed class EventRecordBuilder(IChatStore store, IDeviceDirectory devices, NotificationOptions notifications)
{
    public async Task<IReadOnlyList<EventRecord>> BuildAsync(OutboxBatch batch, CancellationToken cancellationToken)
    {
        var pending = new List<(OutboxEvent Event, Message Message, IReadOnlyList<string> Recipients)>();
        var offline = new HashSet<string>(StringComparer.Ordinal);
        if (notifications.Enabled)
        {
            foreach (var outbox in batch.Changes.Where(e => e.Event.Type == EventTypes.MessageCreated))
            {
                if (outbox.Event.MessageId is not { } id || !batch.Messages.TryGetValue(id, out var message) || message.DeletedAt is not null)
                {
                    continue; // a message deleted before its notification went out needs no push
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
        var eventId = StableId($"event:{e.ConversationId:N}:{e.Seq}:{e.CreatedAt.ToUnixTimeMilliseconds()}");
        var body = Write(eventId, type, e.CreatedAt, e.ConversationId, e.Seq, outbox.Pos, w =>
        {
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
                    w.WriteString("message_id", e.MessageId?.ToString());
                    w.WriteString("sender_id", message?.SenderId ?? e.ActorId);
                    w.WriteString("message_type", message?.MessageType);
                    w.WriteString("content", message?.Content);
                    w.WriteString("reply_to_id", message?.ReplyToId?.ToString());
                    w.WritePropertyName("mentions");
                    JsonSerializer.Serialize(w, message?.Mentions, EventsJsonContext.Default.IReadOnlyListMention);
                    w.WritePropertyName("media");
                    JsonSerializer.Serialize(w, message?.Media, EventsJsonContext.Default.Media);
                    w.WritePropertyName("location");
                    JsonSerializer.Serialize(w, message?.Location, EventsJsonContext.Default.Location);
                    WriteTime(w, "created_at", message?.CreatedAt ?? e.CreatedAt);
                    WriteTime(w, "edited_at", message?.EditedAt);
                    WriteTime(w, "deleted_at", message?.DeletedAt);
                    break;
                case RecordTypes.MessageEdited:
                    w.WriteString("message_id", e.MessageId?.ToString());
                    w.WriteString("actor_id", e.ActorId);
                    w.WriteString("content", message?.Content);
                    w.WritePropertyName("mentions");
                    JsonSerializer.Serialize(w, message?.Mentions, EventsJsonContext.Default.IReadOnlyListMention);
                    WriteTime(w, "edited_at", message?.EditedAt ?? e.CreatedAt);
                    WriteTime(w, "deleted_at", message?.DeletedAt);
                    break;
                case RecordTypes.MessageDeleted:
                    w.WriteString("message_id", e.MessageId?.ToString());
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
        var eventId = StableId($"notification:{e.ConversationId:N}:{e.Seq}:{e.CreatedAt.ToUnixTimeMilliseconds()}:{userId}");
        var (preview, truncated) = Preview(message.Content);
        var body = Write(eventId, RecordTypes.NotificationMessage, e.CreatedAt, e.ConversationId, e.Seq, outbox.Pos, w =>
        {
            w.WriteString("user_id", userId);
            w.WriteString("conversation_type", conversation?.Type);
            w.WriteString("conversation_name", conversation?.Name);
            w.WriteString("message_id", message.Id.ToString());
            w.WriteString("sender_id", message.SenderId);
            w.WriteString("message_type", message.MessageType);
            w.WriteString("preview", preview);
            w.WriteBoolean("preview_truncated", truncated);
            w.WriteBoolean("mentioned", message.Mentions?.Any(m => m.UserId == userId) == true);
            w.WriteNumber("unread_count", unread);
        });
        return new EventRecord(EventTopic.Notifications, userId, eventId, RecordTypes.NotificationMessage, RecordTypes.Version, body);
    }

    private static EventRecord Receipt(ReceiptLogEntry receipt)
    {
        var type = receipt.Kind == ReceiptKinds.Read ? RecordTypes.ReceiptRead : RecordTypes.ReceiptDelivered;
        var eventId = StableId($"receipt:{receipt.Id}:{receipt.ConversationId:N}:{receipt.UserId}:{receipt.Kind}:{receipt.Seq}");
        var body = Write(eventId, type, receipt.CreatedAt, receipt.ConversationId, receipt.Seq, null, w =>
        {
            w.WriteString("user_id", receipt.UserId);
            w.WriteString("message_id", receipt.MessageId.ToString());
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

        // Cut at a text element boundary: never half of a surrogate pair or of a combined character.
        var length = 0;
        var elements = StringInfo.GetTextElementEnumerator(content);
        while (elements.MoveNext() && elements.ElementIndex + elements.GetTextElement().Length <= notifications.PreviewLength)
        {
            length = elements.ElementIndex + elements.GetTextElement().Length;
        }

        return (content[..length], true);
    }

    private static byte[] Write(
        string eventId, string type, DateTimeOffset occurredAt, Guid conversationId, long seq, long? pos, Action<Utf8JsonWriter> payload) =>
        Utf8Scratch.WriteJson((eventId, type, occurredAt, conversationId, seq, pos, payload), static (w, r) =>
        {
            w.WriteStartObject();
            w.WriteString("event_id", r.eventId);
            w.WriteString("type", r.type);
            w.WriteNumber("version", RecordTypes.Version);
            WriteTime(w, "occurred_at", r.occurredAt);
            w.WriteString("conversation_id", r.conversationId);
            w.WriteNumber("seq", r.seq);
            if (r.pos is { } p)
            {
                w.WriteNumber("pos", p);
            }
            else
            {
                w.WriteNull("pos");
            }

            w.WriteStartObject("payload");
            r.payload(w);
            w.WriteEndObject();
            w.WriteEndObject();
        });

    private static void WriteTime(Utf8JsonWriter w, string name, DateTimeOffset? value)
    {
        if (value is { } v)
        {
            w.WriteString(name, v.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture));
        }
        else
        {
            w.WriteNull(name);
        }
    }

    /// <summary>A name-based UUID (SHA-256 of the record's identity, version 8): the same record always gets the same id.</summary>
    internal static string StableId(string identity)
    {
        Span<byte> hash = stackalloc byte[32];
        SHA256.HashData(Encoding.UTF8.GetBytes(identity), hash);
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
