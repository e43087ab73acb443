using System.Text.Json;
using System.Text.Json.Serialization.Metadata;

namespace Parley.Server.Protocol;

/// <summary>Serializes a server frame <c>{"type": ..., "payload": ...}</c> once, to UTF-8 bytes shared by every recipient socket.</summary>
internal static class FrameWriter
{
    public static byte[] Serialize<T>(string type, T payload, JsonTypeInfo<T> payloadType) =>
        Utf8Scratch.WriteJson((type, payload, payloadType), static (writer, frame) =>
        {
            writer.WriteStartObject();
            writer.WriteString("type"u8, frame.type);
            writer.WritePropertyName("payload"u8);
            JsonSerializer.Serialize(writer, frame.payload, frame.payloadType);
            writer.WriteEndObject();
        });
}
