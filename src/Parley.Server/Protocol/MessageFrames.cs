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
        Utf8Scratch.WriteJson((message, timestamp), static (writer, frame) =>
        {
            writer.WriteStartObject();
            writer.WriteString("type"u8, FrameTypes.NewMessage);
            writer.WriteStartObject("payload"u8);
            writer.WritePropertyName("message"u8);
            Write(writer, frame.message);
            writer.WritePropertyName("timestamp"u8);
            UtcTimestampConverter.WriteValue(writer, frame.timestamp);
            writer.WriteEndObject();
            writer.WriteEndObject();
        });

    public static byte[] MessageAck(string clientMessageId, Message message) =>
        Utf8Scratch.WriteJson((clientMessageId, message), static (writer, frame) =>
        {
            writer.WriteStartObject();
            writer.WriteString("type"u8, FrameTypes.MessageAck);
            writer.WriteStartObject("payload"u8);
            writer.WriteString("client_message_id"u8, frame.clientMessageId);
            writer.WritePropertyName("message"u8);
            Write(writer, frame.message);
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
        WriteNullable(writer, "reply_to_id"u8, message.ReplyToId);
        writer.WritePropertyName("mentions"u8);
        WriteMentions(writer, message.Mentions);
        writer.WritePropertyName("media"u8);
        WriteMedia(writer, message.Media);
        writer.WritePropertyName("location"u8);
        WriteLocation(writer, message.Location);
        writer.WriteString("client_message_id"u8, message.ClientMessageId);
        writer.WritePropertyName("created_at"u8);
        UtcTimestampConverter.WriteValue(writer, message.CreatedAt);
        WriteNullable(writer, "edited_at"u8, message.EditedAt);
        WriteNullable(writer, "deleted_at"u8, message.DeletedAt);
        writer.WriteEndObject();
    }

    private static void WriteMentions(Utf8JsonWriter writer, IReadOnlyList<Mention>? mentions)
    {
        if (mentions is null)
        {
            writer.WriteNullValue();
            return;
        }

        writer.WriteStartArray();
        foreach (var mention in mentions)
        {
            if (mention is null)
            {
                writer.WriteNullValue();
                continue;
            }

            writer.WriteStartObject();
            writer.WriteString("user_id"u8, mention.UserId);
            writer.WriteNumber("offset"u8, mention.Offset);
            writer.WriteNumber("length"u8, mention.Length);
            writer.WriteEndObject();
        }

        writer.WriteEndArray();
    }

    private static void WriteMedia(Utf8JsonWriter writer, Media? media)
    {
        if (media is null)
        {
            writer.WriteNullValue();
            return;
        }

        writer.WriteStartObject();
        writer.WriteString("url"u8, media.Url);
        writer.WriteString("mime_type"u8, media.MimeType);
        writer.WriteNumber("size_bytes"u8, media.SizeBytes);
        WriteNullable(writer, "width"u8, media.Width);
        WriteNullable(writer, "height"u8, media.Height);
        WriteNullable(writer, "duration_ms"u8, media.DurationMs);
        writer.WriteString("file_name"u8, media.FileName);
        writer.WriteString("thumbnail_url"u8, media.ThumbnailUrl);
        writer.WriteEndObject();
    }

    private static void WriteLocation(Utf8JsonWriter writer, Location? location)
    {
        if (location is null)
        {
            writer.WriteNullValue();
            return;
        }

        writer.WriteStartObject();
        writer.WriteNumber("latitude"u8, location.Latitude);
        writer.WriteNumber("longitude"u8, location.Longitude);
        writer.WriteString("name"u8, location.Name);
        writer.WriteEndObject();
    }

    private static void WriteNullable(Utf8JsonWriter writer, ReadOnlySpan<byte> name, Guid? value)
    {
        if (value is { } id)
        {
            writer.WriteString(name, id);
        }
        else
        {
            writer.WriteNull(name);
        }
    }

    private static void WriteNullable(Utf8JsonWriter writer, ReadOnlySpan<byte> name, long? value)
    {
        if (value is { } number)
        {
            writer.WriteNumber(name, number);
        }
        else
        {
            writer.WriteNull(name);
        }
    }

    private static void WriteNullable(Utf8JsonWriter writer, ReadOnlySpan<byte> name, DateTimeOffset? value)
    {
        writer.WritePropertyName(name);
        if (value is { } time)
        {
            UtcTimestampConverter.WriteValue(writer, time);
        }
        else
        {
            writer.WriteNullValue();
        }
    }
}
