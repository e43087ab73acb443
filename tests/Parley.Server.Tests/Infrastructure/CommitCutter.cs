using System.Net;
using System.Net.Sockets;

namespace Parley.Server.Tests.Infrastructure;

/// <summary>
/// A loopback TCP relay in front of PostgreSQL (connect without TLS, <c>SSL Mode=Disable</c>) that, once armed, breaks
/// the connection that sends the next <c>COMMIT</c>, as Npgsql sends it (a simple query of that text alone): the
/// client then cannot know whether its transaction committed. <see cref="CommitCut"/> says where the break falls.
/// </summary>
internal sealed class CommitCutter : IAsyncDisposable
{
    /// <summary>Npgsql's COMMIT: a Query message ('Q', length 11, "COMMIT" and its terminator), always sent alone.</summary>
    private static readonly byte[] CommitQuery = [(byte)'Q', 0, 0, 0, 11, .. "COMMIT\0"u8];

    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly int _target;
    private readonly CancellationTokenSource _stopping = new();
    private readonly Lock _lock = new();
    private readonly List<TcpClient> _sockets = [];
    private readonly Task _accepting;
    private int _armed;
    private int _skip;
    private int _disposed;
    private TaskCompletionSource _cut = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public CommitCutter(int targetPort)
    {
        _target = targetPort;
        _listener.Start();
        _accepting = AcceptAsync();
    }

    public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

    /// <summary>
    /// Breaks the connection of the next COMMIT (after letting <paramref name="skip"/> pass) as <paramref name="cut"/> says;
    /// the task completes when it did.
    /// </summary>
    public Task Arm(CommitCut cut, int skip = 0)
    {
        lock (_lock)
        {
            _cut = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            _skip = skip;
            _armed = (int)cut;
            return _cut.Task;
        }
    }

    private async Task AcceptAsync()
    {
        try
        {
            while (true)
            {
                var client = await _listener.AcceptTcpClientAsync(_stopping.Token);
                var server = new TcpClient();
                await server.ConnectAsync(IPAddress.Loopback, _target, _stopping.Token);
                lock (_lock)
                {
                    _sockets.Add(client);
                    _sockets.Add(server);
                }

                var link = new Link(client, server);
                _ = ClientToServerAsync(link);
                _ = ServerToClientAsync(link);
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException)
        {
            // stopped
        }
    }

    private sealed class Link(TcpClient client, TcpClient server)
    {
        public TcpClient Client => client;

        public TcpClient Server => server;

        /// <summary>The COMMIT went through: the server's answer is swallowed and the link broken.</summary>
        public volatile bool SwallowAnswer;
    }

    private async Task ClientToServerAsync(Link link)
    {
        var buffer = new byte[64 * 1024];
        try
        {
            var from = link.Client.GetStream();
            var to = link.Server.GetStream();
            while (true)
            {
                var read = await from.ReadAsync(buffer, _stopping.Token);
                if (read == 0)
                {
                    break;
                }

                var at = Volatile.Read(ref _armed) != 0 ? buffer.AsSpan(0, read).IndexOf(CommitQuery) : -1;
                var cut = at >= 0 && Interlocked.Decrement(ref _skip) < 0 ? (CommitCut)Interlocked.Exchange(ref _armed, 0) : CommitCut.None;
                switch (cut)
                {
                    case CommitCut.None:
                        await to.WriteAsync(buffer.AsMemory(0, read), _stopping.Token);
                        continue;
                    case CommitCut.AfterCommit:
                        link.SwallowAnswer = true;
                        await to.WriteAsync(buffer.AsMemory(0, read), _stopping.Token);
                        continue;
                    case CommitCut.BeforeCommit:
                        await to.WriteAsync(buffer.AsMemory(0, at), _stopping.Token);
                        Reset(link.Client);
                        Reset(link.Server);
                        break;
                    case CommitCut.Silent:
                        await to.WriteAsync(buffer.AsMemory(0, at), _stopping.Token);
                        Reset(link.Client); // the server's side stays open and hears nothing more
                        break;
                }

                CompleteCut();
                return;
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or SocketException or IOException or ObjectDisposedException)
        {
            // a side went away
        }

        Reset(link.Client);
        Reset(link.Server);
    }

    private async Task ServerToClientAsync(Link link)
    {
        var buffer = new byte[64 * 1024];
        try
        {
            var from = link.Server.GetStream();
            var to = link.Client.GetStream();
            while (true)
            {
                var read = await from.ReadAsync(buffer, _stopping.Token);
                if (read == 0)
                {
                    break;
                }

                if (link.SwallowAnswer)
                {
                    // The COMMIT's answer: the server committed, the client never hears it.
                    Reset(link.Client);
                    Reset(link.Server);
                    CompleteCut();
                    return;
                }

                await to.WriteAsync(buffer.AsMemory(0, read), _stopping.Token);
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or SocketException or IOException or ObjectDisposedException)
        {
            // a side went away
        }

        if (!link.SwallowAnswer)
        {
            Reset(link.Client);
        }
    }

    private void CompleteCut()
    {
        lock (_lock)
        {
            _cut.TrySetResult();
        }
    }

    /// <summary>Closes with a reset, as a broken network path would (no orderly shutdown).</summary>
    private static void Reset(TcpClient socket)
    {
        try
        {
            socket.Client?.LingerState = new LingerOption(true, 0);
        }
        catch (ObjectDisposedException)
        {
            // already closed
        }

        socket.Dispose();
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1)
        {
            return;
        }

        await _stopping.CancelAsync();
        _listener.Stop();
        await _accepting;
        lock (_lock)
        {
            foreach (var socket in _sockets)
            {
                socket.Dispose();
            }
        }

        _stopping.Dispose();
    }
}

/// <summary>Where <see cref="CommitCutter"/> breaks the connection of a COMMIT.</summary>
public enum CommitCut
{
    None,

    /// <summary>Before the COMMIT reaches the server; both sides are reset, so the server rolls the transaction back.</summary>
    BeforeCommit,

    /// <summary>After the server committed: its answer is swallowed and both sides are reset.</summary>
    AfterCommit,

    /// <summary>
    /// Before the COMMIT reaches the server; only the client's side is reset: the server's side stays open and silent, as
    /// on a network path that stopped carrying traffic, so the transaction stays open there.
    /// </summary>
    Silent,
}
