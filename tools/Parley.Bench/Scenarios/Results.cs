using Parley.Bench.Options;
using Parley.Bench.Reporting;

namespace Parley.Bench.Scenarios;

/// <summary>Builds a process's part of the result from its ledger and counters.</summary>
internal static class Results
{
    public static BenchResult Messaging(RunContext context, MessageLedger ledger, double windowSeconds, ReconnectStats? reconnect)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(ledger);
        var totals = ledger.Totals();
        var latency = ledger.Latency.Snapshot();
        var ackLatency = ledger.AckLatency.Snapshot();
        return Base(context, windowSeconds) with
        {
            Offered = totals.Offered,
            Sent = totals.Sent,
            Acknowledged = totals.Acknowledged,
            ExpectedDeliveries = totals.ExpectedDeliveries,
            Delivered = totals.Delivered,
            Lost = totals.Lost,
            Unanswered = totals.Unanswered,
            Refused = totals.Refused,
            FailedSends = totals.FailedSends,
            Duplicated = totals.Duplicated,
            OutOfOrder = totals.OutOfOrder,
            Redelivered = totals.Redelivered,
            Unexpected = totals.Unexpected,
            OfferedRate = Math.Round(context.Plan.Rate, 3),
            SendRate = Math.Round(totals.SentInWindow / windowSeconds, 1),
            DeliveryRate = Math.Round(totals.DeliveredInWindow / windowSeconds, 1),
            LatencyMs = LatencyHistogram.Summarize(latency),
            AckLatencyMs = LatencyHistogram.Summarize(ackLatency),
            Reconnect = reconnect,
            Histograms = Histograms(context, ("latency", latency), ("ack_latency", ackLatency)),
        };
    }

    public static BenchResult Base(RunContext context, double windowSeconds)
    {
        ArgumentNullException.ThrowIfNull(context);
        var o = context.Options;
        return new BenchResult
        {
            Scenario = Scenario.Name(o.Scenario),
            Transport = o.Scenario == ScenarioKind.Relay ? "none" : o.Transport == Transport.Rest || o.Scenario == ScenarioKind.Reconnect ? "rest" : "websocket",
            RunId = o.RunId,
            Urls = [.. o.Urls.Select(u => u.ToString())],
            Processes = o.Processes,
            StartedAt = context.StartedAt,
            Settings = Settings(o),
            WindowS = windowSeconds,
            Errors = context.Errors.Snapshot(),
            Connections = context.Connections.Stats(),
            Histograms = Histograms(context),
        };
    }

    public static RunSettings Settings(BenchOptions o)
    {
        ArgumentNullException.ThrowIfNull(o);
        var messaging = o.Scenario is ScenarioKind.Chat or ScenarioKind.Group;
        return new RunSettings(
            messaging ? o.Users : null,
            o.Scenario == ScenarioKind.Connections ? 0 : o.Rate,
            o.DurationSeconds,
            o.WarmupSeconds,
            o.GraceSeconds,
            o.Scenario == ScenarioKind.Group ? o.GroupSize : null,
            messaging ? null : o.Connections,
            o.ConnectRate,
            o.MessageBytes,
            o.Scenario == ScenarioKind.Reconnect ? o.OfflineSeconds : null,
            o.Scenario == ScenarioKind.Reconnect ? o.SettleSeconds : null,
            o.Auth.ToString().ToLowerInvariant(),
            o.SourceAddresses.Count,
            messaging ? o.Placement.ToString().ToLowerInvariant() : null,
            messaging ? o.AckIntervalMs : null);
    }

    /// <summary>The encoded histograms, the connect latency always among them.</summary>
    public static SortedDictionary<string, string> Histograms(RunContext context, params (string Name, HdrHistogram.HistogramBase Histogram)[] histograms)
    {
        ArgumentNullException.ThrowIfNull(context);
        var encoded = new SortedDictionary<string, string>(StringComparer.Ordinal)
        {
            ["connect_latency"] = LatencyHistogram.Encode(context.Connections.Latency.Snapshot()),
        };
        foreach (var (name, histogram) in histograms)
        {
            encoded[name] = LatencyHistogram.Encode(histogram);
        }

        return encoded;
    }
}
