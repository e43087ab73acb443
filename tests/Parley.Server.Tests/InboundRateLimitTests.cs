using Microsoft.Extensions.Time.Testing;
using Parley.Server.Tests.Infrastructure;

namespace Parley.Server.Tests;

/// <summary>Client frames are rate limited per socket: frames over the limit get <c>error rate_limited</c> and the socket stays open.</summary>
public sealed class InboundRateLimitTests : IAsyncLifetime
{
    private const int Burst = 5;
    private const int AckBurst = 3;

    private readonly FakeTimeProvider _time = new(DateTimeOffset.UtcNow);
    private readonly ParleyFactory _factory;

    public InboundRateLimitTests() => _factory = new ParleyFactory(
        settings =>
        {
            settings["Realtime:InboundBurst"] = Burst.ToString(System.Globalization.CultureInfo.InvariantCulture);
            settings["Realtime:InboundFramesPerSecond"] = "1";
            settings["Realtime:AckBurst"] = AckBurst.ToString(System.Globalization.CultureInfo.InvariantCulture);
            settings["Realtime:AckFramesPerSecond"] = "1";
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
        // The limit is per socket: the user's other device is served.
        await otherDevice.PingAsync();

        _time.Advance(TimeSpan.FromSeconds(2));
        await client.PingAsync();
        await client.PingAsync();
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
