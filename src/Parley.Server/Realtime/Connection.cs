using System.Buffers;
using System.Net.WebSockets;
using System.Threading.Channels;
using Parley.Server.Realtime.Protocol;

namespace Parley.Server.Realtime;

/// <summary>
/// One WebSocket. Two loops own the socket: the receive loop is the only reader, the send loop the only
/// writer (control frames included: every close goes through it). Anyone may enqueue frames; enqueueing
/// never waits: a full queue means the client is not reading, and the connection is closed with 4001
/// instead of buffering without bound or slowing the sender down.
/// </summary>
internal sealed partial class Connection : IDisposable
{
    private const int InitialReceiveBuffer = 4096;

    private readonly WebSocket _socket;
    private readonly Channel<OutboundFrame> _outbound;
    private readonly RealtimeOptions _options;
    private readonly int _maxFrameBytes;
    private readonly ILogger _logger;
    private readonly TaskCompletionSource _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly CancellationTokenSource _closing = new();

    // Live frames kept back while a catch-up runs (null when not holding); guarded by _holdLock, which also
    // orders enqueues against the release of the held frames.
    private const int HeldQueues = 4;
    private readonly Lock _holdLock = new();
    private List<OutboundFrame>? _held;
    private bool _holdingForCatchUp;
    private readonly List<Task> _attached = [];
    private int _clientFrames;

    // Per conversation, the highest seq written to the socket; owned by the send loop (its only reader and writer).
    private readonly Dictionary<Guid, long> _written = [];

    // Owned by the receive loop; rented only while a message is being read.
    private byte[] _receiveBuffer = [];

    // Set once, by the first RequestClose; read by the send loop. Status and reason are published in the same object
    // as the request itself: with a flag set before them, a send loop that saw the flag in between closed with the
    // default 1000 instead of the requested status (4001 for a slow consumer).
    private CloseRequest? _closeRequest;

