using System.Buffers;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;

namespace Parley.Server.Protocol;

/// <summary>Serializes a server frame <c>{"type": ..., "payload": ...}</c> once, to UTF-8 bytes shared by every recipient socket.</summary>
internal static class FrameWriter
{
    public static byte[] Serialize<T>(string type, T payload, JsonTypeInfo<T> payloadType)
    {
        var buffer = new ArrayBufferWriter<byte>(256);
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteString("type"u8, type);
            writer.WritePropertyName("payload"u8);
            JsonSerializer.Serialize(writer, payload, payloadType);
            writer.WriteEndObject();
        }

        return buffer.WrittenSpan.ToArray();
    }
}
