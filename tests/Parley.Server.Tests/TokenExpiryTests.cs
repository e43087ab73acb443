using Microsoft.Extensions.Time.Testing;
using Parley.Server.Realtime.Endpoint;

namespace Parley.Server.Tests;

/// <summary>A socket's token expiry: closed at <c>exp</c> however far away it is (a timer alone waits at most about 49 days).</summary>
public sealed class TokenExpiryTests
{
    [Theory]
    [InlineData(0.5)] // within one timer's reach
    [InlineData(40)] // beyond one step: re-armed once
    [InlineData(400)] // a token valid for more than a year
    public void Schedule_RunsAtTheMomentAndNotBefore(double days)
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2026, 12, 7, 0, 0, 0, TimeSpan.Zero));
        var at = time.GetUtcNow() + TimeSpan.FromDays(days);
        var ran = 0;
        using var timer = TokenExpiry.Schedule(time, at, () => ran++);

        // In steps no longer than one of the timer's: each step's timer fires and re-arms for the next.
        while (time.GetUtcNow() < at - TimeSpan.FromSeconds(1))
        {
            var step = at - TimeSpan.FromSeconds(1) - time.GetUtcNow();
            time.Advance(step < TimeSpan.FromDays(10) ? step : TimeSpan.FromDays(10));
        }

        Assert.Equal(0, ran);
        time.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal(1, ran);
        time.Advance(TimeSpan.FromDays(100));
        Assert.Equal(1, ran);
    }

    [Fact]
    public void Schedule_OnTheSystemClock_AMomentMonthsAway_IsAccepted()
    {
        // A system timer refuses a wait beyond about 49 days.
        using var timer = TokenExpiry.Schedule(TimeProvider.System, DateTimeOffset.UtcNow + TimeSpan.FromDays(400), () => { });

        Assert.NotNull(timer);
    }

    [Fact]
    public void Schedule_AMomentPassed_RunsAtOnce()
    {
        var time = new FakeTimeProvider();
        var ran = 0;
        using var timer = TokenExpiry.Schedule(time, time.GetUtcNow() - TimeSpan.FromMinutes(1), () => ran++);

        time.Advance(TimeSpan.Zero);

        Assert.Equal(1, ran);
    }
}