    public Connection(
        string id, string userId, string deviceId, bool acks, WebSocket socket, RealtimeOptions options, int maxFrameBytes, ILogger logger)
    {
        Id = id;
        UserId = userId;
        DeviceId = deviceId;
        Acks = acks;
        _socket = socket;
        _options = options;
        _maxFrameBytes = maxFrameBytes;
        _logger = logger;
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
    /// While the connection holds live events (a catch-up is running, see <see cref="Hold"/>), the frame waits in
    /// the hold list instead; the list is bounded the same way.
    /// </summary>
    public bool TryEnqueue(OutboundFrame frame)
    {
        lock (_holdLock)
        {
            if (_held is not null)
            {
                if (frame.Transient)
                {
                    // Not held (stale by the end of the catch-up); while the catch-up fills the queue it may not fit,
                    // and a typing indicator is not worth closing the connection for.
                    _outbound.Writer.TryWrite(frame);
                    return true;
                }

                if (_held.Count < _options.SendQueueCapacity * HeldQueues)
                {
                    _held.Add(frame);
                    return true;
                }
            }
            else if (_outbound.Writer.TryWrite(frame))
            {
                return true;
            }
        }

        OverflowAndClose();
        return false;
    }

    /// <summary>
    /// Catch-up frames (the connection's own task sends them): waits for room in the queue instead of closing,
    /// and bypasses the hold list that keeps live events back meanwhile.
    /// </summary>
    public ValueTask EnqueueAsync(OutboundFrame frame, CancellationToken cancellationToken) =>
        _outbound.Writer.WriteAsync(frame, cancellationToken);

    /// <summary>Free places in the send queue (an estimate: other writers may take them meanwhile).</summary>
    public int QueueRoom => _options.SendQueueCapacity - _outbound.Reader.Count;

    /// <summary>From now on live frames wait in the hold list (subscribe before reading the catch-up).</summary>
    public void Hold()
    {
        lock (_holdLock)
        {
            _held ??= [];
        }
    }

    /// <summary>
    /// Holds live frames for a catch-up: only the catch-up's own release ends this hold (the end of the wait for
    /// a first frame, which may race with a <c>resume</c>, no longer does).
    /// </summary>
    public void HoldForCatchUp()
    {
        lock (_holdLock)
        {
            _holdingForCatchUp = true;
            _held ??= [];
        }
    }

    /// <summary>
    /// Ends holding: held frames go to the queue in their order, except those <paramref name="alreadySent"/>
    /// says the catch-up carried; then live frames flow directly again.
    /// </summary>
    public void Release(Func<OutboundFrame, bool>? alreadySent = null)
    {
        var overflow = false;
        lock (_holdLock)
        {
            if (_held is null)
            {
                return;
            }

            foreach (var frame in _held)
            {
                if (alreadySent?.Invoke(frame) != true && !_outbound.Writer.TryWrite(frame))
                {
                    overflow = true;
                    break;
                }
            }

            _held = null;
        }

        if (overflow)
        {
            OverflowAndClose();
        }
    }

    /// <summary>
    /// Claims the hold for a first-frame <c>resume</c>: true while the live events since connecting are still held
    /// (nothing sequenced was written yet), after which only the catch-up's release ends the hold. False once the
    /// wait for a first frame ran out and live events flowed: a catch-up now would send older events after newer
    /// ones, so such a resume is refused. Atomic with <see cref="EndFirstFrameWait"/> (both under the hold lock).
    /// </summary>
    public bool TryClaimHoldForResume()
    {
        lock (_holdLock)
        {
            if (_held is null || CloseRequested)
            {
                return false;
            }

            _holdingForCatchUp = true;
            return true;
        }
    }

    public bool IsHolding
    {
        get
        {
            lock (_holdLock)
            {
                return _held is not null;
            }
        }
    }

    /// <summary>The connection was opened with <c>?cursor=</c>: its catch-up started at once, a <c>resume</c> frame is refused.</summary>
    public bool ResumedOnConnect { get; set; }

    /// <summary>True for the connection's first client frame only (a <c>resume</c> is accepted there).</summary>
    public bool MarkClientFrame() => Interlocked.Exchange(ref _clientFrames, 1) == 0;

    /// <summary>
    /// The wait for a first frame that might be a <c>resume</c> is over (the frame came and was something else,
    /// or Delivery:FirstFrameWait passed): live events flow, unless a catch-up holds them.
    /// </summary>
    public void EndFirstFrameWait()
    {
        lock (_holdLock)
        {
            if (!_holdingForCatchUp)
            {
                Release();
            }
        }
    }

    /// <summary>Work that lives as long as the connection (a catch-up): cancelled through <see cref="Closing"/>, awaited at the end.</summary>
    public void Attach(Task work)
    {
        lock (_attached)
        {
            _attached.Add(work);
        }
    }

    /// <summary>
    /// The sequenced events this socket's device holds: written to the socket, or (for a device that started
    /// without a cursor) committed before the socket subscribed, which the device loads over REST.
    /// </summary>
    public SentPositions Sent { get; } = new();

    /// <summary>Positions a device without a cursor already has: everything committed before it subscribed (read after subscribing).</summary>
    public void SetBaseline(IReadOnlyDictionary<Guid, long> lastSeqs)
    {
        foreach (var (conversationId, seq) in lastSeqs)
        {
            Sent.Confirm(conversationId, seq);
        }
    }

    /// <summary>Set by the stream position logic (Sync): this socket follows cursors, and the last one it got.</summary>
    public CursorState Cursors { get; } = new();

    private void OverflowAndClose()
    {
        if (!CloseRequested)
        {
            Log.SlowConsumer(_logger, Id, _options.SendQueueCapacity);
            RequestClose(CloseCodes.SlowConsumer, "send queue overflow");
        }
    }

    /// <summary>Asks the send loop to close the socket with this status; the first request wins, queued frames are dropped.</summary>
    public void RequestClose(int status, string reason)
    {
        // The exchange publishes the complete request (a full fence): whoever sees it sees its status and reason.
        if (Interlocked.CompareExchange(ref _closeRequest, new CloseRequest((WebSocketCloseStatus)status, reason), null) is not null)
        {
            return;
        }

        lock (_holdLock)
        {
            _held = null;
        }

        _outbound.Writer.TryComplete();
    }

    /// <summary>How the send loop closes the socket: the status and reason of the first <see cref="RequestClose"/>.</summary>
    public sealed record CloseRequest(WebSocketCloseStatus Status, string Reason);

    /// <summary>Runs both loops until the socket is closed. Never throws for socket failures.</summary>
    public async Task RunAsync(
        Func<Connection, ReadOnlyMemory<byte>, CancellationToken, Task> onFrame,
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
                while (!CloseRequested && reader.TryRead(out var frame))
                {
                    if (IsAlreadyWritten(frame))
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

                    if (frame.Seq > 0 && frame.ConversationId is { } conversationId)
                    {
                        _written[conversationId] = Math.Max(_written.GetValueOrDefault(conversationId), frame.Seq);
                        // Recorded once written: a cursor check never counts a frame that is still queued.
                        Sent.Record(conversationId, frame.Seq, exact: Cursors.Enabled);
                        Cursors.SentSinceCursor = true;
                    }

                    onSent(this, frame);
                }

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

    /// <summary>
    /// A live frame at or below the highest seq of its conversation already written here is a second copy: an
    /// event whose commit a catch-up already read, broadcast only after the catch-up released its held frames.
    /// Every path but one writes a conversation's events in seq order (live under the conversation's lock,
    /// catch-up by position, held frames released in order), so such a frame is never one the socket lacks; the
    /// exception, an event sent by the cursor check because it never arrived live, is marked
    /// <see cref="OutboundFrame.Redelivery"/> and always written.
    /// </summary>
    private bool IsAlreadyWritten(OutboundFrame frame) =>
        frame.Seq > 0 && !frame.Redelivery && frame.ConversationId is { } conversationId
        && _written.TryGetValue(conversationId, out var written) && frame.Seq <= written;

    private async Task ReceiveLoopAsync(Func<Connection, ReadOnlyMemory<byte>, CancellationToken, Task> onFrame, CancellationToken cancellationToken)
    {
        try
        {
            while (true)
            {
                // Zero-byte read: an idle socket holds no receive buffer.
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
                    else if (type == WebSocketMessageType.Binary)
                    {
                        TryEnqueue(Frames.Error(ErrorCodes.InvalidFrame, "Frames are JSON text; binary frames are not accepted.", null));
                    }
                    else
                    {
                        await onFrame(this, _receiveBuffer.AsMemory(0, count), cancellationToken);
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

/// <summary>A connection's cursor bookkeeping (written by its own tasks, read by the cursor ticker).</summary>
[System.Diagnostics.CodeAnalysis.SuppressMessage(
    "Reliability", "CA1001", Justification = "The SemaphoreSlim never creates a wait handle (AvailableWaitHandle is not used): nothing to dispose, and a cursor check may still release it after the connection ended.")]
internal sealed class CursorState
{
    // Held while a cursor is computed for the socket (one at a time; a second request is skipped), and by a resume
    // while it resets the socket's positions, so that no computation straddles the reset.
    private readonly SemaphoreSlim _computing = new(1, 1);

    // A cursor computed while withheld, sent once the first frame shows the device is not resuming.
    private OutboundFrame? _pending;

    /// <summary>The socket follows cursors (it presented one, resumed, or acknowledges): it gets cursor frames.</summary>
    public volatile bool Enabled;

    /// <summary>
    /// No cursor frame may be sent yet: the socket was opened without a cursor and its first frame has not shown
    /// that the device is not resuming (a later <c>resume</c> would make any cursor sent before it claim events the
    /// device lacks). Stays set for good when that first frame was a refused <c>resume</c> or not a valid frame.
    /// Cursor checks still run meanwhile (they also send events the socket lacks); their cursor waits.
    /// </summary>
    public volatile bool Withheld;

    /// <summary>A catch-up is running: no cursor may be computed until it ends.</summary>
    public volatile bool CatchingUp;

    /// <summary>Sequenced frames were written since the last cursor this socket got.</summary>
    public volatile bool SentSinceCursor;

    /// <summary>The socket holds events its last cursor did not cover: the ticker checks again (see <see cref="RecheckBudget"/>).</summary>
    public volatile bool Recheck;

    /// <summary>Checks left before giving up on covering held events without new traffic; only the cursor check uses it.</summary>
    public int RecheckBudget;

    /// <summary>The stream position of the last cursor this socket got (everything up to it was written to it).</summary>
    public long Pos;

    /// <summary>Events the last cursor check found missing, and since when (timestamps); only the check uses it.</summary>
    public Dictionary<(Guid ConversationId, long Seq), long> MissingSince { get; set; } = [];

    public long LastCheckTicks;

    /// <summary>A cursor check has something to do: the socket follows cursors, no catch-up runs, and it was sent events or holds uncovered ones.</summary>
    public bool Due => Enabled && !CatchingUp && (SentSinceCursor || Recheck);

    public bool TryBeginComputing() => _computing.Wait(0);

    public void EndComputing() => _computing.Release();

    /// <summary>Waits for a running computation to end and keeps new ones out until disposed.</summary>
    public async Task<IDisposable> ExclusiveAsync(CancellationToken cancellationToken)
    {
        await _computing.WaitAsync(cancellationToken);
        return new Exclusive(_computing);
    }

    /// <summary>Sends a computed cursor, or keeps it while cursors are withheld (the latest one wins).</summary>
    public void Offer(Connection connection, OutboundFrame cursor)
    {
        if (!Withheld)
        {
            connection.TryEnqueue(cursor);
            return;
        }

        Volatile.Write(ref _pending, cursor);
        if (!Withheld)
        {
            // Released meanwhile: whoever takes the pending cursor first sends it.
            SendPending(connection);
        }
    }

    /// <summary>The first frame showed the device is not resuming: cursors flow, starting with one computed meanwhile.</summary>
    public void StopWithholding(Connection connection)
    {
        Withheld = false;
        SendPending(connection);
    }

    /// <summary>A resume replaces what the socket assumed the device holds: a cursor computed from it is void.</summary>
    public void DiscardPending() => Volatile.Write(ref _pending, null);

    private void SendPending(Connection connection)
    {
        if (Interlocked.Exchange(ref _pending, null) is { } pending)
        {
            connection.TryEnqueue(pending);
        }
    }

    private sealed class Exclusive(SemaphoreSlim gate) : IDisposable
    {
        private int _disposed;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 0)
            {
                gate.Release();
            }
        }
    }
}
