using System.Text.Json;

namespace Parley.Bench.Reporting;

/// <summary>The result as one line of JSON after a fixed prefix, so it can be found with grep in any output.</summary>
internal static class ResultLine
{
    public const string Prefix = "PARLEY_BENCH_RESULT ";

    // The line is not embedded in HTML: base64's '+' and '/' stay as they are instead of \u002B escapes.
    private static readonly BenchJson Json = new(new JsonSerializerOptions(BenchJson.Default.Options)
    {
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    });

    public static string Format(BenchResult result) => Prefix + ToJson(result);

    public static string ToJson(BenchResult result) => JsonSerializer.Serialize(result, Json.BenchResult);

    /// <summary>The result on a line that starts with <see cref="Prefix"/>; null for any other line.</summary>
    public static BenchResult? TryParse(string line)
    {
        ArgumentNullException.ThrowIfNull(line);
        return line.StartsWith(Prefix, StringComparison.Ordinal)
            ? JsonSerializer.Deserialize(line.AsSpan(Prefix.Length), Json.BenchResult)
            : null;
    }
}

/// <summary>
/// Combines the results of child processes into the run's result: counts and rates add up (the children share one
/// window), histograms merge (so percentiles are those of all samples), durations take the slowest child.
/// </summary>
internal static class ResultMerger
{
    public static BenchResult Merge(IReadOnlyList<BenchResult> parts)
    {
        ArgumentNullException.ThrowIfNull(parts);
        if (parts.Count == 0)
        {
            throw new ArgumentException("nothing to merge", nameof(parts));
        }

        var first = parts[0];
        var histograms = new SortedDictionary<string, string>(StringComparer.Ordinal);
        var merged = new Dictionary<string, HdrHistogram.HistogramBase>(StringComparer.Ordinal);
        foreach (var name in parts.SelectMany(p => p.Histograms.Keys).Distinct(StringComparer.Ordinal))
        {
            var histogram = LatencyHistogram.Merge(parts.Where(p => p.Histograms.ContainsKey(name)).Select(p => LatencyHistogram.Decode(p.Histograms[name])));
            merged[name] = histogram;
            histograms[name] = LatencyHistogram.Encode(histogram);
        }

        LatencySummary? Summary(string name) => merged.TryGetValue(name, out var h) ? LatencyHistogram.Summarize(h) : null;

        var errors = new SortedDictionary<string, long>(StringComparer.Ordinal);
        foreach (var (code, count) in parts.SelectMany(p => p.Errors))
        {
            errors[code] = errors.GetValueOrDefault(code) + count;
        }

        var connections = parts.Select(p => p.Connections).ToList();
        var connectSeconds = connections.Max(c => c.ConnectSeconds);
        var opened = connections.Sum(c => c.Opened);
        return first with
        {
            Processes = parts.Count,
            StartedAt = parts.Min(p => p.StartedAt),
            Offered = parts.Sum(p => p.Offered),
            Sent = parts.Sum(p => p.Sent),
            Acknowledged = parts.Sum(p => p.Acknowledged),
            ExpectedDeliveries = parts.Sum(p => p.ExpectedDeliveries),
            Delivered = parts.Sum(p => p.Delivered),
            Lost = parts.Sum(p => p.Lost),
            Unanswered = parts.Sum(p => p.Unanswered),
            Refused = parts.Sum(p => p.Refused),
            FailedSends = parts.Sum(p => p.FailedSends),
            Duplicated = parts.Sum(p => p.Duplicated),
            OutOfOrder = parts.Sum(p => p.OutOfOrder),
            Redelivered = parts.Sum(p => p.Redelivered),
            Unexpected = parts.Sum(p => p.Unexpected),
            Errors = errors,
            OfferedRate = Math.Round(parts.Sum(p => p.OfferedRate), 3),
            SendRate = Math.Round(parts.Sum(p => p.SendRate), 1),
            DeliveryRate = Math.Round(parts.Sum(p => p.DeliveryRate), 1),
            LatencyMs = Summary("latency"),
            AckLatencyMs = Summary("ack_latency"),
            Connections = new ConnectionStats
            {
                Attempted = connections.Sum(c => c.Attempted),
                Opened = opened,
                Failed = connections.Sum(c => c.Failed),
                Dropped = connections.Sum(c => c.Dropped),
                ConnectSeconds = connectSeconds,
                ConnectRate = connectSeconds > 0 ? Math.Round(opened / connectSeconds, 1) : 0,
                ConnectLatencyMs = Summary("connect_latency"),
            },
            Reconnect = first.Reconnect is null ? null : new ReconnectStats
            {
                Devices = parts.Sum(p => p.Reconnect?.Devices ?? 0),
                Resumed = parts.Sum(p => p.Reconnect?.Resumed ?? 0),
                ResumeSeconds = parts.Any(p => p.Reconnect?.ResumeSeconds is null) ? null : parts.Max(p => p.Reconnect!.ResumeSeconds),
                CatchUpSeconds = parts.Any(p => p.Reconnect?.CatchUpSeconds is null) ? null : parts.Max(p => p.Reconnect!.CatchUpSeconds),
                ResumeLatencyMs = Summary("resume_latency"),
                SyncResets = parts.Sum(p => p.Reconnect?.SyncResets ?? 0),
            },
            Client = new ClientStats(
                Math.Round(parts.Sum(p => p.Client?.CpuMs ?? 0), 1),
                parts.Max(p => p.Client?.PeakRssBytes ?? 0)),
            Histograms = histograms,
        };
    }
}
