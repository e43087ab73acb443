using System.Threading.RateLimiting;

namespace Parley.Server.Hosting;

/// <summary>
/// A token bucket (<paramref name="perSecond"/> tokens a second, bursts of <paramref name="burst"/>) that reads the
/// injected <see cref="TimeProvider"/>: refilled from elapsed time when asked, no timer. System.Threading.RateLimiting's
/// TokenBucketRateLimiter would do, but it reads Stopwatch and replenishes only after that much real time
/// (TryReplenish included; dotnet/runtime#106447), so the socket's budgets could not be tested on a fake clock. As a
/// <see cref="RateLimiter"/> it still plugs into the built-in PartitionedRateLimiter (which evicts buckets that are
/// full: <see cref="IdleDuration"/>) and answers with leases carrying <see cref="MetadataName.RetryAfter"/>.
/// No queue: a request it cannot serve now fails at once.
/// </summary>
internal sealed class ClockedTokenBucket(TimeProvider time, double perSecond, int burst) : RateLimiter
{
    private static readonly RateLimitLease Granted = new Lease(null);

    // Guards the fields below: a user's send bucket is shared by their REST requests and sockets.
    private readonly Lock _lock = new();
    private double _tokens = burst;
    private long _refilled = time.GetTimestamp();
    private long _lastGranted = time.GetTimestamp();
    private long _granted;
    private long _refused;

    /// <summary>Since the last grant, once the bucket is full again (a full bucket is the same as a new one); otherwise null.</summary>
    public override TimeSpan? IdleDuration
    {
        get
        {
            lock (_lock)
            {
                Refill();
                return _tokens >= burst ? time.GetElapsedTime(_lastGranted) : null;
            }
        }
    }

    public override RateLimiterStatistics? GetStatistics()
    {
        lock (_lock)
        {
            Refill();
            return new RateLimiterStatistics
            {
                CurrentAvailablePermits = (long)_tokens,
                TotalSuccessfulLeases = _granted,
                TotalFailedLeases = _refused,
            };
        }
    }

    protected override RateLimitLease AttemptAcquireCore(int permitCount)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan(permitCount, burst);
        lock (_lock)
        {
            Refill();
            // Zero permits asks whether one is available, as the built-in limiters answer it.
            if (_tokens >= Math.Max(permitCount, 1))
            {
                _tokens -= permitCount;
                _lastGranted = time.GetTimestamp();
                _granted++;
                return Granted;
            }

            _refused++;
            // The time until the missing tokens have been added: for one permit, one token's period.
            return new Lease(TimeSpan.FromSeconds(Math.Ceiling(Math.Max(permitCount, 1) - _tokens) / perSecond));
        }
    }

    protected override ValueTask<RateLimitLease> AcquireAsyncCore(int permitCount, CancellationToken cancellationToken) =>
        ValueTask.FromResult(AttemptAcquireCore(permitCount));

    private void Refill()
    {
        var now = time.GetTimestamp();
        _tokens = Math.Min(burst, _tokens + time.GetElapsedTime(_refilled, now).TotalSeconds * perSecond);
        _refilled = now;
    }

    private sealed class Lease(TimeSpan? retryAfter) : RateLimitLease
    {
        private static readonly string[] RetryAfterName = [MetadataName.RetryAfter.Name];

        public override bool IsAcquired => retryAfter is null;

        public override IEnumerable<string> MetadataNames => retryAfter is null ? [] : RetryAfterName;

        public override bool TryGetMetadata(string metadataName, out object? metadata)
        {
            if (retryAfter is { } wait && metadataName == MetadataName.RetryAfter.Name)
            {
                metadata = wait;
                return true;
            }

            metadata = null;
            return false;
        }
    }
}
