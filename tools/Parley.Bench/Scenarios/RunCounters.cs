using System.Collections.Concurrent;
using Parley.Bench.Client;
using Parley.Bench.Reporting;

namespace Parley.Bench.Scenarios;

/// <summary>Errors by code, from every source (error frames, refused requests, failed connects, closed sockets).</summary>
internal sealed class ErrorCounts
{
    private readonly ConcurrentDictionary<string, long> _counts = new(StringComparer.Ordinal);
    private long _total;

    public long Total => Volatile.Read(ref _total);

    public void Add(string code)
    {
        Interlocked.Increment(ref _total);
        _counts.AddOrUpdate(code, 1, static (_, n) => n + 1);
    }

    public SortedDictionary<string, long> Snapshot() => new(_counts, StringComparer.Ordinal);
}

/// <summary>Connections of a run: attempts, successes, failures, drops and connect latency (intended connect time → <c>connected</c>).</summary>
internal sealed class ConnectionTally
{
    private long _attempted;
    private long _opened;
    private long _failed;
    private long _dropped;
    private long _released;
    private long _firstIntended = long.MaxValue;
    private long _lastConnected;

    public LatencyHistogram Latency { get; private set; } = new();

    public long Attempted => Volatile.Read(ref _attempted);

    public long Opened => Volatile.Read(ref _opened);

    public long Failed => Volatile.Read(ref _failed);

    public long Dropped => Volatile.Read(ref _dropped);

    /// <summary>Opened and neither dropped nor closed by the tool.</summary>
    public long Open => Opened - Dropped - Volatile.Read(ref _released);

    public void Attempt(long intended)
    {
        Interlocked.Increment(ref _attempted);
        InterlockedMin(ref _firstIntended, intended);
    }

    public void Connected(long intended, long connected)
    {
        Interlocked.Increment(ref _opened);
        Latency.RecordTicks(connected - intended);
        InterlockedMax(ref _lastConnected, connected);
    }

    public void Fail() => Interlocked.Increment(ref _failed);

    public void Drop() => Interlocked.Increment(ref _dropped);

    /// <summary>
    /// A new round of connects (reconnect: the devices coming back): attempts, successes, the connect rate and latency
    /// start over; failures and drops stay counted. No connect may be in progress.
    /// </summary>
    public void BeginRound()
    {
        Volatile.Write(ref _attempted, 0);
        Volatile.Write(ref _opened, 0);
        Volatile.Write(ref _released, 0);
        Volatile.Write(ref _firstIntended, long.MaxValue);
        Volatile.Write(ref _lastConnected, 0);
        Latency = new LatencyHistogram();
    }

    /// <summary>The tool itself closed or dropped a connection on purpose.</summary>
    public void Release() => Interlocked.Increment(ref _released);

    public ConnectionStats Stats()
    {
        var seconds = Opened == 0 ? 0 : System.Diagnostics.Stopwatch.GetElapsedTime(_firstIntended, _lastConnected).TotalSeconds;
        return new ConnectionStats
        {
            Attempted = Attempted,
            Opened = Opened,
            Failed = Failed,
            Dropped = Dropped,
            ConnectSeconds = Math.Round(seconds, 3),
            ConnectRate = seconds > 0 ? Math.Round(Opened / seconds, 1) : 0,
            ConnectLatencyMs = LatencyHistogram.Summarize(Latency.Snapshot()),
        };
    }

    private static void InterlockedMin(ref long target, long value)
    {
        for (var current = Volatile.Read(ref target); value < current; current = Volatile.Read(ref target))
        {
            if (Interlocked.CompareExchange(ref target, value, current) == current)
            {
                return;
            }
        }
    }

    private static void InterlockedMax(ref long target, long value)
    {
        for (var current = Volatile.Read(ref target); value > current; current = Volatile.Read(ref target))
        {
            if (Interlocked.CompareExchange(ref target, value, current) == current)
            {
                return;
            }
        }
    }
}

/// <summary>The sink of connections that carry no messages (the connections scenario): only closures and errors matter.</summary>
internal sealed class IdleSink(ErrorCounts errors, ConnectionTally tally) : IFrameSink
{
    public void OnMessage(Device device, long messageIndex, Arrival arrival, bool fromSelf, long timestamp) => errors.Add("unexpected_message");

    public void OnAck(long messageIndex, long timestamp) => errors.Add("unexpected_ack");

    public void OnSent(long messageIndex, long timestamp)
    {
    }

    public void OnError(string code, long messageIndex) => errors.Add(code);

    public void OnSyncComplete(Device device, long timestamp)
    {
    }

    public void OnClosed(Device device, string code)
    {
        tally.Drop();
        errors.Add(code);
    }
}
