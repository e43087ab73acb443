using System.Net;
using System.Net.WebSockets;
using System.Runtime.CompilerServices;
using System.Text.Json;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Parley.Client.Protocol;
using Parley.Client.Realtime;

namespace Parley.Client;

/// <summary>
/// One device's realtime connection to Parley, following docs/delivery.md: it reconnects with jittered
/// back-off, resumes from its persisted cursor, applies each conversation's events once and in order (filling
/// gaps over REST), acknowledges what your code consumed, and resends unacknowledged messages with the same
/// <c>client_message_id</c> until the server acknowledges them.
/// </summary>
/// <remarks>
/// Thread-safe. Read events with one <see cref="ReadEventsAsync"/> loop: an event counts as applied (it is
/// acknowledged, and a persisted cursor may cover it) once that loop asks for the next event or ends.
/// </remarks>
public sealed partial class ParleyRealtime : IAsyncDisposable
{
    /// <summary>A connection that stayed open this long counts as a success: the back-off starts over.</summary>
    private static readonly TimeSpan StableConnection = TimeSpan.FromSeconds(5);

    /// <summary>How long a close handshake may take before the socket is aborted.</summary>
    private static readonly TimeSpan CloseTimeout = TimeSpan.FromSeconds(2);

    /// <summary>
    /// Ack frames sent per flush, at most one flush a second while more are due: the server limits ack frames
    /// per socket (Realtime:AckFramesPerSecond, 100, bursts of 1,000) and an ack names one conversation, so a
    /// device catching up on thousands of conversations spreads its acks instead of having them refused.
    /// </summary>
    internal const int MaxAcksPerFlush = 80;

    private static readonly TimeSpan AckPacing = TimeSpan.FromSeconds(1);

    private static readonly TimeSpan GapRetryInitial = TimeSpan.FromMilliseconds(100);
    private static readonly TimeSpan GapRetryMax = TimeSpan.FromSeconds(5);

    private readonly ParleyClient _client;
    private readonly ParleyRealtimeOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;

    // _gate guards every mutable field below and the objects they point to (_delivery, _sends, the current
    // session's registration). It is never held across an await; channel writes under it never block.
    private readonly Lock _gate = new();
    private readonly Channel<DeliveryItem> _events = Channel.CreateUnbounded<DeliveryItem>(new UnboundedChannelOptions { SingleReader = true });
    private readonly Channel<ConnectionStateChange> _stateChanges = Channel.CreateBounded<ConnectionStateChange>(
        new BoundedChannelOptions(256) { FullMode = BoundedChannelFullMode.DropOldest, SingleReader = true });
    private readonly DeliveryState _delivery;
    private readonly PendingSends _sends = new();
    private readonly Dictionary<Guid, long> _consumed = [];
    private readonly HashSet<Guid> _ackDue = [];

    // The current pacing window (AckPacing long) and the ack frames sent in it; guarded by _gate.
    private long _ackWindowStart;
    private int _ackWindowCount;
    private readonly HashSet<Guid> _ackedOnSocket = [];
    private readonly Channel<bool> _maintenanceSignal = CreateSignal();
    private readonly Channel<bool> _gapSignal = CreateSignal();
    private readonly CancellationTokenSource _stopping = new();
    private readonly TaskCompletionSource _firstLive = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private Session? _session;
    private ConnectionState _state = ConnectionState.Connecting;
    private Exception? _failure;
    private bool _catchingUp;
    private DeliveryCheckpoint? _checkpointToSave;
    private string? _userId;
    private Task _runLoop = Task.CompletedTask;
    private Task _maintenanceLoop = Task.CompletedTask;
    private Task _gapLoop = Task.CompletedTask;
    private int _started;
    private int _disposed;
    private int _reading;

    /// <summary>Creates the connection; <see cref="ConnectAsync"/> opens it.</summary>
    /// <param name="client">The REST client whose address and credentials the socket uses (and which fills gaps).</param>
    /// <param name="options">Settings; defaults when null.</param>
    public ParleyRealtime(ParleyClient client, ParleyRealtimeOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(client);
        _client = client;
        _options = options ?? new ParleyRealtimeOptions();
        _time = _options.TimeProvider;
        _logger = _options.Logger ?? NullLogger.Instance;
        _delivery = new DeliveryState(_events.Writer);
    }

