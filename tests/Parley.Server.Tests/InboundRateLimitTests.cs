using Microsoft.Extensions.Time.Testing;
using Parley.Server.Tests.Infrastructure;

namespace Parley.Server.Tests;

/// <summary>
/// Client frames are rate limited per user (acks per socket): frames over the limit get <c>error rate_limited</c> and the
/// socket stays open. A user's sockets on an instance are bounded.
/// </summary>
public sealed class InboundRateLimitTests : IAsyncLifetime
{
    private const int Burst = 5;
    private const int AckBurst = 3;
    private const int MaxConnections = 3;

    private readonly FakeTimeProvider _time = new(DateTimeOffset.UtcNow);
    private readonly ParleyFactory _factory;

    public InboundRateLimitTests() => _factory = new ParleyFactory(
        settings =>
        {
            settings["Realtime:InboundBurst"] = Burst.ToString(System.Globalization.CultureInfo.InvariantCulture);
            settings["Realtime:InboundFramesPerSecond"] = "1";
            settings["Realtime:AckBurst"] = AckBurst.ToString(System.Globalization.CultureInfo.InvariantCulture);
            settings["Realtime:AckFramesPerSecond"] = "1";
            settings["Realtime:MaxConnectionsPerUser"] = MaxConnections.ToString(System.Globalization.CultureInfo.InvariantCulture);
        },
        _time);

    public ValueTask InitializeAsync()
    {
        _factory.StartKestrel();
        return ValueTask.CompletedTask;
    }

    public ValueTask DisposeAsync() => _factory.DisposeAsync();

    [Fact]
    public async Task Frames_OverTheBurst_ErrorRateLimitedWithIdsThenServedAgainAfterRefill()
    {
        await using var client = await WsClient.ConnectAsync(_factory, "alice");
        await using var otherDevice = await WsClient.ConnectAsync(_factory, "alice", deviceId: "other");
        await using var otherUser = await WsClient.ConnectAsync(_factory, "bob");

        for (var i = 1; i <= Burst + 2; i++)
        {
            await client.SendAsync($$$"""{"type":"ping","id":"p{{{i}}}"}""");
        }

        for (var i = 1; i <= Burst; i++)
        {
            await client.NextAsync("pong");
        }

        await client.NextErrorAsync("rate_limited", id: $"p{Burst + 1}");
        await client.NextErrorAsync("rate_limited", id: $"p{Burst + 2}");
        // The budget is the user's: another socket of theirs does not buy more frames; another user is served.
        await otherDevice.SendAsync("""{"type":"ping","id":"o1"}""");
        await otherDevice.NextErrorAsync("rate_limited", id: "o1");
        await otherUser.PingAsync();

        _time.Advance(TimeSpan.FromSeconds(2));
        await client.PingAsync();
        await otherDevice.PingAsync();
    }

    [Fact]
    public async Task MalformedFramesAndRepeatedResumes_TakeFromTheBudget_LikeAnyFrame()
    {
        // Answered without limit before: a client could make the server parse and answer errors as fast as it could send.
        await using var client = await WsClient.ConnectAsync(_factory, "mallory");

        await client.SendAsync("""{"type":"ping","id":"p1"}""");
        await client.NextAsync("pong");
        for (var i = 2; i <= Burst; i++)
        {
            await client.SendAsync(i % 2 == 0 ? """{"type":"resume","id":"again","cursor":"x"}""" : "not json");
        }

        await client.SendAsync("{ nor this");
        await client.SendAsync("""{"type":"resume","id":"r2","cursor":"x"}""");

        for (var i = 2; i <= Burst; i++)
        {
            await client.NextErrorAsync("invalid_frame");
        }

        await client.NextErrorAsync("rate_limited");
        await client.NextErrorAsync("rate_limited", id: "r2");
        _time.Advance(TimeSpan.FromSeconds(2));
        await client.PingAsync();
    }

