using System.Text.Json;

namespace Parley.Server.Protocol;

/// <summary>
/// Nullable values for JSON written by hand (<see cref="MessageFrames"/>, the event relay's records): the property is
/// always written, as the serializer writes it, with <c>null</c> when there is no value; UUIDs in their usual form and
/// timestamps as <see cref="UtcTimestampConverter"/> writes them.
/// </summary>
internal static class NullableJson
{
    public static void WriteNullable(this Utf8JsonWriter writer, ReadOnlySpan<byte> name, Guid? value)
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

    public static void WriteNullable(this Utf8JsonWriter writer, ReadOnlySpan<byte> name, long? value)
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

    public static void WriteNullable(this Utf8JsonWriter writer, ReadOnlySpan<byte> name, DateTimeOffset? value)
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
