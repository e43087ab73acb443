using System.Text.Json;
using Parley.Server.Storage;

namespace Parley.Server.Protocol;

/// <summary>
/// The two frames every message is sent in, <c>new_message</c> and <c>message_ack</c>, written by hand: byte for byte
/// what <see cref="FrameWriter"/> makes of <see cref="NewMessagePayload"/> and <see cref="MessageAckPayload"/> through
/// <see cref="ParleyJsonContext"/> (<c>MessageFramesTests</c> compares them), without the serializer's metadata path,
/// which allocates a write stack for every nested object. System.Text.Json's generated fast path cannot serve these:
/// it writes timestamps in .NET's own format, not the wire's (<see cref="UtcTimestampConverter"/>).
/// A property added to <see cref="Message"/> or its parts must be added here too (the tests fail until it is).
/// </summary>
internal static class MessageFrames
{
    public static byte[] NewMessage(Message message, DateTimeOffset timestamp) =>
        Frame(FrameTypes.NewMessage, (message, timestamp), static (writer, payload) =>
        {
            writer.WritePropertyName("message"u8);
            Write(writer, payload.message);
            writer.WritePropertyName("timestamp"u8);
            UtcTimestampConverter.WriteValue(writer, payload.timestamp);
        });

    public static byte[] MessageAck(string clientMessageId, Message message) =>
        Frame(FrameTypes.MessageAck, (clientMessageId, message), static (writer, payload) =>
        {
            writer.WriteString("client_message_id"u8, payload.clientMessageId);
            writer.WritePropertyName("message"u8);
            Write(writer, payload.message);
        });

    /// <summary><c>{"type": ..., "payload": {...}}</c>, as <see cref="FrameWriter"/> writes it; <paramref name="payload"/> writes the payload's properties.</summary>
    private static byte[] Frame<TState>(string type, TState state, Action<Utf8JsonWriter, TState> payload) =>
        Utf8Scratch.WriteJson((type, state, payload), static (writer, frame) =>
        {
            writer.WriteStartObject();
            writer.WriteString("type"u8, frame.type);
            writer.WriteStartObject("payload"u8);
            frame.payload(writer, frame.state);
            writer.WriteEndObject();
            writer.WriteEndObject();
        });

    private static void Write(Utf8JsonWriter writer, Message message)
    {
        writer.WriteStartObject();
        writer.WriteString("id"u8, message.Id);
        writer.WriteString("conversation_id"u8, message.ConversationId);
        writer.WriteNumber("seq"u8, message.Seq);
        writer.WriteString("sender_id"u8, message.SenderId);
        writer.WriteString("message_type"u8, message.MessageType);
        writer.WriteString("content"u8, message.Content);
        writer.WriteNullable("reply_to_id"u8, message.ReplyToId);
        writer.WritePropertyName("mentions"u8);
        WriteOrNull(writer, message.Mentions, WriteMentions);
        writer.WritePropertyName("media"u8);
        WriteOrNull(writer, message.Media, WriteMedia);
        writer.WritePropertyName("location"u8);
        WriteOrNull(writer, message.Location, WriteLocation);
        writer.WriteString("client_message_id"u8, message.ClientMessageId);
        writer.WritePropertyName("created_at"u8);
        UtcTimestampConverter.WriteValue(writer, message.CreatedAt);
        writer.WriteNullable("edited_at"u8, message.EditedAt);
        writer.WriteNullable("deleted_at"u8, message.DeletedAt);
        writer.WriteEndObject();
    }

    private static void WriteMentions(Utf8JsonWriter writer, IReadOnlyList<Mention> mentions)
    {
        writer.WriteStartArray();
        foreach (var mention in mentions)
        {
            WriteOrNull(writer, mention, static (writer, mention) =>
            {
                writer.WriteStartObject();
                writer.WriteString("user_id"u8, mention.UserId);
                writer.WriteNumber("offset"u8, mention.Offset);
                writer.WriteNumber("length"u8, mention.Length);
                writer.WriteEndObject();
            });
        }

        writer.WriteEndArray();
    }

    private static void WriteMedia(Utf8JsonWriter writer, Media media)
    {
        writer.WriteStartObject();
        writer.WriteString("url"u8, media.Url);
        writer.WriteString("mime_type"u8, media.MimeType);
        writer.WriteNumber("size_bytes"u8, media.SizeBytes);
        writer.WriteNullable("width"u8, media.Width);
        writer.WriteNullable("height"u8, media.Height);
        writer.WriteNullable("duration_ms"u8, media.DurationMs);
        writer.WriteString("file_name"u8, media.FileName);
        writer.WriteString("thumbnail_url"u8, media.ThumbnailUrl);
        writer.WriteEndObject();
    }

    private static void WriteLocation(Utf8JsonWriter writer, Location location)
    {
        writer.WriteStartObject();
        writer.WriteNumber("latitude"u8, location.Latitude);
        writer.WriteNumber("longitude"u8, location.Longitude);
        writer.WriteString("name"u8, location.Name);
        writer.WriteEndObject();
    }

    /// <summary>A JSON null for a null reference, as the serializer writes one (every property is written, null or not).</summary>
    private static void WriteOrNull<T>(Utf8JsonWriter writer, T? value, Action<Utf8JsonWriter, T> write)
        where T : class
    {
        if (value is null)
        {
            writer.WriteNullValue();
        }
        else
        {
            write(writer, value);
        }
    }
}
