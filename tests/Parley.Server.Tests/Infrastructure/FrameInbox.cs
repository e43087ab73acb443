using System.Net.WebSockets;
using System.Text.Json;

namespace Parley.Server.Tests.Infrastructure;

/// <summary>
/// Every JSON frame one side of a test socket receives, in arrival order: a background loop collects them and
/// tests take the next unconsumed frame of a type (frames of other types stay available). Every wait is
/// bounded. Used by the server tests' client socket and by the client tests' scripted server socket.
/// </summary>
internal sealed class FrameInbox(string owner, TimeSpan defaultTimeout) : IDisposable
{
    private readonly List<JsonElement> _frames = [];
    private readonly List<bool> _consumed = [];
    private readonly SemaphoreSlim _arrived = new(0);
    private readonly Lock _lock = new();
    private readonly TaskCompletionSource<WebSocketCloseStatus?> _closed = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>The close status the peer sent, once the socket closed (null when it was aborted).</summary>
    public Task<WebSocketCloseStatus?> Closed => _closed.Task;

    /// <summary>Every frame received so far (consumed or not), in arrival order.</summary>
    public IReadOnlyList<JsonElement> All()
    {
        lock (_lock)
        {
            return [.. _frames];
        }
    }

    /// <summary>The payload of the next unconsumed frame of <paramref name="type"/> that matches.</summary>
    public async Task<JsonElement> NextAsync(string type, Func<JsonElement, bool>? match = null, TimeSpan? timeout = null)
    {
        var frame = await NextFrameAsync(
            f => f.GetProperty("type").GetString() == type && (match is null || match(f.GetProperty("payload"))), timeout, type);
        return frame.GetProperty("payload");
    }

    /// <summary>The next unconsumed frame of any type.</summary>
    public Task<JsonElement> NextAnyAsync(TimeSpan? timeout = null) => NextFrameAsync(_ => true, timeout, "any");

    /// <summary>Asserts that no frame of the type (matching) arrives within <paramref name="within"/>.</summary>
    public async Task AssertNoFrameAsync(string type, TimeSpan within, Func<JsonElement, bool>? match = null)
    {
        try
        {
            var frame = await NextAsync(type, match, within);
            Assert.Fail($"Unexpected {type} frame for {owner}: {frame}");
        }
        catch (TimeoutException)
        {
            // Expected: nothing arrived.
        }
    }

    private async Task<JsonElement> NextFrameAsync(Func<JsonElement, bool> match, TimeSpan? timeout, string what)
    {
        var wait = timeout ?? defaultTimeout;
        var deadline = DateTime.UtcNow + wait;
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
                var received = string.Join(", ", All().Select(f => f.GetRawText()));
                throw new TimeoutException(
                    $"No matching '{what}' frame for {owner} within {wait}. Received: {(received.Length > 4000 ? received[..4000] + "..." : received)}");
            }
        }
    }

    /// <summary>
    /// Receives until the socket closes or fails. A received close is answered when <paramref name="answerClose"/>
    /// (the server's side of a handshake the client started).
    /// </summary>
    public async Task ReceiveAsync(WebSocket socket, bool answerClose)
    {
        var buffer = new byte[1 << 20];
        try
        {
            while (true)
            {
                var count = 0;
                ValueWebSocketReceiveResult result;
                do
                {
                    result = await socket.ReceiveAsync(buffer.AsMemory(count), CancellationToken.None);
                    count += result.Count;
                }
                while (!result.EndOfMessage && result.MessageType != WebSocketMessageType.Close);

                if (result.MessageType == WebSocketMessageType.Close)
                {
                    _closed.TrySetResult(socket.CloseStatus);
                    if (answerClose && socket.State == WebSocketState.CloseReceived)
                    {
                        await socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, "", CancellationToken.None);
                    }

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
        catch (Exception ex) when (ex is WebSocketException or IOException or OperationCanceledException or ObjectDisposedException)
        {
            _closed.TrySetResult(null);
        }
    }

    public void Dispose() => _arrived.Dispose();
}
