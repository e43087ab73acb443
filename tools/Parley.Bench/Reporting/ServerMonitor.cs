using System.Diagnostics;
using Parley.Bench.Options;
using Parley.Bench.Scenarios;

namespace Parley.Bench.Reporting;

/// <summary>
/// Samples the server's processes (and PostgreSQL's) at the scenario's <see cref="ServerWindow"/>: optionally a
/// baseline (connections: before connecting), the start and the end of the measured window. Runs in the process
/// that reports the result: the single process, or the parent of several.
/// </summary>
internal sealed class ServerMonitor
{
    private readonly ProcessProbe? _server;
    private readonly ProcessProbe? _postgres;
    private readonly ServerWindow _window;
    private readonly Lock _lock = new();
    private bool _ended;
    private Samples _serverSamples;
    private Samples _postgresSamples;

    /// <exception cref="SetupException">The PostgreSQL server to measure cannot be found, or not told apart from others.</exception>
    public ServerMonitor(BenchOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        _window = ServerWindow.For(options);
        if (ProcessProbe.Available)
        {
            _server = options.ServerPids.Count > 0 ? new ProcessProbe(options.ServerPids) : null;
            // One server's postmaster and its children, never every PostgreSQL on the machine.
            _postgres = options.PostgresAuto ? ProcessProbe.WithChildren(PostgresLocator.Find("/proc", options.PostgresPort, options.PostgresDataDirectory))
                : options.PostgresPids.Count > 0 ? new ProcessProbe(options.PostgresPids)
                : null;
        }
    }

    public bool Enabled => _server is not null || _postgres is not null;

    /// <summary>Takes the baseline and start samples at their times; the end sample comes at its time or from <see cref="Finish"/>.</summary>
    public async Task RunAsync(long start, CancellationToken cancellationToken)
    {
        if (!Enabled)
        {
            return;
        }

        try
        {
            if (_window.BaselineS is { } baseline)
            {
                await DelayUntilAsync(Connector.At(start, baseline), cancellationToken);
                _serverSamples.Baseline = _server?.Sample();
                _postgresSamples.Baseline = _postgres?.Sample();
            }

            await DelayUntilAsync(Connector.At(start, _window.StartS), cancellationToken);
            _serverSamples.Start = _server?.Sample();
            _postgresSamples.Start = _postgres?.Sample();
            if (_window.EndS is { } end)
            {
                await DelayUntilAsync(Connector.At(start, end), cancellationToken);
                TakeEnd();
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // The run ended before the window did.
        }
    }

    /// <summary>The run is over: the end sample, if its time has not come yet (a window that ends with the run).</summary>
    public void Finish() => TakeEnd();

    public (ProcessGroupStats? Server, ProcessGroupStats? Postgres) Stats(BenchResult result)
    {
        var (delivered, open) = Divisors(result);
        return (Stats(_serverSamples, _server, delivered, open), Stats(_postgresSamples, _postgres, delivered, open));
    }

    /// <summary>
    /// What the server's figures are divided by: the deliveries that happened inside the window (not the copies of the
    /// window's messages, some of which arrive after it), and the connections still open at its end (not those
    /// opened, some of which were dropped).
    /// </summary>
    internal static (long DeliveredInWindow, long OpenAtEnd) Divisors(BenchResult result)
    {
        ArgumentNullException.ThrowIfNull(result);
        return ((long)Math.Round(result.DeliveryRate * result.WindowS), Math.Max(0, result.Connections.Opened - result.Connections.Dropped));
    }

    // Once: the window's own end time and the end of the run may race.
    private void TakeEnd()
    {
        lock (_lock)
        {
            if (_ended)
            {
                return;
            }

            _ended = true;
            _serverSamples.End = _server?.Sample();
            _postgresSamples.End = _postgres?.Sample();
        }
    }

    private static ProcessGroupStats? Stats(Samples samples, ProcessProbe? probe, long delivered, long connections)
    {
        if (probe is null || samples.Start is not { } start || samples.End is not { } end)
        {
            return null;
        }

        var windowS = Stopwatch.GetElapsedTime(start.Timestamp, end.Timestamp).TotalSeconds;
        var cpuMs = ProcessProbe.CpuBetween(start, end);
        var before = samples.Baseline ?? start;
        return new ProcessGroupStats
        {
            Pids = [.. end.CpuMs.Keys.Order()],
            WindowS = Math.Round(windowS, 3),
            RssBeforeBytes = before.RssBytes,
            RssAfterBytes = end.RssBytes,
            PssAfterBytes = end.PssBytes,
            RssPerConnectionBytes = samples.Baseline is not null && connections > 0 ? Math.Round((double)(end.RssBytes - before.RssBytes) / connections, 1) : null,
            CpuMs = Math.Round(cpuMs, 1),
            CpuPercentOfCore = windowS > 0 ? Math.Round(cpuMs / (windowS * 1000) * 100, 1) : 0,
            CpuMsPerDelivered = delivered > 0 ? Math.Round(cpuMs / delivered, 4) : null,
        };
    }

    private static async Task DelayUntilAsync(long timestamp, CancellationToken cancellationToken)
    {
        var wait = Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), timestamp);
        if (wait > TimeSpan.Zero)
        {
            await Task.Delay(wait, cancellationToken);
        }
    }

    private struct Samples
    {
        public ProcessSample? Baseline;
        public ProcessSample? Start;
        public ProcessSample? End;
    }
}
