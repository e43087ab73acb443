using System.Runtime.CompilerServices;
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
    // The keys SendAsync generated, by request object (held as long as the app holds the request): a retry of the same
    // request is the same message.
    private static readonly System.Runtime.CompilerServices.ConditionalWeakTable<SendMessageRequest, string> GeneratedKeys = new();

    // The pieces (src/Parley.Client/Realtime, README.md there), each owning its state and saying which lock or
    // loop guards it. This class wires them, reports what the app consumed and runs the loops' lifecycle.
    private readonly ParleyRealtimeOptions _options;
    private readonly ILogger _logger;
    private readonly EventQueue _events;
    private readonly DeliveryTracker _delivery;
    private readonly ConnectionStatus _status;
    private readonly Outbox _outbox;
    private readonly AckPacer _acks;
    private readonly Checkpointer _checkpoints;
    private readonly Signal _maintenanceWake = new();
    private readonly MaintenanceLoop _maintenance;
    private readonly GapFiller _gaps;
    private readonly FrameRouter _frames;
    private readonly Reconnector _reconnector;
    private readonly CancellationTokenSource _stopping = new();

    // Set by ConnectAsync before the loops start, read by DisposeAsync after _disposed is set.
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
        _options = options ?? new ParleyRealtimeOptions();
        var time = _options.TimeProvider;
        _logger = _options.Logger ?? NullLogger.Instance;
        _outbox = new Outbox(time, _options.SendRetryDelay, _maintenanceWake);
        _events = new EventQueue(_options.MaxQueuedEvents, () => _outbox.HasPendingSends);
        _delivery = new DeliveryTracker(_events.Writer);
        _status = new ConnectionStatus(_logger);
        _acks = new AckPacer(time);
        _checkpoints = new Checkpointer(_options.CursorStore, _logger);
        _maintenance = new MaintenanceLoop(_maintenanceWake, _acks, _outbox, _checkpoints, _options.AckDelay, time);
        _gaps = new GapFiller(
            _delivery, _events, (cursor, limit, ct) => client.SyncAsync(cursor, limit, ct), _options.SyncPageSize,
            () => _outbox.Current?.Restart(), time, _logger);
        _frames = new FrameRouter(_delivery, _events, _outbox, _acks, _status, _gaps, _maintenanceWake, _logger);
        _reconnector = new Reconnector(
            client, _options, _delivery, _status,
            (socket, presentedCursor) => new Session(socket, presentedCursor, _frames.OnFrameAsync, _options.MaxReceiveFrameBytes, _options.MaxQueuedFrames, time),
            SocketEnded, Fail, _logger);
    }

    /// <summary>Where the connection is.</summary>
    public ConnectionState State => _status.State;

    /// <summary>The user the server authenticated (from the first <c>connected</c> frame); null before.</summary>
    public string? UserId => _delivery.UserId;

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
            _delivery.Restore(checkpoint);
            _acks.Restore(checkpoint.Positions);
            _checkpoints.Restore(checkpoint.Positions);
        }

        // Owned loops, awaited by DisposeAsync; on the thread pool so that none captures the caller's context.
        var stopping = _stopping.Token;
        _runLoop = Task.Run(() => RunOwnedAsync(_reconnector.RunAsync, stopping), CancellationToken.None);
        _maintenanceLoop = Task.Run(() => RunOwnedAsync(_maintenance.RunAsync, stopping), CancellationToken.None);
        _gapLoop = Task.Run(() => RunOwnedAsync(_gaps.RunAsync, stopping), CancellationToken.None);
        try
        {
            await _status.FirstLive.WaitAsync(cancellationToken);
        }
        catch (OperationCanceledException ex) when (cancellationToken.IsCancellationRequested)
        {
            // Cancelling stops the connection: what waits on it (sends, the event stream) fails instead of waiting for good.
            await _stopping.CancelAsync();
            Fail(new ParleyConnectionException("ConnectAsync was cancelled before the connection was live; the connection is stopped.", innerException: ex));
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
            while (await _events.WaitToReadAsync(cancellationToken))
            {
                while (_events.TryRead(out var item))
                {
                    if (item.Cursor is { } cursor)
                    {
                        // Rule 5: every item before the cursor was consumed, so it may be persisted (the newest wins).
                        _checkpoints.CursorReached(cursor);
                        _maintenanceWake.Set();
                        continue;
                    }

                    switch (item.Event)
                    {
                        case HiddenEvent hidden:
                            Consumed(hidden);
                            continue;
                        case SyncResetEvent:
                            _checkpoints.Forget();
                            _acks.Forget();
                            break;
                    }

                    handedOut = item.Event as ConversationEvent;
                    yield return item.Event!;
                    if (handedOut is not null)
                    {
                        Consumed(handedOut);
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
                Consumed(handedOut);
            }

            Volatile.Write(ref _reading, 0);
        }
    }

    /// <summary>Changes of <see cref="State"/> (the latest 256 are kept for a slow reader). One reader at a time.</summary>
    public IAsyncEnumerable<ConnectionStateChange> ReadStateChangesAsync(CancellationToken cancellationToken = default) =>
        _status.Changes.ReadAllAsync(cancellationToken);

    /// <summary>
    /// Sends a message over the socket with <c>send_message</c> and completes with the stored message once the
    /// server acknowledges it. A <see cref="SendMessageRequest.ClientMessageId"/> is generated when absent, once
    /// per request object: sending the same object again (after a cancellation or a failed connection, a "retry"
    /// button) reuses it, so the server returns the message if the first attempt stored it instead of storing a
    /// second. A new message is a new request object. The same frame is sent again after every reconnect, and after
    /// refusals for passing reasons (rate limit, storage unavailable), until <c>message_ack</c> arrives, so a message
    /// is created once however often it is sent. While disconnected the send waits for the connection. A send that
    /// must survive the app's restart needs a key the app keeps: set <see cref="SendMessageRequest.ClientMessageId"/>.
    /// </summary>
    /// <exception cref="ParleyApiException">The server refused the message (validation, not a member, idempotency conflict).</exception>
    /// <exception cref="InvalidOperationException">
    /// A send with the same key still waits for its acknowledgement: the same request object sent again while its first
    /// send was neither acknowledged nor cancelled (the client is still sending it: await that task instead).
    /// </exception>
    /// <exception cref="OperationCanceledException">Cancelled: the client stops resending, but a copy already sent may still be stored.</exception>
    public async Task<Message> SendAsync(SendMessageRequest message, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(message);
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        var request = message.ClientMessageId is null
            ? message with { ClientMessageId = GeneratedKeys.GetValue(message, static _ => Guid.CreateVersion7().ToString("N")) }
            : message;
        var key = PendingSend.KeyOf(request.ConversationId, request.ClientMessageId!);
        var send = new PendingSend(request.ConversationId, request.ClientMessageId!, ClientFrames.SendMessage(request, key));
        _outbox.Add(send);

        // The acknowledgement comes on the socket, maybe behind events the app has not read: the socket is read
        // on while a send waits, however full the event queue (EventQueue explains why).
        _events.Wake();
        try
        {
            return await send.Completion.Task.WaitAsync(cancellationToken);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            _outbox.Remove(send);
            throw;
        }
    }

    /// <summary>
    /// Starts (refresh every few seconds while typing) or stops the typing indicator; false when not connected or
    /// when the socket's send queue is full (typing is not queued).
    /// </summary>
    public bool TrySendTyping(Guid conversationId, bool isTyping) => _outbox.TryEnqueue(ClientFrames.Typing(conversationId, isTyping));

    /// <summary>
    /// Marks everything up to and including the message read, over the socket; false when not connected or when
    /// the socket's send queue is full. <see cref="ParleyClient.MarkReadAsync"/> does the same over REST and
    /// reports the outcome.
    /// </summary>
    public bool TrySendReadReceipt(Guid messageId) => _outbox.TryEnqueue(ClientFrames.ReadReceipt(messageId));

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
        _outbox.FlushAcks(_acks);
        await _stopping.CancelAsync();
        await AwaitLoopAsync(_runLoop);
        await AwaitLoopAsync(_maintenanceLoop);
        await AwaitLoopAsync(_gapLoop);
        await _checkpoints.SaveDueAsync(CancellationToken.None);

        var disposed = new ObjectDisposedException(nameof(ParleyRealtime));
        _outbox.Close(disposed);
        _status.Disposing(disposed);
        _events.Complete();
        _status.Closed();
        _stopping.Dispose();
    }

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

    /// <summary>The connection cannot go on: fail every waiter and end the event stream with the reason.</summary>
    private void Fail(Exception error)
    {
        _outbox.Close(error);
        _status.Failed(error);
        _events.Complete(error);
    }

    /// <summary>The app consumed <paramref name="e"/>: it may be acknowledged, and a later cursor may cover it.</summary>
    private void Consumed(ConversationEvent e)
    {
        _checkpoints.Consumed(e.ConversationId, e.Seq);
        if (_acks.Consumed(e, _delivery.UserId))
        {
            _maintenanceWake.Set();
        }
    }

    private void SocketEnded(Session session)
    {
        _outbox.Detach(session);
        _delivery.Disconnected();
    }
}
