using System.Diagnostics.Metrics;
using Microsoft.Extensions.Diagnostics.Metrics.Testing;
using Parley.Server.Observability;
using Parley.Server.Tests.Infrastructure;

namespace Parley.Server.Tests;

/// <summary><see cref="ParleyMetrics"/>: what each recording method records, under which name, tags and unit.</summary>
[Trait("Store", "Independent")]
public sealed class ParleyMetricsTests : IDisposable
{
    private readonly TestMetrics _metrics = new();

    public void Dispose() => _metrics.Dispose();

    [Fact]
    public void FrameReceivedAndFrameWritten_CountByTypeTag()
    {
        using var framesIn = _metrics.Collect<long>("parley.frames.in");
        using var framesOut = _metrics.Collect<long>("parley.frames.out");

        _metrics.Metrics.FrameReceived("send_message");
        _metrics.Metrics.FrameReceived("send_message");
        _metrics.Metrics.FrameReceived(ParleyMetrics.FrameTags.Unknown);
        _metrics.Metrics.FrameWritten("new_message", handedOffAt: 0);

        Assert.Equal(2, framesIn.GetMeasurementSnapshot().Where(m => m.MatchesTags(Tag("type", "send_message"))).EvaluateAsCounter());
        Assert.Equal(1, framesIn.GetMeasurementSnapshot().Where(m => m.MatchesTags(Tag("type", "unknown"))).EvaluateAsCounter());
        var written = Assert.Single(framesOut.GetMeasurementSnapshot());
        Assert.Equal(1, written.Value);
        Assert.Equal("new_message", written.Tags["type"]);
    }

    [Fact]
    public void FrameWritten_HandedOff_RecordsSecondsSinceTheHandOff_NotHandedOff_RecordsNoLatency()
    {
        using var latency = _metrics.Collect<double>("parley.send_to_socket.duration");
        var handedOff = _metrics.Time.GetTimestamp();
        _metrics.Time.Advance(TimeSpan.FromMilliseconds(42));

        _metrics.Metrics.FrameWritten("new_message", handedOff);
        _metrics.Metrics.FrameWritten("pong", handedOffAt: 0);

        var measured = Assert.Single(latency.GetMeasurementSnapshot());
        Assert.Equal(0.042, measured.Value, precision: 9);
        Assert.Equal("s", latency.Instrument!.Unit);
    }

    [Fact]
    public void LatencyHistograms_AdviseMillisecondBuckets()
    {
        using var latency = _metrics.Collect<double>("parley.send_to_socket.duration");
        using var commit = _metrics.Collect<double>("parley.store.commit.duration");

        foreach (var instrument in new[] { latency.Instrument, commit.Instrument })
        {
            var boundaries = Assert.IsType<Histogram<double>>(instrument).Advice?.HistogramBucketBoundaries;
            Assert.NotNull(boundaries);
            Assert.Equal(ParleyMetrics.LatencyBuckets, boundaries);
            Assert.Contains(0.001, boundaries);
            Assert.Contains(0.1, boundaries);
        }
    }

    [Fact]
    public void Connections_OpenedClosedAndSlowConsumers_CountedWithTheCloseReason()
    {
        using var opened = _metrics.Collect<long>("parley.connections.opened");
        using var closed = _metrics.Collect<long>("parley.connections.closed");
        using var slow = _metrics.Collect<long>("parley.connections.slow_consumer_closes");

        _metrics.Metrics.ConnectionOpened(ParleyMetrics.UpgradePipeline);
        _metrics.Metrics.ConnectionOpened(ParleyMetrics.UpgradePipeline);
        _metrics.Metrics.SlowConsumerClosed();
        _metrics.Metrics.ConnectionClosed(ParleyMetrics.CloseReasons.SlowConsumer);
        _metrics.Metrics.ConnectionClosed(ParleyMetrics.CloseReasons.Normal);

        Assert.Equal(2, opened.GetMeasurementSnapshot().EvaluateAsCounter());
        Assert.Equal(1, slow.GetMeasurementSnapshot().EvaluateAsCounter());
        Assert.Equal(1, closed.GetMeasurementSnapshot().Where(m => m.MatchesTags(Tag("reason", "slow_consumer"))).EvaluateAsCounter());
        Assert.Equal(1, closed.GetMeasurementSnapshot().Where(m => m.MatchesTags(Tag("reason", "normal"))).EvaluateAsCounter());
    }

    [Fact]
    public void ObserveConnections_ReadsTheRegisteredSourcesWhenCollected()
    {
        using var open = _metrics.Collect<int>("parley.connections.open");
        using var queued = _metrics.Collect<long>("parley.outbound.queue.depth");
        var connections = 0;
        long frames = 0;
        _metrics.Metrics.ObserveConnections(() => connections, () => frames);

        connections = 3;
        frames = 17;
        open.RecordObservableInstruments();
        queued.RecordObservableInstruments();

        Assert.Equal(3, open.LastMeasurement?.Value);
        Assert.Equal(17, queued.LastMeasurement?.Value);
    }

