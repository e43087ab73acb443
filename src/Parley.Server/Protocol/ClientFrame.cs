using System.Text.Json;
using System.Text.Json.Serialization.Metadata;

namespace Parley.Server.Protocol;

/// <summary>
/// The envelope of a client frame, <c>{"type", "id"?, "payload"?}</c>, read in one pass without building a DOM:
/// the payload is located (not parsed) and later deserialized once, straight into its typed class.
/// </summary>
internal readonly ref struct ClientFrame
{
    private readonly ReadOnlySpan<byte> _payload;

    private ClientFrame(string type, string? id, ReadOnlySpan<byte> payload)
    {
        Type = type;
        Id = id;
        _payload = payload;
    }

    public string Type { get; }

    /// <summary>The frame's <c>id</c> as JSON text (a quoted string or a number), for echoing in an error; null when absent.</summary>
    public string? Id { get; }

    public static bool TryParse(ReadOnlySpan<byte> utf8, out ClientFrame frame, out string? id, out string error)
    {
        frame = default;
        id = null;
        string? type = null;
        var invalidText = false;
        var payload = ReadOnlySpan<byte>.Empty;
        // Each of type, id and payload at most once: a filter in front of Parley that read one copy must not see
        // another frame than the one Parley runs.
        string? repeated = null;
        var seenType = false;
        var seenId = false;
        var seenPayload = false;
        try
        {
            var reader = new Utf8JsonReader(utf8, new JsonReaderOptions { MaxDepth = 32 });
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
            {
                error = "A frame is one JSON object: {\"type\": ..., \"payload\": {...}}.";
                return false;
            }

            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                if (reader.ValueTextEquals("type"u8))
                {
                    repeated ??= seenType ? "type" : null;
                    seenType = true;
                    reader.Read();
                    type = reader.TokenType == JsonTokenType.String ? ReadText(ref reader, ref invalidText) : null;
                    // An object or array here is not a type: step over all of it, not into it.
                    reader.Skip();
                }
                else if (reader.ValueTextEquals("id"u8))
                {
                    repeated ??= seenId ? "id" : null;
                    reader.Read();
                    if (seenId)
                    {
                        reader.Skip();
                        continue; // the first id is the one an error echoes
                    }

                    seenId = true;
                    // Kept as sent (JSON text: a string with its quotes, or a number) so that the error echoes the
                    // same value and type: a client that numbers its frames gets 7 back, not "7".
                    id = reader.TokenType is JsonTokenType.String or JsonTokenType.Number
                        ? System.Text.Encoding.UTF8.GetString(utf8[(int)reader.TokenStartIndex..(int)reader.BytesConsumed])
                        : null;
                    reader.Skip();
                }
                else if (reader.ValueTextEquals("payload"u8))
                {
                    repeated ??= seenPayload ? "payload" : null;
                    seenPayload = true;
                    reader.Read();
                    var start = (int)reader.TokenStartIndex;
                    reader.Skip();
                    payload = utf8[start..(int)reader.BytesConsumed];
                }
                else
                {
                    // "Payload" beside (or instead of) "payload": names are matched without regard to case, as in the payload
                    // itself, so that a filter in front of Parley that reads them so cannot be shown another envelope.
                    if ((reader.ValueIsEscaped || reader.ValueSpan.Length <= 7) && EnvelopeName(reader.GetString()!) is { } envelope)
                    {
                        repeated ??= envelope;
                    }

                    reader.Read();
                    reader.Skip();
                }
            }

            if (reader.TokenType != JsonTokenType.EndObject || reader.Read())
            {
                error = "A frame is exactly one JSON object.";
                return false;
            }
        }
        catch (JsonException ex)
        {
            error = "The frame is not valid JSON: " + JsonErrors.Describe(ex);
            return false;
        }

        if (repeated is not null)
        {
            error = $"The frame's '{repeated}' is given more than once (names are matched without regard to case).";
            return false;
        }

        if (invalidText)
        {
            error = "The frame's 'type' is not valid Unicode text (a lone surrogate escape).";
            return false;
        }

        if (string.IsNullOrEmpty(type))
        {
            error = "The frame has no string 'type'.";
            return false;
        }

        frame = new ClientFrame(type, id, payload);
        error = string.Empty;
        return true;
    }

    /// <summary>The envelope member <paramref name="name"/> names in another case ("Payload"), if any.</summary>
    private static string? EnvelopeName(string name) =>
        name.Equals("type", StringComparison.OrdinalIgnoreCase) ? "type"
        : name.Equals("id", StringComparison.OrdinalIgnoreCase) ? "id"
        : name.Equals("payload", StringComparison.OrdinalIgnoreCase) ? "payload"
        : null;

    /// <summary>A string value; an escaped lone surrogate ("\ud800") is valid JSON but not text: flagged, not thrown.</summary>
    private static string? ReadText(ref Utf8JsonReader reader, ref bool invalid)
    {
        try
        {
            return reader.GetString();
        }
        catch (InvalidOperationException)
        {
            invalid = true;
            return null;
        }
    }

    /// <summary>The payload as <typeparamref name="T"/>; a missing payload or <c>null</c> reads as an empty object.</summary>
    public T ReadPayload<T>(JsonTypeInfo<T> typeInfo)
        where T : class, new()
    {
        if (_payload.IsEmpty || _payload.SequenceEqual("null"u8))
        {
            return new T();
        }

        return JsonSerializer.Deserialize(_payload, typeInfo) ?? new T();
    }
}
