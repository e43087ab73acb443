using System.Text.Json;
using Parley.Bench.Options;
using Parley.Bench.Reporting;

namespace Parley.Bench.Tests;

[Trait("Store", "Independent")]
public sealed class ResultTests
{
    private static BenchResult Part(long offered, long delivered, long lost, params long[] latenciesMicroseconds)
    {
        var histogram = new LatencyHistogram();
        foreach (var value in latenciesMicroseconds)
        {
            histogram.RecordMicroseconds(value);
        }

        return new BenchResult
        {
            Scenario = "chat",
            Transport = "websocket",
            RunId = "r1",
            Urls = ["http://127.0.0.1:8083/"],
            StartedAt = DateTimeOffset.UnixEpoch,
            Settings = new RunSettings(10, 100, 2, 0, 5, null, null, 500, 64, null, null, "header", 0, "users", null),
            WindowS = 2,
            Offered = offered,
            Delivered = delivered,
            Acknowledged = offered,
            Lost = lost,
            OfferedRate = 50,
            SendRate = 49.5,
            DeliveryRate = 49,
            Errors = new SortedDictionary<string, long> { ["rate_limited"] = 1 },
            Connections = new ConnectionStats { Attempted = 5, Opened = 5, ConnectSeconds = 0.5 },
            Client = new ClientStats(100, 1000),
            LatencyMs = LatencyHistogram.Summarize(histogram.Snapshot()),
            Histograms = new SortedDictionary<string, string> { ["latency"] = LatencyHistogram.Encode(histogram.Snapshot()) },
        };
    }

