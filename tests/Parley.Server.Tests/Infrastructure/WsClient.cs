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

    private readonly List<JsonElement> _frames = [];
    private readonly List<bool> _consumed = [];
    private readonly SemaphoreSlim _arrived = new(0);
    private readonly Lock _lock = new();
    private readonly Task _receiveLoop;
    private readonly TaskCompletionSource<WebSocketCloseStatus?> _closed = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private WsClient(ClientWebSocket socket, string userId)
    {
        Socket = socket;
        UserId = userId;
        _receiveLoop = ReceiveLoopAsync();
    }

    public ClientWebSocket Socket { get; }

    public string UserId { get; }

    public JsonElement Connected { get; private set; }

    /// <summary>The close status the server sent, once the socket closed (null when it was aborted).</summary>
    public Task<WebSocketCloseStatus?> Closed => _closed.Task;

    public static async Task<WsClient> ConnectAsync(
        ParleyFactory factory, string userId, string query = "", string? deviceId = null, Action<ClientWebSocketOptions>? configure = null)
    {
        var socket = new ClientWebSocket();
        socket.Options.SetRequestHeader("Authorization", "Bearer " + ParleyFactory.Token(userId, deviceId));
        configure?.Invoke(socket.Options);
        await socket.ConnectAsync(factory.WebSocketUri(query), TestContext.Current.CancellationToken).WaitAsync(DefaultTimeout);
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
    public async Task<JsonElement> NextAsync(string type, Func<JsonElement, bool>? match = null, TimeSpan? timeout = null)
    {
        var frame = await NextFrameAsync(f => f.GetProperty("type").GetString() == type && (match is null || match(f.GetProperty("payload"))), timeout);
        return frame.GetProperty("payload");
    }

    /// <summary>The next unconsumed frame of any type.</summary>
    public Task<JsonElement> NextAnyAsync(TimeSpan? timeout = null) => NextFrameAsync(_ => true, timeout);

    /// <summary>Asserts that no frame of the type (matching) arrives within <paramref name="within"/>.</summary>
    public async Task AssertNoFrameAsync(string type, TimeSpan within, Func<JsonElement, bool>? match = null)
    {
        try
        {
            var frame = await NextAsync(type, match, within);
            Assert.Fail($"Unexpected {type} frame for {UserId}: {frame}");
        }
        catch (TimeoutException)
        {
            // Expected: nothing arrived.
        }
    }

    /// <summary>Every frame received so far (consumed or not), in arrival order.</summary>
    public IReadOnlyList<JsonElement> All()
    {
        lock (_lock)
        {
            return [.. _frames];
        }
    }

    private async Task<JsonElement> NextFrameAsync(Func<JsonElement, bool> match, TimeSpan? timeout)
    {
        var deadline = DateTime.UtcNow + (timeout ?? DefaultTimeout);
        while (true)
        {
            lock (_lock)
            {
                for (var i = 0; i < _frames.Count; i++)
                {
                    if (!_consumed[i] && match(_frames[i]))
                    {
                        _consumed[i] = true;
                        return _frames[i];
                    }
                }
            }

            var left = deadline - DateTime.UtcNow;
            if (left <= TimeSpan.Zero || !await _arrived.WaitAsync(left, TestContext.Current.CancellationToken))
            {
                throw new TimeoutException($"No matching frame for {UserId} within {timeout ?? DefaultTimeout}. Received: {string.Join(", ", All().Select(f => f.GetProperty("type").GetString()))}");
            }
        }
    }

    private async Task ReceiveLoopAsync()
    {
        var buffer = new byte[1 << 20];
        try
        {
            while (true)
            {
                var count = 0;
                WebSocketReceiveResult result;
                do
                {
                    result = await Socket.ReceiveAsync(new ArraySegment<byte>(buffer, count, buffer.Length - count), CancellationToken.None);
                    count += result.Count;
                }
                while (!result.EndOfMessage && result.MessageType != WebSocketMessageType.Close);

                if (result.MessageType == WebSocketMessageType.Close)
                {
                    _closed.TrySetResult(result.CloseStatus);
                    return;
                }

                var frame = JsonDocument.Parse(buffer.AsMemory(0, count)).RootElement.Clone();
                lock (_lock)
                {
                    _frames.Add(frame);
                    _consumed.Add(false);
                }

                _arrived.Release();
            }
        }
        catch (Exception ex) when (ex is WebSocketException or OperationCanceledException or ObjectDisposedException)
        {
            _closed.TrySetResult(null);
        }
    }

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
        _arrived.Dispose();
    }
}