    /// <summary>Where the connection is.</summary>
    public ConnectionState State
    {
        get
        {
            lock (_gate)
            {
                return _state;
            }
        }
    }

    /// <summary>The user the server authenticated (from the first <c>connected</c> frame); null before.</summary>
    public string? UserId
    {
        get
        {
            lock (_gate)
            {
                return _userId;
            }
        }
    }

    /// <summary>
    /// Loads the checkpoint, opens the connection and waits until it is live the first time (caught up when it
    /// resumed). It then stays open, reconnecting as needed, until disposed. Cancelling stops the connection.
    /// </summary>
    /// <exception cref="ParleyConnectionException">The server refused the connection for a reason retrying cannot fix.</exception>
    public async Task ConnectAsync(CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        if (Interlocked.Exchange(ref _started, 1) != 0)
        {
            throw new InvalidOperationException("ConnectAsync was already called.");
        }

        var checkpoint = await _options.CursorStore.LoadAsync(cancellationToken);
        if (checkpoint is not null)
        {
            lock (_gate)
            {
                _delivery.Restore(checkpoint);
                foreach (var (conversationId, seq) in checkpoint.Positions)
                {
                    _consumed[conversationId] = seq;
                }
            }
        }

        // Owned loops, awaited by DisposeAsync; on the thread pool so that none captures the caller's context.
        var stopping = _stopping.Token;
        _runLoop = Task.Run(() => RunOwnedAsync(RunAsync, stopping), CancellationToken.None);
        _maintenanceLoop = Task.Run(() => RunOwnedAsync(MaintainAsync, stopping), CancellationToken.None);
        _gapLoop = Task.Run(() => RunOwnedAsync(FillGapsAsync, stopping), CancellationToken.None);
        try
        {
            await _firstLive.Task.WaitAsync(cancellationToken);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            await _stopping.CancelAsync();
            throw;
        }
    }

