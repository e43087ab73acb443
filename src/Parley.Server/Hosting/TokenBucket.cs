namespace Parley.Server.Hosting;

/// <summary>
/// A token bucket for one owner (one socket): no timer, refilled from elapsed time when asked. Not thread-safe:
/// owned by a socket's receive loop.
/// </summary>
internal sealed class TokenBucket(TimeProvider time, double perSecond, int burst)
{
    private double _tokens = burst;
    private long _last = time.GetTimestamp();

    public bool TryTake()
    {
        var now = time.GetTimestamp();
        _tokens = Math.Min(burst, _tokens + time.GetElapsedTime(_last, now).TotalSeconds * perSecond);
        _last = now;
        if (_tokens < 1)
        {
            return false;
        }

        _tokens -= 1;
        return true;
    }
}
