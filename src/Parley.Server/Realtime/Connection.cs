using System.Buffers;
using System.Net.WebSockets;
using System.Threading.Channels;
using Parley.Server.Observability;
using Parley.Server.Protocol;

namespace Parley.Server.Realtime;

/// <summary>
/// One WebSocket. Two loops own the socket: the receive loop is the only reader, the send loop the only
/// writer (control frames included: every close goes through it). Anyone may enqueue frames; enqueueing
/// never waits: a full queue means the client is not reading, and the connection is closed with 4001
/// instead of buffering without bound or slowing the sender down.
/// </summary>
internal sealed partial class Connection : IDisposable, IHeartbeatOwner
{
    private const int InitialReceiveBuffer = 4096;

    private readonly WebSocket _socket;
    private readonly Channel<OutboundFrame> _outbound;
    private readonly RealtimeOptions _options;
    private readonly int _maxFrameBytes;
    private readonly ILogger _logger;
    private readonly ParleyMetrics _metrics;
    private readonly TaskCompletionSource _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly CancellationTokenSource _closing = new();

    private readonly List<Task> _attached = [];
    private OutboundHooks _hooks = OutboundHooks.None;

    // Owned by the receive loop; rented only while a message is being read.
    private byte[] _receiveBuffer = [];

    // Set once, by the first RequestClose; read by the send loop. Status and reason are published in the same object
    // as the request itself: with a flag set before them, a send loop that saw the flag in between closed with the
    // default 1000 instead of the requested status (4001 for a slow consumer).
    private CloseRequest? _closeRequest;

    // 1 once the heartbeat aborted the socket (for the close reason).
    private int _heartbeatTimedOut;

    // True while the receive loop waits for the peer's next frame (not while it handles one).
    private volatile bool _awaitsPeer;

    public Connection(
        string id, string userId, string deviceId, bool acks, WebSocket socket, RealtimeOptions options, int maxFrameBytes, ILogger logger, ParleyMetrics metrics)
    {
        Id = id;
        UserId = userId;
        DeviceId = deviceId;
        Acks = acks;
        _socket = socket;
        _options = options;
        _maxFrameBytes = maxFrameBytes;
        _logger = logger;
        _metrics = metrics;
        _outbound = Channel.CreateBounded<OutboundFrame>(new BoundedChannelOptions(options.SendQueueCapacity)
        {
            SingleReader = true,
            SingleWriter = false,
            FullMode = BoundedChannelFullMode.Wait,
        });
    }

    public string Id { get; }

    public void Dispose() => _closing.Dispose();

    public string UserId { get; }

    public string DeviceId { get; }

    /// <summary>The device acknowledges what it received (<c>acks=true</c>); only its <c>ack</c> frames count as delivered.</summary>
    public bool Acks { get; }

    /// <summary>Completes when both loops have ended and the socket is closed or aborted.</summary>
    public Task Completion => _completion.Task;

    /// <summary>Cancelled when the connection ends (for work that lives as long as it, such as a catch-up).</summary>
    public CancellationToken Closing => _closing.Token;

    private bool CloseRequested => RequestedClose is not null;

    /// <summary>The close the send loop sends, once one was requested.</summary>
    public CloseRequest? RequestedClose => Volatile.Read(ref _closeRequest);

    /// <summary>
    /// Queues a frame for this socket. Returns false, and closes the connection with 4001, when the queue is full.
    /// The hooks may take the frame first (delivery holds live frames while a catch-up runs, in a list bounded the
    /// same way).
    /// </summary>
    public bool TryEnqueue(OutboundFrame frame)
    {
        switch (_hooks.Intercept(frame))
        {
            case HoldOutcome.Held:
                return true;
            case HoldOutcome.NotHeld when _outbound.Writer.TryWrite(frame):
                return true;
            default:
                CloseSlowConsumer();
                return false;
        }
    }

    /// <summary>Writes straight to the send queue (for the hooks: frames they held or let pass); false when it is full.</summary>
    public bool TryWriteQueue(OutboundFrame frame) => _outbound.Writer.TryWrite(frame);

    /// <summary>Installs the delivery hooks; once, before the first frame is queued.</summary>
    public void UseHooks(OutboundHooks hooks) => _hooks = hooks;

