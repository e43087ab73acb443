using System.Collections.Concurrent;
using Microsoft.Extensions.Options;

namespace Parley.Server.Hosting;

/// <summary>
/// The per-user message rate (<see cref="LimitsOptions.SendRatePerSecond"/>, bursts of <see cref="LimitsOptions.SendBurst"/>),
/// shared by REST sends and WebSocket <c>send_message</c>: one bucket per user, refilled from elapsed time (no
/// timers). Buckets of users who have not sent for a minute are dropped (a full bucket is the same as none).
/// </summary>
internal sealed class SendRateLimiter(IOptions<LimitsOptions> options, TimeProvider time)
{
    private static readonly TimeSpan IdleAfter = TimeSpan.FromMinutes(1);
    private readonly ConcurrentDictionary<string, Entry> _buckets = new(StringComparer.Ordinal);
    private long _lastSweep = time.GetTimestamp();

    /// <summary>True when the user may send now; otherwise how long until one more message is allowed.</summary>
    public bool TryAcquire(string userId, out TimeSpan retryAfter)
    {
        SweepIdle();
        var limits = options.Value;
        var entry = _buckets.GetOrAdd(userId, _ => new Entry(new TokenBucket(time, limits.SendRatePerSecond, limits.SendBurst)));
        lock (entry)
        {
            entry.LastUsed = time.GetTimestamp();
            if (entry.Bucket.TryTake())
            {
                retryAfter = TimeSpan.Zero;
                return true;
            }
        }

        retryAfter = TimeSpan.FromSeconds(1.0 / limits.SendRatePerSecond);
        return false;
    }

    private void SweepIdle()
    {
        var now = time.GetTimestamp();
        var last = Interlocked.Read(ref _lastSweep);
        if (time.GetElapsedTime(last, now) < IdleAfter || Interlocked.CompareExchange(ref _lastSweep, now, last) != last)
        {
            return;
        }

        foreach (var (user, entry) in _buckets)
        {
            if (time.GetElapsedTime(entry.LastUsed, now) > IdleAfter)
            {
                _buckets.TryRemove(new KeyValuePair<string, Entry>(user, entry));
            }
        }
    }

    private sealed class Entry(TokenBucket bucket)
    {
        public TokenBucket Bucket { get; } = bucket;

        public long LastUsed;
    }
}
