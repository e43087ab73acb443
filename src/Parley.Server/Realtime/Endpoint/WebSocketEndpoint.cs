using System.Globalization;
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

internal static partial class WebSocketEndpoint
{
    /// <summary>The WebSocket endpoint: the one path that accepts a token as <c>?access_token=</c>.</summary>
    public const string Path = FrameTypes.WebSocketPath;

    /// <summary>The socket's frame handling (the WebSocket itself is mapped by <see cref="MapRealtime"/>).</summary>
    public static IHostApplicationBuilder AddWebSocketEndpoint(this IHostApplicationBuilder builder)
    {
        builder.Services.AddSingleton<FrameDispatcher>();
        return builder;
    }

    public static IEndpointRouteBuilder MapRealtime(this IEndpointRouteBuilder app)
    {
        // GET for the HTTP/1.1 upgrade; CONNECT for WebSockets over HTTP/2 (RFC 8441), which browsers may use over TLS.
        app.MapMethods(Path, [HttpMethods.Get, HttpMethods.Connect], HandleAsync)
            .RequireAuthorization()
            .WithTags("Realtime")
            .WithSummary("WebSocket upgrade (see docs/websocket.md)")
            .ExcludeFromDescription();
        return app;
    }

    private static async Task<IResult> HandleAsync(
        HttpContext context,
        Caller caller,
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
        if (hub.Draining)
        {
            // Shutting down: the device connects again, and the load balancer (readiness is failing) sends it elsewhere.
            context.Response.Headers.RetryAfter = "1";
            return ApiResults.Problem(new ApiError(503, ErrorCodes.ServiceUnavailable, "This instance is shutting down; connect again."));
        }

        if (!context.WebSockets.IsWebSocketRequest)
        {
            return ApiResults.Problem(ApiError.BadRequest(ErrorCodes.InvalidRequest, "This endpoint only accepts WebSocket upgrades."));
        }

        var requested = context.WebSockets.WebSocketRequestedProtocols;
        if (requested.Count > 0 && !requested.Contains(FrameTypes.SubprotocolV1))
        {
            return ApiResults.Problem(new ApiError(
                400, ErrorCodes.UnsupportedSubprotocol, $"Supported subprotocol: {FrameTypes.SubprotocolV1} (or none, which means v1)."));
        }

        var deviceId = caller.DeviceId;
        if (deviceId is not null && !Identifiers.IsValidDeviceId(deviceId))
        {
            return ApiResults.Problem(ApiError.Invalid("device_id", "'device_id' must be 1-128 characters without whitespace or control characters."));
        }

        var acksParameter = context.Request.Query["acks"].ToString();
        if (acksParameter is not ("" or "true" or "false" or "1" or "0"))
        {
            return ApiResults.Problem(ApiError.Invalid("acks", "'acks' must be true or false."));
        }

        // Resuming: the cursor is checked before the upgrade (a malformed one is a 400); one that can no longer be
        // resumed gets sync_reset on the socket.
        var cursorParameter = context.Request.Query["cursor"].ToString();
        Result<Cursor>? resumeFrom = null;
        if (cursorParameter.Length > 0)
        {
            resumeFrom = await cursors.ValidateAsync(cursorParameter, context.RequestAborted);
            if (resumeFrom.Value.Error is { Status: 400 } invalid)
            {
                return ApiResults.Problem(invalid);
            }
        }

        var current = await cursors.CurrentAsync(context.RequestAborted);
        var options = realtimeOptions.Value;
        // Parley's heartbeat (one timer for every socket) where the socket runs over its stream; otherwise .NET's
        // keep-alive, a timer per socket.
        var upgrade = context.Features.Get<HeartbeatUpgrade>();
        var socket = await context.WebSockets.AcceptWebSocketAsync(new WebSocketAcceptContext
        {
            SubProtocol = requested.Count > 0 ? FrameTypes.SubprotocolV1 : null,
            KeepAliveInterval = upgrade is null ? options.HeartbeatInterval : TimeSpan.Zero,
            KeepAliveTimeout = upgrade is null ? options.HeartbeatTimeout : Timeout.InfiniteTimeSpan,
            DangerousEnableCompression = false,
        });

        var logger = loggers.CreateLogger(typeof(Connection).FullName!);
        var connection = new Connection(
            Guid.CreateVersion7(time.GetUtcNow()).ToString("N"),
            caller.UserId,
            deviceId ?? "anon-" + Guid.NewGuid().ToString("N")[..12],
            acksParameter is "true" or "1",
            socket,
            options,
            limits.Value.MaxFrameBytes,
            logger,
            metrics);

        var socketDelivery = new SocketDelivery(connection, options.SendQueueCapacity);
        using var scope = logger.BeginScope(new Dictionary<string, object>
        {
            ["WebSocketConnectionId"] = connection.Id,
            ["UserId"] = connection.UserId,
            ["DeviceId"] = connection.DeviceId,
        });

        // Queued before the socket is registered, so "connected" is always the first frame. Its cursor is the one
        // presented (the device's place before catching up) or the current position.
        connection.TryEnqueue(Frames.Connected(new ConnectedPayload(
            connection.Id, connection.UserId, connection.DeviceId, (long)options.HeartbeatInterval.TotalMilliseconds, connection.Acks,
            resumeFrom is null ? current.Encode() : cursorParameter)));
        socketDelivery.Cursors.Enabled = connection.Acks || resumeFrom is not null;
        // Without a cursor, no cursor frame until the first client frame shows the device is not resuming.
        socketDelivery.Cursors.Withheld = resumeFrom is null;
        socketDelivery.Cursors.Pos = resumeFrom?.Value?.Pos ?? current.Pos;

        // Subscribe first, then read: live events are held until the catch-up has been sent (or, without a cursor,
        // until the first client frame shows whether it is a resume).
        var firstFrameWait = deliveryOptions.Value.FirstFrameWait;
        if (resumeFrom is not null)
        {
            socketDelivery.HoldForCatchUp();
        }
        else if (firstFrameWait > TimeSpan.Zero)
        {
            socketDelivery.Hold();
        }

        sockets.Add(socketDelivery);
        hub.Add(connection);
        metrics.ConnectionOpened();
        Log.Connected(logger, connection.Id, connection.UserId, connection.DeviceId, connection.Acks);
        using var expiry = ScheduleTokenExpiry(context, connection, time);
        using var firstFrameTimer = resumeFrom is null && firstFrameWait > TimeSpan.Zero
            ? time.CreateTimer(_ => socketDelivery.EndFirstFrameWait(), null, firstFrameWait, Timeout.InfiniteTimeSpan)
            : null;
        using var limiter = dispatcher.CreateInboundLimiter();
        var heartbeat = upgrade?.Stream;
        try
        {
            if (heartbeat is not null)
            {
                heartbeats.Register(heartbeat, connection);
            }

            // Frames for the user published on other instances reach this one from here on: before anything is read.
            // Counted at once, so a connect cancelled while routing is still paired with its disconnect below.
            var lastSeqs = await presence.ConnectedAsync(connection.UserId, context.RequestAborted);
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
                    socketDelivery.SetBaseline(lastSeqs ?? await store.GetLastSeqsAsync(connection.UserId, context.RequestAborted));
                }
                catch (Exception ex) when (ex is System.Data.Common.DbException or TimeoutException)
                {
                    // Without it no cursor could be issued: the device connects again shortly.
                    Log.BaselineFailed(logger, connection.Id, ex);
                    connection.RequestClose(CloseCodes.TryAgainLater, "storage unavailable; connect again");
                }
            }