    /// <summary>
    /// The events, in the order applied: each conversation's events once and in <c>seq</c> order, receipts and
    /// typing as they come, and <see cref="SyncResetEvent"/> when the app must reload. One reader at a time.
    /// An event counts as applied once the loop asks for the next one or ends; only then is it acknowledged
    /// (so that its sender learns it was delivered) and covered by a persisted cursor.
    /// The stream ends when the connection is disposed, and throws when it failed.
    /// </summary>
    public async IAsyncEnumerable<ParleyEvent> ReadEventsAsync([EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        if (Interlocked.Exchange(ref _reading, 1) != 0)
        {
            throw new InvalidOperationException("Events are already being read: use one reader.");
        }

        ConversationEvent? handedOut = null;
        try
        {
            var reader = _events.Reader;
            while (await reader.WaitToReadAsync(cancellationToken))
            {
                while (reader.TryRead(out var item))
                {
                    if (item.Cursor is { } cursor)
                    {
                        CheckpointConsumed(cursor);
                        continue;
                    }

                    switch (item.Event)
                    {
                        case HiddenEvent hidden:
                            MarkConsumed(hidden);
                            continue;
                        case SyncResetEvent:
                            ForgetConsumed();
                            break;
                    }

                    handedOut = item.Event as ConversationEvent;
                    yield return item.Event!;
                    if (handedOut is not null)
                    {
                        MarkConsumed(handedOut);
                        handedOut = null;
                    }
                }
            }
        }
        finally
        {
            // Leaving the loop after an event counts as having applied it.
            if (handedOut is not null)
            {
                MarkConsumed(handedOut);
            }

            Volatile.Write(ref _reading, 0);
        }
    }

    /// <summary>Changes of <see cref="State"/> (the latest 256 are kept for a slow reader). One reader at a time.</summary>
    public IAsyncEnumerable<ConnectionStateChange> ReadStateChangesAsync(CancellationToken cancellationToken = default) =>
        _stateChanges.Reader.ReadAllAsync(cancellationToken);

    /// <summary>
    /// Sends a message over the socket with <c>send_message</c> and completes with the stored message once the
    /// server acknowledges it. A <see cref="SendMessageRequest.ClientMessageId"/> is generated when absent; the
    /// same frame is sent again after every reconnect, and after refusals for passing reasons (rate limit,
    /// storage unavailable), until <c>message_ack</c> arrives, so a message is created once however often it is
    /// sent. While disconnected the send waits for the connection.
    /// </summary>
    /// <exception cref="ParleyApiException">The server refused the message (validation, not a member, idempotency conflict).</exception>
    /// <exception cref="OperationCanceledException">Cancelled: the client stops resending, but a copy already sent may still be stored.</exception>
    public async Task<Message> SendAsync(SendMessageRequest message, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(message);
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        var request = message.ClientMessageId is null ? message with { ClientMessageId = Guid.CreateVersion7().ToString("N") } : message;
        var send = new PendingSend(request.ClientMessageId!, ClientFrames.SendMessage(request));
        lock (_gate)
        {
            if (_failure is not null)
            {
                throw _failure;
            }

            if (!_sends.TryAdd(send))
            {
                throw new InvalidOperationException($"A send with client_message_id '{request.ClientMessageId}' is already waiting for its acknowledgement.");
            }

            _session?.TryEnqueue(send.Frame);
        }

        try
        {
            return await send.Completion.Task.WaitAsync(cancellationToken);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            lock (_gate)
            {
                _sends.Remove(send);
            }

            throw;
        }
    }

    /// <summary>Starts (refresh every few seconds while typing) or stops the typing indicator; false when not connected (typing is not queued).</summary>
    public bool TrySendTyping(Guid conversationId, bool isTyping) => TryEnqueue(ClientFrames.Typing(conversationId, isTyping));

    /// <summary>
    /// Marks everything up to and including the message read, over the socket; false when not connected.
    /// <see cref="ParleyClient.MarkReadAsync"/> does the same over REST and reports the outcome.
    /// </summary>
    public bool TrySendReadReceipt(Guid messageId) => TryEnqueue(ClientFrames.ReadReceipt(messageId));

    /// <summary>
    /// Acknowledges what was consumed, closes the socket (1000), persists the last checkpoint and ends the
    /// event streams. Sends still waiting fail with <see cref="ObjectDisposedException"/>.
    /// </summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        // Queued on the socket before it closes: the close frame follows them.
        FlushAcks();
        await _stopping.CancelAsync();
        await AwaitLoopAsync(_runLoop);
        await AwaitLoopAsync(_maintenanceLoop);
        await AwaitLoopAsync(_gapLoop);
        await SaveCheckpointAsync(CancellationToken.None);

        var disposed = new ObjectDisposedException(nameof(ParleyRealtime));
        lock (_gate)
        {
            _sends.FailAll(disposed);
        }

        _firstLive.TrySetException(disposed);
        _events.Writer.TryComplete();
        SetState(new ConnectionStateChange(ConnectionState.Closed));
        _stateChanges.Writer.TryComplete();
        _stopping.Dispose();
    }

