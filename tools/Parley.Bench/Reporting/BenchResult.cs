using System.Text.Json.Serialization;

namespace Parley.Bench.Reporting;

/// <summary>
/// The result of a run, printed as one JSON line (<see cref="ResultLine.Prefix"/>) at the end; docs/benchmarks.md
/// describes every field. Counts of the measured window: offered, sent, acknowledged, expected_deliveries,
/// delivered. Correctness counts over every message, warm-up included: lost, unanswered, refused, failed_sends,
/// duplicated, out_of_order.
/// </summary>
internal sealed record BenchResult
{
    public int Schema { get; init; } = 1;

    public required string Scenario { get; init; }

    public required string Transport { get; init; }

    public required string RunId { get; init; }

    public required IReadOnlyList<string> Urls { get; init; }

    public int Processes { get; init; } = 1;

    public required DateTimeOffset StartedAt { get; init; }

    public required RunSettings Settings { get; init; }

    /// <summary>Seconds of the measured window.</summary>
    public double WindowS { get; init; }

    public long Offered { get; init; }

    public long Sent { get; init; }

    public long Acknowledged { get; init; }

    public long ExpectedDeliveries { get; init; }

    public long Delivered { get; init; }

    public long Lost { get; init; }

    public long Unanswered { get; init; }

    /// <summary>Sends the server refused on purpose (<c>rate_limited</c>): the offered rate was not served.</summary>
    public long Refused { get; init; }

    /// <summary>Sends answered by any other error (the server's, <c>http_5xx</c>, <c>http_timeout</c>, <c>socket_closed</c>, ...).</summary>
    public long FailedSends { get; init; }

    public long Duplicated { get; init; }

    public long OutOfOrder { get; init; }

    public long Redelivered { get; init; }

    public long Unexpected { get; init; }

    public IReadOnlyDictionary<string, long> Errors { get; init; } = new SortedDictionary<string, long>();

    public double OfferedRate { get; init; }

    public double SendRate { get; init; }

    public double DeliveryRate { get; init; }

    public LatencySummary? LatencyMs { get; init; }

    public LatencySummary? AckLatencyMs { get; init; }

    public required ConnectionStats Connections { get; init; }

    public ReconnectStats? Reconnect { get; init; }

    public RelayStats? Relay { get; init; }

    public ProcessGroupStats? Server { get; init; }

    public ProcessGroupStats? Postgres { get; init; }

    public ClientStats? Client { get; init; }

    public bool Passed { get; init; }

    public IReadOnlyList<string> Failures { get; init; } = [];

    public int ExitCode { get; init; }

    /// <summary>The histograms behind the percentiles, HdrHistogram's compressed encoding in base64 (for merging).</summary>
    public IReadOnlyDictionary<string, string> Histograms { get; init; } = new SortedDictionary<string, string>();
}

internal sealed record RunSettings(
    int? Users,
    double Rate,
    double DurationS,
    double WarmupS,
    double GraceS,
    int? GroupSize,
    int? Connections,
    double ConnectRate,
    int MessageBytes,
    double? OfflineS,
    double? SettleS,
    string Auth,
    int SourceAddresses,
    string? Placement,
    double? AckIntervalMs);

internal sealed record ConnectionStats
{
    public long Attempted { get; init; }

    public long Opened { get; init; }

    public long Failed { get; init; }

    /// <summary>Closed by the server or broken while the tool still used them.</summary>
    public long Dropped { get; init; }

    /// <summary>Connections opened per second, over the connect phase.</summary>
    public double ConnectRate { get; init; }

    /// <summary>Seconds from the first intended connect to the last <c>connected</c> frame.</summary>
    public double ConnectSeconds { get; init; }

    /// <summary>Intended connect time → <c>connected</c> frame.</summary>
    public LatencySummary? ConnectLatencyMs { get; init; }
}

internal sealed record ReconnectStats
{
    public long Devices { get; init; }

    /// <summary>Devices whose resume ended with <c>sync_complete</c>.</summary>
    public long Resumed { get; init; }

    /// <summary>Seconds from the reconnect until every device had <c>sync_complete</c>.</summary>
    public double? ResumeSeconds { get; init; }

    /// <summary>Seconds from the reconnect until every device held every message sent to it.</summary>
    public double? CatchUpSeconds { get; init; }

    /// <summary>Per device: reconnect → <c>sync_complete</c>.</summary>
    public LatencySummary? ResumeLatencyMs { get; init; }

    public long SyncResets { get; init; }
}

/// <summary>relay: an event sink's backlog drained, as the server's /metrics reported it.</summary>
internal sealed record RelayStats
{
    public required string Sink { get; init; }

    /// <summary>The largest backlog (events and receipts waiting) seen; the drain is timed from that sample.</summary>
    public long BacklogPeak { get; init; }

    public long BacklogAtEnd { get; init; }

    /// <summary>Records the sink acknowledged during the drain (events, notifications and receipts).</summary>
    public long Published { get; init; }

    /// <summary>Seconds from the peak sample until the backlog was empty; null if it never was.</summary>
    public double? DrainSeconds { get; init; }

    /// <summary>Backlog entries (events and receipts) drained per second.</summary>
    public double EventsPerSecond { get; init; }

    public double RecordsPerSecond { get; init; }
}

/// <summary>A set of measured processes (the server's, PostgreSQL's) over the measured window.</summary>
internal sealed record ProcessGroupStats
{
    public IReadOnlyList<int> Pids { get; init; } = [];

    public double WindowS { get; init; }

    public long RssBeforeBytes { get; init; }

    public long RssAfterBytes { get; init; }

    /// <summary>PostgreSQL: proportional set size (shared memory divided among the processes that map it).</summary>
    public long? PssAfterBytes { get; init; }

    /// <summary>connections: (RSS after − RSS before connecting) / connections open at the end (opened less dropped).</summary>
    public double? RssPerConnectionBytes { get; init; }

    public double CpuMs { get; init; }

    public double CpuPercentOfCore { get; init; }

    public double? CpuMsPerDelivered { get; init; }
}

internal sealed record ClientStats(double CpuMs, long PeakRssBytes);

[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower,
    DefaultIgnoreCondition = JsonIgnoreCondition.Never,
    NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals)]
[JsonSerializable(typeof(BenchResult))]
[JsonSerializable(typeof(ProgressSnapshot))]
internal sealed partial class BenchJson : JsonSerializerContext;