    [Fact]
    public void Format_IsOneSnakeCaseJsonLineAfterThePrefix()
    {
        var line = ResultLine.Format(Part(100, 100, 0, 1000, 2000));

        Assert.StartsWith(ResultLine.Prefix + "{", line, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', line);
        using var json = JsonDocument.Parse(line[ResultLine.Prefix.Length..]);
        var root = json.RootElement;
        foreach (var name in new[] { "schema", "scenario", "transport", "run_id", "urls", "processes", "started_at", "settings", "window_s", "offered", "sent",
            "acknowledged", "expected_deliveries", "delivered", "lost", "unanswered", "refused", "failed_sends", "duplicated", "out_of_order", "redelivered", "unexpected", "errors",
            "offered_rate", "send_rate", "delivery_rate", "latency_ms", "ack_latency_ms", "connections", "reconnect", "server", "postgres", "client",
            "passed", "failures", "exit_code", "histograms" })
        {
            Assert.True(root.TryGetProperty(name, out _), name);
        }

        Assert.Equal(2, root.GetProperty("latency_ms").GetProperty("count").GetInt64());
        Assert.True(root.GetProperty("latency_ms").TryGetProperty("p99_9", out _));
        Assert.True(root.GetProperty("settings").TryGetProperty("duration_s", out _));
        Assert.True(root.GetProperty("connections").TryGetProperty("connect_latency_ms", out _));
    }

    [Fact]
    public void TryParse_RoundTrips_AndIgnoresOtherLines()
    {
        var result = Part(10, 10, 0, 5);

        Assert.Equal(ResultLine.ToJson(result), ResultLine.ToJson(ResultLine.TryParse(ResultLine.Format(result))!));
        Assert.Null(ResultLine.TryParse("[ 1.0 s] measure sent 0/s"));
    }

    [Fact]
    public void Merge_AddsCountsRatesAndErrors_AndMergesHistograms()
    {
        var merged = ResultMerger.Merge([Part(100, 99, 1, 1000, 1000, 1000), Part(50, 50, 0, 9000)]);

        Assert.Equal(2, merged.Processes);
        Assert.Equal((150L, 149L, 1L), (merged.Offered, merged.Delivered, merged.Lost));
        Assert.Equal((100.0, 99.0, 98.0), (merged.OfferedRate, merged.SendRate, merged.DeliveryRate));
        Assert.Equal(2, merged.Errors["rate_limited"]);
        Assert.Equal(10, merged.Connections.Opened);
        Assert.Equal(200, merged.Client!.CpuMs);
        Assert.Equal(4, merged.LatencyMs!.Count);
        Assert.InRange(merged.LatencyMs.P50, 0.99, 1.01);
        Assert.InRange(merged.LatencyMs.Max, 8.99, 9.01);
        Assert.Equal(4, LatencyHistogram.Decode(merged.Histograms["latency"]).TotalCount);
    }

    [Fact]
    public void Verdict_Clean_Passes()
    {
        var result = Verdict.Apply(Part(10, 10, 0, 5), new BenchOptions { Scenario = ScenarioKind.Chat });

        Assert.True(result.Passed);
        Assert.Equal(Verdict.Passed, result.ExitCode);
        Assert.Empty(result.Failures);
    }

    [Fact]
    public void Verdict_LostOrDuplicated_FailsWithOne()
    {
        var options = new BenchOptions { Scenario = ScenarioKind.Chat };

        var lost = Verdict.Apply(Part(10, 9, 1, 5), options);
        var duplicated = Verdict.Apply(Part(10, 10, 0, 5) with { Duplicated = 2 }, options);

        Assert.Equal((false, Verdict.Failed), (lost.Passed, lost.ExitCode));
        Assert.Contains(lost.Failures, f => f.StartsWith("1 deliveries lost", StringComparison.Ordinal));
        Assert.Equal(Verdict.Failed, duplicated.ExitCode);
        Assert.Contains("2 duplicated on one socket", duplicated.Failures);
    }

    [Fact]
    public void Verdict_P99AboveTheLimit_FailsWithThree_UnlessSomethingWasLost()
    {
        var options = new BenchOptions { Scenario = ScenarioKind.Chat, MaxP99Ms = 1 };

        Assert.Equal(Verdict.SlowP99, Verdict.Apply(Part(10, 10, 0, 5000), options).ExitCode);
        Assert.Equal(Verdict.Passed, Verdict.Apply(Part(10, 10, 0, 500), options).ExitCode);
        Assert.Equal(Verdict.Failed, Verdict.Apply(Part(10, 9, 1, 5000), options).ExitCode);
    }

    [Fact]
    public void Verdict_NothingAcknowledged_Fails()
    {
        var result = Verdict.Apply(Part(10, 0, 0) with { Acknowledged = 0 }, new BenchOptions { Scenario = ScenarioKind.Chat });

        Assert.Contains("no send was acknowledged", result.Failures);
    }

    [Fact]
    public void Verdict_FailedOrDroppedConnections_Fail()
    {
        var result = Verdict.Apply(
            Part(0, 0, 0) with { Connections = new ConnectionStats { Opened = 8, Failed = 2, Dropped = 1 } },
            new BenchOptions { Scenario = ScenarioKind.Connections });

        Assert.Equal(Verdict.Failed, result.ExitCode);
        Assert.Equal(["2 connections failed", "1 connections dropped by the server"], result.Failures);
    }

    public static TheoryData<string, string> Leniencies => new()
    {
        { "failed", "sends failed" },
        { "refused", "sends refused" },
        { "unexpected", "unexpected copies" },
        { "foreign", "into a conversation the device is not in" },
        { "missing", "expected deliveries missing" },
    };

    [Theory]
    [MemberData(nameof(Leniencies))]
    public void Verdict_FailedOrRefusedSends_UnexpectedOrLeakedCopies_OrFewerDeliveriesThanExpected_FailWithOne(string what, string failure)
    {
        var clean = Part(10, 10, 0, 5) with { ExpectedDeliveries = 10 };
        Assert.True(Verdict.Apply(clean, new BenchOptions { Scenario = ScenarioKind.Group }).Passed);
        var result = what switch
        {
            "failed" => clean with { FailedSends = 3, Acknowledged = 7, Delivered = 7 },
            "refused" => clean with { Refused = 1, Acknowledged = 9, Delivered = 9 },
            "unexpected" => clean with { Unexpected = 1 },
            "foreign" => clean with { Errors = new SortedDictionary<string, long> { ["foreign_conversation"] = 1 } },
            _ => clean with { Delivered = 1 }, // nothing else counted: no loss, no error
        };

        var verdict = Verdict.Apply(result, new BenchOptions { Scenario = ScenarioKind.Group });

        Assert.False(verdict.Passed);
        Assert.Equal(Verdict.Failed, verdict.ExitCode);
        Assert.Contains(verdict.Failures, f => f.Contains(failure, StringComparison.Ordinal));
    }

    [Fact]
    public void Divisors_AreTheDeliveriesInsideTheWindow_AndTheConnectionsStillOpen()
    {
        // 1,000 copies of the window's messages, 900 of them inside the 10 s window; 100 connections, 10 dropped.
        var result = Part(1000, 1000, 0) with
        {
            WindowS = 10,
            DeliveryRate = 90,
            Connections = new ConnectionStats { Attempted = 100, Opened = 100, Dropped = 10 },
        };

        Assert.Equal((900L, 90L), ServerMonitor.Divisors(result));
    }

    [Fact]
    public void Verdict_Connections_ConnectingPastTheHoldsStart_Fails()
    {
        var options = new BenchOptions { Scenario = ScenarioKind.Connections, Connections = 1000, ConnectRate = 500 }; // hold at 4 s
        var result = Part(0, 0, 0) with { Connections = new ConnectionStats { Attempted = 1000, Opened = 1000, ConnectSeconds = 3.5 } };

        Assert.True(Verdict.Apply(result, options).Passed);
        var late = Verdict.Apply(result with { Connections = result.Connections with { ConnectSeconds = 4.5 } }, options);
        Assert.False(late.Passed);
        Assert.Contains(late.Failures, f => f.StartsWith("connecting took 4.5 s, past the hold's start at 4.0 s", StringComparison.Ordinal));
    }
}
