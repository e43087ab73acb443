using System.Threading.Channels;
using Microsoft.Extensions.Logging;

namespace Parley.Client.Realtime;

/// <summary>
/// <see cref="ParleyRealtime.State"/>, its change stream and the first time the connection went live (what
/// <see cref="ParleyRealtime.ConnectAsync"/> waits for). Once failed or closed, only <see cref="ConnectionState.Closed"/>
/// follows.
/// </summary>
/// <remarks>
/// Concurrency: <c>_lock</c> guards the state; the change stream and the first-live task are thread-safe by
/// themselves. Changes come from the reconnect loop, the receive loop and the owner.
/// </remarks>
internal sealed class ConnectionStatus(ILogger logger)
{
    /// <summary>State changes kept for a slow reader (the oldest go first: only the latest state matters).</summary>
    public const int KeptChanges = 256;

    private readonly Lock _lock = new();
    private readonly Channel<ConnectionStateChange> _changes = Channel.CreateBounded<ConnectionStateChange>(
        new BoundedChannelOptions(KeptChanges) { FullMode = BoundedChannelFullMode.DropOldest, SingleReader = true });

    private readonly TaskCompletionSource _firstLive = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private ConnectionState _state = ConnectionState.Connecting;

    public ConnectionState State
    {
        get
        {
            lock (_lock)
            {
                return _state;
            }
        }
    }

    public ChannelReader<ConnectionStateChange> Changes => _changes.Reader;

    /// <summary>Completes the first time the connection is live; fails when it fails or is disposed before.</summary>
    public Task FirstLive => _firstLive.Task;

    public void Set(ConnectionStateChange change)
    {
        lock (_lock)
        {
            if (_state is ConnectionState.Failed or ConnectionState.Closed && change.State != ConnectionState.Closed)
            {
                return;
            }

            _state = change.State;
        }

        ParleyRealtime.Log.StateChanged(logger, change.State, change.CloseStatus, change.RetryDelay, change.Error?.Message);
        _changes.Writer.TryWrite(change);
    }

    public void Live()
    {
        Set(new ConnectionStateChange(ConnectionState.Live));
        _firstLive.TrySetResult();
    }

    public void Failed(Exception error)
    {
        Set(new ConnectionStateChange(ConnectionState.Failed, (error as ParleyConnectionException)?.CloseStatus, Error: error));
        _firstLive.TrySetException(error);
    }

    /// <summary>Disposed: a <see cref="ParleyRealtime.ConnectAsync"/> still waiting fails with <paramref name="disposed"/>.</summary>
    public void Disposing(ObjectDisposedException disposed) => _firstLive.TrySetException(disposed);

    /// <summary>The last change: <see cref="ConnectionState.Closed"/>, and the change stream ends.</summary>
    public void Closed()
    {
        Set(new ConnectionStateChange(ConnectionState.Closed));
        _changes.Writer.TryComplete();
    }
}
