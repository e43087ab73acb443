using System.Diagnostics;
using Parley.Bench.Client;
using Parley.Bench.Reporting;

namespace Parley.Bench.Scenarios;

/// <summary>
/// reconnect: C devices, each connected with <c>acks=true</c> and following its cursor, in a direct conversation
/// with a sender of its own that sends over REST. Timeline (seconds from the start):
/// <list type="bullet">
/// <item>[0, D): messages to the devices while they are online (delivery latency is measured here);</item>
/// <item>[D, D+S): quiet, so the last acks are sent and the cursors catch up;</item>
/// <item>D+S: every connection is dropped at once (aborted, no close handshake);</item>
/// <item>[D+S+0.2, D+S+0.2+O): more messages, to devices that are offline;</item>
/// <item>D+S+O+0.4: every device reconnects with <c>?cursor=</c> (paced by the connect rate).</item>
/// </list>
/// The run ends when every device has had <c>sync_complete</c> and every message reached its device, or when
/// nothing has progressed for the grace period. A message received on the old connection and again in the catch-up
/// (after the last cursor) counts as redelivered, which the protocol allows; twice on one connection is a duplicate.
/// </summary>
internal sealed class ReconnectScenario : IScenario
{
    private const double DropGapSeconds = 0.2;
    private static readonly TimeSpan AckInterval = TimeSpan.FromMilliseconds(250);

    private readonly RunContext _context;
    private readonly Device[] _devices;
    private readonly Identity[] _senders;
    private readonly MessageLedger _ledger;
    private readonly RestSender _rest;
    private readonly long[] _synced;
    private readonly LatencyHistogram _resumeLatency = new();
    private long _start;
    private long _reconnectStart;
    private long _resumed;
    private double? _catchUpSeconds;
    private volatile string _phase = "set-up";

    public ReconnectScenario(RunContext context)
    {
        _context = context;
        var options = context.Options;
        var count = context.Plan.UnitCount;
        _devices = new Device[count];
        _senders = new Identity[count];
        _synced = new long[count];
        var online = options.DurationSeconds;
        var offlineStart = online + options.SettleSeconds + DropGapSeconds;
        _ledger = new MessageLedger(
            new Schedule(
                new ScheduleSegment(0, context.Plan.Rate, Schedule.Messages(context.Plan.Rate, online), Measured: true),
                new ScheduleSegment(offlineStart, context.Plan.Rate, Schedule.Messages(context.Plan.Rate, options.OfflineSeconds), Measured: true, RecordLatency: false)),
            recipientsPerMessage: 1,
            context.Errors, context.Connections)
        {
            SyncCompleted = OnSyncComplete,
        };
        _rest = new RestSender(context.Network.Http, _ledger, context.Content, options.HttpConnections);
    }

    private double DropSeconds => _context.Options.DurationSeconds + _context.Options.SettleSeconds;

    private double ReconnectSeconds => DropSeconds + DropGapSeconds + _context.Options.OfflineSeconds + DropGapSeconds;

    public async Task SetUpAsync(CancellationToken cancellationToken)
    {
        for (var d = 0; d < _devices.Length; d++)
        {
            _senders[d] = _context.Identities.Create("s", _context.Plan.FirstUnit + d);
        }

        _context.Log($"creating {_devices.Length} direct conversations (device and sender)");
        await RestSetup.ForEachAsync(_devices.Length, _context.Options.HttpConnections, async (d, ct) =>
        {
            var identity = _context.Identities.Create("d", _context.Plan.FirstUnit + d);
            var conversation = await RestSetup.DirectAsync(_context.Network.Http, _senders[d], identity, ct);
            _devices[d] = new Device(d, identity, [conversation]);
        }, cancellationToken);

        _context.Log($"connecting {_devices.Length} devices (acks=true) at {_context.Plan.ConnectRate:0.#}/s");
        await Connector.ConnectAllAsync(_context, _devices, _ledger, _context.Plan.ConnectRate, Stopwatch.GetTimestamp(), acks: true, cancellationToken);
        if (_context.Connections.Failed > 0)
        {
            throw new SetupException($"{_context.Connections.Failed} of {_devices.Length} connections failed");
        }
    }

