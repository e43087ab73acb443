using Parley.Server.Realtime;

namespace Parley.Server.Events;

/// <summary>
/// Which users have a device connected: the relay's test for "offline" recipients of a notification (docs/events.md).
/// A seam for presence across instances: <see cref="LocalDeviceDirectory"/> knows this instance's sockets only, and a
/// cross-instance implementation (Redis presence) registered before <c>AddEvents</c> replaces it.
/// </summary>
internal interface IDeviceDirectory
{
    /// <summary>The users among <paramref name="userIds"/> with at least one device connected now.</summary>
    ValueTask<IReadOnlySet<string>> OnlineAmongAsync(IReadOnlyCollection<string> userIds, CancellationToken cancellationToken);
}

/// <summary>
/// This instance's connection registry. With several instances a user connected only to another one counts as offline
/// here: a push too many, never one too few.
/// </summary>
internal sealed class LocalDeviceDirectory(ConnectionHub hub) : IDeviceDirectory
{
    public ValueTask<IReadOnlySet<string>> OnlineAmongAsync(IReadOnlyCollection<string> userIds, CancellationToken cancellationToken) =>
        ValueTask.FromResult<IReadOnlySet<string>>(userIds.Where(hub.IsConnected).ToHashSet(StringComparer.Ordinal));
}
