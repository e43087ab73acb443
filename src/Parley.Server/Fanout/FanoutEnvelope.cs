using System.Buffers;
using System.Buffers.Binary;
using System.Text;
using Parley.Server.Protocol;
using Parley.Server.Realtime;

namespace Parley.Server.Fanout;

/// <summary>
/// What crosses instances: a <see cref="FanoutMessage"/> with its frames' bytes (serialized once, by the publisher)
/// and the metadata each socket needs. Binary, little-endian; the first byte is the format version, and a reader
/// refuses versions it does not know (<see cref="TryDecode"/> returns false) instead of guessing.
/// <code>
/// version 1: u8 version | str except_user | u8 parts | part*
///   part: u8 flags (1 transient, 2 conversation, 4 sender) | str type | [16 conversation id] | i64 seq | i64 delivery_seq
///         | [str sender] | u32 user_count | str user* | i32 frame_length | frame bytes
///   str: u16 length (0xFFFF = null) | UTF-8
/// </code>
/// </summary>
internal static class FanoutEnvelope
{
    public const byte Version = 1;

    private const byte Transient = 1;
    private const byte HasConversation = 2;
    private const byte HasSender = 4;
    private const ushort NullString = ushort.MaxValue;

    public static byte[] Encode(FanoutMessage message) => Utf8Scratch.Write(message, static (buffer, message) =>
    {
        WriteByte(buffer, Version);
        WriteString(buffer, message.ExceptUserId);
        WriteByte(buffer, checked((byte)message.Parts.Count));
        foreach (var (userIds, frame) in message.Parts)
        {
            var flags = (byte)((frame.Transient ? Transient : 0) | (frame.ConversationId is null ? 0 : HasConversation) | (frame.SenderId is null ? 0 : HasSender));
            WriteByte(buffer, flags);
            WriteString(buffer, frame.Type);
            if (frame.ConversationId is { } conversationId)
            {
                conversationId.TryWriteBytes(buffer.GetSpan(16));
                buffer.Advance(16);
            }

            BinaryPrimitives.WriteInt64LittleEndian(buffer.GetSpan(8), frame.Seq);
            buffer.Advance(8);
            BinaryPrimitives.WriteInt64LittleEndian(buffer.GetSpan(8), frame.DeliverySeq);
            buffer.Advance(8);
            if (frame.SenderId is not null)
            {
                WriteString(buffer, frame.SenderId);
            }

            BinaryPrimitives.WriteUInt32LittleEndian(buffer.GetSpan(4), (uint)userIds.Count);
            buffer.Advance(4);
            foreach (var userId in userIds)
            {
                WriteString(buffer, userId);
            }

            var bytes = frame.Utf8.Span;
            BinaryPrimitives.WriteInt32LittleEndian(buffer.GetSpan(4), bytes.Length);
            buffer.Advance(4);
            buffer.Write(bytes);
        }
    });

    /// <summary>Reads an envelope; false for an unknown version or a malformed one (never throws on input).</summary>
    public static bool TryDecode(ReadOnlySpan<byte> data, out FanoutMessage? message)
    {
        message = null;
        try
        {
            var reader = new Reader(data);
            if (reader.Byte() != Version)
            {
                return false;
            }

            var except = reader.String();
            var count = reader.Byte();
            if (count == 0)
            {
                return false;
            }

            var parts = new FanoutPart[count];
            for (var i = 0; i < count; i++)
            {
                var flags = reader.Byte();
                var type = reader.String() ?? throw new FormatException("frame type");
                Guid? conversationId = (flags & HasConversation) != 0 ? reader.Guid() : null;
                var seq = reader.Int64();
                var deliverySeq = reader.Int64();
                var sender = (flags & HasSender) != 0 ? reader.String() : null;
                var users = reader.UInt32();
                if (users > data.Length)
                {
                    return false;
                }

                var userIds = new string[users];
                for (var u = 0; u < users; u++)
                {
                    userIds[u] = reader.String() ?? throw new FormatException("user id");
                }

                var bytes = reader.Bytes(reader.Int32()).ToArray();
                parts[i] = new FanoutPart(userIds, new OutboundFrame(bytes, type, conversationId, seq, deliverySeq, sender, (flags & Transient) != 0));
            }

            if (!reader.AtEnd)
            {
                return false;
            }

            message = new FanoutMessage(parts, except);
            return true;
        }
        catch (Exception ex) when (ex is FormatException or ArgumentOutOfRangeException or OverflowException)
        {
            return false;
        }
    }

    private static void WriteByte(IBufferWriter<byte> buffer, byte value)
    {
        buffer.GetSpan(1)[0] = value;
        buffer.Advance(1);
    }

    private static void WriteString(IBufferWriter<byte> buffer, string? value)
    {
        if (value is null)
        {
            BinaryPrimitives.WriteUInt16LittleEndian(buffer.GetSpan(2), NullString);
            buffer.Advance(2);
            return;
        }

        var length = Encoding.UTF8.GetByteCount(value);
        if (length >= NullString)
        {
            throw new ArgumentException("A fan-out string is limited to 65,534 bytes.", nameof(value));
        }

        BinaryPrimitives.WriteUInt16LittleEndian(buffer.GetSpan(2), (ushort)length);
        buffer.Advance(2);
        buffer.Advance(Encoding.UTF8.GetBytes(value, buffer.GetSpan(length)));
    }

    private ref struct Reader(ReadOnlySpan<byte> data)
    {
        private ReadOnlySpan<byte> _rest = data;

        public readonly bool AtEnd => _rest.IsEmpty;

        public byte Byte() => Take(1)[0];

        public long Int64() => BinaryPrimitives.ReadInt64LittleEndian(Take(8));

        public int Int32() => BinaryPrimitives.ReadInt32LittleEndian(Take(4));

        public uint UInt32() => BinaryPrimitives.ReadUInt32LittleEndian(Take(4));

        public Guid Guid() => new(Take(16));

        public string? String()
        {
            var length = BinaryPrimitives.ReadUInt16LittleEndian(Take(2));
            return length == NullString ? null : Encoding.UTF8.GetString(Take(length));
        }

        public ReadOnlySpan<byte> Bytes(int length) => Take(length);

        private ReadOnlySpan<byte> Take(int length)
        {
            if (length < 0 || length > _rest.Length)
            {
                throw new FormatException("The envelope ends early.");
            }

            var taken = _rest[..length];
            _rest = _rest[length..];
            return taken;
        }
    }
}
