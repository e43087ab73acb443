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
    private Uri Metrics => new(context.Options.Urls[0], "metrics");
    private long _start;
    private (double Seconds, long Backlog, long Published)? _first;
    private (double Seconds, long Backlog, long Published)? _last;
    private (double Seconds, long Backlog, long Published)? _peak;
    private double? _drainedAt;

    public async Task SetUpAsync(CancellationToken cancellationToken)
    {
        try
        {
            if (await SampleAsync(cancellationToken) is null)
            {
                throw new SetupException(
                    $"{Metrics} has no parley_events_backlog for sink \"{context.Options.Sink}\": is the event stream on, and is the sink named so?");
            }
        }
        catch (HttpRequestException e)
        {
            throw new SetupException($"{Metrics}: {e.Message}", e);
        }
    }

    public async Task RunAsync(long start, CancellationToken cancellationToken)
    {
        _start = start;
        var end = Connector.At(start, context.Options.DurationSeconds);
        while (Stopwatch.GetTimestamp() < end)
        {
            var sample = await SampleAsync(cancellationToken);
            if (sample is { } s)
            {
                var now = RunContext.Since(start);
                lock (_lock)
                {
                    _first ??= (now, s.Backlog, s.Published);
                    _last = (now, s.Backlog, s.Published);
                    if (s.Backlog > (_peak?.Backlog ?? 0))
                    {
                        _peak = _last;
                    }

                    if (s.Backlog == 0 && _peak is not null)
                    {
                        _drainedAt = now;
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
                DrainSeconds = _drainedAt is not null ? Math.Round(window, 3) : null,
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

    /// <summary>The sink's backlog and published records, or null when <c>/metrics</c> has no series for it.</summary>
    private async Task<(long Backlog, long Published)?> SampleAsync(CancellationToken cancellationToken)
    {
        string text;
        try
        {
            text = await _http.GetStringAsync(Metrics, cancellationToken);
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