    /// <summary>A close was requested (by anyone): nothing more will be written.</summary>
    public bool IsClosing => CloseRequested;

    /// <summary>
    /// Catch-up frames (the connection's own task sends them): waits for room in the queue instead of closing,
    /// and bypasses the hold list that keeps live events back meanwhile.
    /// </summary>
    public ValueTask EnqueueAsync(OutboundFrame frame, CancellationToken cancellationToken) =>
        _outbound.Writer.WriteAsync(frame, cancellationToken);

    /// <summary>Free places in the send queue (an estimate: other writers may take them meanwhile).</summary>
    public int QueueRoom => _options.SendQueueCapacity - _outbound.Reader.Count;

    /// <summary>Frames waiting in the send queue (for the queue-depth gauge; a moment's value).</summary>
    public int QueueLength => _outbound.Reader.Count;

    /// <summary>
    /// Nothing waits in the send queue and no frame is being written: every frame handed to this socket so far was written
    /// (or dropped). A frame taken off the queue counts as waiting until its write finished and was recorded.
    /// </summary>
    public bool IsDrained => _outbound.Reader.Count == 0 && Volatile.Read(ref _writing) == 0; // in this order: see SendLoopAsync

    // 1 from before the send loop takes a frame until the queue is empty again (set before each TryRead, so that a frame is
    // always either in the queue or covered by this, for a reader that looks at the queue first).
    private int _writing;

    /// <summary>
    /// Why the connection ended, for metrics (a <see cref="ParleyMetrics.CloseReasons"/> constant): the status of the
    /// close that was requested, or <c>aborted</c> when the socket ended without a close handshake for any other reason
    /// (heartbeat or send timeout, a dropped network). Meaningful once <see cref="Completion"/> is done.
    /// </summary>
    public string CloseReason => (int?)RequestedClose?.Status switch
    {
        CloseCodes.GoingAway => ParleyMetrics.CloseReasons.GoingAway,
        CloseCodes.MessageTooBig => ParleyMetrics.CloseReasons.MessageTooBig,
        CloseCodes.TryAgainLater => ParleyMetrics.CloseReasons.TryAgainLater,
        CloseCodes.SlowConsumer => ParleyMetrics.CloseReasons.SlowConsumer,
        CloseCodes.TokenExpired => ParleyMetrics.CloseReasons.TokenExpired,
        _ when Volatile.Read(ref _heartbeatTimedOut) == 1 => ParleyMetrics.CloseReasons.HeartbeatTimeout,
        _ when _socket.State == WebSocketState.Aborted => ParleyMetrics.CloseReasons.Aborted,
        _ => ParleyMetrics.CloseReasons.Normal,
    };

    /// <summary>Work that lives as long as the connection (a catch-up): cancelled through <see cref="Closing"/>, awaited at the end.</summary>
    public void Attach(Task work)
    {
        lock (_attached)
        {
            _attached.Add(work);
        }
    }

    /// <inheritdoc/>
    public bool AwaitsPeer => _awaitsPeer;

    /// <summary>The peer answered no ping within the heartbeat timeout: the socket is aborted, which ends both loops.</summary>
    public void HeartbeatTimedOut()
    {
        if (Interlocked.Exchange(ref _heartbeatTimedOut, 1) == 0)
        {
            Log.HeartbeatTimedOut(_logger, Id, _options.HeartbeatTimeout);
            _socket.Abort();
        }
    }

    /// <summary>Closes with 4001: the client does not read fast enough (its queue, or the hold list, is full).</summary>
    public void CloseSlowConsumer()
    {
        // Every writer that finds the queue full lands here: only the one whose request wins logs and counts.
        if (!CloseRequested && TryRequestClose(CloseCodes.SlowConsumer, "send queue overflow"))
        {
            Log.SlowConsumer(_logger, Id, _options.SendQueueCapacity);
            _metrics.SlowConsumerClosed();
        }
    }

    /// <summary>Asks the send loop to close the socket with this status; the first request wins, queued frames are dropped.</summary>
    public void RequestClose(int status, string reason) => TryRequestClose(status, reason);

