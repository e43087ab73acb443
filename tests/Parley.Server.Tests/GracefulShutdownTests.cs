using System.Diagnostics;
using System.Net.WebSockets;
using Parley.Server.Tests.Infrastructure;

namespace Parley.Server.Tests;

/// <summary>Stopping the server closes every socket with 1001 (going away: reconnect, maybe elsewhere).</summary>
public sealed class GracefulShutdownTests : IAsyncLifetime
{
    private readonly ParleyFactory _factory = new(settings => settings["Realtime:CloseTimeout"] = "00:00:20");

    public ValueTask InitializeAsync()
    {
        _factory.StartKestrel();
        return ValueTask.CompletedTask;
    }

    // Disposing twice is harmless: the test stops the server itself.
    public ValueTask DisposeAsync() => _factory.DisposeAsync();

    [Fact]
    public async Task Shutdown_WithOpenSockets_ClosesEverySocketWith1001AndFinishesWhenClientsAnswer()
    {
        using var alice = _factory.Api("alice");
        var conversation = await alice.CreateDirectAsync("bob");
        await using var alicePhone = await WsClient.ConnectAsync(_factory, "alice", deviceId: "phone");
        await using var aliceLaptop = await WsClient.ConnectAsync(_factory, "alice", deviceId: "laptop", query: "acks=true");
        await using var bobPhone = await WsClient.ConnectAsync(_factory, "bob");
        await using var idle = await WsClient.ConnectAsync(_factory, "carol");
        await alice.SendTextAsync(conversation.Id, "before shutdown");
        await bobPhone.NextAsync("new_message");
        WsClient[] clients = [alicePhone, aliceLaptop, bobPhone, idle];

        var clock = Stopwatch.StartNew();
        var stopping = _factory.DisposeAsync().AsTask();

        foreach (var client in clients)
        {
            // 1001 (going away) as the socket received it: null would mean no close frame at all.
            Assert.Equal(1001, (int?)await client.ClosedAsync());
            // Complete the close handshake, as a well-behaved client does.
            await client.Socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, "ok", TestContext.Current.CancellationToken)
                .WaitAsync(WsClient.DefaultTimeout, TestContext.Current.CancellationToken);
        }

        await stopping.WaitAsync(TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken);
        // With every handshake completed the server did not wait for its close timeout (20 s) to abort anyone.
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(15), $"shutdown took {clock.Elapsed}");
    }
}
