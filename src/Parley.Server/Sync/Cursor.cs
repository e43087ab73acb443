using System.Buffers.Binary;
using System.Buffers.Text;
using Parley.Server.Storage;

namespace Parley.Server.Sync;

/// <summary>
/// A device's place in the deployment's event stream: it holds every event of its conversations with a
/// position up to <see cref="Pos"/>. Opaque to clients: base64url of version, epoch, position, issue time and
/// <see cref="Check"/> (37 bytes, 50 characters), the same size for a device in one conversation or in ten thousand.
/// </summary>
/// <param name="Epoch">The stream's epoch: a cursor of another database (or a reset one) is refused.</param>
/// <param name="Pos">The device holds every event of its conversations up to this stream position.</param>
/// <param name="IssuedAt">When it was issued (whole seconds): retention, and which receipts moved since.</param>
/// <param name="Check">
/// A fingerprint of the event at <see cref="Pos"/> (conversation, seq and commit time), 0 at position 0: a database
/// restored from an earlier copy can hold a different event at the same position, and the cursor is then
/// refused instead of silently skipping that event. Version 1 cursors (issued before it existed) carry none.
/// </param>
internal sealed record Cursor(Guid Epoch, long Pos, DateTimeOffset IssuedAt, uint Check = 0)
{
    private const byte Version1 = 1;
    private const byte Version2 = 2;
    private const int Length1 = 1 + 16 + 8 + 8;
    private const int Length2 = Length1 + 4;

    /// <summary>A cursor at <paramref name="pos"/>, whose event is <paramref name="at"/> (null at position 0).</summary>
    public static Cursor At(Guid epoch, long pos, EventKey? at, DateTimeOffset issuedAt) =>
        new(epoch, pos, issuedAt, at is { } key ? Fingerprint(key) : 0);

    /// <summary>Whether this cursor was issued for the stream whose event at <see cref="Pos"/> is <paramref name="at"/>.</summary>
    public bool Matches(EventKey? at) => HasCheck ? Check == (at is { } key ? Fingerprint(key) : 0) : Pos == 0 || at is not null;

    /// <summary>False for a version 1 cursor, which carries no fingerprint.</summary>
    public bool HasCheck { get; private init; } = true;

    public string Encode()
    {
        Span<byte> bytes = stackalloc byte[Length2];
        bytes[0] = Version2;
        Epoch.TryWriteBytes(bytes[1..17]);
        BinaryPrimitives.WriteInt64BigEndian(bytes[17..25], Pos);
        BinaryPrimitives.WriteInt64BigEndian(bytes[25..33], IssuedAt.ToUnixTimeSeconds());
        BinaryPrimitives.WriteUInt32BigEndian(bytes[33..37], Check);
        return Base64Url.EncodeToString(bytes);
    }

    public static bool TryDecode(string? text, out Cursor? cursor)
    {
        cursor = null;
        if (string.IsNullOrEmpty(text) || text.Length > 64)
        {
            return false;
        }

        // IsValid first: TryDecodeFromChars throws for a character outside the alphabet ("Try" is about the room).
        Span<byte> bytes = stackalloc byte[48];
        if (!Base64Url.IsValid(text) || !Base64Url.TryDecodeFromChars(text, bytes, out var written)
            || !((bytes[0] == Version1 && written == Length1) || (bytes[0] == Version2 && written == Length2)))
        {
            return false;
        }

        var pos = BinaryPrimitives.ReadInt64BigEndian(bytes[17..25]);
        var issued = BinaryPrimitives.ReadInt64BigEndian(bytes[25..33]);
        if (pos < 0 || issued < 0 || issued > 253402300799)
        {
            return false;
        }

        var epoch = new Guid(bytes[1..17]);
        var issuedAt = DateTimeOffset.FromUnixTimeSeconds(issued);
        cursor = bytes[0] == Version1
            ? new Cursor(epoch, pos, issuedAt) { HasCheck = false }
            : new Cursor(epoch, pos, issuedAt, BinaryPrimitives.ReadUInt32BigEndian(bytes[33..37]));
        return true;
    }

    /// <summary>FNV-1a over the event's identity: stable across processes and versions (unlike HashCode).</summary>
    private static uint Fingerprint(EventKey key)
    {
        Span<byte> bytes = stackalloc byte[32];
        key.ConversationId.TryWriteBytes(bytes[..16]);
        BinaryPrimitives.WriteInt64BigEndian(bytes[16..24], key.Seq);
        // Milliseconds: what every store keeps.
        BinaryPrimitives.WriteInt64BigEndian(bytes[24..], key.CreatedAt.ToUnixTimeMilliseconds());
        var hash = 2166136261u;
        foreach (var b in bytes)
        {
            hash = (hash ^ b) * 16777619u;
        }

        return hash;
    }
}
