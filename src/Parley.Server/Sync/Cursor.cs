using System.Buffers.Binary;

namespace Parley.Server.Sync;

/// <summary>
/// A device's place in the deployment's event stream: it holds every event of its conversations with a
/// position up to <see cref="Pos"/>. Opaque to clients: base64url of version, epoch, position and issue time
/// (33 bytes, 44 characters), the same size for a device in one conversation or in ten thousand.
/// </summary>
internal sealed record Cursor(Guid Epoch, long Pos, DateTimeOffset IssuedAt)
{
    private const byte Version = 1;
    private const int Length = 1 + 16 + 8 + 8;

    public string Encode()
    {
        Span<byte> bytes = stackalloc byte[Length];
        bytes[0] = Version;
        Epoch.TryWriteBytes(bytes[1..17]);
        BinaryPrimitives.WriteInt64BigEndian(bytes[17..25], Pos);
        BinaryPrimitives.WriteInt64BigEndian(bytes[25..33], IssuedAt.ToUnixTimeSeconds());
        return Convert.ToBase64String(bytes).TrimEnd('=').Replace('+', '-').Replace('/', '_');
    }

    public static bool TryDecode(string? text, out Cursor? cursor)
    {
        cursor = null;
        if (string.IsNullOrEmpty(text) || text.Length > 64)
        {
            return false;
        }

        var base64 = text.Replace('-', '+').Replace('_', '/');
        base64 = base64.PadRight(base64.Length + (4 - base64.Length % 4) % 4, '=');
        Span<byte> bytes = stackalloc byte[48];
        if (!Convert.TryFromBase64String(base64, bytes, out var written) || written != Length || bytes[0] != Version)
        {
            return false;
        }

        var pos = BinaryPrimitives.ReadInt64BigEndian(bytes[17..25]);
        var issued = BinaryPrimitives.ReadInt64BigEndian(bytes[25..33]);
        if (pos < 0 || issued < 0 || issued > 253402300799)
        {
            return false;
        }

        cursor = new Cursor(new Guid(bytes[1..17]), pos, DateTimeOffset.FromUnixTimeSeconds(issued));
        return true;
    }
}
