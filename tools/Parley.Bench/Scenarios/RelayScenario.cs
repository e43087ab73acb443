using System.Diagnostics;
using System.Globalization;
using Parley.Bench.Reporting;

namespace Parley.Bench.Scenarios;

/// <summary>
/// relay: sends nothing; watches an event sink drain its backlog through the server's <c>/metrics</c>
/// (<c>parley_events_backlog</c> and <c>parley_events_published_total</c> of the sink) until the backlog is empty or
/// the duration ran out. The drain is timed from the sample with the largest backlog (the server measures it once a
/// second, so it may lag the first sample) to the first empty one: start the tool before or just after the server.
/// </summary>
internal sealed class RelayScenario(RunContext context) : IScenario
{
    private static readonly TimeSpan Interval = TimeSpan.FromMilliseconds(250);
    private readonly HttpClient _http = new() { Timeout = TimeSpan.FromSeconds(10) };
    private readonly Lock _lock = new();
    private readonly Uri _metrics = new(context.Options.Urls[0], "metrics");
    private long _start;
    private Sample? _first;
    private Sample? _last;
    private Sample? _peak;

    /// <summary>Drained: a backlog was seen, and the latest sample is empty (the run stops at that sample).</summary>
    private bool Drained => _peak is not null && _last?.Backlog == 0;

    public async Task SetUpAsync(CancellationToken cancellationToken)
    {
        try
        {
            if (await SampleAsync(cancellationToken) is null)
            {
                throw new SetupException(
                    $"{_metrics} has no parley_events_backlog for sink \"{context.Options.Sink}\": is the event stream on, and is the sink named so?");
            }
        }
        catch (HttpRequestException e)
        {
            throw new SetupException($"{_metrics}: {e.Message}", e);
        }
    }

    public async Task RunAsync(long start, CancellationToken cancellationToken)
    {
        _start = start;
        var end = Connector.At(start, context.Options.DurationSeconds);
        while (Stopwatch.GetTimestamp() < end)
        {
            if (await SampleAsync(cancellationToken) is { } s)
            {
                var sample = new Sample(RunContext.Since(start), s.Backlog, s.Published);
                lock (_lock)
                {
                    _first ??= sample;
                    _last = sample;
                    if (sample.Backlog > (_peak?.Backlog ?? 0))
                    {
                        _peak = sample;
                    }

                    if (Drained)
                    {
                        return;
                    }
                }
            }

            await Task.Delay(Interval, cancellationToken);
        }
    }

    public ProgressSnapshot Snapshot()
    {
        lock (_lock)
        {
            var elapsed = _start == 0 ? 0 : Math.Max(0, RunContext.Since(_start));
            var published = _last is { } last && _first is { } first ? last.Published - first.Published : 0;
            return new ProgressSnapshot(_start == 0 ? "set-up" : "draining", elapsed, 0, 0, published, _last?.Backlog ?? 0, context.Errors.Total, 0, null);
        }
    }

    public BenchResult Result()
    {
        lock (_lock)
        {
            // The drain: from the largest backlog seen to the last sample (empty, if it drained).
            var from = _peak ?? _first;
            var window = from is { } f && _last is { } l ? l.Seconds - f.Seconds : 0;
            var published = from is { } p && _last is { } e ? e.Published - p.Published : 0;
            var stats = new RelayStats
            {
                Sink = context.Options.Sink,
                BacklogPeak = _peak?.Backlog ?? 0,
                BacklogAtEnd = _last?.Backlog ?? 0,
                Published = published,
                DrainSeconds = Drained ? Math.Round(window, 3) : null,
                EventsPerSecond = window > 0 ? Math.Round(((_peak?.Backlog ?? 0) - (_last?.Backlog ?? 0)) / window, 1) : 0,
                RecordsPerSecond = window > 0 ? Math.Round(published / window, 1) : 0,
            };
            return Results.Base(context, Math.Round(window, 3)) with { Relay = stats };
        }
    }

    public ValueTask DisposeAsync()
    {
        _http.Dispose();
        return ValueTask.CompletedTask;
    }

    private readonly record struct Sample(double Seconds, long Backlog, long Published);

    /// <summary>The sink's backlog and published records, or null when <c>/metrics</c> has no series for it.</summary>
    private async Task<(long Backlog, long Published)?> SampleAsync(CancellationToken cancellationToken)
    {
        string text;
        try
        {
            text = await _http.GetStringAsync(_metrics, cancellationToken);
        }
        catch (HttpRequestException) when (_start != 0)
        {
            context.Errors.Add("metrics_unreachable");
            return null;
        }

        return Parse(text, context.Options.Sink);
    }

    /// <summary>Reads the two series of <paramref name="sink"/> from Prometheus text.</summary>
    internal static (long Backlog, long Published)? Parse(string text, string sink)
    {
        long? backlog = null;
        long published = 0;
        var label = $"sink=\"{sink}\"";
        foreach (var line in text.Split('\n'))
        {
            if (line.StartsWith('#') || !line.Contains(label, StringComparison.Ordinal))
            {
                continue;
            }

            var value = line[(line.LastIndexOf('}') + 1)..].Trim().Split(' ')[0];
            if (!double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out var number))
            {
                continue;
            }

            if (line.StartsWith("parley_events_backlog{", StringComparison.Ordinal))
            {
                backlog = (long)number;
            }
            else if (line.StartsWith("parley_events_published_total{", StringComparison.Ordinal))
            {
                published = (long)number;
            }
        }

        return backlog is { } b ? (b, published) : null;
    }
}
