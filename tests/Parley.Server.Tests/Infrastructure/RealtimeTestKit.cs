using System.Net;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Time.Testing;

namespace Parley.Server.Tests.Infrastructure;

/// <summary>Assertions on a <see cref="WsClient"/> that the WebSocket tests share.</summary>
internal static class WsClientAssertions
{
    /// <summary>How long a test waits for a frame that must not come.</summary>
    public static readonly TimeSpan Silence = TimeSpan.FromSeconds(1);

    /// <summary>
    /// ping → pong. Proves the socket is open and, because a socket's frames are handled in order, that every
    /// frame sent before the ping has been processed.
    /// </summary>
    public static async Task PingAsync(this WsClient client)
    {
        await client.SendAsync("""{"type":"ping","id":"ping-check"}""");
        var pong = await client.NextAsync("pong");
        Assert.Equal(JsonValueKind.String, pong.GetProperty("timestamp").ValueKind);
    }

    /// <summary>The next <c>error</c> frame: asserts its code, a message, and the echoed client frame id.</summary>
    public static async Task<JsonElement> NextErrorAsync(this WsClient client, string code, string? id = null)
    {
        var error = await client.NextAsync("error");
        Assert.Equal(code, error.GetProperty("code").GetString());
        Assert.False(string.IsNullOrWhiteSpace(error.GetProperty("message").GetString()), $"error without a message: {error}");
        if (id is not null)
        {
            Assert.Equal(id, error.GetProperty("id").GetString());
        }

        return error;
    }

    /// <summary>Asserts that no frame at all arrives within <paramref name="within"/> (default <see cref="Silence"/>).</summary>
    public static async Task AssertSilentAsync(this WsClient client, TimeSpan? within = null)
    {
        try
        {
            var frame = await client.NextAnyAsync(within ?? Silence);
            Assert.Fail($"Unexpected frame for {client.UserId}: {frame}");
        }
        catch (TimeoutException)
        {
            // Expected: nothing arrived.
        }
    }

    /// <summary>Waits for the server's close frame and returns its status (null: the socket was aborted without one).</summary>
    public static Task<WebSocketCloseStatus?> ClosedAsync(this WsClient client, TimeSpan? timeout = null) =>
        client.Closed.WaitAsync(timeout ?? WsClient.DefaultTimeout, TestContext.Current.CancellationToken);
}

/// <summary>A <see cref="ClientWebSocket"/> opened by hand, for handshake tests that <see cref="WsClient"/> does not cover.</summary>
internal sealed class RawSocket : IDisposable
{
    private RawSocket(ClientWebSocket socket, HttpStatusCode status, WebSocketException? failure)
    {
        Socket = socket;
        Status = status;
        Failure = failure;
    }

    public ClientWebSocket Socket { get; }

    /// <summary>The HTTP status of the handshake (101 when the socket was upgraded).</summary>
    public HttpStatusCode Status { get; }

    public WebSocketException? Failure { get; }

    public bool Upgraded => Failure is null && Socket.State == WebSocketState.Open;

    /// <summary>Opens a socket without any credentials unless <paramref name="configure"/> adds some. Never throws for a refused handshake.</summary>
    public static async Task<RawSocket> ConnectAsync(ParleyFactory factory, string query = "", Action<ClientWebSocketOptions>? configure = null)
    {
        var socket = new ClientWebSocket();
        socket.Options.CollectHttpResponseDetails = true;
        configure?.Invoke(socket.Options);
        WebSocketException? failure = null;
        try
        {
            await socket.ConnectAsync(factory.WebSocketUri(query), TestContext.Current.CancellationToken).WaitAsync(WsClient.DefaultTimeout);
        }
        catch (WebSocketException ex)
        {
            failure = ex;
        }

        return new RawSocket(socket, socket.HttpStatusCode, failure);
    }

    /// <summary>Reads one whole text frame and parses it.</summary>
    public Task<JsonElement> ReceiveFrameAsync() => ReceiveFrameAsync(Socket);

    /// <summary>Reads one whole text frame of <paramref name="socket"/> and parses it.</summary>
    public static async Task<JsonElement> ReceiveFrameAsync(WebSocket socket)
    {
        var buffer = new byte[64 * 1024];
        var count = 0;
        ValueWebSocketReceiveResult result;
        do
        {
            result = await socket.ReceiveAsync(buffer.AsMemory(count), TestContext.Current.CancellationToken).AsTask().WaitAsync(WsClient.DefaultTimeout);
            count += result.Count;
        }
        while (!result.EndOfMessage);

        Assert.Equal(WebSocketMessageType.Text, result.MessageType);
        return JsonDocument.Parse(Encoding.UTF8.GetString(buffer, 0, count)).RootElement.Clone();
    }

    public void Dispose()
    {
        Socket.Abort();
        Socket.Dispose();
    }
}

internal static class FakeTimeExtensions
{
    /// <summary>
    /// Moves fake time forward in small steps, yielding between them so that periodic loops (which register their
    /// next <c>Task.Delay</c> only after the previous one fired) observe every step instead of missing one.
    /// </summary>
    public static async Task AdvanceInStepsAsync(this FakeTimeProvider time, TimeSpan total)
    {
        var step = TimeSpan.FromMilliseconds(250);
        for (var moved = TimeSpan.Zero; moved < total; moved += step)
        {
            time.Advance(total - moved < step ? total - moved : step);
            await Task.Delay(TimeSpan.FromMilliseconds(20), TestContext.Current.CancellationToken);
        }
    }
}
