using System.Net;
using System.Net.Sockets;

namespace Parley.Server.Tests.Infrastructure;

/// <summary>
/// A loopback TCP relay in front of a server, or of several instances like a load balancer (each connection
/// goes to the next one that accepts it): <see cref="DropAll"/> cuts every connection without a close frame,
/// as a network loss would, while the servers keep running; <see cref="Pause"/> stalls every connection (bytes are
/// held, nothing is closed), as a network path that stops carrying traffic would.
/// </summary>
internal sealed class TcpRelay : IAsyncDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly Uri[] _upstreams;
    private readonly CancellationTokenSource _stopping = new();
    private readonly Lock _lock = new();
    private readonly List<TcpClient> _connections = [];
    private readonly List<Task> _pumps = [];
    private readonly Task _acceptLoop;

    private int _next;

    // Completed while bytes flow; a pending task while paused.
    private TaskCompletionSource _flowing = CompletedFlow();

    public TcpRelay(params Uri[] upstreams)
    {
        _upstreams = upstreams;
        _listener.Start();
        _acceptLoop = AcceptLoopAsync();
    }

    public Uri Address => new UriBuilder(_upstreams[0]) { Port = ((IPEndPoint)_listener.LocalEndpoint).Port }.Uri;

    /// <summary>Connections accepted so far.</summary>
    public int Accepted { get; private set; }

    public void DropAll()
    {
        lock (_lock)
        {
            foreach (var connection in _connections)
            {
                // Linger 0: a reset, not a FIN, like a dead network path (a pump may have closed it already).
                try
                {
                    connection.Client?.LingerState = new LingerOption(true, 0);
                }
                catch (ObjectDisposedException)
                {
                    // Already gone.
                }

                connection.Dispose();
            }

            _connections.Clear();
        }
    }

    /// <summary>Stops carrying bytes in either direction on every connection, new ones included, until <see cref="Resume"/>.</summary>
    public void Pause()
    {
        lock (_lock)
        {
            if (_flowing.Task.IsCompleted)
            {
                _flowing = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            }
        }
    }

    public void Resume()
    {
        lock (_lock)
        {
            _flowing.TrySetResult();
        }
    }

    private static TaskCompletionSource CompletedFlow()
    {
        var flowing = new TaskCompletionSource();
        flowing.SetResult();
        return flowing;
    }

    private async Task AcceptLoopAsync()
    {
        try
        {
            while (true)
            {
                var inbound = await _listener.AcceptTcpClientAsync(_stopping.Token);
                var outbound = await ConnectUpstreamAsync();
                if (outbound is null)
                {
                    // Every server is down (being restarted): this connection fails, the relay keeps accepting.
                    inbound.Dispose();
                    continue;
                }

                lock (_lock)
                {
                    Accepted++;
                    _connections.Add(inbound);
                    _connections.Add(outbound);
                    _pumps.Add(PumpAsync(inbound, outbound));
                    _pumps.Add(PumpAsync(outbound, inbound));
                }
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException)
        {
            // Stopped.
        }
    }

    /// <summary>The next upstream in turn that accepts a connection (null when none does).</summary>
    private async Task<TcpClient?> ConnectUpstreamAsync()
    {
        for (var attempt = 0; attempt < _upstreams.Length; attempt++)
        {
            var upstream = _upstreams[_next++ % _upstreams.Length];
            var outbound = new TcpClient();
            try
            {
                await outbound.ConnectAsync(upstream.Host, upstream.Port, _stopping.Token);
                return outbound;
            }
            catch (SocketException)
            {
                outbound.Dispose();
            }
        }

        return null;
    }

    private async Task PumpAsync(TcpClient from, TcpClient to)
    {
        try
        {
            var buffer = new byte[16 * 1024];
            var source = from.GetStream();
            var target = to.GetStream();
            int read;
            while ((read = await source.ReadAsync(buffer, _stopping.Token)) > 0)
            {
                Task flowing;
                lock (_lock)
                {
                    flowing = _flowing.Task;
                }

                await flowing.WaitAsync(_stopping.Token);
                await target.WriteAsync(buffer.AsMemory(0, read), _stopping.Token);
            }
        }
        catch (Exception ex) when (ex is IOException or OperationCanceledException or ObjectDisposedException or SocketException or InvalidOperationException)
        {
            // One side went away.
        }
        finally
        {
            from.Dispose();
            to.Dispose();
        }
    }

    public async ValueTask DisposeAsync()
    {
        Resume();
        await _stopping.CancelAsync();
        _listener.Stop();
        DropAll();
        await _acceptLoop;
        Task[] pumps;
        lock (_lock)
        {
            pumps = [.. _pumps];
        }

        await Task.WhenAll(pumps);
        _stopping.Dispose();
    }
}