    private static Channel<bool> CreateSignal() =>
        Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite, SingleReader = true });

    private static void Signal(Channel<bool> signal) => signal.Writer.TryWrite(true);

    private static async Task AwaitLoopAsync(Task loop)
    {
        try
        {
            await loop;
        }
        catch (OperationCanceledException)
        {
            // Stopped by DisposeAsync.
        }
    }

    /// <summary>
    /// Runs one of the connection's loops. A failure no loop expects (a bug, or the token provider throwing
    /// something other than a network error) fails the connection visibly instead of leaving it half alive.
    /// </summary>
    private async Task RunOwnedAsync(Func<CancellationToken, Task> loop, CancellationToken stopping)
    {
        try
        {
            await loop(stopping);
        }
        catch (OperationCanceledException) when (stopping.IsCancellationRequested)
        {
            // Stopped by DisposeAsync.
        }
#pragma warning disable CA1031 // Whatever ended the loop is handed to the app through Fail.
        catch (Exception ex)
#pragma warning restore CA1031
        {
            Log.LoopFailed(_logger, ex);
            Fail(ex);
        }
    }

    private bool TryEnqueue(byte[] frame)
    {
        lock (_gate)
        {
            return _session is { } session && session.TryEnqueue(frame);
        }
    }

    private void SetState(ConnectionStateChange change)
    {
        lock (_gate)
        {
            if (_state is ConnectionState.Failed or ConnectionState.Closed && change.State != ConnectionState.Closed)
            {
                return;
            }

            _state = change.State;
        }

        Log.StateChanged(_logger, change.State, change.CloseStatus, change.RetryDelay, change.Error?.Message);
        _stateChanges.Writer.TryWrite(change);
    }

    /// <summary>The connection cannot go on: fail every waiter and end the event stream with the reason.</summary>
    private void Fail(Exception error)
    {
        lock (_gate)
        {
            _failure = error;
            _sends.FailAll(error);
        }

        SetState(new ConnectionStateChange(ConnectionState.Failed, (error as ParleyConnectionException)?.CloseStatus, Error: error));
        _firstLive.TrySetException(error);
        _events.Writer.TryComplete(error);
    }

    // ---- connection loop -------------------------------------------------------------------------------------

    private async Task RunAsync(CancellationToken stopping)
    {
        var attempt = 0;
        while (!stopping.IsCancellationRequested)
        {
            SetState(new ConnectionStateChange(ConnectionState.Connecting));
            string? cursor;
            lock (_gate)
            {
                cursor = _delivery.LatestCursor;
            }

            Session session;
            try
            {
                session = await OpenAsync(cursor, stopping);
            }
            catch (OperationCanceledException) when (stopping.IsCancellationRequested)
            {
                return;
            }
            catch (ParleyConnectionException ex) when (ex.HandshakeStatus == HttpStatusCode.BadRequest && cursor is not null)
            {
                // The server refuses a malformed cursor before the upgrade (400 invalid_cursor; a WebSocket client
                // sees the status, not the body). Rule 7: reload, and connect again at once without it; a 400 then
                // has another cause and fails the connection.
                Log.SyncReset(_logger, ParleyErrorCodes.InvalidCursor);
                lock (_gate)
                {
                    _delivery.Reset(null, ParleyErrorCodes.InvalidCursor);
                }

                continue;
            }
            catch (ParleyConnectionException ex) when (IsTerminal(ex.HandshakeStatus))
            {
                Fail(ex);
                return;
            }
            catch (Exception ex) when (ex is ParleyConnectionException or WebSocketException or HttpRequestException or IOException or OperationCanceledException)
            {
                if (!await WaitToReconnectAsync(attempt++, null, ex, stopping))
                {
                    return;
                }

                continue;
            }

            var opened = _time.GetTimestamp();
            var end = await session.RunAsync(stopping);
            lock (_gate)
            {
                if (ReferenceEquals(_session, session))
                {
                    _session = null;
                }

                _catchingUp = false;
            }

            if (stopping.IsCancellationRequested)
            {
                return;
            }

            Log.SocketEnded(_logger, end.CloseStatus, end.CloseDescription, end.Error?.Message);
            if (end.CloseStatus is { } status && IsTerminalClose(status))
            {
                Fail(new ParleyConnectionException(
                    $"The server closed the connection with {status} ({end.CloseDescription}); reconnecting would not help.", status));
                return;
            }

            if (end.Restart || end.CloseStatus == CloseCodes.TokenExpired)
            {
                // A fresh token (the provider is asked on every attempt), or a resync: at once.
                attempt = 0;
                SetState(new ConnectionStateChange(ConnectionState.Reconnecting, end.CloseStatus, TimeSpan.Zero, end.Error));
                continue;
            }

            if (_time.GetElapsedTime(opened) >= StableConnection)
            {
                attempt = 0;
            }

            if (!await WaitToReconnectAsync(attempt++, end.CloseStatus, end.Error, stopping))
            {
                return;
            }
        }
    }

    private async Task<bool> WaitToReconnectAsync(int attempt, int? closeStatus, Exception? error, CancellationToken stopping)
    {
        var delay = Backoff.Delay(attempt, _options.InitialReconnectDelay, _options.MaxReconnectDelay, Random.Shared.NextDouble());
        SetState(new ConnectionStateChange(ConnectionState.Reconnecting, closeStatus, delay, error));
        try
        {
            await Task.Delay(delay, _time, stopping);
            return true;
        }
        catch (OperationCanceledException) when (stopping.IsCancellationRequested)
        {
            return false;
        }
    }

    /// <summary>A refused upgrade that retrying cannot fix: bad credentials, a malformed request, no such endpoint.</summary>
    private static bool IsTerminal(HttpStatusCode? status) =>
        status is { } s && (int)s is >= 400 and < 500 && s is not HttpStatusCode.RequestTimeout and not HttpStatusCode.TooManyRequests;

    /// <summary>
    /// Close codes that ask the client to change something (docs/websocket.md): 1009 (frame too big), protocol
    /// and policy errors, and Parley's 4xxx codes other than 4001 (slow consumer: reconnect) and 4003 (token expired:
    /// reconnect with a fresh token). Everything else (1001 going away, 1011, no close frame at all) reconnects.
    /// </summary>
    private static bool IsTerminalClose(int status) =>
        status is 1002 or 1003 or 1007 or 1008 or CloseCodes.MessageTooBig or 1010
        || (status is >= 4000 and < 5000 && status is not CloseCodes.SlowConsumer and not CloseCodes.TokenExpired);

    private async Task<Session> OpenAsync(string? cursor, CancellationToken cancellationToken)
    {
        var headers = await _client.Credentials.GetHeadersAsync(cancellationToken);

        // Browsers cannot set headers on a WebSocket: there (only) the token travels as access_token.
        var inQuery = OperatingSystem.IsBrowser() && _client.Credentials.IsBearer;
        var query = new List<string> { "acks=true" };
        if (_options.DeviceId is { } deviceId)
        {
            query.Add("device_id=" + Uri.EscapeDataString(deviceId));
        }

        if (cursor is not null)
        {
            query.Add("cursor=" + Uri.EscapeDataString(cursor));
        }

        if (inQuery)
        {
            var token = headers.First(h => h.Key == "Authorization").Value["Bearer ".Length..];
            query.Add("access_token=" + Uri.EscapeDataString(token));
            headers = [];
        }

        var builder = new UriBuilder(new Uri(_client.BaseAddress, "ws"))
        {
            Query = string.Join('&', query),
        };
        builder.Scheme = builder.Scheme == Uri.UriSchemeHttps ? Uri.UriSchemeWss : Uri.UriSchemeWs;
        var request = new WebSocketConnectRequest(builder.Uri, headers);
        var socket = _options.Connector is { } connector
            ? await connector(request, cancellationToken)
            : await ConnectClientWebSocketAsync(request, cancellationToken);
        return new Session(this, socket, presentedCursor: cursor is not null);
    }

    private async Task<WebSocket> ConnectClientWebSocketAsync(WebSocketConnectRequest request, CancellationToken cancellationToken)
    {
        var socket = new ClientWebSocket();
        try
        {
            socket.Options.CollectHttpResponseDetails = true;
            socket.Options.AddSubProtocol(FrameTypes.SubprotocolV1);
            socket.Options.KeepAliveInterval = _options.KeepAliveInterval;
            if (_options.KeepAliveInterval > TimeSpan.Zero)
            {
                socket.Options.KeepAliveTimeout = _options.KeepAliveTimeout;
            }

            foreach (var (name, value) in request.Headers)
            {
                socket.Options.SetRequestHeader(name, value);
            }

            _options.ConfigureWebSocket?.Invoke(socket.Options);
            await socket.ConnectAsync(request.Uri, cancellationToken);
            return socket;
        }
        catch (WebSocketException ex) when (socket.HttpStatusCode is not 0 and not HttpStatusCode.SwitchingProtocols)
        {
            var status = socket.HttpStatusCode;
            socket.Dispose();
            throw new ParleyConnectionException($"The server refused the WebSocket upgrade with {(int)status}.", handshakeStatus: status, innerException: ex);
        }
        catch (Exception)
        {
            socket.Dispose();
            throw;
        }
    }

    // ---- frames (called by the session's receive loop, one at a time) ----------------------------------------

    private void OnFrame(Session session, ReadOnlySpan<byte> utf8)
    {
        ServerFrame frame;
        try
        {
            frame = ServerFrames.Parse(utf8);
        }
        catch (JsonException ex)
        {
            // A position lost this way is a gap like any other: the next events reveal it and sync fills it.
            Log.BadFrame(_logger, ex.Message);
            return;
        }

        switch (frame.Payload)
        {
            case ConnectedPayload connected:
                OnConnected(session, connected);
                break;
            case ConversationEvent e:
                OnConversationEvent(e);
                break;
            case ParleyEvent e:
                lock (_gate)
                {
                    _delivery.Emit(e);
                }

                break;
            case CursorPayload cursor when frame.Type == FrameTypes.SyncComplete:
                OnSyncComplete(cursor.Cursor);
                break;
            case CursorPayload cursor:
                lock (_gate)
                {
                    _delivery.OnCursor(cursor.Cursor);
                }

                break;
            case SyncResetPayload reset:
                OnSyncReset(reset);
                break;
            case MessageAckPayload ack:
                lock (_gate)
                {
                    _sends.TryComplete(ack.ClientMessageId, ack.Message);
                }

                break;
            case ErrorPayload error:
                OnError(error);
                break;
        }
    }

    private void OnConnected(Session session, ConnectedPayload connected)
    {
        bool catchingUp;
        lock (_gate)
        {
            _userId = connected.UserId;
            _delivery.UserId = connected.UserId;
            _session = session;

            // A server that knows cursors always names one in connected; one that does not ignores ours and
            // never sends sync_complete, so only the former is waited for.
            _catchingUp = catchingUp = session.PresentedCursor && connected.Cursor is not null;
            if (!session.PresentedCursor && connected.Cursor is { } current)
            {
                _delivery.OnCursor(current);
            }

            // Rule 6: every unacknowledged send again, same frame, same client_message_id, in order.
            foreach (var send in _sends.All)
            {
                send.RetryAt = null;
                session.TryEnqueue(send.Frame);
            }

            // Acks queued on the previous socket may have died with it; repeating one is harmless.
            _ackDue.UnionWith(_ackedOnSocket);
            _ackedOnSocket.Clear();
        }

        Log.Connected(_logger, connected.ConnectionId, connected.UserId, connected.DeviceId, session.PresentedCursor);
        Signal(_maintenanceSignal);
        if (catchingUp)
        {
            SetState(new ConnectionStateChange(ConnectionState.CatchingUp));
        }
        else
        {
            BecameLive();
        }
    }

    private void BecameLive()
    {
        SetState(new ConnectionStateChange(ConnectionState.Live));
        _firstLive.TrySetResult();
        Signal(_gapSignal);
    }

    private void OnConversationEvent(ConversationEvent e)
    {
        OfferResult result;
        bool catchingUp;
        lock (_gate)
        {
            result = _delivery.Offer(e);
            catchingUp = _catchingUp;

            // The message_ack of a resent message may still be on its way; its new_message already proves it stored.
            if (e is MessageCreatedEvent { Message: { ClientMessageId: { } id } message } && message.SenderId == _userId)
            {
                _sends.TryComplete(id, message);
            }
        }

        if (result == OfferResult.Buffered)
        {
            Log.GapDetected(_logger, e.ConversationId, e.Seq, catchingUp);
            if (!catchingUp)
            {
                Signal(_gapSignal);
            }
        }
    }

    private void OnSyncComplete(string cursor)
    {
        lock (_gate)
        {
            _catchingUp = false;
            // The catch-up held every event after the presented cursor: where new conversations start is known.
            _delivery.ResolveStarts(null);
            _delivery.OnCursor(cursor);
        }

        BecameLive();
    }

    private void OnSyncReset(SyncResetPayload reset)
    {
        Log.SyncReset(_logger, reset.Reason);
        lock (_gate)
        {
            _catchingUp = false;
            _delivery.Reset(reset.Cursor, reset.Reason ?? ParleyErrorCodes.CursorExpired);
        }

        BecameLive();
    }

    private void OnError(ErrorPayload error)
    {
        var id = error.ClientMessageId ?? (error.Id is { ValueKind: JsonValueKind.String } echoed ? echoed.GetString() : null);
        lock (_gate)
        {
            if (id is not null && _sends.Find(id) is { } send)
            {
                if (error.Code is ParleyErrorCodes.RateLimited or ParleyErrorCodes.ServiceUnavailable or ParleyErrorCodes.InternalError)
                {
                    send.RetryAt = _time.GetUtcNow() + _options.SendRetryDelay;
                    Signal(_maintenanceSignal);
                }
                else
                {
                    _sends.TryFail(id, new ParleyApiException(null, error.Code, error.Message));
                }

                return;
            }
        }

        Log.ServerError(_logger, error.Code, error.Message);
    }

    // ---- consumption, acks, checkpoints ----------------------------------------------------------------------

    private void MarkConsumed(ConversationEvent e)
    {
        lock (_gate)
        {
            if (e.Seq <= _consumed.GetValueOrDefault(e.ConversationId))
            {
                return;
            }

            _consumed[e.ConversationId] = e.Seq;
            if (e is ParticipantRemovedEvent removed && removed.UserId == _userId)
            {
                // No longer a member: the server would refuse the ack.
                _ackDue.Remove(e.ConversationId);
                return;
            }

            _ackDue.Add(e.ConversationId);
        }

        Signal(_maintenanceSignal);
    }

    private void ForgetConsumed()
    {
        lock (_gate)
        {
            _consumed.Clear();
            _ackDue.Clear();
            _ackedOnSocket.Clear();
        }
    }

    /// <summary>Rule 5: every item before the cursor was consumed, so it may be persisted (the newest wins).</summary>
    private void CheckpointConsumed(string cursor)
    {
        lock (_gate)
        {
            _checkpointToSave = new DeliveryCheckpoint(cursor, new Dictionary<Guid, long>(_consumed));
        }

        Signal(_maintenanceSignal);
    }

    /// <summary>
    /// Sends due acks, at most <see cref="MaxAcksPerFlush"/> per <see cref="AckPacing"/> however many flushes
    /// that window sees; returns whether more remain due.
    /// </summary>
    private bool FlushAcks()
    {
        lock (_gate)
        {
            if (_session is not { } session || _ackDue.Count == 0)
            {
                return false;
            }

            var now = _time.GetTimestamp();
            if (_ackWindowStart == 0 || _time.GetElapsedTime(_ackWindowStart, now) >= AckPacing)
            {
                _ackWindowStart = now;
                _ackWindowCount = 0;
            }

            foreach (var conversationId in _ackDue.Take(MaxAcksPerFlush - _ackWindowCount).ToList())
            {
                if (_consumed.TryGetValue(conversationId, out var seq) && seq > 0)
                {
                    session.TryEnqueue(ClientFrames.Ack(conversationId, seq));
                    _ackedOnSocket.Add(conversationId);
                    _ackWindowCount++;
                }

                _ackDue.Remove(conversationId);
            }

            return _ackDue.Count > 0;
        }
    }

    /// <summary>Acks (batched over <see cref="ParleyRealtimeOptions.AckDelay"/>), due resends and checkpoint saves, one at a time.</summary>
    private async Task MaintainAsync(CancellationToken stopping)
    {
        while (!stopping.IsCancellationRequested)
        {
            TimeSpan? untilRetry;
            lock (_gate)
            {
                untilRetry = _sends.UntilNextRetry(_time.GetUtcNow());
            }

            try
            {
                await WaitForSignalAsync(_maintenanceSignal, untilRetry, stopping);
                bool acks;
                lock (_gate)
                {
                    acks = _ackDue.Count > 0 && _session is not null;
                }

                if (acks && _options.AckDelay > TimeSpan.Zero)
                {
                    await Task.Delay(_options.AckDelay, _time, stopping);
                }
            }
            catch (OperationCanceledException) when (stopping.IsCancellationRequested)
            {
                return;
            }

            if (FlushAcks())
            {
                // More conversations are due than this window allows: the rest after a pause (see MaxAcksPerFlush).
                try
                {
                    await Task.Delay(AckPacing, _time, stopping);
                }
                catch (OperationCanceledException) when (stopping.IsCancellationRequested)
                {
                    return;
                }

                Signal(_maintenanceSignal);
            }

            lock (_gate)
            {
                if (_session is { } session)
                {
                    foreach (var send in _sends.TakeDue(_time.GetUtcNow()))
                    {
                        session.TryEnqueue(send.Frame);
                    }
                }
            }

            await SaveCheckpointAsync(stopping);
        }
    }

    private async Task WaitForSignalAsync(Channel<bool> signal, TimeSpan? timeout, CancellationToken stopping)
    {
        if (timeout is not { } wait)
        {
            await signal.Reader.ReadAsync(stopping);
            return;
        }

        using var timer = new CancellationTokenSource(wait, _time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(stopping, timer.Token);
        try
        {
            await signal.Reader.ReadAsync(linked.Token);
        }
        catch (OperationCanceledException) when (!stopping.IsCancellationRequested)
        {
            // The timeout: due work is done by the caller.
        }
    }

    private async Task SaveCheckpointAsync(CancellationToken cancellationToken)
    {
        DeliveryCheckpoint? checkpoint;
        lock (_gate)
        {
            checkpoint = _checkpointToSave;
        }

        if (checkpoint is null)
        {
            return;
        }

        try
        {
            await _options.CursorStore.SaveAsync(checkpoint, cancellationToken);
            lock (_gate)
            {
                if (ReferenceEquals(_checkpointToSave, checkpoint))
                {
                    _checkpointToSave = null;
                }
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // Saved by DisposeAsync instead.
        }
#pragma warning disable CA1031 // The store is the app's code: whatever it throws, keep the connection and retry with the next checkpoint.
        catch (Exception ex)
#pragma warning restore CA1031
        {
            Log.CheckpointSaveFailed(_logger, ex);
        }
    }

    // ---- gaps ------------------------------------------------------------------------------------------------

    /// <summary>
    /// Rule 2's "fetch the missing positions": while the socket is live and not catching up (a catch-up in
    /// progress fills gaps by itself), GET /api/v1/sync from the newest cursor until the gaps close, retrying
    /// with back-off (an event may not have a stream position yet for a few tens of milliseconds).
    /// </summary>
    private async Task FillGapsAsync(CancellationToken stopping)
    {
        while (!stopping.IsCancellationRequested)
        {
            try
            {
                await _gapSignal.Reader.ReadAsync(stopping);
            }
            catch (OperationCanceledException) when (stopping.IsCancellationRequested)
            {
                return;
            }

            for (var attempt = 0; !stopping.IsCancellationRequested; attempt++)
            {
                string? cursor;
                long version;
                lock (_gate)
                {
                    if (!_delivery.HasGaps || _session is null || _catchingUp)
                    {
                        break;
                    }

                    cursor = _delivery.LatestCursor;
                    version = _delivery.CursorVersion;
                    if (cursor is null)
                    {
                        // A server without cursors cannot fill gaps: apply what came, in order.
                        Log.GapsSkipped(_logger, _delivery.SkipGaps(), "the server gave no cursor");
                        break;
                    }
                }

                try
                {
                    await SyncFromAsync(cursor, version, stopping);
                }
                catch (OperationCanceledException) when (stopping.IsCancellationRequested)
                {
                    return;
                }
                catch (ParleyApiException ex) when (ex.StatusCode == HttpStatusCode.Gone || ex.Code is ParleyErrorCodes.InvalidCursor or ParleyErrorCodes.CursorExpired)
                {
                    OnCursorRejected(ex);
                    break;
                }
                catch (ParleyApiException ex) when (ex.StatusCode == HttpStatusCode.NotFound)
                {
                    lock (_gate)
                    {
                        Log.GapsSkipped(_logger, _delivery.SkipGaps(), "the server has no sync endpoint");
                    }

                    break;
                }
                catch (Exception ex) when (ex is ParleyApiException or HttpRequestException or JsonException or IOException or TaskCanceledException)
                {
                    Log.GapFillFailed(_logger, ex.Message);
                }

                lock (_gate)
                {
                    if (!_delivery.HasGaps)
                    {
                        break;
                    }
                }

                try
                {
                    await Task.Delay(Backoff.Delay(attempt, GapRetryInitial, GapRetryMax, Random.Shared.NextDouble()), _time, stopping);
                }
                catch (OperationCanceledException) when (stopping.IsCancellationRequested)
                {
                    return;
                }
            }
        }
    }

    private async Task SyncFromAsync(string cursor, long cursorVersion, CancellationToken cancellationToken)
    {
        var next = cursor;
        var synced = new Dictionary<Guid, long>();
        while (true)
        {
            var page = await _client.SyncAsync(next, _options.SyncPageSize, cancellationToken);
            lock (_gate)
            {
                foreach (var e in page.Events)
                {
                    if (e is ConversationEvent conversationEvent)
                    {
                        _delivery.Offer(conversationEvent);
                        synced[conversationEvent.ConversationId] = Math.Max(synced.GetValueOrDefault(conversationEvent.ConversationId), conversationEvent.Seq);
                    }
                    else
                    {
                        _delivery.Emit(e);
                    }
                }

                if (!page.HasMore)
                {
                    _delivery.ResolveStarts(synced, cursorVersion);
                }

                // Every event up to next_cursor is in the pages read so far.
                _delivery.OnCursor(page.NextCursor);
            }

            if (!page.HasMore)
            {
                return;
            }

            next = page.NextCursor;
        }
    }

    /// <summary>REST refused the cursor (410 or malformed): reload (rule 7) and reconnect without one, from the current position.</summary>
    private void OnCursorRejected(ParleyApiException error)
    {
        Log.SyncReset(_logger, error.Code);
        Session? session;
        lock (_gate)
        {
            _delivery.Reset(null, error.Code);
            session = _session;
        }

        session?.Restart();
    }
}
