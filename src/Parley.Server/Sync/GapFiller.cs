using Parley.Server.Fanout;
using Parley.Server.Realtime;
using Parley.Server.Storage;

namespace Parley.Server.Sync;

/// <summary>
/// Events a publisher's fan-out never delivered to this instance (it died, or Redis lost them), read back from the
/// store as each local recipient should have had them live: the same frames a catch-up would send.
/// </summary>
internal sealed class GapFiller(IChatStore store, EventFrameBuilder frames, SocketDeliveries sockets) : IGapFiller
{
    public async Task<IReadOnlyList<FanoutPart>> ReadGapAsync(
        Guid conversationId, long afterSeq, long uptoSeq, IReadOnlyCollection<string> userIds, CancellationToken cancellationToken)
    {
        var parts = new List<FanoutPart>();
        foreach (var userId in userIds)
        {
            var events = await store.ReadConversationEventsAsync(userId, conversationId, afterSeq, uptoSeq, cancellationToken);
            string[] recipient = [userId];
            parts.AddRange((await frames.BuildFramesAsync(userId, events, cancellationToken)).Select(f => new FanoutPart(recipient, f)));
        }

        // One user's frames are in seq order already; across users, by seq keeps each socket's order either way.
        return [.. parts.OrderBy(p => p.Frame.Seq)];
    }

    public Task<IReadOnlyDictionary<Guid, long>> ReadLastSeqsAsync(string userId, CancellationToken cancellationToken) =>
        store.GetLastSeqsAsync(userId, cancellationToken);

    public async Task<IReadOnlyList<OutboundFrame>> ReadWatermarkFramesAsync(string userId, DateTimeOffset since, CancellationToken cancellationToken) =>
        (await frames.WatermarkFramesAsync(userId, since, cancellationToken)).ConvertAll(w => w.Frame);

    public void RecheckCursors()
    {
        foreach (var socket in sockets.All())
        {
            socket.Cursors.Recheck = true;
        }
    }
}
