using System.Diagnostics;
using System.Net.Sockets;
using System.Net.WebSockets;
using System.Text;
using System.Threading.Channels;

namespace Parley.Bench.Client;

internal enum OutboundKind
{
    Message,
    Ack,
    Ping,
}

/// <summary>One item of a connection's send queue: message number <see cref="Index"/> to conversation <see cref="Slot"/>, an ack, or a ping.</summary>
internal readonly record struct Outbound(OutboundKind Kind, long Index, int Slot);

/// <summary>A connection could not be opened; <see cref="Code"/> names why (<c>http_401</c>, <c>connect_connectionrefused</c>, ...).</summary>
internal sealed class ConnectFailedException(string code, Exception? inner = null) : Exception($"connection failed: {code}", inner)
{
    public string Code { get; } = code;
}

/// <summary>
/// One WebSocket of a device: a receive loop that reads each frame into one growing buffer and parses only the
/// fields the benchmark needs, and a send loop that drains an unbounded queue and serializes each frame into a
/// reused buffer just before writing it (a WebSocket allows one send at a time; the queue keeps the scheduler
/// from ever waiting on a socket).
/// </summary>
internal sealed class Connection : IDisposable
{
    private static readonly TimeSpan ConnectedTimeout = TimeSpan.FromSeconds(15);

    private readonly Device _device;
    private readonly IFrameSink _sink;
    private readonly byte[] _content;
    private readonly ClientWebSocket _socket = new();
    private readonly Channel<Outbound> _outbound = Channel.CreateUnbounded<Outbound>(new UnboundedChannelOptions { SingleReader = true });
    private readonly TaskCompletionSource<long> _connected = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly CancellationTokenSource _stop = new();
    private Task _receive = Task.CompletedTask;
    private Task _send = Task.CompletedTask;
    private volatile bool _closing;
    private int _disposed;

    public Connection(Device device, IFrameSink sink, byte[] content)
    {
        _device = device;
        _sink = sink;
        _content = content;
    }

    /// <summary>Ends when the receive loop ends (the socket closed or broke).</summary>
    public Task Completion => _receive;

    /// <summary>
    /// Opens the socket and waits for the <c>connected</c> frame; returns its arrival time. The first frame sent is a
    /// <c>ping</c>: a connection without cursor holds live events until its first client frame.
    /// </summary>
    public async Task<long> ConnectAsync(Uri uri, HttpMessageInvoker invoker, CancellationToken cancellationToken)
    {
        _socket.Options.KeepAliveInterval = TimeSpan.Zero; // the server pings; the receive loop answers
        _socket.Options.CollectHttpResponseDetails = true;
        _device.Identity.Apply(_socket.Options);
        try
        {
            await _socket.ConnectAsync(uri, invoker, cancellationToken);
        }
        catch (WebSocketException e) when (_socket.HttpStatusCode != 0)
        {
            throw new ConnectFailedException("http_" + (int)_socket.HttpStatusCode, e);
        }
        catch (Exception e) when (e is WebSocketException or HttpRequestException && FindSocketError(e) is { } error)
        {
            throw new ConnectFailedException("connect_" + error.ToString().ToLowerInvariant(), e);
        }
        catch (Exception e) when (e is WebSocketException or HttpRequestException or IOException)
        {
            throw new ConnectFailedException("connect_failed", e);
        }

        _socket.HttpResponseHeaders = null; // kept only for the failure above; thousands of sockets should not hold them
        _device.BeginConnection();
        _device.Connection = this;
        _receive = ReceiveLoopAsync();
        _send = SendLoopAsync();
        Enqueue(new Outbound(OutboundKind.Ping, -1, 0));
        try
        {
            return await _connected.Task.WaitAsync(ConnectedTimeout, cancellationToken);
        }
        catch (TimeoutException e)
        {
            Abort();
            throw new ConnectFailedException("connected_timeout", e);
        }
    }

    /// <summary>Queues a frame; false when the connection is closing or closed (the caller reports the send as failed).</summary>
    public bool Enqueue(Outbound item) => !_closing && _outbound.Writer.TryWrite(item);

    /// <summary>Drops the connection without a close handshake, as a lost network would.</summary>
    public void Abort()
    {
        _closing = true;
        _outbound.Writer.TryComplete();
        if (Volatile.Read(ref _disposed) == 0)
        {
            _stop.Cancel();
            _socket.Abort();
        }
    }

    /// <summary>Closes with 1000 and waits (bounded) for the server's close; aborts if it does not come.</summary>
    public async Task CloseAsync(TimeSpan timeout)
    {
        _closing = true;
        _outbound.Writer.TryComplete();
        try
        {
            await _send.WaitAsync(timeout);
            if (_socket.State == WebSocketState.Open)
            {
                using var cts = new CancellationTokenSource(timeout);
                await _socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, null, cts.Token);
            }

            await _receive.WaitAsync(timeout);
        }
        catch (Exception e) when (e is WebSocketException or OperationCanceledException or TimeoutException or IOException)
        {
            // Closing is best effort: the socket is aborted below either way.
        }

