namespace Parley.Client.Realtime;

/// <summary>Reconnect delays: exponential, capped, jittered.</summary>
internal static class Backoff
{
    /// <summary>
    /// <paramref name="initial"/> × 2^<paramref name="attempt"/>, capped at <paramref name="max"/>, with "equal
    /// jitter": half of it fixed, half random. After an outage the clients of a deployment spread their attempts
    /// over the window instead of arriving together, and none retries at once.
    /// </summary>
    /// <param name="attempt">0 for the first retry.</param>
    /// <param name="initial">The first delay's ceiling.</param>
    /// <param name="max">The ceiling of every delay.</param>
    /// <param name="random">A uniform value in [0, 1).</param>
    public static TimeSpan Delay(int attempt, TimeSpan initial, TimeSpan max, double random)
    {
        var ceiling = Math.Min(initial.TotalMilliseconds * Math.Pow(2, Math.Clamp(attempt, 0, 40)), max.TotalMilliseconds);
        return TimeSpan.FromMilliseconds((ceiling / 2) + (ceiling / 2 * random));
    }
}
