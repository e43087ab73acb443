using System.Globalization;
using System.Net.WebSockets;
using Microsoft.Extensions.Options;
using Parley.Server.Hosting;
using Parley.Server.Hosting.Auth;
using Parley.Server.Observability;
using Parley.Server.Presence;
using Parley.Server.Protocol;
using Parley.Server.Receipts;
using Parley.Server.Storage;
using Parley.Server.Sync;

namespace Parley.Server.Realtime.Endpoint;

/// <summary>
/// What an authenticated WebSocket request asks for, read from its headers and query by whichever way it came in (the
/// ASP.NET Core endpoint or <see cref="DirectUpgrade"/>): its caller, the subprotocols it offers, the <c>acks</c> and
/// <c>cursor</c> parameters as sent, and the <c>exp</c> claim of the token that authenticated it.
/// </summary>
internal sealed record SocketRequest(Caller Caller, IReadOnlyList<string> Subprotocols, string Acks, string Cursor, string? TokenExpiry)
{
    /// <summary>What an authenticated request for <c>/ws</c> asks for, read the same way whichever way it came in.</summary>
    public static SocketRequest Read(HttpContext context, Caller caller)
    {
        var query = context.Request.Query;
        return new SocketRequest(
            caller, [.. context.WebSockets.WebSocketRequestedProtocols], query["acks"].ToString(), query["cursor"].ToString(), context.User.FindFirst("exp")?.Value);
    }
}

/// <summary>
/// A request that may be accepted, with what its checks read and the user's socket slot it holds: dispose it when the
/// socket has ended, or when it is not accepted after all.
/// </summary>
internal sealed record SocketPlan(
    SocketRequest Request, string? Subprotocol, bool Acks, Result<Cursor>? ResumeFrom, Cursor Current, ConnectionHub.UserSlot Slot) : IDisposable
{
    public void Dispose() => Slot.Dispose();
}

