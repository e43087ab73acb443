using System.Buffers;
using System.Text.Json;

namespace Parley.Bench.Client;

/// <summary>
/// Writes the frames and bodies the tool sends into a reusable buffer: a connection's send loop owns one
/// <see cref="ClientFrames"/> and serializes each frame into it just before sending, so steady-state sending
/// allocates nothing.
/// </summary>
internal sealed class ClientFrames : IDisposable
{
    /// <summary><c>ping</c>: a connection's first frame, which also ends the server's wait for a <c>resume</c>.</summary>
    public static readonly byte[] Ping = """{"type":"ping","payload":{}}"""u8.ToArray();

    private readonly ArrayBufferWriter<byte> _buffer = new(512);
    private readonly Utf8JsonWriter _writer;
    private readonly byte[] _idScratch = new byte[24];

    public ClientFrames()
    {
        _writer = new Utf8JsonWriter(_buffer, new JsonWriterOptions { SkipValidation = true });
    }

    public void Dispose() => _writer.Dispose();

    /// <summary><c>send_message</c> of message <paramref name="index"/> (client_message_id <c>m{index}</c>).</summary>
    public ReadOnlyMemory<byte> SendMessage(Guid conversationId, long index, byte[] content)
    {
        Start();
        _writer.WriteStartObject();
        _writer.WriteString("type"u8, "send_message"u8);
        _writer.WritePropertyName("payload"u8);
        WriteMessageBody(conversationId, index, content);
        _writer.WriteEndObject();
        return Finish();
    }

    /// <summary>The body of <c>POST /api/v1/messages</c> for message <paramref name="index"/>.</summary>
    public ReadOnlyMemory<byte> MessageBody(Guid conversationId, long index, byte[] content)
    {
        Start();
        WriteMessageBody(conversationId, index, content);
        return Finish();
    }

    /// <summary><c>ack</c>: everything of the conversation up to <paramref name="seq"/> reached this device.</summary>
    public ReadOnlyMemory<byte> Ack(Guid conversationId, long seq)
    {
        Start();
        _writer.WriteStartObject();
        _writer.WriteString("type"u8, "ack"u8);
        _writer.WriteStartObject("payload"u8);
        _writer.WriteString("conversation_id"u8, conversationId);
        _writer.WriteNumber("seq"u8, seq);
        _writer.WriteEndObject();
        _writer.WriteEndObject();
        return Finish();
    }

    /// <summary>client_message_id <c>m{index}</c>, the form <see cref="ServerFrame.ParseMessageIndex"/> reads back.</summary>
    public static string MessageId(long index) => "m" + index.ToString(System.Globalization.CultureInfo.InvariantCulture);

    private void WriteMessageBody(Guid conversationId, long index, byte[] content)
    {
        _writer.WriteStartObject();
        _writer.WriteString("conversation_id"u8, conversationId);
        _writer.WriteString("message_type"u8, "text"u8);
        _writer.WriteString("content"u8, content);
        _idScratch[0] = ServerFrame.MessageIdPrefix;
        System.Buffers.Text.Utf8Formatter.TryFormat(index, _idScratch.AsSpan(1), out var written);
        _writer.WriteString("client_message_id"u8, _idScratch.AsSpan(0, written + 1));
        _writer.WriteEndObject();
    }

    private void Start()
    {
        _buffer.ResetWrittenCount();
        _writer.Reset(_buffer);
    }

    private ReadOnlyMemory<byte> Finish()
    {
        _writer.Flush();
        return _buffer.WrittenMemory;
    }
}
