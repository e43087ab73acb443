using System.Net.WebSockets;
using Microsoft.Extensions.DependencyInjection;
using Parley.Server.Realtime;
using Parley.Server.Tests.Infrastructure;

namespace Parley.Server.Tests;

/// <summary>
/// How sockets end on a real server: the client's close is answered, dead peers are found by the server's
/// pings, a socket lives no longer than its token (4003), and shutdown does not wait forever for a silent client.
/// </summary>
public sealed class ConnectionLifecycleTests : IAsyncLifetime
{
    private readonly ParleyFactory _factory = new(settings =>
    {
        settings["Realtime:HeartbeatInterval"] = "00:00:01";
        settings["Realtime:HeartbeatTimeout"] = "00:00:01";
    });

    public ValueTask InitializeAsync()
    {
        _factory.StartKestrel();
        return ValueTask.CompletedTask;
    }

    public ValueTask DisposeAsync() => _factory.DisposeAsync();

    private ConnectionHub Hub => _factory.Services.GetRequiredService<ConnectionHub>();

    [Fact]
    public async Task ClientClose_Normal_ServerAnswersWith1000AndForgetsTheSocket()
    {
        await using var client = await WsClient.ConnectAsync(_factory, "closer");
        Assert.True(Hub.IsConnected("closer"));

        await client.Socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, "bye", TestContext.Current.CancellationToken)
            .WaitAsync(WsClient.DefaultTimeout, TestContext.Current.CancellationToken);

        Assert.Equal(WebSocketCloseStatus.NormalClosure, await client.ClosedAsync());
        Assert.Equal(WebSocketState.Closed, client.Socket.State);
        await EventuallyAsync(() => !Hub.IsConnected("closer"), "the closed socket is still registered");
    }

    [Fact]
    public async Task ClientClose_OneOfTwoDevices_TheOtherStillGetsEvents()
    {
        using var alice = _factory.Api("alice");
        var conversation = await alice.CreateDirectAsync("bob");
        await using var phone = await WsClient.ConnectAsync(_factory, "bob", deviceId: "phone");
        await using var laptop = await WsClient.ConnectAsync(_factory, "bob", deviceId: "laptop");

        await phone.Socket.CloseAsync(WebSocketCloseStatus.NormalClosure, "bye", TestContext.Current.CancellationToken)
            .WaitAsync(WsClient.DefaultTimeout, TestContext.Current.CancellationToken);
        var sent = await alice.SendTextAsync(conversation.Id, "still there?");

        Assert.Equal(sent.Id, (await laptop.NextAsync("new_message")).GetProperty("message").GetProperty("id").GetGuid());
        Assert.Equal(WebSocketCloseStatus.NormalClosure, await phone.ClosedAsync());
    }

    [Fact]
    public async Task Heartbeat_PeerStopsAnsweringPings_ServerDropsTheSocketAndKeepsLiveOnes()
    {
        await using var live = await WsClient.ConnectAsync(_factory, "live-user");
        // A client that reads its first frame and then nothing: it never answers the server's pings.
        using var stale = await RawSocket.ConnectAsync(
            _factory, configure: o =>
            {
                o.SetRequestHeader("Authorization", "Bearer " + ParleyFactory.Token("stale-user"));
                o.KeepAliveInterval = TimeSpan.Zero;
            });
        Assert.True(stale.Upgraded);
        Assert.Equal("connected", (await stale.ReceiveFrameAsync()).GetProperty("type").GetString());
        Assert.True(Hub.IsConnected("stale-user"));
        // Both sockets run over Parley's heartbeat (one timer for all), not .NET's timer per socket.
        var heartbeats = _factory.Services.GetRequiredService<Heartbeats>();
        Assert.Equal(2, heartbeats.Count);

        await EventuallyAsync(() => !Hub.IsConnected("stale-user"), "a socket that answers no pings must be dropped", TimeSpan.FromSeconds(15));
        Assert.Equal(1, heartbeats.Count);

        // The live client answered every ping meanwhile (its receive loop runs) and is still served.
        Assert.True(Hub.IsConnected("live-user"));
        await live.PingAsync();
    }

    [Fact]
    public async Task Heartbeat_IdleClientAnswersThePings_StaysConnectedOverManyIntervals()
    {
        // Sends nothing for five heartbeat intervals; its WebSocket answers the server's pings by itself. A malformed
        // ping, or one written into another frame, would fail this client's socket.
        await using var idle = await WsClient.ConnectAsync(_factory, "idle-user");
        await Task.Delay(TimeSpan.FromSeconds(5), TestContext.Current.CancellationToken);

        Assert.True(Hub.IsConnected("idle-user"));
        Assert.Equal(WebSocketState.Open, idle.Socket.State);
        await idle.PingAsync();
    }

    [Fact]
    public async Task Heartbeat_PingsBetweenFramesOfASocketThatOnlyReceives_EveryFrameArrivesWhole()
    {
        // Bob sends nothing for four heartbeat intervals, so he is pinged while Alice's messages stream to him:
        // the pings go out between those frames.
        using var alice = _factory.Api("alice-heart");
        var conversation = await alice.CreateDirectAsync("bob-heart");
        await using var bob = await WsClient.ConnectAsync(_factory, "bob-heart");
        var sent = new List<Guid>();
        for (var i = 0; i < 40; i++)
        {
            sent.Add((await alice.SendTextAsync(conversation.Id, $"message {i}")).Id);
            await Task.Delay(TimeSpan.FromMilliseconds(100), TestContext.Current.CancellationToken);
        }

        var received = new List<Guid>();
        for (var i = 0; i < sent.Count; i++)
        {
            received.Add((await bob.NextAsync("new_message")).GetProperty("message").GetProperty("id").GetGuid());
        }

        Assert.Equal(sent, received);
        Assert.True(Hub.IsConnected("bob-heart"));
        await bob.PingAsync();
    }

    [Fact]
    public async Task TokenExpiry_WhileConnected_ClosesWith4003()
    {
        var token = ParleyFactory.Token("short-lived", expires: DateTime.UtcNow.AddSeconds(2));
        await using var client = await WsClient.ConnectAsync(
            _factory, "short-lived", configure: o => o.SetRequestHeader("Authorization", "Bearer " + token));

        Assert.Equal((WebSocketCloseStatus)4003, await client.ClosedAsync(TimeSpan.FromSeconds(15)));
        await EventuallyAsync(() => !Hub.IsConnected("short-lived"), "the expired socket is still registered");
    }

    [Fact]
    public async Task Shutdown_ClientNeverAnswersTheClose_SocketGets1001AndShutdownStillFinishes()
    {
        await using var silent = await WsClient.ConnectAsync(_factory, "silent");

        // This client reads the 1001 but never answers it: the server aborts it after its close timeout (3 s).
        var stopping = _factory.DisposeAsync().AsTask();

        Assert.Equal(WebSocketCloseStatus.EndpointUnavailable, await silent.ClosedAsync());
        await stopping.WaitAsync(TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken);
    }

    /// <summary>Polls a server-side condition that has no event of its own, bounded by <paramref name="timeout"/>.</summary>
    private static async Task EventuallyAsync(Func<bool> condition, string failure, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? WsClient.DefaultTimeout);
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, failure);
            await Task.Delay(50, TestContext.Current.CancellationToken);
        }
    }
}