    public async Task RunAsync(long start, CancellationToken cancellationToken)
    {
        _start = start;
        _ledger.SetTimes(start, start, Connector.At(start, _context.Options.DurationSeconds));
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var rest = _rest.RunAsync(stop.Token);
        var acks = Acknowledger.RunAsync(_devices, AckInterval, stop.Token);
        _phase = "online";
        var sends = SendScheduler.RunAsync(_ledger.Schedule, start, Fire, cancellationToken);

        await DelayUntilAsync(Connector.At(start, DropSeconds), cancellationToken);
        _phase = "offline";
        foreach (var device in _devices)
        {
            if (device.Connection is { } connection)
            {
                connection.Abort();
                _context.Connections.Release();
            }
        }

        _reconnectStart = Connector.At(start, ReconnectSeconds);
        await DelayUntilAsync(_reconnectStart, cancellationToken);
        _phase = "resume";
        _context.Connections.BeginRound();
        await Connector.ConnectAllAsync(_context, _devices, _ledger, _context.Plan.ConnectRate, _reconnectStart, acks: true, cancellationToken);
        await sends;
        _rest.Complete();

        // Done when everything arrived; given up when nothing moved for the grace period.
        var lastProgress = Stopwatch.GetTimestamp();
        var seen = (Delivered: _ledger.Delivered, Resumed: Volatile.Read(ref _resumed));
        var grace = TimeSpan.FromSeconds(_context.Options.GraceSeconds);
        while (!(_ledger.Settled && Volatile.Read(ref _resumed) == _devices.Length) && Stopwatch.GetElapsedTime(lastProgress) < grace)
        {
            await Task.Delay(20, cancellationToken);
            var now = (Delivered: _ledger.Delivered, Resumed: Volatile.Read(ref _resumed));
            if (now != seen)
            {
                seen = now;
                lastProgress = Stopwatch.GetTimestamp();
            }
        }

        if (_ledger.Settled)
        {
            _catchUpSeconds = Math.Round(Stopwatch.GetElapsedTime(_reconnectStart, lastProgress).TotalSeconds, 3);
        }

        _phase = "done";
        await stop.CancelAsync();
        await Task.WhenAll(rest, acks);
    }

    private void Fire(long index)
    {
        var device = (int)(index % _devices.Length);
        _ledger.Offer(index, 1);
        _rest.Enqueue(_senders[device], _devices[device].ConversationId(0), index);
    }

    private void OnSyncComplete(Device device, long timestamp)
    {
        if (_reconnectStart == 0 || Interlocked.CompareExchange(ref _synced[device.Index], timestamp, 0) != 0)
        {
            return;
        }

        Interlocked.Increment(ref _resumed);
        var intended = Connector.At(_reconnectStart, device.Index / _context.Plan.ConnectRate);
        _resumeLatency.RecordTicks(timestamp - intended);
    }

    private static async Task DelayUntilAsync(long timestamp, CancellationToken cancellationToken)
    {
        var wait = Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), timestamp);
        if (wait > TimeSpan.Zero)
        {
            await Task.Delay(wait, cancellationToken);
        }
    }

    public ProgressSnapshot Snapshot() =>
        new(
            _phase, _start == 0 ? 0 : Math.Max(0, RunContext.Since(_start)), _ledger.Sent, _ledger.AcknowledgedCount, _ledger.Delivered, _ledger.InFlight,
            _context.Errors.Total, _context.Connections.Open, LatencyHistogram.Summarize(_ledger.Latency.Snapshot())?.P99);

    public BenchResult Result()
    {
        var lastSync = _synced.DefaultIfEmpty(0).Max();
        var resumeLatency = _resumeLatency.Snapshot();
        var errors = _context.Errors.Snapshot();
        var stats = new ReconnectStats
        {
            Devices = _devices.Length,
            Resumed = Volatile.Read(ref _resumed),
            ResumeSeconds = Volatile.Read(ref _resumed) == _devices.Length && lastSync > 0
                ? Math.Round(Stopwatch.GetElapsedTime(_reconnectStart, lastSync).TotalSeconds, 3)
                : null,
            CatchUpSeconds = _catchUpSeconds,
            ResumeLatencyMs = LatencyHistogram.Summarize(resumeLatency),
            SyncResets = errors.Where(e => e.Key.StartsWith("sync_reset", StringComparison.Ordinal)).Sum(e => e.Value),
        };
        var result = Results.Messaging(_context, _ledger, _context.Options.DurationSeconds, stats);
        var histograms = new SortedDictionary<string, string>(result.Histograms.ToDictionary(), StringComparer.Ordinal)
        {
            ["resume_latency"] = LatencyHistogram.Encode(resumeLatency),
        };
        return result with { Histograms = histograms };
    }

    public async ValueTask DisposeAsync() => await Connector.CloseAllAsync(_devices);
}