    [Fact]
    public async Task Connections_OpenedAllAtOnce_NoMoreThanTheLimitGetThrough()
    {
        // Counted by registered sockets, upgrades still in their checks all passed: one token opening many at once got
        // several times the limit.
        var attempts = await Task.WhenAll(Enumerable.Range(0, MaxConnections + 6).Select(async i =>
        {
            try
            {
                return await WsClient.ConnectAsync(_factory, "erin", deviceId: $"d{i}");
            }
            catch (System.Net.WebSockets.WebSocketException)
            {
                return null;
            }
        }));

        try
        {
            Assert.Equal(MaxConnections, attempts.Count(a => a is not null));
        }
        finally
        {
            foreach (var socket in attempts.OfType<WsClient>())
            {
                await socket.DisposeAsync();
            }
        }
    }

    [Fact]
    public async Task Connections_OverTheUsersLimit_RefusedWith429UntilOneCloses()
    {
        var sockets = new List<WsClient>();
        for (var i = 0; i < MaxConnections; i++)
        {
            sockets.Add(await WsClient.ConnectAsync(_factory, "carol", deviceId: $"d{i}"));
        }

        var uri = _factory.WebSocketUri($"access_token={ParleyFactory.Token("carol", "one-more")}");
        using (var refused = new System.Net.WebSockets.ClientWebSocket())
        {
            refused.Options.CollectHttpResponseDetails = true;
            await Assert.ThrowsAsync<System.Net.WebSockets.WebSocketException>(
                () => refused.ConnectAsync(uri, TestContext.Current.CancellationToken).WaitAsync(WsClient.DefaultTimeout, TestContext.Current.CancellationToken));
            Assert.Equal(System.Net.HttpStatusCode.TooManyRequests, refused.HttpStatusCode);
            Assert.Equal(["10"], refused.HttpResponseHeaders!["Retry-After"]);
        }

        // Another user is not affected; and once one of carol's sockets is gone, she may open another.
        await using var dave = await WsClient.ConnectAsync(_factory, "dave");
        await dave.PingAsync();
        await sockets[0].DisposeAsync();
        var deadline = DateTime.UtcNow + WsClient.DefaultTimeout;
        WsClient? again = null;
        while (again is null)
        {
            try
            {
                again = await WsClient.ConnectAsync(_factory, "carol", deviceId: "again");
            }
            catch (System.Net.WebSockets.WebSocketException) when (DateTime.UtcNow < deadline)
            {
                await Task.Delay(20, TestContext.Current.CancellationToken);
            }
        }

        await again.PingAsync();
        await again.DisposeAsync();
        foreach (var socket in sockets.Skip(1))
        {
            await socket.DisposeAsync();
        }
    }

    [Fact]
    public async Task Acks_HaveABudgetOfTheirOwn()
    {
        await using var client = await WsClient.ConnectAsync(_factory, "alice", "acks=true");
        // Spend the frame budget: the acks that follow are still processed (an ack for a conversation the caller
        // is not in gets not_found, which shows it was handled rather than refused).
        for (var i = 1; i <= Burst; i++)
        {
            await client.PingAsync();
        }

        var nowhere = Guid.CreateVersion7();
        for (var i = 1; i <= AckBurst + 1; i++)
        {
            await client.SendAsync($$$"""{"type":"ack","id":"a{{{i}}}","payload":{"conversation_id":"{{{nowhere}}}","seq":1}}""");
        }

        for (var i = 1; i <= AckBurst; i++)
        {
            await client.NextErrorAsync("not_found", id: $"a{i}");
        }

        await client.NextErrorAsync("rate_limited", id: $"a{AckBurst + 1}");
        // Other frames are limited by their own budget (spent), and both refill.
        await client.SendAsync("""{"type":"ping","id":"p"}""");
        await client.NextErrorAsync("rate_limited", id: "p");
        _time.Advance(TimeSpan.FromSeconds(2));
        await client.PingAsync();
        await client.SendAsync($$$"""{"type":"ack","id":"again","payload":{"conversation_id":"{{{nowhere}}}","seq":1}}""");
        await client.NextErrorAsync("not_found", id: "again");
    }
}
