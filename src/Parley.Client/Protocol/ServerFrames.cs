using System.Buffers;
using System.Text.Json;
using System.Text.Json.Serialization;
using System.Text.Json.Serialization.Metadata;

namespace Parley.Client.Protocol;

/// <summary>
/// Reads a server frame <c>{"type", "payload"}</c> (a socket message, or an element of a sync page's
/// <c>events</c>) without building a DOM: the payload is deserialized once, straight into the type its
/// <c>type</c> names, and events come out as the public <see cref="ParleyEvent"/> records.
/// </summary>
internal static class ServerFrames
{
    public static ServerFrame Parse(ReadOnlySpan<byte> utf8) =>
        JsonSerializer.Deserialize(utf8, WireJson.Default.ServerFrame) ?? throw new JsonException("A frame is a JSON object.");

    /// <summary>The payload's type for a frame type; null for frames this client does not know (ignored: newer servers may add some).</summary>
    internal static JsonTypeInfo? PayloadType(string type) => type switch
    {
        FrameTypes.Connected => WireJson.Default.ConnectedPayload,
        FrameTypes.ConversationCreated => WireJson.Default.ConversationCreatedPayload,
        FrameTypes.NewMessage => WireJson.Default.NewMessagePayload,
        FrameTypes.MessageEdited => WireJson.Default.MessageEditedPayload,
        FrameTypes.MessageDeleted => WireJson.Default.MessageDeletedPayload,
        FrameTypes.MessageDelivered or FrameTypes.MessageRead => WireJson.Default.ReceiptPayload,
        FrameTypes.Typing => WireJson.Default.TypingPayload,
        FrameTypes.Presence => WireJson.Default.PresencePayload,
        FrameTypes.ParticipantAdded => WireJson.Default.ParticipantAddedPayload,
        FrameTypes.ParticipantRemoved => WireJson.Default.ParticipantRemovedPayload,
        FrameTypes.ParticipantUpdated => WireJson.Default.ParticipantUpdatedPayload,
        FrameTypes.HiddenEvent => WireJson.Default.HiddenEventPayload,
        FrameTypes.Cursor or FrameTypes.SyncComplete => WireJson.Default.CursorPayload,
        FrameTypes.SyncReset => WireJson.Default.SyncResetPayload,
        FrameTypes.MessageAck => WireJson.Default.MessageAckPayload,
        FrameTypes.Error => WireJson.Default.ErrorPayload,
        _ => null,
    };

    /// <summary>Wire payloads of events become the public records; other payloads stay as they are.</summary>
    private static object? ToPublic(string type, object? payload) => payload switch
    {
        ConversationCreatedPayload p => new ConversationCreatedEvent
        {
            ConversationId = p.Conversation.Id, Seq = p.Seq, Timestamp = p.Timestamp, Conversation = p.Conversation,
        },
        NewMessagePayload p => new MessageCreatedEvent
        {
            ConversationId = p.Message.ConversationId, Seq = p.Message.Seq, Timestamp = p.Timestamp, Message = p.Message,
        },
        MessageEditedPayload p => new MessageEditedEvent
        {
            ConversationId = p.Message.ConversationId, Seq = p.Seq, Timestamp = p.Timestamp, Message = p.Message,
        },
        MessageDeletedPayload p => new MessageDeletedEvent
        {
            ConversationId = p.ConversationId, Seq = p.Seq, Timestamp = p.Timestamp, MessageId = p.MessageId, DeletedBy = p.DeletedBy,
        },
        ReceiptPayload p when type == FrameTypes.MessageDelivered => new MessageDeliveredEvent
        {
            ConversationId = p.ConversationId, UserId = p.UserId, MessageId = p.MessageId, UpToSeq = p.UpToSeq, Timestamp = p.Timestamp,
        },
        ReceiptPayload p => new MessageReadEvent
        {
            ConversationId = p.ConversationId, UserId = p.UserId, MessageId = p.MessageId, UpToSeq = p.UpToSeq, Timestamp = p.Timestamp,
        },
        TypingPayload p => new TypingEvent { ConversationId = p.ConversationId, UserId = p.UserId, IsTyping = p.IsTyping, Timestamp = p.Timestamp },
        PresencePayload p => new PresenceEvent { UserId = p.UserId, Online = p.Online, LastSeenAt = p.LastSeenAt, Timestamp = p.Timestamp },
        ParticipantAddedPayload p => new ParticipantAddedEvent
        {
            ConversationId = p.ConversationId, Seq = p.Seq, Timestamp = p.Timestamp, UserId = p.UserId, Role = p.Role, AddedBy = p.AddedBy,
        },
        ParticipantRemovedPayload p => new ParticipantRemovedEvent
        {
            ConversationId = p.ConversationId, Seq = p.Seq, Timestamp = p.Timestamp, UserId = p.UserId, RemovedBy = p.RemovedBy,
        },
        ParticipantUpdatedPayload p => new ParticipantUpdatedEvent
        {
            ConversationId = p.ConversationId, Seq = p.Seq, Timestamp = p.Timestamp, UserId = p.UserId, Role = p.Role, UpdatedBy = p.UpdatedBy,
        },
        HiddenEventPayload p => new HiddenEvent { ConversationId = p.ConversationId, Seq = p.Seq, Timestamp = p.Timestamp },
        _ => payload,
    };

