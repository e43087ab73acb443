using System.Globalization;
using Parley.Bench.Client;
using Parley.Bench.Options;
using Parley.Bench.Scenarios;

namespace Parley.Bench.Reporting;

/// <summary>Decides whether a run passed, and its exit code.</summary>
internal static class Verdict
{
    public const int Passed = 0;
    public const int Failed = 1;
    public const int BadArguments = 2;
    public const int SlowP99 = 3;
    public const int SetupFailed = 4;

    public static BenchResult Apply(BenchResult result, BenchOptions options)
    {
        ArgumentNullException.ThrowIfNull(result);
        ArgumentNullException.ThrowIfNull(options);
        var failures = new List<string>();
        void Check(long count, string what)
        {
            if (count > 0)
            {
                failures.Add(string.Create(CultureInfo.InvariantCulture, $"{count} {what}"));
            }
        }

        Check(result.Lost, "deliveries lost (acknowledged, never delivered)");
        Check(result.Duplicated, "duplicated on one socket");
        Check(result.OutOfOrder, "out of order on one socket");
        Check(result.Unanswered, "sends never answered");
        Check(result.FailedSends, "sends failed (an error other than rate_limited)");
        Check(result.Refused, "sends refused (rate_limited: the offered rate was not served)");
        Check(result.Unexpected, "unexpected copies (not sent by the tool, or a copy too many)");
        Check(result.Errors.GetValueOrDefault(BenchErrors.ForeignConversation), "copies delivered into a conversation the device is not in");
        Check(result.ExpectedDeliveries - result.Delivered, "expected deliveries missing (delivered fewer than expected_deliveries)");
        Check(result.Connections.Failed, "connections failed");
        Check(result.Connections.Dropped, "connections dropped by the server");
        if (result.Reconnect is { } reconnect)
        {
            Check(reconnect.Devices - reconnect.Resumed, "devices did not resume (no sync_complete)");
        }

        if (options.Scenario == ScenarioKind.Connections && result.Connections.ConnectSeconds > ConnectionsScenario.HoldStartSeconds(options))
        {
            failures.Add(string.Create(
                CultureInfo.InvariantCulture,
                $"connecting took {result.Connections.ConnectSeconds:F1} s, past the hold's start at {ConnectionsScenario.HoldStartSeconds(options):F1} s (the hold's figures include connecting)"));
        }

        if (result.Relay is { DrainSeconds: null } relay)
        {
            failures.Add(string.Create(CultureInfo.InvariantCulture, $"backlog of {relay.Sink} not drained ({relay.BacklogAtEnd} left)"));
        }

        if (options.Scenario != ScenarioKind.Connections && result.Offered > 0 && result.Acknowledged == 0)
        {
            failures.Add("no send was acknowledged");
        }

        // Lost or duplicated messages matter more than slowness: they decide the exit code when both happen.
        var exitCode = failures.Count > 0 ? Failed : Passed;
        if (options.MaxP99Ms is { } limit && result.LatencyMs is { } latency && latency.P99 > limit)
        {
            failures.Add(string.Create(CultureInfo.InvariantCulture, $"p99 {latency.P99} ms above --max-p99-ms {limit}"));
            exitCode = exitCode == Passed ? SlowP99 : exitCode;
        }

        return result with { Passed = failures.Count == 0, Failures = failures, ExitCode = exitCode };
    }
}
