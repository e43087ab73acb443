using Parley.Server.Realtime;

namespace Parley.Server.Fanout;

/// <summary>
/// One instance: every connected device is in this process's <see cref="ConnectionHub"/>. Writers of a conversation
/// publish under its lock, so the hub gets its frames in seq order without a gate. Presence is this process's sockets;
/// last-seen times live in memory (a restart forgets them), for <see cref="LastSeenKept"/> like Redis keeps them.
/// </summary>
internal sealed class InProcessFanout(ConnectionHub hub, TimeProvider time) : IFanout
{
    /// <summary>How long a user's last-seen time is kept after their last device left (as <see cref="RedisFanout"/> does).</summary>
    internal static readonly TimeSpan LastSeenKept = TimeSpan.FromDays(90);

    private static readonly TimeSpan SweepInterval = TimeSpan.FromHours(1);

    private readonly Dictionary<string, int> _devices = new(StringComparer.Ordinal);
    private readonly Dictionary<string, DateTimeOffset> _lastSeen = new(StringComparer.Ordinal);

    private readonly Lock _lock = new();
    private readonly LocalTyping _typing = new(time);

    // When last-seen times older than LastSeenKept are next dropped (once an hour, at a disconnect), so that a
    // long-running instance does not keep an entry for every user that ever connected.
    private DateTimeOffset _nextSweep = DateTimeOffset.MinValue;

    public ValueTask PublishAsync(FanoutMessage message, CancellationToken cancellationToken)
    {
        foreach (var part in message.Parts)
        {
            hub.Deliver(part.UserIds, part.Frame, message.ExceptUserId);
        }

        return ValueTask.CompletedTask;
    }

    public ValueTask<Subscription> SubscribeAsync(string userId, CancellationToken cancellationToken)
    {
        lock (_lock)
        {
            var count = _devices.GetValueOrDefault(userId) + 1;
            _devices[userId] = count;
            _lastSeen.Remove(userId); // online: a last-seen time is set again when the last device leaves
            return ValueTask.FromResult(new Subscription(count == 1));
        }
    }

    public ValueTask<bool> UnsubscribeAsync(string userId)
    {
        lock (_lock)
        {
            var count = _devices.GetValueOrDefault(userId) - 1;
            if (count > 0)
            {
                _devices[userId] = count;
                return ValueTask.FromResult(false);
            }

            _devices.Remove(userId);
            var now = time.GetUtcNow();
            _lastSeen[userId] = now;
            if (now >= _nextSweep)
            {
                _nextSweep = now + SweepInterval;
                foreach (var (user, at) in _lastSeen)
                {
                    if (now - at > LastSeenKept)
                    {
                        _lastSeen.Remove(user);
                    }
                }
            }

            return ValueTask.FromResult(true);
        }
    }

    public ValueTask<IReadOnlyDictionary<string, UserPresence>> GetPresenceAsync(IReadOnlyCollection<string> userIds, CancellationToken cancellationToken)
    {
        lock (_lock)
        {
            IReadOnlyDictionary<string, UserPresence> presence = userIds.Distinct(StringComparer.Ordinal).ToDictionary(
                u => u,
                u => _devices.ContainsKey(u) ? new UserPresence(true, null) : new UserPresence(false, _lastSeen.TryGetValue(u, out var seen) ? seen : null),
                StringComparer.Ordinal);
            return ValueTask.FromResult(presence);
        }
    }

    public ValueTask<bool> StartTypingAsync(Guid conversationId, string userId, TimeSpan timeout, CancellationToken cancellationToken) =>
        ValueTask.FromResult(_typing.Start(conversationId, userId, timeout));

    public ValueTask<bool> StopTypingAsync(Guid conversationId, string userId, bool seenHere) => ValueTask.FromResult(_typing.Stop(conversationId, userId));

    public ValueTask<TypingCheck> CheckTypingAsync(Guid conversationId, string userId) => ValueTask.FromResult(_typing.Check(conversationId, userId));
}
