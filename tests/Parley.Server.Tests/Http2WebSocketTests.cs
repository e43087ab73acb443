using System.Net;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Parley.Server.Realtime;
using Parley.Server.Tests.Infrastructure;

namespace Parley.Server.Tests;

/// <summary>
/// WebSockets over HTTP/2 (extended CONNECT, RFC 8441), as browsers may open them over TLS: the socket runs over
/// Parley's heartbeat stream too, answers its pings and is served.
/// </summary>
public sealed class Http2WebSocketTests : IAsyncLifetime
{
    private readonly ParleyFactory _factory = new(
        settings =>
        {
            settings["Realtime:HeartbeatInterval"] = "00:00:01";
            settings["Realtime:HeartbeatTimeout"] = "00:00:01";
        },
        services: services => services.Configure<KestrelServerOptions>(
            options => options.ConfigureEndpointDefaults(endpoint => endpoint.Protocols = HttpProtocols.Http2)));

    public ValueTask InitializeAsync()
    {
        _factory.StartKestrel();
        return ValueTask.CompletedTask;
    }

    public ValueTask DisposeAsync() => _factory.DisposeAsync();

    [Fact]
    public async Task WebSocketOverHttp2_OnParleysHeartbeat_PingedAnsweredAndServed()
    {
        var ct = TestContext.Current.CancellationToken;
        using var socket = new ClientWebSocket();
        socket.Options.HttpVersion = HttpVersion.Version20;
        socket.Options.HttpVersionPolicy = HttpVersionPolicy.RequestVersionExact;
        socket.Options.CollectHttpResponseDetails = true;
        socket.Options.SetRequestHeader("Authorization", "Bearer " + ParleyFactory.Token("h2-user"));
        using var invoker = new HttpMessageInvoker(new SocketsHttpHandler());

        await socket.ConnectAsync(_factory.WebSocketUri(), invoker, ct).WaitAsync(WsClient.DefaultTimeout, ct);

        // HTTP/2 accepts the CONNECT with 200 (an HTTP/1.1 upgrade answers 101).
        Assert.Equal(HttpStatusCode.OK, socket.HttpStatusCode);
        Assert.Equal("connected", Type(await RawSocket.ReceiveFrameAsync(socket)));
        Assert.Equal(1, _factory.Services.GetRequiredService<Heartbeats>().Count);

        // Silent for four heartbeat intervals, with a receive pending so that its pongs go out.
        var next = RawSocket.ReceiveFrameAsync(socket);
        await Task.Delay(TimeSpan.FromSeconds(4), ct);
        Assert.True(_factory.Services.GetRequiredService<ConnectionHub>().IsConnected("h2-user"));

        await socket.SendAsync(Encoding.UTF8.GetBytes("""{"type":"ping"}"""), WebSocketMessageType.Text, endOfMessage: true, ct);
        Assert.Equal("pong", Type(await next.WaitAsync(WsClient.DefaultTimeout, ct)));
    }

    private static string? Type(JsonElement frame) => frame.GetProperty("type").GetString();
}
