using Parley.Client.Realtime;

namespace Parley.Client.Tests;

[Trait("Store", "Independent")]
public sealed class BackoffTests
{
    private static readonly TimeSpan Initial = TimeSpan.FromMilliseconds(500);
    private static readonly TimeSpan Max = TimeSpan.FromSeconds(30);

    [Theory]
    [InlineData(0, 500)]
    [InlineData(1, 1000)]
    [InlineData(3, 4000)]
    [InlineData(6, 30000)]
    [InlineData(50, 30000)]
    [InlineData(int.MaxValue, 30000)]
    public void Delay_Attempt_CeilingDoublesUntilTheMaximum(int attempt, int ceilingMs)
    {
        Assert.Equal(TimeSpan.FromMilliseconds(ceilingMs), Backoff.Delay(attempt, Initial, Max, random: 1.0));
        Assert.Equal(TimeSpan.FromMilliseconds(ceilingMs / 2.0), Backoff.Delay(attempt, Initial, Max, random: 0.0));
    }

    [Fact]
    public void Delay_RandomJitter_SpreadsOverTheUpperHalfOfTheCeiling()
    {
        var delays = Enumerable.Range(0, 1000).Select(_ => Backoff.Delay(4, Initial, Max, Random.Shared.NextDouble())).ToList();

        Assert.All(delays, d => Assert.InRange(d.TotalMilliseconds, 4000, 8000));
        Assert.True(delays.Distinct().Count() > 900, "jittered delays differ");
        Assert.InRange(delays.Average(d => d.TotalMilliseconds), 5600, 6400);
    }
}
