namespace Parley.Server.Realtime.Endpoint;

/// <summary>
/// Keeps one socket's sends of a conversation in the order the device made them. A client sends without waiting for
/// each acknowledgement, so when a send is refused in passing (rate limit, storage unavailable) the
/// sends behind it are already on their way: stored, they would come before it once it is sent again, and everyone
/// would see the messages out of order. So after such a refusal the socket's later sends to that conversation are
/// refused the same way until the refused one comes again (clients resend in order), or for at most
/// <see cref="HoldFor"/> (a client that gave that send up). Confined to the socket's receive loop, which handles one
/// frame at a time: no lock.
/// </summary>
internal sealed class SendOrder(TimeProvider time)
{
    /// <summary>How long a refused send holds back the ones behind it when it does not come again.</summary>
    public static readonly TimeSpan HoldFor = TimeSpan.FromSeconds(10);

    private readonly Dictionary<Guid, Hold> _holds = [];

    /// <summary>The refused send that <paramref name="clientMessageId"/> must wait for, or null when it may go now.</summary>
    public Hold? Blocking(Guid conversationId, string clientMessageId)
    {
        if (!_holds.TryGetValue(conversationId, out var hold))
        {
            return null;
        }

        if (hold.ClientMessageId == clientMessageId || time.GetUtcNow() >= hold.Until)
        {
            _holds.Remove(conversationId);
            return null;
        }

        return hold;
    }

    /// <summary>
    /// A send was refused in passing: the ones behind it wait for it, unless an earlier refused send of the conversation
    /// still holds them (a send the frame budget refuses is not asked <see cref="Blocking"/> first): that one goes first.
    /// </summary>
    public void Refused(Guid conversationId, string clientMessageId, string code)
    {
        if (Blocking(conversationId, clientMessageId) is not null)
        {
            return;
        }

        _holds[conversationId] = new Hold(clientMessageId, code, time.GetUtcNow() + HoldFor);
    }

    public sealed record Hold(string ClientMessageId, string Code, DateTimeOffset Until);
}