            await connection.RunAsync(
                (_, frame, ct) => dispatcher.HandleAsync(socketDelivery, caller, limiter, frame, ct),
                (c, frame) =>
                {
                    // Devices without acks count as having received a message once its frame is on their socket.
                    if (!c.Acks && frame.DeliverySeq > 0 && frame.SenderId != c.UserId && frame.ConversationId is { } conversationId)
                    {
                        deliveries.Report(conversationId, c.UserId, frame.DeliverySeq);
                    }
                },
                context.RequestAborted);
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
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
            Log.Disconnected(logger, connection.Id, socket.CloseStatus is { } status ? (int)status : null);
        }

        return Results.Empty;
    }

    /// <summary>A socket lives no longer than the token that opened it: at <c>exp</c> it is closed with 4003.</summary>
    private static ITimer? ScheduleTokenExpiry(HttpContext context, Connection connection, TimeProvider time)
    {
        var exp = context.User.FindFirst("exp")?.Value;
        if (exp is null || !long.TryParse(exp, NumberStyles.Integer, CultureInfo.InvariantCulture, out var seconds))
        {
            return null;
        }

        var due = DateTimeOffset.FromUnixTimeSeconds(Math.Clamp(seconds, 0, 253402300799)) - time.GetUtcNow();
        if (due > TimeSpan.FromDays(30))
        {
            // Longer than a timer can wait; such a socket is ended by the next reconnect instead.
            return null;
        }

        return time.CreateTimer(
            _ => connection.RequestClose(CloseCodes.TokenExpired, "token expired"),
            null,
            due < TimeSpan.Zero ? TimeSpan.Zero : due,
            Timeout.InfiniteTimeSpan);
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
