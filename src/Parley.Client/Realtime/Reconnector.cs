using System.Net;
using System.Net.WebSockets;
using Microsoft.Extensions.Logging;
using Parley.Client.Protocol;

namespace Parley.Client.Realtime;

/// <summary>What the reconnect loop does after a socket ended (<see cref="Reconnector.AfterSocket"/>).</summary>
internal enum NextAttempt
{
    /// <summary>The server asked for a change reconnecting cannot make: the connection fails.</summary>
    Fail,

    /// <summary>A fresh token (4003) or a resync: reconnect at once, the back-off starts over.</summary>
    Now,

    /// <summary>Reconnect after the back-off.</summary>
    AfterBackoff,
}

/// <summary>
/// The reconnect loop (docs/client.md, "Closes"): opens a socket (presenting the newest cursor), runs it until
/// it ends, and decides what comes next: at once, after a jittered back-off that doubles per failed attempt
/// (and starts over after a connection that stayed up <see cref="StableConnection"/>), or not at all.
/// </summary>
/// <remarks>
/// Concurrency: one loop (<see cref="RunAsync"/>); the attempt count is a local of it. Everything shared goes
/// through the pieces it is given: the <see cref="DeliveryTracker"/> for the cursor, the
/// <see cref="ConnectionStatus"/> for state changes, and the owner's callbacks for a socket that ended and for
/// a failure.
/// </remarks>
internal sealed class Reconnector(
    ParleyClient client,
    ParleyRealtimeOptions options,
    DeliveryTracker delivery,
    ConnectionStatus status,
    Func<WebSocket, bool, Session> newSession,
    Action<Session> socketEnded,
    Action<Exception> fail,
    ILogger logger)
{
    /// <summary>A connection that stayed open this long counts as a success: the back-off starts over.</summary>
    public static readonly TimeSpan StableConnection = TimeSpan.FromSeconds(5);

    private readonly TimeProvider _time = options.TimeProvider;

    /// <summary>A refused upgrade that retrying cannot fix: bad credentials, a malformed request, no such endpoint.</summary>
    public static bool IsTerminal(HttpStatusCode? status) =>
        status is { } s && (int)s is >= 400 and < 500 && s is not HttpStatusCode.RequestTimeout and not HttpStatusCode.TooManyRequests;

    /// <summary>
    /// Close codes that ask the client to change something (docs/websocket.md): 1009 (frame too big), protocol
    /// and policy errors, and Parley's 4xxx codes other than 4001 (slow consumer: reconnect) and 4003 (token expired:
    /// reconnect with a fresh token). Everything else (1001 going away, 1011, no close frame at all) reconnects.
    /// </summary>
    public static bool IsTerminalClose(int status) =>
        status is 1002 or 1003 or 1007 or 1008 or CloseCodes.MessageTooBig or 1010
        || (status is >= 4000 and < 5000 && status is not CloseCodes.SlowConsumer and not CloseCodes.TokenExpired);

    public static NextAttempt AfterSocket(SessionEnd end) =>
        end.CloseStatus is { } status && IsTerminalClose(status) ? NextAttempt.Fail
        : end.Restart || end.CloseStatus == CloseCodes.TokenExpired ? NextAttempt.Now
        : NextAttempt.AfterBackoff;

    /// <summary>
    /// The WebSocket address: <c>/ws</c> beside the REST base address, with <c>acks=true</c>, the device and the
    /// cursor; the token travels as <c>access_token</c> only where headers cannot be set (browsers).
    /// </summary>
    public static WebSocketConnectRequest BuildRequest(
        Uri baseAddress, IReadOnlyList<KeyValuePair<string, string>> headers, string? deviceId, string? cursor, bool tokenInQuery)
    {
        var query = new List<string> { "acks=true" };
        if (deviceId is not null)
        {
            query.Add("device_id=" + Uri.EscapeDataString(deviceId));
        }

        if (cursor is not null)
        {
            query.Add("cursor=" + Uri.EscapeDataString(cursor));
        }

        if (tokenInQuery)
        {
            var token = headers.First(h => h.Key == "Authorization").Value["Bearer ".Length..];
            query.Add("access_token=" + Uri.EscapeDataString(token));
            headers = [];
        }

        var builder = new UriBuilder(new Uri(baseAddress, "ws"))
        {
            Query = string.Join('&', query),
        };
        builder.Scheme = builder.Scheme == Uri.UriSchemeHttps ? Uri.UriSchemeWss : Uri.UriSchemeWs;
        return new WebSocketConnectRequest(builder.Uri, headers);
    }

    public async Task RunAsync(CancellationToken stopping)
    {
        var attempt = 0;
        // A 4003 on a connection that had just opened, after one before it: the fresh token is expired as well (a fixed
        // token, a client clock behind the server's), and reconnecting at once again would storm the server.
        var tokenExpiredEarly = false;
        while (!stopping.IsCancellationRequested)
        {
            status.Set(new ConnectionStateChange(ConnectionState.Connecting));
            var cursor = delivery.LatestCursor;
            Session session;
            try
            {
                using var attemptTimeout = new CancellationTokenSource(options.ConnectTimeout, _time);
                using var attemptToken = CancellationTokenSource.CreateLinkedTokenSource(stopping, attemptTimeout.Token);
                session = await OpenAsync(cursor, attemptToken.Token);
            }
            catch (OperationCanceledException) when (stopping.IsCancellationRequested)
            {
                return;
            }
            catch (ParleyConnectionException ex) when (ex.HandshakeStatus == HttpStatusCode.BadRequest && cursor is not null)
            {
                // The server refuses a malformed cursor before the upgrade (400 invalid_cursor), but a WebSocket client
                // sees the status, not the body: a 400 may have another cause (a device id the server refuses, a proxy).
                // The REST API answers the same cursor with its reason, so a device's position is only given up when
                // the cursor is what was refused (rule 7: reload, and connect again at once without it).
                switch (await CursorVerdictAsync(cursor, stopping))
                {
                    case CursorVerdict.Refused:
                        ParleyRealtime.Log.SyncReset(logger, ParleyErrorCodes.InvalidCursor);
                        delivery.ResetOnNextConnect(ParleyErrorCodes.InvalidCursor);
                        continue;
                    case CursorVerdict.NotTheCause:
                        fail(ex);
                        return;
                    default:
                        if (!await WaitToReconnectAsync(attempt++, null, ex, stopping))
                        {
                            return;
                        }

                        continue;
                }
            }
            catch (ParleyConnectionException ex) when (IsTerminal(ex.HandshakeStatus))
            {
                fail(ex);
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
            socketEnded(session);
            if (stopping.IsCancellationRequested)
            {
                return;
            }

            ParleyRealtime.Log.SocketEnded(logger, end.CloseStatus, end.CloseDescription, end.Error?.Message);
            var stable = _time.GetElapsedTime(opened) >= StableConnection;
            var expiredEarly = end.CloseStatus == CloseCodes.TokenExpired && !stable;
            switch (AfterSocket(end))
            {
                case NextAttempt.Fail:
                    fail(new ParleyConnectionException(
                        $"The server closed the connection with {end.CloseStatus} ({end.CloseDescription}); reconnecting would not help.", end.CloseStatus));
                    return;
                case NextAttempt.Now when !(tokenExpiredEarly && expiredEarly):
                    // A fresh token (the provider is asked on every attempt), or a resync: at once.
                    tokenExpiredEarly = expiredEarly;
                    attempt = 0;
                    status.Set(new ConnectionStateChange(ConnectionState.Reconnecting, end.CloseStatus, TimeSpan.Zero, end.Error));
                    continue;
            }

            // Early 4003s in a row keep backing off, each wait longer than the one before, until a connection lasts.
            tokenExpiredEarly = expiredEarly;

            if (stable)
            {
                attempt = 0;
            }

            if (!await WaitToReconnectAsync(attempt++, end.CloseStatus, end.Error, stopping))
            {
                return;
            }
        }
    }

    private enum CursorVerdict
    {
        Refused,
        NotTheCause,
        Unknown,
    }

    /// <summary>
    /// What the REST API says of <paramref name="cursor"/>: refused (malformed or expired), not the cause of the 400 (REST
    /// accepts it, or refuses the credentials: reconnecting would not help either way), or unknown (it could not be asked).
    /// </summary>
    private async Task<CursorVerdict> CursorVerdictAsync(string cursor, CancellationToken stopping)
    {
        try
        {
            using var timeout = new CancellationTokenSource(options.ConnectTimeout, _time);
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(stopping, timeout.Token);
            await client.SyncAsync(cursor, 1, linked.Token);
            return CursorVerdict.NotTheCause;
        }
        catch (ParleyApiException ex) when (ex.Code is ParleyErrorCodes.InvalidCursor or ParleyErrorCodes.CursorExpired)
        {
            return CursorVerdict.Refused;
        }
        catch (ParleyApiException ex) when (ex.StatusCode is HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden)
        {
            return CursorVerdict.NotTheCause;
        }
        catch (Exception ex) when (ex is ParleyApiException or HttpRequestException or IOException or OperationCanceledException)
        {
            return CursorVerdict.Unknown; // asked again after a back-off (or not at all: stopping)
        }
    }

    private async Task<bool> WaitToReconnectAsync(int attempt, int? closeStatus, Exception? error, CancellationToken stopping)
    {
        var delay = Backoff.Delay(attempt, options.InitialReconnectDelay, options.MaxReconnectDelay, Random.Shared.NextDouble());
        status.Set(new ConnectionStateChange(ConnectionState.Reconnecting, closeStatus, delay, error));
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

    private async Task<Session> OpenAsync(string? cursor, CancellationToken cancellationToken)
    {
        var headers = await client.Credentials.GetHeadersAsync(cancellationToken);

        // Browsers cannot set headers on a WebSocket: there (only) the token travels as access_token.
        var request = BuildRequest(client.BaseAddress, headers, options.DeviceId, cursor, OperatingSystem.IsBrowser() && client.Credentials.IsBearer);
        var socket = options.Connector is { } connector
            ? await connector(request, cancellationToken)
            : await ConnectClientWebSocketAsync(request, cancellationToken);
        return newSession(socket, cursor is not null);
    }

    private async Task<WebSocket> ConnectClientWebSocketAsync(WebSocketConnectRequest request, CancellationToken cancellationToken)
    {
        var socket = new ClientWebSocket();
        try
        {
            socket.Options.CollectHttpResponseDetails = true;
            socket.Options.AddSubProtocol(FrameTypes.SubprotocolV1);
            socket.Options.KeepAliveInterval = options.KeepAliveInterval;
            if (options.KeepAliveInterval > TimeSpan.Zero)
            {
                socket.Options.KeepAliveTimeout = options.KeepAliveTimeout;
            }

            foreach (var (name, value) in request.Headers)
            {
                socket.Options.SetRequestHeader(name, value);
            }

            options.ConfigureWebSocket?.Invoke(socket.Options);
            await socket.ConnectAsync(request.Uri, cancellationToken);
            return socket;
        }
        catch (WebSocketException ex) when (socket.HttpStatusCode is not 0 and not HttpStatusCode.SwitchingProtocols)
        {
            var refusal = socket.HttpStatusCode;
            socket.Dispose();
            throw new ParleyConnectionException($"The server refused the WebSocket upgrade with {(int)refusal}.", handshakeStatus: refusal, innerException: ex);
        }
        catch (Exception)
        {
            socket.Dispose();
            throw;
        }
    }
}
