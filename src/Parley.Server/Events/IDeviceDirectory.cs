using Parley.Server.Fanout;

namespace Parley.Server.Events;

/// <summary>
/// Which users have a device connected: the relay's test for "offline" recipients of a notification (docs/events.md).
/// </summary>
internal interface IDeviceDirectory
{
    /// <summary>The users among <paramref name="userIds"/> with at least one device connected now.</summary>
    ValueTask<IReadOnlySet<string>> OnlineAmongAsync(IReadOnlyCollection<string> userIds, CancellationToken cancellationToken);
}

/// <summary>
/// Presence as the fan-out knows it: with <c>Fanout:Provider=Redis</c> a device on any instance counts (docs/scaling.md),
/// in process this instance's sockets. While Redis is unreachable the fan-out answers from this instance's sockets, so a
/// user connected only elsewhere counts as offline: a push too many, never one too few.
/// </summary>
internal sealed class FanoutDeviceDirectory(IFanout fanout) : IDeviceDirectory
{
    public async ValueTask<IReadOnlySet<string>> OnlineAmongAsync(IReadOnlyCollection<string> userIds, CancellationToken cancellationToken)
    {
        var presence = await fanout.GetPresenceAsync(userIds, cancellationToken);
        return presence.Where(p => p.Value.Online).Select(p => p.Key).ToHashSet(StringComparer.Ordinal);
    }
}
