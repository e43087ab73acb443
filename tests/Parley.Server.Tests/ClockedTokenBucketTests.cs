using System.Threading.RateLimiting;
using Microsoft.Extensions.Time.Testing;
using Parley.Server.Hosting;

namespace Parley.Server.Tests;

/// <summary>
/// The token bucket behind the message rate and the socket's frame budgets, on a fake clock: bursts, refill from
/// elapsed time, the Retry-After it reports, and when PartitionedRateLimiter may drop it.
/// </summary>
[Trait("Store", "Independent")]
public sealed class ClockedTokenBucketTests
{
    private readonly FakeTimeProvider _time = new(DateTimeOffset.UtcNow);

    [Fact]
    public void AttemptAcquire_BeyondTheBurst_RefusedWithTheTimeOfOneToken()
    {
        using var bucket = new ClockedTokenBucket(_time, perSecond: 4, burst: 3);

        for (var i = 0; i < 3; i++)
        {
            using var granted = bucket.AttemptAcquire();
            Assert.True(granted.IsAcquired);
        }

        using var refused = bucket.AttemptAcquire();
        Assert.False(refused.IsAcquired);
        Assert.True(refused.TryGetMetadata(MetadataName.RetryAfter, out var retryAfter));
        Assert.Equal(TimeSpan.FromSeconds(0.25), retryAfter);
        Assert.Equal(1, RateLimits.RetryAfterSeconds(refused));
    }

    [Fact]
    public void AttemptAcquire_AfterTime_RefilledAtTheRateUpToTheBurst()
    {
        using var bucket = new ClockedTokenBucket(_time, perSecond: 2, burst: 3);
        Drain(bucket);

        _time.Advance(TimeSpan.FromSeconds(0.25));
        Assert.False(Attempt(bucket), "half a token is not a token");
        _time.Advance(TimeSpan.FromSeconds(0.25));
        Assert.True(Attempt(bucket));
        Assert.False(Attempt(bucket));

        _time.Advance(TimeSpan.FromHours(1));
        Assert.Equal(3, Drain(bucket));
    }

    [Fact]
    public void IdleDuration_OnlyOnceFull_SinceTheLastGrant()
    {
        using var bucket = new ClockedTokenBucket(_time, perSecond: 1, burst: 2);
        Assert.True(Attempt(bucket));
        Assert.Null(bucket.IdleDuration);

        _time.Advance(TimeSpan.FromSeconds(1));

        Assert.Equal(TimeSpan.FromSeconds(1), bucket.IdleDuration);
        Assert.Equal(2, bucket.GetStatistics()!.CurrentAvailablePermits);
    }

    [Fact]
    public void Partitioned_OneBucketPerKey()
    {
        using var limiter = PartitionedRateLimiter.Create<string, string>(
            user => RateLimitPartition.Get(user, _ => new ClockedTokenBucket(_time, perSecond: 1, burst: 1)), StringComparer.Ordinal);

        using (var alice = limiter.AttemptAcquire("alice"))
        {
            Assert.True(alice.IsAcquired);
        }

        using var again = limiter.AttemptAcquire("alice");
        using var bob = limiter.AttemptAcquire("bob");
        Assert.False(again.IsAcquired);
        Assert.True(bob.IsAcquired);
    }

    private static bool Attempt(RateLimiter bucket)
    {
        using var lease = bucket.AttemptAcquire();
        return lease.IsAcquired;
    }

    private static int Drain(RateLimiter bucket)
    {
        var granted = 0;
        while (Attempt(bucket))
        {
            granted++;
        }

        return granted;
    }
}