    /// <summary>Registered on <see cref="ServerFrame"/>; handles <c>payload</c> before or after <c>type</c>.</summary>
    internal sealed class Converter : JsonConverter<ServerFrame>
    {
        public override ServerFrame Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
        {
            if (reader.TokenType != JsonTokenType.StartObject)
            {
                throw new JsonException("A frame is a JSON object: {\"type\": ..., \"payload\": {...}}.");
            }

            string? type = null;
            object? payload = null;
            var deferred = default(Utf8JsonReader);
            var hasDeferred = false;
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                if (reader.ValueTextEquals("type"u8))
                {
                    reader.Read();
                    type = reader.TokenType == JsonTokenType.String ? reader.GetString() : null;
                    reader.Skip();
                }
                else if (reader.ValueTextEquals("payload"u8))
                {
                    reader.Read();
                    if (type is not null)
                    {
                        payload = ReadPayload(ref reader, type);
                    }
                    else
                    {
                        // The converter sees the whole frame buffered: a copy of the reader is a checkpoint to come back to.
                        deferred = reader;
                        hasDeferred = true;
                        reader.Skip();
                    }
                }
                else
                {
                    reader.Read();
                    reader.Skip();
                }
            }

            if (type is null)
            {
                throw new JsonException("The frame has no string 'type'.");
            }

            if (hasDeferred)
            {
                payload = ReadPayload(ref deferred, type);
            }

            return new ServerFrame(type, ToPublic(type, payload));
        }

        public override void Write(Utf8JsonWriter writer, ServerFrame value, JsonSerializerOptions options) =>
            throw new NotSupportedException("Server frames are only read.");

        private static object? ReadPayload(ref Utf8JsonReader reader, string type)
        {
            var typeInfo = PayloadType(type);
            if (typeInfo is null || reader.TokenType == JsonTokenType.Null)
            {
                reader.Skip();
                return null;
            }

            var start = reader;
            try
            {
                return JsonSerializer.Deserialize(ref reader, typeInfo);
            }
            catch (JsonException error) when (IsPositioned(type))
            {
                // A position that cannot be read would hold back every later event of its conversation, behind a gap
                // that no sync fills (the sync page carries the same payload): keep the position, say it is unreadable.
                reader = start;
                using var payload = JsonDocument.ParseValue(ref reader);
                return Salvage(payload.RootElement, type, error)
                    ?? throw new JsonException($"The payload of '{type}' cannot be read, nor its position: {error.Message}", error);
            }
        }

        private static bool IsPositioned(string type) => type is FrameTypes.ConversationCreated or FrameTypes.NewMessage or FrameTypes.MessageEdited
            or FrameTypes.MessageDeleted or FrameTypes.ParticipantAdded or FrameTypes.ParticipantRemoved or FrameTypes.ParticipantUpdated
            or FrameTypes.HiddenEvent;

        /// <summary>The conversation and seq of a positioned payload that did not read as its type, wherever its type keeps them.</summary>
        private static UnreadableEvent? Salvage(JsonElement payload, string type, JsonException error)
        {
            if (payload.ValueKind != JsonValueKind.Object)
            {
                return null;
            }

            var message = payload.TryGetProperty("message", out var m) && m.ValueKind == JsonValueKind.Object ? m : default;
            var conversation = payload.TryGetProperty("conversation", out var c) && c.ValueKind == JsonValueKind.Object ? c : default;
            Guid? conversationId = GuidOf(payload, "conversation_id") ?? GuidOf(message, "conversation_id") ?? GuidOf(conversation, "id");
            long? seq = LongOf(payload, "seq") ?? LongOf(message, "seq");
            if (conversationId is not { } id || seq is not { } position || position < 1)
            {
                return null;
            }

            return new UnreadableEvent
            {
                ConversationId = id,
                Seq = position,
                Timestamp = payload.TryGetProperty("timestamp", out var t) && t.TryGetDateTimeOffset(out var at) ? at : default,
                Type = type,
                Reason = error.Message,
            };
        }

        private static Guid? GuidOf(JsonElement element, string name) =>
            element.ValueKind == JsonValueKind.Object && element.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String
            && value.TryGetGuid(out var guid) ? guid : null;

        private static long? LongOf(JsonElement element, string name) =>
            element.ValueKind == JsonValueKind.Object && element.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.Number
            && value.TryGetInt64(out var number) ? number : null;
    }
}

/// <summary>Serializes a client frame <c>{"type", "id"?, "payload"}</c> to UTF-8 once.</summary>
internal static class ClientFrames
{
    public static byte[] Serialize<T>(string type, T payload, JsonTypeInfo<T> payloadType, string? id = null)
    {
        var buffer = new ArrayBufferWriter<byte>(128);
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteString("type"u8, type);
            if (id is not null)
            {
                writer.WriteString("id"u8, id);
            }

            writer.WritePropertyName("payload"u8);
            JsonSerializer.Serialize(writer, payload, payloadType);
            writer.WriteEndObject();
        }

        return buffer.WrittenSpan.ToArray();
    }

    public static byte[] Ack(Guid conversationId, long seq) =>
        Serialize(FrameTypes.Ack, new AckPayload(conversationId, seq), WireJson.Default.AckPayload);

    /// <summary>
    /// <paramref name="frameId"/> names the send (its conversation and client_message_id: a device may use one
    /// client_message_id in two conversations), and the server echoes it in an <c>error</c> about the frame.
    /// </summary>
    public static byte[] SendMessage(SendMessageRequest message, string frameId) =>
        Serialize(FrameTypes.SendMessage, message, WireJson.Default.SendMessageRequest, frameId);

    public static byte[] Typing(Guid conversationId, bool isTyping) =>
        Serialize(FrameTypes.Typing, new TypingFramePayload(conversationId, isTyping), WireJson.Default.TypingFramePayload);

    public static byte[] ReadReceipt(Guid messageId) =>
        Serialize(FrameTypes.ReadReceipt, new ReadReceiptPayload(messageId), WireJson.Default.ReadReceiptPayload);
}
