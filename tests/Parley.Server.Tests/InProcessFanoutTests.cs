using Microsoft.Extensions.Time.Testing;
using Parley.Server.Fanout;
using Parley.Server.Realtime;
using Parley.Server.Tests.Infrastructure;

namespace Parley.Server.Tests;

/// <summary>Presence on one instance: last-seen times are kept as long as Redis keeps them, not for the process's life.</summary>
[Trait("Store", "Independent")]
public sealed class InProcessFanoutTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task LastSeen_OlderThanItIsKept_IsForgotten_OthersAreNot()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var fanout = new InProcessFanout(new ConnectionHub(TestMetrics.Unobserved, time), time);
        await fanout.SubscribeAsync("old", Ct);
        await fanout.UnsubscribeAsync("old");
        var left = time.GetUtcNow();

        time.Advance(InProcessFanout.LastSeenKept - TimeSpan.FromHours(2));
        await fanout.SubscribeAsync("recent", Ct);
        await fanout.UnsubscribeAsync("recent");
        Assert.Equal(left, (await fanout.GetPresenceAsync(["old"], Ct))["old"].LastSeenAt);

        time.Advance(TimeSpan.FromHours(3)); // past the 90 days for "old", not for "recent"
        await fanout.SubscribeAsync("someone", Ct);
        await fanout.UnsubscribeAsync("someone");

        var presence = await fanout.GetPresenceAsync(["old", "recent"], Ct);
        Assert.Null(presence["old"].LastSeenAt);
        Assert.NotNull(presence["recent"].LastSeenAt);
    }
}