    /// <summary><see cref="RequestClose"/>; true when this request is the one that won.</summary>
    private bool TryRequestClose(int status, string reason)
    {
        // The exchange publishes the complete request (a full fence): whoever sees it sees its status and reason.
        if (Interlocked.CompareExchange(ref _closeRequest, new CloseRequest((WebSocketCloseStatus)status, reason), null) is not null)
        {
            return false;
        }

        _outbound.Writer.TryComplete();
        return true;
    }

    /// <summary>How the send loop closes the socket: the status and reason of the first <see cref="RequestClose"/>.</summary>
    public sealed record CloseRequest(WebSocketCloseStatus Status, string Reason);

    /// <summary>Runs both loops until the socket is closed. Never throws for socket failures.</summary>
    public async Task RunAsync(
        Func<Connection, ReadOnlyMemory<byte>, WebSocketMessageType, CancellationToken, Task> onFrame,
        Action<Connection, OutboundFrame> onSent,
        CancellationToken cancellationToken)
    {
        try
        {
            var send = SendLoopAsync(onSent);
            var receive = ReceiveLoopAsync(onFrame, cancellationToken);
            await Task.WhenAny(send, receive);

            // The receive loop ended first (peer closed, or the socket failed): let the send loop answer or finish.
            RequestClose(CloseCodes.Normal, string.Empty);
            var both = Task.WhenAll(send, receive);
            if (await Task.WhenAny(both, Task.Delay(_options.CloseTimeout, CancellationToken.None)) != both)
            {
                // The peer did not complete the close handshake in time.
                _socket.Abort();
            }

            await both;
        }
        finally
        {
            await _closing.CancelAsync();
            Task[] attached;
            lock (_attached)
            {
                attached = [.. _attached];
            }

            // Attached work handles its own failures; this only waits for it to notice the cancellation.
            await Task.WhenAll(attached).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            _completion.TrySetResult();
        }
    }

    private async Task SendLoopAsync(Action<Connection, OutboundFrame> onSent)
    {
        var reader = _outbound.Reader;
        using var deadline = new CancellationTokenSource();
        try
        {
            while (await reader.WaitToReadAsync(CancellationToken.None))
            {
                Volatile.Write(ref _writing, 1);
                while (!CloseRequested && reader.TryRead(out var frame))
                {
                    if (!_hooks.ShouldWrite(frame))
                    {
                        continue;
                    }

                    // A write that does not finish in time means the peer stopped reading: abort, do not wait forever.
                    deadline.CancelAfter(_options.SendTimeout);
                    await _socket.SendAsync(frame.Utf8, WebSocketMessageType.Text, endOfMessage: true, deadline.Token);
                    if (!deadline.TryReset())
                    {
                        throw new OperationCanceledException("send deadline passed");
                    }

                    _hooks.Written(frame);
                    _metrics.FrameWritten(frame.Type, frame.HandedOffAt);
                    onSent(this, frame);
                }

                Volatile.Write(ref _writing, 0);

                if (CloseRequested)
                {
                    break;
                }
            }

            if (_socket.State is WebSocketState.Open or WebSocketState.CloseReceived)
            {
                deadline.CancelAfter(_options.CloseTimeout);
                // Only RequestClose ends the loop (and completes the queue), so a request is there.
                var close = RequestedClose!;
                await _socket.CloseOutputAsync(close.Status, close.Reason, deadline.Token);
            }
        }
        catch (Exception ex) when (ex is WebSocketException or OperationCanceledException or ObjectDisposedException or IOException)
        {
            Log.SendFailed(_logger, Id, ex.Message);
            _socket.Abort();
        }
    }

