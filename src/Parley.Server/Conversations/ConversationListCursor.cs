using System.Globalization;
using System.Text;
using Parley.Server.Storage;

namespace Parley.Server.Conversations;

/// <summary>The conversation list's keyset cursor: base64url of "last activity in ms:conversation id".</summary>
internal static class ConversationListCursor
{
    public static string Encode(DateTimeOffset lastActivityAt, Guid conversationId) =>
        System.Buffers.Text.Base64Url.EncodeToString(Encoding.UTF8.GetBytes($"{lastActivityAt.ToUnixTimeMilliseconds()}:{conversationId:D}"));

    public static bool TryDecode(string cursor, out ConversationPosition? position)
    {
        position = null;
        try
        {
            var parts = Encoding.UTF8.GetString(System.Buffers.Text.Base64Url.DecodeFromChars(cursor)).Split(':');
            if (parts.Length == 2
                && long.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out var ms)
                && Guid.TryParseExact(parts[1], "D", out var id))
            {
                position = new ConversationPosition(DateTimeOffset.FromUnixTimeMilliseconds(ms), id);
                return true;
            }
        }
        catch (Exception ex) when (ex is FormatException or ArgumentOutOfRangeException)
        {
            // Falls through: not a cursor of ours.
        }

        return false;
    }
}
