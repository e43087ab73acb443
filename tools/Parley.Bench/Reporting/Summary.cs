using System.Globalization;
using Spectre.Console;

namespace Parley.Bench.Reporting;

/// <summary>The human summary printed at the end of a run (before the JSON line).</summary>
internal static class Summary
{
    public static void Write(IAnsiConsole console, BenchResult result)
    {
        ArgumentNullException.ThrowIfNull(console);
        ArgumentNullException.ThrowIfNull(result);
        var c = CultureInfo.InvariantCulture;
        var table = new Table().Border(TableBorder.Rounded)
            .Title($"parley-bench {result.Scenario} ({result.Transport}, {result.Processes} process{(result.Processes == 1 ? "" : "es")}, run {result.RunId})")
            .AddColumn("measure").AddColumn(new TableColumn("value").RightAligned());
        void Row(string name, string value) => table.AddRow(Markup.Escape(name), Markup.Escape(value));

        if (result.Relay is { } relay)
        {
            Row("sink", relay.Sink);
            Row("backlog peak / end", $"{relay.BacklogPeak} / {relay.BacklogAtEnd}");
            Row("drained after", relay.DrainSeconds is { } d ? d.ToString("F1", c) + " s" : "-");
            Row("drain rate", string.Create(c, $"{relay.EventsPerSecond:F0} events/s, {relay.RecordsPerSecond:F0} records/s ({relay.Published} records)"));
        }
        else if (result.Scenario != "connections")
        {
            Row("window", $"{result.WindowS.ToString(c)} s");
            Row("offered / sent / acknowledged", $"{result.Offered} / {result.Sent} / {result.Acknowledged}");
            Row("delivered / expected", $"{result.Delivered} / {result.ExpectedDeliveries}");
            Row("rate: offered / sent / delivered", string.Create(c, $"{result.OfferedRate:F1} / {result.SendRate:F1} / {result.DeliveryRate:F1} per s"));
            Row("lost / unanswered", $"{result.Lost} / {result.Unanswered}");
            Row("refused / failed sends", $"{result.Refused} / {result.FailedSends}");
            Row("duplicated / out of order / redelivered", $"{result.Duplicated} / {result.OutOfOrder} / {result.Redelivered}");
            Row("unexpected", $"{result.Unexpected}");
            Row("delivery latency", Latency(result.LatencyMs));
            Row("ack latency", Latency(result.AckLatencyMs));
        }

        var connections = result.Connections;
        Row("connections opened / failed / dropped", $"{connections.Opened} / {connections.Failed} / {connections.Dropped}");
        Row("connect rate", string.Create(c, $"{connections.ConnectRate:F1}/s over {connections.ConnectSeconds:F1} s"));
        Row("connect latency", Latency(connections.ConnectLatencyMs));
        if (result.Reconnect is { } reconnect)
        {
            Row("devices resumed", $"{reconnect.Resumed} / {reconnect.Devices}");
            Row("all resumed after", reconnect.ResumeSeconds is { } r ? r.ToString("F3", c) + " s" : "-");
            Row("all caught up after", reconnect.CatchUpSeconds is { } u ? u.ToString("F3", c) + " s" : "-");
            Row("resume latency", Latency(reconnect.ResumeLatencyMs));
        }

        Process("server", result.Server);
        Process("postgres", result.Postgres);
        if (result.Client is { } client)
        {
            Row("bench tool CPU / peak RSS", string.Create(c, $"{client.CpuMs:F0} ms / {client.PeakRssBytes / 1048576.0:F0} MiB"));
        }

        Row("errors", result.Errors.Count == 0 ? "none" : string.Join(", ", result.Errors.Select(e => $"{e.Key} {e.Value}")));
        table.AddRow(new Markup("[bold]verdict[/]"), new Markup(result.Passed ? "[green]passed[/]" : "[red]" + Markup.Escape(string.Join("; ", result.Failures)) + "[/]"));
        console.Write(table);

        void Process(string name, ProcessGroupStats? stats)
        {
            if (stats is null)
            {
                return;
            }

            Row($"{name} CPU", string.Create(c, $"{stats.CpuMs:F0} ms in {stats.WindowS:F1} s = {stats.CpuPercentOfCore:F1}% of a core")
                + (stats.CpuMsPerDelivered is { } per ? string.Create(c, $", {per:F3} ms per delivery") : ""));
            Row($"{name} RSS before / after", string.Create(c, $"{stats.RssBeforeBytes / 1048576.0:F1} / {stats.RssAfterBytes / 1048576.0:F1} MiB")
                + (stats.RssPerConnectionBytes is { } perConnection ? string.Create(c, $" ({perConnection / 1024:F1} KiB per connection)") : "")
                + (stats.PssAfterBytes is { } pss ? string.Create(c, $", PSS {pss / 1048576.0:F1} MiB") : ""));
        }
    }

    private static string Latency(LatencySummary? s) =>
        s is null
            ? "-"
            : string.Create(CultureInfo.InvariantCulture, $"p50 {s.P50:F2}  p95 {s.P95:F2}  p99 {s.P99:F2}  p99.9 {s.P999:F2}  max {s.Max:F2} ms (n={s.Count})");
}
