using System.Collections.Concurrent;
using Parley.Server.Observability;

namespace Parley.Server.Realtime;

/// <summary>
/// The registry of this instance's sockets: by connection id and by user. Delivery reads the per-user
/// arrays without locking (they are replaced, never mutated); connects and disconnects take
/// <see cref="_indexLock"/> to replace them.
/// </summary>
internal sealed class ConnectionHub
{
    private readonly ConcurrentDictionary<string, Connection> _byId = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, Connection[]> _byUser = new(StringComparer.Ordinal);

    // Per user with sockets here: when the first of them connected (TimeProvider timestamp), for the fan-out's order gate.
    private readonly ConcurrentDictionary<string, long> _connectedSince = new(StringComparer.Ordinal);
    private readonly TimeProvider _time;
    private readonly Lock _indexLock = new();

    // Per user: sockets taken (TryTakeSlot), from the upgrade's checks to the socket's end. Guarded by _indexLock.
    private readonly Dictionary<string, int> _slots = new(StringComparer.Ordinal);

    /// <summary>The hub's counts are read by the metrics when they are collected (a scrape), never on the send path.</summary>
    public ConnectionHub(ParleyMetrics metrics, TimeProvider time)
    {
        _time = time;
        metrics.ObserveConnections(() => Count, QueuedFrames);
    }

    public int Count => _byId.Count;

    /// <summary>
    /// The instance is shutting down: it accepts no new sockets and reports not ready, so that load balancers and
    /// reconnecting devices go to another instance while its own sockets are closed.
    /// </summary>
    public bool Draining { get; private set; }

    // Set with Draining, under the index lock: what a socket added after the drain began is closed with.
    private (int Status, string Reason)? _closing;

    // Completed when the last socket is removed while draining: its session's clean-up (presence, fan-out routes) ran.
    private readonly TaskCompletionSource _drained = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Frames waiting in the send queues of every socket (a moment's sum; walks the connections, for scrapes).</summary>
    public long QueuedFrames()
    {
        long queued = 0;
        foreach (var (_, connection) in _byId)
        {
            queued += connection.QueueLength;
        }

        return queued;
    }

    public void Add(Connection connection)
    {
        (int Status, string Reason)? closing;
        lock (_indexLock)
        {
            closing = _closing;
            _byId[connection.Id] = connection;
            if (_byUser.TryGetValue(connection.UserId, out var existing))
            {
                _byUser[connection.UserId] = [.. existing, connection];
            }
            else
            {
                _connectedSince[connection.UserId] = _time.GetTimestamp();
                _byUser[connection.UserId] = [connection];
            }
        }

        // Upgraded while the instance began to drain (it passed the check before): told to go, as the others were.
        if (closing is { } close)
        {
            connection.RequestClose(close.Status, close.Reason);
        }
    }

    public void Remove(Connection connection)
    {
        lock (_indexLock)
        {
            if (!_byId.TryRemove(connection.Id, out _))
            {
                return;
            }

            if (_closing is not null && _byId.IsEmpty)
            {
                _drained.TrySetResult();
            }

            if (_byUser.TryGetValue(connection.UserId, out var existing))
            {
                var remaining = existing.Where(c => c != connection).ToArray();
                if (remaining.Length == 0)
                {
                    _byUser.TryRemove(connection.UserId, out _);
                    _connectedSince.TryRemove(connection.UserId, out _);
                }
                else
                {
                    _byUser[connection.UserId] = remaining;
                }
            }
        }
    }

    public bool IsConnected(string userId) => _byUser.ContainsKey(userId);

    /// <summary>
    /// Takes one of the <paramref name="max"/> sockets <paramref name="userId"/> may hold on this instance, or null when
    /// all are taken. Taken at the upgrade's checks and held until the socket ends (dispose the slot), so that upgrades
    /// still in flight count as well: counted by registered sockets, many upgrades at once would all pass.
    /// </summary>
    public UserSlot? TryTakeSlot(string userId, int max)
    {
        lock (_indexLock)
        {
            var taken = _slots.GetValueOrDefault(userId);
            if (taken >= max)
            {
                return null;
            }

            _slots[userId] = taken + 1;
        }

        return new UserSlot(this, userId);
    }

    private void ReleaseSlot(string userId)
    {
        lock (_indexLock)
        {
            var taken = _slots[userId];
            if (taken == 1)
            {
                _slots.Remove(userId);
            }
            else
            {
                _slots[userId] = taken - 1;
            }
        }
    }

    /// <summary>One socket of a user on this instance (<see cref="TryTakeSlot"/>); given back once, when disposed.</summary>
    internal sealed class UserSlot(ConnectionHub hub, string userId) : IDisposable
    {
        private int _released;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _released, 1) == 0)
            {
                hub.ReleaseSlot(userId);
            }
        }
    }

    /// <summary>
    /// When the user's sockets here began (the <see cref="TimeProvider.GetTimestamp"/> of the first of an unbroken run of
    /// connections), or null while the user has none here.
    /// </summary>
    public long? ConnectedSince(string userId) => _connectedSince.TryGetValue(userId, out var since) ? since : null;

    /// <summary>A snapshot of this instance's connections.</summary>
    public IReadOnlyCollection<Connection> Connections() => _byId.Values.ToArray();

    /// <summary>
    /// Enqueues the frame on every local socket of <paramref name="userIds"/> but those of <paramref name="exceptUserId"/>.
    /// Never blocks: a full queue closes that socket.
    /// </summary>
    public void Deliver(IReadOnlyList<string> userIds, OutboundFrame frame, string? exceptUserId = null)
    {
        foreach (var userId in userIds)
        {
            if (userId == exceptUserId || !_byUser.TryGetValue(userId, out var connections))
            {
                continue;
            }

            foreach (var connection in connections)
            {
                connection.TryEnqueue(frame);
            }
        }
    }

    /// <summary>
    /// Asks every socket to close (graceful shutdown: 1001) and waits until they are gone and their sessions cleaned up
    /// (removed from the hub), the timeout passes or <paramref name="cancellationToken"/> is cancelled.
    /// </summary>
    public async Task CloseAllAsync(int closeStatus, string reason, TimeSpan timeout, CancellationToken cancellationToken)
    {
        Connection[] connections;
        lock (_indexLock)
        {
            Draining = true;
            _closing = (closeStatus, reason);
            connections = _byId.Values.ToArray();
            if (_byId.IsEmpty)
            {
                _drained.TrySetResult();
            }
        }

        foreach (var connection in connections)
        {
            connection.RequestClose(closeStatus, reason);
        }

        // Each connection aborts itself a close timeout after its close frame; the bound is for one that never gets that far.
        // Then each session's clean-up (the user's presence and fan-out route, which need services that stop next) ends
        // with its removal from the hub: the drain is over when the hub is empty, not when the sockets are.
        await _drained.Task.WaitAsync(timeout, cancellationToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
    }
}
