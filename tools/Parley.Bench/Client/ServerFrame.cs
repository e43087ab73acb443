using System.Buffers.Text;
using System.Text.Json;

namespace Parley.Bench.Client;

internal enum FrameKind
{
    Other,
    Connected,
    NewMessage,
    MessageAck,
    Error,
    Cursor,
    SyncComplete,
    SyncReset,
}

/// <summary>
/// The few fields of a server frame the benchmark needs, read with <see cref="Utf8JsonReader"/> straight from the
/// receive buffer: nothing is deserialized into objects, and the spans point into that buffer (valid until the
/// next receive).
/// </summary>
internal ref struct ServerFrame
{
    /// <summary>The prefix of every client_message_id the tool sends; the rest is the message's number.</summary>
    public const byte MessageIdPrefix = (byte)'m';

    public FrameKind Kind;
    public Guid ConversationId;
    public long Seq;

    /// <summary>The number in a client_message_id of the form <c>m{number}</c>, or -1.</summary>
    public long MessageIndex;

    public ReadOnlySpan<byte> SenderId;
    public ReadOnlySpan<byte> Cursor;

    /// <summary>An error's <c>code</c>, or a sync_reset's <c>reason</c>.</summary>
    public ReadOnlySpan<byte> Code;

    /// <summary>Reads a frame; false when it is not a JSON object with a string <c>type</c> (the caller counts it as an error).</summary>
    public static bool TryParse(ReadOnlySpan<byte> json, out ServerFrame frame)
    {
        frame = default;
        frame.MessageIndex = -1;
        try
        {
            return TryParseCore(json, ref frame);
        }
        catch (JsonException)
        {
            return false;
        }
    }

    /// <summary>The number of a client_message_id <c>m{number}</c>; -1 for any other id.</summary>
    public static long ParseMessageIndex(ReadOnlySpan<byte> clientMessageId) =>
        clientMessageId.Length > 1 && clientMessageId[0] == MessageIdPrefix
            && Utf8Parser.TryParse(clientMessageId[1..], out long index, out var consumed) && consumed == clientMessageId.Length - 1 && index >= 0
            ? index
            : -1;

    private static bool TryParseCore(ReadOnlySpan<byte> json, ref ServerFrame frame)
    {
        var reader = new Utf8JsonReader(json);
        if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
        {
            return false;
        }

        var hasType = false;
        int payloadStart = -1, payloadEnd = -1;
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            if (reader.ValueTextEquals("type"u8))
            {
                reader.Read();
                if (reader.TokenType != JsonTokenType.String)
                {
                    return false;
                }

                hasType = true;
                frame.Kind = KindOf(ref reader);
            }
            else if (reader.ValueTextEquals("payload"u8))
            {
                reader.Read();
                payloadStart = (int)reader.TokenStartIndex;
                reader.Skip();
                payloadEnd = (int)reader.BytesConsumed;
            }
            else
            {
                reader.Read();
                reader.Skip();
            }
        }

        if (!hasType)
        {
            return false;
        }

        if (frame.Kind != FrameKind.Other && payloadStart >= 0)
        {
            var payload = new Utf8JsonReader(json[payloadStart..payloadEnd]);
            payload.Read();
            if (payload.TokenType == JsonTokenType.StartObject)
            {
                ReadObject(ref payload, ref frame, json[payloadStart..payloadEnd], inMessage: false);
            }
        }

        return true;
    }

    private static FrameKind KindOf(ref Utf8JsonReader reader) =>
        reader.ValueTextEquals("new_message"u8) ? FrameKind.NewMessage
        : reader.ValueTextEquals("message_ack"u8) ? FrameKind.MessageAck
        : reader.ValueTextEquals("cursor"u8) ? FrameKind.Cursor
        : reader.ValueTextEquals("error"u8) ? FrameKind.Error
        : reader.ValueTextEquals("connected"u8) ? FrameKind.Connected
        : reader.ValueTextEquals("sync_complete"u8) ? FrameKind.SyncComplete
        : reader.ValueTextEquals("sync_reset"u8) ? FrameKind.SyncReset
        : FrameKind.Other;

    // Reads the payload object (and, inside it, the message object) for the properties the benchmark uses. The
    // spans it keeps are slices of the frame's bytes: strings Parley writes for these fields need no unescaping.
    private static void ReadObject(ref Utf8JsonReader reader, ref ServerFrame frame, ReadOnlySpan<byte> source, bool inMessage)
    {
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            if (!inMessage && reader.ValueTextEquals("message"u8))
            {
                reader.Read();
                if (reader.TokenType == JsonTokenType.StartObject)
                {
                    ReadObject(ref reader, ref frame, source, inMessage: true);
                }
                else
                {
                    reader.Skip();
                }

                continue;
            }

            var property = PropertyOf(ref reader, inMessage);
            reader.Read();
            switch (property)
            {
                case Property.ConversationId when reader.TokenType == JsonTokenType.String && reader.TryGetGuid(out var id):
                    frame.ConversationId = id;
                    break;
                case Property.Seq when reader.TokenType == JsonTokenType.Number && reader.TryGetInt64(out var seq):
                    frame.Seq = seq;
                    break;
                case Property.ClientMessageId when reader.TokenType == JsonTokenType.String:
                    frame.MessageIndex = ParseMessageIndex(Value(reader.TokenStartIndex, reader.ValueSpan.Length, source));
                    break;
                case Property.SenderId when reader.TokenType == JsonTokenType.String:
                    frame.SenderId = Value(reader.TokenStartIndex, reader.ValueSpan.Length, source);
                    break;
                case Property.Cursor when reader.TokenType == JsonTokenType.String:
                    frame.Cursor = Value(reader.TokenStartIndex, reader.ValueSpan.Length, source);
                    break;
                case Property.Code when reader.TokenType == JsonTokenType.String:
                    frame.Code = Value(reader.TokenStartIndex, reader.ValueSpan.Length, source);
                    break;
                default:
                    reader.Skip();
                    break;
            }
        }
    }

    private static Property PropertyOf(ref Utf8JsonReader reader, bool inMessage)
    {
        if (reader.ValueTextEquals("client_message_id"u8))
        {
            return Property.ClientMessageId;
        }

        if (inMessage)
        {
            return reader.ValueTextEquals("conversation_id"u8) ? Property.ConversationId
                : reader.ValueTextEquals("seq"u8) ? Property.Seq
                : reader.ValueTextEquals("sender_id"u8) ? Property.SenderId
                : Property.None;
        }

        return reader.ValueTextEquals("cursor"u8) ? Property.Cursor
            : reader.ValueTextEquals("code"u8) || reader.ValueTextEquals("reason"u8) ? Property.Code
            : Property.None;
    }

    // The raw bytes of a string value, a slice of the frame (no copy).
    private static ReadOnlySpan<byte> Value(long tokenStart, int length, ReadOnlySpan<byte> source) => source.Slice((int)tokenStart + 1, length);

    private enum Property
    {
        None,
        ConversationId,
        Seq,
        ClientMessageId,
        SenderId,
        Cursor,
        Code,
    }
}