    private async Task ReceiveLoopAsync(Func<Connection, ReadOnlyMemory<byte>, WebSocketMessageType, CancellationToken, Task> onFrame, CancellationToken cancellationToken)
    {
        try
        {
            while (true)
            {
                // Zero-byte read: an idle socket holds no receive buffer.
                _awaitsPeer = true;
                var probe = await _socket.ReceiveAsync(Memory<byte>.Empty, cancellationToken);
                if (probe.MessageType == WebSocketMessageType.Close)
                {
                    OnPeerClose();
                    return;
                }

                _receiveBuffer = ArrayPool<byte>.Shared.Rent(InitialReceiveBuffer);
                try
                {
                    var (count, type, closed, tooBig) = probe.EndOfMessage
                        ? (0, probe.MessageType, false, false)
                        : await ReadMessageAsync(cancellationToken);
                    if (closed)
                    {
                        OnPeerClose();
                        return;
                    }

                    if (tooBig)
                    {
                        // Once closing, the rest of an oversized message is drained in limit-sized pieces: log it once.
                        if (!CloseRequested)
                        {
                            Log.FrameTooBig(_logger, Id, _maxFrameBytes);
                            RequestClose(CloseCodes.MessageTooBig, $"message larger than {_maxFrameBytes} bytes");
                        }
                    }
                    else if (CloseRequested)
                    {
                        // Closing: frames that arrive before the peer's close are not processed.
                    }
                    else
                    {
                        // Binary messages too: whether they are accepted is the protocol's call, not the transport's.
                        _awaitsPeer = false;
                        await onFrame(this, _receiveBuffer.AsMemory(0, count), type, cancellationToken);
                    }
                }
                finally
                {
                    ArrayPool<byte>.Shared.Return(_receiveBuffer);
                    _receiveBuffer = [];
                }
            }
        }
        catch (Exception ex) when (ex is WebSocketException or OperationCanceledException or ObjectDisposedException or IOException)
        {
            // Aborted (heartbeat timeout, send failure, shutdown) or the peer vanished.
            Log.ReceiveEnded(_logger, Id, ex.Message);
        }
        finally
        {
            RequestClose(CloseCodes.Normal, string.Empty);
        }
    }

    private void OnPeerClose() =>
        RequestClose(CloseCodes.Normal, string.Empty);

    /// <summary>
    /// Reads one message into <see cref="_receiveBuffer"/>, growing it (pooled) up to the limit. Reading stops as soon
    /// as the message exceeds the limit: the caller closes with 1009 at once, because a peer may never finish such a
    /// message. The receive loop then drains what is left of it, unprocessed, until the peer's close arrives or the
    /// close times out, so the socket stays in a state where a close can be exchanged.
    /// </summary>
    private async Task<(int Count, WebSocketMessageType Type, bool Closed, bool TooBig)> ReadMessageAsync(CancellationToken cancellationToken)
    {
        var count = 0;
        while (true)
        {
            if (count == _receiveBuffer.Length)
            {
                if (count >= _maxFrameBytes)
                {
                    return (0, WebSocketMessageType.Text, false, true);
                }

                var larger = ArrayPool<byte>.Shared.Rent(Math.Min(_receiveBuffer.Length * 2, _maxFrameBytes));
                _receiveBuffer.AsSpan(0, count).CopyTo(larger);
                ArrayPool<byte>.Shared.Return(_receiveBuffer);
                _receiveBuffer = larger;
            }

            var result = await _socket.ReceiveAsync(_receiveBuffer.AsMemory(count), cancellationToken);
            if (result.MessageType == WebSocketMessageType.Close)
            {
                return (0, result.MessageType, true, false);
            }

            count += result.Count;
            if (count > _maxFrameBytes)
            {
                return (0, result.MessageType, false, true);
            }

            if (result.EndOfMessage)
            {
                return (count, result.MessageType, false, false);
            }
        }
    }
}

/// <summary>What a hook did with a frame offered to the queue.</summary>
internal enum HoldOutcome
{
    /// <summary>Not taken: it goes to the send queue.</summary>
    NotHeld,

    /// <summary>Taken (held back, or written by the hook).</summary>
    Held,

    /// <summary>Taken but there is no room for it: the client is a slow consumer.</summary>
    Full,
}

/// <summary>
/// How delivery (Sync) takes part in a socket's outbound path without the transport knowing its rules: a frame
/// offered to the queue may be held back (<see cref="Intercept"/>); the send loop asks before writing a frame
/// (<see cref="ShouldWrite"/>, false skips it) and reports it once written (<see cref="Written"/>). The last two
/// run on the send loop only.
/// </summary>
internal sealed record OutboundHooks(Func<OutboundFrame, HoldOutcome> Intercept, Func<OutboundFrame, bool> ShouldWrite, Action<OutboundFrame> Written)
{
    /// <summary>No delivery rules: every frame goes to the queue and is written.</summary>
    public static readonly OutboundHooks None = new(_ => HoldOutcome.NotHeld, _ => true, _ => { });
}
