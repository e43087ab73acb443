using System.Net.WebSockets;
using System.Text;
using System.Text.Json;

namespace Parley.Server.Tests.Infrastructure;

/// <summary>
/// A test WebSocket client: a background loop collects every frame; tests wait for the next frame of a type
/// (frames of other types stay available). Every wait is bounded.
/// </summary>
internal sealed class WsClient : IAsyncDisposable
{
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(10);

    private readonly FrameInbox _inbox;
    private readonly Task _receiveLoop;

    private WsClient(ClientWebSocket socket, string userId)
    {
        Socket = socket;
        UserId = userId;
        _inbox = new FrameInbox(userId, DefaultTimeout);
        _receiveLoop = _inbox.ReceiveAsync(socket, answerClose: false);
    }

    public ClientWebSocket Socket { get; }

    public string UserId { get; }

    public JsonElement Connected { get; private set; }

    /// <summary>The close status the server sent, once the socket closed (null when it was aborted).</summary>
    public Task<WebSocketCloseStatus?> Closed => _inbox.Closed;

    public static Task<WsClient> ConnectAsync(
        ParleyFactory factory, string userId, string query = "", string? deviceId = null, Action<ClientWebSocketOptions>? configure = null) =>
        ConnectAsync(factory.WebSocketUri(query), userId, deviceId, configure);

    /// <summary>Connects to a server at <paramref name="webSocketUri"/> (a server process, say) with a test token.</summary>
    public static async Task<WsClient> ConnectAsync(
        Uri webSocketUri, string userId, string? deviceId = null, Action<ClientWebSocketOptions>? configure = null)
    {
        var socket = new ClientWebSocket();
        socket.Options.SetRequestHeader("Authorization", "Bearer " + ParleyFactory.Token(userId, deviceId));
        configure?.Invoke(socket.Options);
        await socket.ConnectAsync(webSocketUri, TestContext.Current.CancellationToken).WaitAsync(DefaultTimeout);
        var client = new WsClient(socket, userId);
        var first = await client.NextAnyAsync();
        Assert.Equal("connected", first.GetProperty("type").GetString());
        client.Connected = first.GetProperty("payload");
        return client;
    }

    public Task SendAsync(string json) =>
        Socket.SendAsync(Encoding.UTF8.GetBytes(json), WebSocketMessageType.Text, true, TestContext.Current.CancellationToken).WaitAsync(DefaultTimeout);

    public Task SendAsync(string type, object payload) =>
        SendAsync(JsonSerializer.Serialize(new { type, payload }, Wire.Options));

    /// <summary>The payload of the next unconsumed frame of <paramref name="type"/> that matches.</summary>
    public Task<JsonElement> NextAsync(string type, Func<JsonElement, bool>? match = null, TimeSpan? timeout = null) =>
        _inbox.NextAsync(type, match, timeout);

    /// <summary>The next unconsumed frame of any type.</summary>
    public Task<JsonElement> NextAnyAsync(TimeSpan? timeout = null) => _inbox.NextAnyAsync(timeout);

    /// <summary>Asserts that no frame of the type (matching) arrives within <paramref name="within"/>.</summary>
    public Task AssertNoFrameAsync(string type, TimeSpan within, Func<JsonElement, bool>? match = null) =>
        _inbox.AssertNoFrameAsync(type, within, match);

    /// <summary>Every frame received so far (consumed or not), in arrival order.</summary>
    public IReadOnlyList<JsonElement> All() => _inbox.All();

    public async ValueTask DisposeAsync()
    {
        if (Socket.State == WebSocketState.Open)
        {
            try
            {
                await Socket.CloseAsync(WebSocketCloseStatus.NormalClosure, "bye", CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(3));
            }
            catch (Exception ex) when (ex is WebSocketException or TimeoutException or OperationCanceledException)
            {
                Socket.Abort();
            }
        }

        await _receiveLoop.WaitAsync(TimeSpan.FromSeconds(5)).ContinueWith(_ => { }, TaskScheduler.Default);
        Socket.Dispose();
        _inbox.Dispose();
    }
}
