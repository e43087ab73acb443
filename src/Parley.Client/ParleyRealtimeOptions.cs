using System.Net.WebSockets;
using Microsoft.Extensions.Logging;

namespace Parley.Client;

/// <summary>Settings of a <see cref="ParleyRealtime"/> connection.</summary>
public sealed class ParleyRealtimeOptions
{
    /// <summary>
    /// This device's id (<c>device_id</c>), when the token carries none. One device, one logical connection:
    /// keep it stable across runs.
    /// </summary>
    public string? DeviceId { get; set; }

    /// <summary>Where the delivery checkpoint is kept; in memory by default (use <see cref="FileCursorStore"/> to survive restarts).</summary>
    public ICursorStore CursorStore { get; set; } = new InMemoryCursorStore();

    /// <summary>The first reconnect delay; each failed attempt doubles it up to <see cref="MaxReconnectDelay"/>. Default 500 ms.</summary>
    public TimeSpan InitialReconnectDelay { get; set; } = TimeSpan.FromMilliseconds(500);

    /// <summary>The longest reconnect delay. Default 30 s.</summary>
    public TimeSpan MaxReconnectDelay { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>How long consumed events are collected before one cumulative <c>ack</c> per conversation is sent. Default 100 ms.</summary>
    public TimeSpan AckDelay { get; set; } = TimeSpan.FromMilliseconds(100);

    /// <summary>How long to wait before resending a message the server refused for a passing reason (rate limit, storage unavailable). Default 1 s.</summary>
    public TimeSpan SendRetryDelay { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>How often the client pings the server to notice a dead connection; zero disables. Default 15 s.</summary>
    public TimeSpan KeepAliveInterval { get; set; } = TimeSpan.FromSeconds(15);

    /// <summary>How long a ping may go unanswered before the connection is dropped and re-established. Default 15 s.</summary>
    public TimeSpan KeepAliveTimeout { get; set; } = TimeSpan.FromSeconds(15);

    /// <summary>
    /// How long one connection attempt (the token and the WebSocket upgrade) may take before it is abandoned and tried
    /// again after the reconnect delay: an upgrade accepted at the TCP or TLS level but never answered (an overloaded
    /// instance, a half-dead load balancer) must not stop reconnecting for good.
    /// </summary>
    public TimeSpan ConnectTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>The largest server frame accepted. Default 4 MiB.</summary>
    public int MaxReceiveFrameBytes { get; set; } = 4 * 1024 * 1024;

    /// <summary>Events per page when filling a gap over REST (1–1000). Default 500.</summary>
    public int SyncPageSize { get; set; } = 500;

    /// <summary>The clock for delays; tests replace it.</summary>
    public TimeProvider TimeProvider { get; set; } = TimeProvider.System;

    /// <summary>Receives the connection's log (connects, closes, gaps, resets).</summary>
    public ILogger? Logger { get; set; }

    /// <summary>Adjusts each <see cref="ClientWebSocket"/> before it connects (proxy, certificates).</summary>
    public Action<ClientWebSocketOptions>? ConfigureWebSocket { get; set; }

    /// <summary>
    /// Events (and cursors) waiting for the app's event loop before the socket is no longer read
    /// (docs/client.md, "Bounded queues"). Fixed for apps; tests lower it.
    /// </summary>
    internal int MaxQueuedEvents { get; set; } = 4096;

    /// <summary>Frames waiting for the socket to write them (acks, sends, typing, read receipts). Fixed for apps; tests lower it.</summary>
    internal int MaxQueuedFrames { get; set; } = 1024;

    /// <summary>Opens the socket; tests replace it with an in-memory server.</summary>
    internal Func<WebSocketConnectRequest, CancellationToken, Task<WebSocket>>? Connector { get; set; }
}

/// <summary>One connection attempt: the address (with its query) and the headers to send.</summary>
internal sealed record WebSocketConnectRequest(Uri Uri, IReadOnlyList<KeyValuePair<string, string>> Headers);

/// <summary>Where the realtime connection is.</summary>
public enum ConnectionState
{
    /// <summary>Opening a socket.</summary>
    Connecting,

    /// <summary>Connected with a cursor; the server is sending what the device missed.</summary>
    CatchingUp,

    /// <summary>Connected and up to date: live events flow.</summary>
    Live,

    /// <summary>The socket is gone; waiting to reconnect (see <see cref="ConnectionStateChange.RetryDelay"/>).</summary>
    Reconnecting,

    /// <summary>The connection cannot go on by itself (see <see cref="ConnectionStateChange.Error"/>): fix the cause and create a new one.</summary>
    Failed,

    /// <summary>Disposed.</summary>
    Closed,
}

/// <summary>A change of <see cref="ParleyRealtime.State"/>.</summary>
/// <param name="State">The new state.</param>
/// <param name="CloseStatus">The close code of the socket that ended, when the server sent one.</param>
/// <param name="RetryDelay">For <see cref="ConnectionState.Reconnecting"/>: when the next attempt starts.</param>
/// <param name="Error">Why the socket ended or the connection failed.</param>
public sealed record ConnectionStateChange(ConnectionState State, int? CloseStatus = null, TimeSpan? RetryDelay = null, Exception? Error = null);