/// <summary>
/// The life of a WebSocket on <c>/ws</c>, shared by both ways in: the checks before the upgrade (each refusal an
/// <see cref="ApiError"/>), then the connection from its <c>connected</c> frame to its close.
/// </summary>
internal sealed partial class SocketSessions(
    ConnectionHub hub,
    Heartbeats heartbeats,
    FrameDispatcher dispatcher,
    DeliveryTracker deliveries,
    StreamCursors cursors,
    CatchUp catchUp,
    SocketDeliveries sockets,
    IChatStore store,
    PresenceService presence,
    IOptions<DeliveryOptions> deliveryOptions,
    IOptions<RealtimeOptions> realtimeOptions,
    IOptions<LimitsOptions> limits,
    TimeProvider time,
    ParleyMetrics metrics,
    ILoggerFactory loggers)
{
    private readonly ILogger _logger = loggers.CreateLogger(typeof(Connection).FullName!);

    public RealtimeOptions Options => realtimeOptions.Value;

    /// <summary>The answer to an upgrade while the instance drains (with <c>Retry-After</c>).</summary>
    public static readonly ApiError Draining = new(503, ErrorCodes.ServiceUnavailable, "This instance is shutting down; connect again.");

    /// <summary>Whether the instance takes new sockets (it does not while it drains for shutdown).</summary>
    public bool Accepting => !hub.Draining;

    /// <summary>
    /// Everything checked before the upgrade, in the order the endpoint always checked it. The request must already be a
    /// WebSocket upgrade from an authenticated caller.
    /// </summary>
    public async Task<Result<SocketPlan>> CheckAsync(SocketRequest request, CancellationToken cancellationToken)
    {
        if (hub.Draining)
        {
            return Draining;
        }

        var requested = request.Subprotocols;
        if (requested.Count > 0 && !requested.Contains(FrameTypes.SubprotocolV1))
        {
            return new ApiError(400, ErrorCodes.UnsupportedSubprotocol, $"Supported subprotocol: {FrameTypes.SubprotocolV1} (or none, which means v1).");
        }

        if (request.Caller.DeviceId is { } deviceId && !Identifiers.IsValidDeviceId(deviceId))
        {
            return ApiError.Invalid("device_id", $"'device_id' must be {Identifiers.Shape}.");
        }

        if (request.Acks is not ("" or "true" or "false" or "1" or "0"))
        {
            return ApiError.Invalid("acks", "'acks' must be true or false.");
        }

        // Resuming: the cursor is checked before the upgrade (a malformed one is a 400); one that can no longer be
        // resumed gets sync_reset on the socket.
        Result<Cursor>? resumeFrom = null;
        if (request.Cursor.Length > 0)
        {
            resumeFrom = await cursors.ValidateAsync(request.Cursor, cancellationToken);
            if (resumeFrom.Value.Error is { Status: 400 } invalid)
            {
                return invalid;
            }
        }

        var current = await cursors.CurrentAsync(cancellationToken);

        // Last, so that no other refusal has to give the slot back.
        var maxConnections = realtimeOptions.Value.MaxConnectionsPerUser;
        if (hub.TryTakeSlot(request.Caller.UserId, maxConnections) is not { } slot)
        {
            return new ApiError(
                429, ErrorCodes.RateLimited, $"This user already has {maxConnections} connections to this instance; close one before opening another.");
        }

        return new SocketPlan(
            request, requested.Count > 0 ? FrameTypes.SubprotocolV1 : null, request.Acks is "true" or "1", resumeFrom, current, slot);
    }

    /// <summary>
    /// Runs an accepted socket until it closes. <paramref name="heartbeat"/> is the stream under the socket when Parley's
    /// heartbeat pings it (null: .NET's keep-alive does); <paramref name="aborted"/> fires when the client goes away.
    /// </summary>
    public async Task RunAsync(SocketPlan plan, WebSocket socket, HeartbeatStream? heartbeat, string upgrade, CancellationToken aborted)
    {
        var request = plan.Request;
        var caller = request.Caller;
        var options = realtimeOptions.Value;
        var connection = new Connection(
            Guid.CreateVersion7(time.GetUtcNow()).ToString("N"),
            caller.UserId,
            caller.DeviceId ?? "anon-" + Guid.NewGuid().ToString("N")[..12],
            plan.Acks,
            socket,
            options,
            limits.Value.MaxFrameBytes,
            _logger,
            metrics);

        var socketDelivery = new SocketDelivery(connection, options.SendQueueCapacity);
        using var scope = _logger.BeginScope(new LogScope(connection));

        // Queued before the socket is registered, so "connected" is always the first frame. Its cursor is the one
        // presented (the device's place before catching up) or the current position.
        var resumeFrom = plan.ResumeFrom;
        connection.TryEnqueue(Frames.Connected(new ConnectedPayload(
            connection.Id, connection.UserId, connection.DeviceId, (long)options.HeartbeatInterval.TotalMilliseconds, connection.Acks,
            resumeFrom is null ? plan.Current.Encode() : request.Cursor)));
        socketDelivery.Cursors.Enabled = connection.Acks || resumeFrom is not null;
        // Without a cursor, no cursor frame until the first client frame shows the device is not resuming.
        socketDelivery.Cursors.Withheld = resumeFrom is null;
        socketDelivery.Cursors.Pos = resumeFrom?.Value?.Pos ?? plan.Current.Pos;

        // Subscribe first, then read: live events are held until the catch-up has been sent (or, without a cursor,
        // until the first client frame shows whether it is a resume).
        var firstFrameWait = deliveryOptions.Value.FirstFrameWait;
        if (resumeFrom is not null)
        {
            socketDelivery.HoldForCatchUp();
            // Before the socket is listed for cursor checks: one running beside the catch-up (a recheck after a Redis
            // reconnect, say) would see part of it sent and hand the device a cursor older than its sync_complete one.
            socketDelivery.Cursors.CatchingUp = true;
        }
        else if (firstFrameWait > TimeSpan.Zero)
        {
            socketDelivery.Hold();
        }

        sockets.Add(socketDelivery);
        hub.Add(connection);
        metrics.ConnectionOpened(upgrade);
        Log.Connected(_logger, connection.Id, connection.UserId, connection.DeviceId, connection.Acks);
        using var expiry = ScheduleTokenExpiry(request.TokenExpiry, connection);
        using var limiter = dispatcher.CreateInboundLimiter(connection.UserId);
        try
        {
            if (heartbeat is not null)
            {
                heartbeats.Register(heartbeat, connection);
            }

            // Frames for the user published on other instances reach this one from here on: before anything is read.
            // Counted at once, so a connect cancelled while routing is still paired with its disconnect below.
            var lastSeqs = await presence.ConnectedAsync(connection.UserId, aborted);
            if (resumeFrom is { } cursor)
            {
                socketDelivery.ResumedOnConnect = true;
                connection.Attach(catchUp.RunAsync(socketDelivery, cursor, connection.Closing));
            }
            else if (socketDelivery.Cursors.Enabled)
            {
                try
                {
                    // Read after subscribing: what was committed before, the device loads over REST; the rest arrives live.
                    // The fan-out may have read them already, after subscribing (Redis: to prime its order gate).
                    socketDelivery.SetBaseline(lastSeqs ?? await store.GetLastSeqsAsync(connection.UserId, aborted));
                }
                catch (Exception ex) when (ex is System.Data.Common.DbException or TimeoutException)
                {
                    // Without it no cursor could be issued: the device connects again shortly.
                    Log.BaselineFailed(_logger, connection.Id, ex);
                    connection.RequestClose(CloseCodes.TryAgainLater, "storage unavailable; connect again");
                }
            }
            else if (lastSeqs is not null)
            {
                // Read anyway by the fan-out: should the device start to acknowledge (and follow cursors), what it loaded
                // over REST is not sent to it again.
                socketDelivery.SetBaseline(lastSeqs);
            }

            // The wait for a first frame starts once `connected` can go out (routing and the baseline may take a while
            // when Redis or the store is slow): a `resume` sent right after it still comes inside the wait.
            using var firstFrameTimer = resumeFrom is null && firstFrameWait > TimeSpan.Zero
                ? time.CreateTimer(_ => socketDelivery.EndFirstFrameWait(), null, firstFrameWait, Timeout.InfiniteTimeSpan)
                : null;
            await connection.RunAsync(
                (_, frame, type, ct) => dispatcher.HandleAsync(socketDelivery, caller, limiter, frame, type, ct),
                (c, frame) =>
                {
                    // Devices without acks count as having received a message once its frame is on their socket.
                    if (!c.Acks && frame.DeliverySeq > 0 && frame.SenderId != c.UserId && frame.ConversationId is { } conversationId)
                    {
                        deliveries.Report(conversationId, c.UserId, frame.DeliverySeq);
                    }
                },
                aborted);
        }
        catch (OperationCanceledException) when (aborted.IsCancellationRequested)
        {
            // The client went away before the connection ran.
        }
        finally
        {
            if (heartbeat is not null)
            {
                heartbeats.Unregister(heartbeat);
            }

            await presence.DisconnectedAsync(connection.UserId);
            hub.Remove(connection);
            sockets.Remove(socketDelivery);
            connection.Dispose();
            metrics.ConnectionClosed(connection.CloseReason);
            Log.Disconnected(_logger, connection.Id, socket.CloseStatus is { } status ? (int)status : null);
        }
    }

    /// <summary>A socket lives no longer than the token that opened it: at <c>exp</c> it is closed with 4003.</summary>
    private ITimer? ScheduleTokenExpiry(string? exp, Connection connection)
    {
        if (exp is null || !long.TryParse(exp, NumberStyles.Integer, CultureInfo.InvariantCulture, out var seconds))
        {
            return null;
        }

        return TokenExpiry.Schedule(
            time, DateTimeOffset.FromUnixTimeSeconds(Math.Clamp(seconds, 0, 253402300799)),
            () => connection.RequestClose(CloseCodes.TokenExpired, "token expired"));
    }

    /// <summary>
    /// The socket's log scope (its connection, user and device), held for the socket's whole life: three fields over the
    /// connection instead of a dictionary of them (about half a kilobyte per idle socket).
    /// </summary>
    private sealed class LogScope(Connection connection) : IReadOnlyList<KeyValuePair<string, object>>
    {
        public int Count => 3;

        public KeyValuePair<string, object> this[int index] => index switch
        {
            0 => new("WebSocketConnectionId", connection.Id),
            1 => new("UserId", connection.UserId),
            2 => new("DeviceId", connection.DeviceId),
            _ => throw new ArgumentOutOfRangeException(nameof(index)),
        };

        public IEnumerator<KeyValuePair<string, object>> GetEnumerator()
        {
            for (var i = 0; i < Count; i++)
            {
                yield return this[i];
            }
        }

        System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();

        public override string ToString() => $"WebSocketConnectionId:{connection.Id} UserId:{connection.UserId} DeviceId:{connection.DeviceId}";
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 2010, Level = LogLevel.Information, Message = "Connection {ConnectionId} opened for user {UserId} on device {DeviceId} (acks: {Acks})")]
        public static partial void Connected(ILogger logger, string connectionId, string userId, string deviceId, bool acks);

        [LoggerMessage(EventId = 2012, Level = LogLevel.Warning, Message = "Connection {ConnectionId}: reading the device's positions failed; closing with 1013")]
        public static partial void BaselineFailed(ILogger logger, string connectionId, Exception exception);

        [LoggerMessage(EventId = 2011, Level = LogLevel.Information, Message = "Connection {ConnectionId} closed (status {CloseStatus})")]
        public static partial void Disconnected(ILogger logger, string connectionId, int? closeStatus);
    }
}

/// <summary>
/// A timer that runs an action at a moment however far away: a timer waits at most about 49 days, so a longer wait (a
/// token valid for months) is taken in steps of at most <see cref="Step"/>, each re-armed until the moment came.
/// </summary>
internal static class TokenExpiry
{
    public static readonly TimeSpan Step = TimeSpan.FromDays(30);

    public static ITimer Schedule(TimeProvider time, DateTimeOffset at, Action due)
    {
        ITimer? timer = null;
        timer = time.CreateTimer(
            _ =>
            {
                var left = at - time.GetUtcNow();
                if (left <= TimeSpan.Zero)
                {
                    due();
                    return;
                }

                // Disposed meanwhile (the socket ended): Change does nothing then.
                timer!.Change(Wait(left), Timeout.InfiniteTimeSpan);
            },
            null,
            Timeout.InfiniteTimeSpan,
            Timeout.InfiniteTimeSpan);
        // Armed only once assigned, so that the callback always finds it.
        timer.Change(Wait(at - time.GetUtcNow()), Timeout.InfiniteTimeSpan);
        return timer;
    }

    private static TimeSpan Wait(TimeSpan left) => left < TimeSpan.Zero ? TimeSpan.Zero : left < Step ? left : Step;
}
