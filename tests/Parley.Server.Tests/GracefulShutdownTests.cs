using System.Diagnostics;
using System.Net;
using System.Net.WebSockets;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Parley.Server.Realtime;
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

        Assert.Equal(1001, (int?)await alicePhone.ClosedAsync());

        // Draining: not ready, and no new sockets (they go to another instance); plain requests still work.
        using var probe = _factory.Anonymous();
        var ready = await probe.GetAsync("/ready", TestContext.Current.CancellationToken);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, ready.StatusCode);
        Assert.Contains("shutting down", await ready.Content.ReadAsStringAsync(TestContext.Current.CancellationToken), StringComparison.Ordinal);
        var upgrade = await alice.GetAsync("/ws");
        await ParleyApi.ProblemAsync(upgrade, HttpStatusCode.ServiceUnavailable, "service_unavailable");
        Assert.Equal("1", upgrade.Headers.GetValues("Retry-After").Single());
        Assert.Equal("before shutdown", (await alice.ListMessagesAsync(conversation.Id)).Messages.Single().Content);

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

    [Fact]
    public async Task Shutdown_EverySocketHasClosedBeforeAnyServiceStops()
    {
        // Reproduction: the closes were started on ApplicationStopping and not awaited; the only wait came in a
        // StopAsync that runs after the server and every service registered later had stopped. The in-memory server
        // does not wait for its requests, so a socket was still open while the services it uses stopped. Here the
        // peer never answers the close: the socket ends when its close timeout aborts it.
        await using var factory = new ParleyFactory(
            settings => settings["Realtime:CloseTimeout"] = "00:00:01",
            services: services =>
            {
                services.AddSingleton<StopProbe>();
                services.AddHostedService(provider => provider.GetRequiredService<StopProbe>());
            });
        var client = factory.Server.CreateWebSocketClient();
        client.ConfigureRequest = request => request.Headers.Authorization = "Bearer " + ParleyFactory.Token("alice");
        using var socket = await client.ConnectAsync(new Uri(factory.Server.BaseAddress, "/ws"), TestContext.Current.CancellationToken)
            .WaitAsync(WsClient.DefaultTimeout, TestContext.Current.CancellationToken);
        using var inbox = new FrameInbox("alice", WsClient.DefaultTimeout);
        var receiving = inbox.ReceiveAsync(socket, answerClose: false);
        await inbox.NextAsync("connected");
        var probe = factory.Services.GetRequiredService<StopProbe>();

        await factory.DisposeAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken);

        Assert.Equal(WebSocketCloseStatus.EndpointUnavailable, await inbox.Closed.WaitAsync(WsClient.DefaultTimeout, TestContext.Current.CancellationToken));
        Assert.Equal(0, probe.OpenWhenStopped);
        await receiving.WaitAsync(WsClient.DefaultTimeout, TestContext.Current.CancellationToken);
    }

    /// <summary>Registered after the server's own services, so it is among the first to stop: it notes the sockets still open then.</summary>
    private sealed class StopProbe(ConnectionHub hub) : IHostedService
    {
        public int? OpenWhenStopped { get; private set; }

        public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public Task StopAsync(CancellationToken cancellationToken)
        {
            OpenWhenStopped = hub.Connections().Count(c => !c.Completion.IsCompleted);
            return Task.CompletedTask;
        }
    }
}