    [Fact]
    public void RecordSequencerPass_LagGrowsUntilAPassLeavesNothingWaiting()
    {
        using var lag = _metrics.Collect<double>("parley.stream.sequencer.lag");
        using var assigned = _metrics.Collect<long>("parley.stream.positions.assigned");

        _metrics.Time.Advance(TimeSpan.FromSeconds(2));
        lag.RecordObservableInstruments();
        Assert.Equal(2, lag.LastMeasurement?.Value);

        // A full batch: more may be waiting, the lag keeps counting.
        _metrics.Metrics.RecordSequencerPass(positioned: 100, batch: 100);
        _metrics.Time.Advance(TimeSpan.FromSeconds(1));
        lag.RecordObservableInstruments();
        Assert.Equal(3, lag.LastMeasurement?.Value);

        // Fewer than asked: the sequencer caught up.
        _metrics.Metrics.RecordSequencerPass(positioned: 40, batch: 100);
        _metrics.Time.Advance(TimeSpan.FromMilliseconds(250));
        lag.RecordObservableInstruments();
        Assert.Equal(0.25, lag.LastMeasurement?.Value);
        Assert.Equal(140, assigned.GetMeasurementSnapshot().EvaluateAsCounter());
    }

    [Fact]
    public void RecordCommit_RecordsDurationAndBatchSizeTaggedWithTheStore()
    {
        using var duration = _metrics.Collect<double>("parley.store.commit.duration");
        using var batch = _metrics.Collect<long>("parley.store.commit.batch_size");

        _metrics.Metrics.RecordCommit(TimeSpan.FromMilliseconds(3), batchSize: 12, store: "postgres");

        var commit = Assert.Single(duration.GetMeasurementSnapshot());
        Assert.Equal(0.003, commit.Value, precision: 9);
        Assert.Equal("postgres", commit.Tags["store"]);
        var size = Assert.Single(batch.GetMeasurementSnapshot());
        Assert.Equal(12, size.Value);
        Assert.Equal("postgres", size.Tags["store"]);
    }

    [Fact]
    public void RecordCommit_WithTheCommitsCpu_CountsItTaggedWithTheStore_WithoutItCountsNothing()
    {
        using var cpu = _metrics.Collect<double>("parley.store.commit.cpu");

        _metrics.Metrics.RecordCommit(TimeSpan.FromMilliseconds(3), batchSize: 4, store: "sqlite", cpu: TimeSpan.FromMilliseconds(1.5));
        _metrics.Metrics.RecordCommit(TimeSpan.FromMilliseconds(2), batchSize: 1, store: "postgres");

        var used = Assert.Single(cpu.GetMeasurementSnapshot());
        Assert.Equal(0.0015, used.Value, precision: 9);
        Assert.Equal("sqlite", used.Tags["store"]);
    }

    [Fact]
    public void ThreadCpuClock_OnLinux_AdvancesWithTheThreadsWork_AndNoFasterThanTheClockOnTheWall()
    {
        Assert.SkipUnless(OperatingSystem.IsLinux() && Environment.Is64BitProcess, "The thread's CPU clock is read on 64-bit Linux only.");
        Assert.True(ThreadCpuClock.IsSupported);

        var wall = System.Diagnostics.Stopwatch.StartNew();
        var start = ThreadCpuClock.Now();
        var spins = 0L;
        while (ThreadCpuClock.Now() - start < TimeSpan.FromMilliseconds(5) && wall.Elapsed < TimeSpan.FromSeconds(10))
        {
            spins++;
        }

        var used = ThreadCpuClock.Now() - start;
        var elapsed = wall.Elapsed;
        Assert.True(used >= TimeSpan.FromMilliseconds(5), $"{used} of CPU in {elapsed} ({spins} reads)");
        Assert.True(used <= elapsed + TimeSpan.FromMilliseconds(1), $"{used} of CPU in {elapsed}");
    }

    [Fact]
    public void RecordStoreOperation_RecordsEveryDuration_CountsOnlyFailuresAsErrors()
    {
        using var duration = _metrics.Collect<double>("parley.store.operation.duration");
        using var errors = _metrics.Collect<long>("parley.store.errors");

        _metrics.Metrics.RecordStoreOperation("append_message", TimeSpan.FromMilliseconds(2), failed: false);
        _metrics.Metrics.RecordStoreOperation("append_message", TimeSpan.FromMilliseconds(900), failed: true);
        _metrics.Metrics.RecordStoreOperation("list_messages", TimeSpan.FromMilliseconds(1), failed: false);

        Assert.Equal([0.002, 0.9, 0.001], duration.GetMeasurementSnapshot().Select(m => m.Value));
        Assert.Equal(["append_message", "append_message", "list_messages"], duration.GetMeasurementSnapshot().Select(m => m.Tags["operation"]));
        var error = Assert.Single(errors.GetMeasurementSnapshot());
        Assert.Equal("append_message", error.Tags["operation"]);
    }

    private static KeyValuePair<string, object?> Tag(string name, string value) => new(name, value);
}