        Dispose();
    }

    /// <summary>Aborts the socket if it is still open and releases it.</summary>
    public void Dispose()
    {
        _closing = true;
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _stop.Cancel();
        _socket.Abort();
        _socket.Dispose();
        _stop.Dispose();
    }

    private async Task ReceiveLoopAsync()
    {
        var buffer = new byte[2048];
        try
        {
            while (true)
            {
                (buffer, var filled, var type) = await Parley.Tools.WebSocketMessages.ReceiveAsync(_socket, buffer, _stop.Token);
                if (type == WebSocketMessageType.Close)
                {
                    if (!_closing)
                    {
                        _sink.OnClosed(_device, "close_" + (int?)_socket.CloseStatus);
                    }

                    break;
                }

                Handle(buffer.AsSpan(0, filled), Stopwatch.GetTimestamp());
            }
        }
        catch (Exception e) when (e is WebSocketException or OperationCanceledException or IOException or ObjectDisposedException)
        {
            if (!_closing)
            {
                _sink.OnClosed(_device, "connection_lost");
            }
        }
        finally
        {
            _closing = true;
            _outbound.Writer.TryComplete();
            _connected.TrySetException(new ConnectFailedException("closed_before_connected"));
        }
    }

    private void Handle(ReadOnlySpan<byte> json, long now)
    {
        if (!ServerFrame.TryParse(json, out var frame))
        {
            _sink.OnError(BenchErrors.UnparsableFrame, -1);
            return;
        }

        switch (frame.Kind)
        {
            case FrameKind.NewMessage:
                var slot = _device.SlotOf(frame.ConversationId);
                if (slot < 0)
                {
                    // A leak, not an answer to the send it names: its real recipients are still checked.
                    _sink.OnError(BenchErrors.ForeignConversation, -1);
                    return;
                }

                var arrival = _device.Trackers[slot].Observe(frame.Seq);
                _sink.OnMessage(_device, frame.MessageIndex, arrival, frame.SenderId.SequenceEqual(_device.Identity.UserIdUtf8), now);
                break;
            case FrameKind.MessageAck:
                _sink.OnAck(frame.MessageIndex, now);
                break;
            case FrameKind.Error:
                _sink.OnError(frame.Code.IsEmpty ? "error" : Encoding.UTF8.GetString(frame.Code), frame.MessageIndex);
                break;
            case FrameKind.Connected:
                // A device with a cursor of its own keeps it; one without any state starts from the current position.
                if (_device.Cursor is null && !frame.Cursor.IsEmpty)
                {
                    _device.Cursor = Encoding.UTF8.GetString(frame.Cursor);
                }

                _connected.TrySetResult(now);
                break;
            case FrameKind.Cursor:
                _device.Cursor = Encoding.UTF8.GetString(frame.Cursor);
                _device.CursorReceived();
                break;
            case FrameKind.SyncComplete:
                _device.Cursor = Encoding.UTF8.GetString(frame.Cursor);
                _device.CursorReceived();
                _sink.OnSyncComplete(_device, now);
                break;
            case FrameKind.SyncReset:
                _device.Cursor = Encoding.UTF8.GetString(frame.Cursor);
                _sink.OnError("sync_reset_" + Encoding.UTF8.GetString(frame.Code), -1);
                break;
            default:
                break;
        }
    }

    private async Task SendLoopAsync()
    {
        using var frames = new ClientFrames();
        var reader = _outbound.Reader;
        try
        {
            while (await reader.WaitToReadAsync(_stop.Token))
            {
                while (reader.TryRead(out var item))
                {
                    var bytes = item.Kind switch
                    {
                        OutboundKind.Message => frames.SendMessage(_device.ConversationId(item.Slot), item.Index, _content),
                        OutboundKind.Ack => frames.Ack(_device.ConversationId(item.Slot), item.Index),
                        _ => ClientFrames.Ping,
                    };
                    try
                    {
                        await _socket.SendAsync(bytes, WebSocketMessageType.Text, endOfMessage: true, _stop.Token);
                    }
                    catch (Exception e) when (e is WebSocketException or OperationCanceledException or IOException or ObjectDisposedException)
                    {
                        Fail(item);
                        throw;
                    }

                    if (item.Kind == OutboundKind.Message)
                    {
                        _sink.OnSent(item.Index, Stopwatch.GetTimestamp());
                    }
                }
            }
        }
        catch (Exception e) when (e is WebSocketException or OperationCanceledException or IOException or ObjectDisposedException)
        {
            // The socket is gone; the receive loop reports the closure.
        }

        _closing = true;
        _outbound.Writer.TryComplete();
        while (reader.TryRead(out var left))
        {
            Fail(left);
        }
    }

    private void Fail(Outbound item)
    {
        if (item.Kind == OutboundKind.Message)
        {
            _sink.OnError("socket_closed", item.Index);
        }
    }

    private static SocketError? FindSocketError(Exception? e)
    {
        for (; e is not null; e = e.InnerException)
        {
            if (e is SocketException socket)
            {
                return socket.SocketErrorCode;
            }
        }

        return null;
    }
}
