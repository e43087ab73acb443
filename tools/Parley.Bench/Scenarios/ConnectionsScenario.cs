using System.Diagnostics;
using Parley.Bench.Client;
using Parley.Bench.Options;
using Parley.Bench.Reporting;

namespace Parley.Bench.Scenarios;

/// <summary>
/// connections: C authenticated connections opened open-loop at the connect rate, then held idle for the duration
/// (the server's heartbeats are answered). The hold window starts at a fixed time, the same in every process, so the
/// server can be sampled before connecting, when the hold starts and when it ends.
/// </summary>
internal sealed class ConnectionsScenario : IScenario
{
    private readonly RunContext _context;
    private readonly Device[] _devices;
    private readonly IdleSink _sink;
    private long _start;

    public ConnectionsScenario(RunContext context)
    {
        _context = context;
        _devices = new Device[context.Plan.UnitCount];
        _sink = new IdleSink(context.Errors, context.Connections);
    }

    /// <summary>When the hold begins: the nominal connect phase (all connections at the connect rate) and 2 s to settle.</summary>
    public static double HoldStartSeconds(BenchOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return options.Connections / options.ConnectRate + 2;
    }

    public Task SetUpAsync(CancellationToken cancellationToken)
    {
        for (var k = 0; k < _devices.Length; k++)
        {
            _devices[k] = new Device(k, _context.Identities.Create("c", _context.Plan.FirstUnit + k), []);
        }

        return Task.CompletedTask;
    }

    public async Task RunAsync(long start, CancellationToken cancellationToken)
    {
        _start = start;
        await Connector.ConnectAllAsync(_context, _devices, _sink, _context.Plan.ConnectRate, start, acks: false, cancellationToken);
        var holdEnd = Connector.At(start, HoldStartSeconds(_context.Options) + _context.Options.DurationSeconds);
        var wait = Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), holdEnd);
        if (wait > TimeSpan.Zero)
        {
            await Task.Delay(wait, cancellationToken);
        }
    }

    public ProgressSnapshot Snapshot()
    {
        var elapsed = _start == 0 ? 0 : RunContext.Since(_start);
        var phase = _start == 0 ? "set-up" : elapsed < HoldStartSeconds(_context.Options) ? "connect" : "hold";
        return new ProgressSnapshot(
            phase, Math.Max(0, elapsed), 0, 0, 0, 0, _context.Errors.Total, _context.Connections.Open,
            LatencyHistogram.Summarize(_context.Connections.Latency.Snapshot())?.P99);
    }

    public BenchResult Result() => Results.Base(_context, _context.Options.DurationSeconds);

    public async ValueTask DisposeAsync() => await Connector.CloseAllAsync(_devices);
}
