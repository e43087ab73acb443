using System.Globalization;
using System.Text.Json;
using Parley.Bench.Options;
using Parley.Bench.Processes;
using Spectre.Console;

namespace Parley.Bench.Reporting;

/// <summary>Running totals of a process (or, in the parent, of all children) for the progress display.</summary>
internal sealed record ProgressSnapshot(
    string Phase, double ElapsedS, long Sent, long Acknowledged, long Delivered, long InFlight, long Errors, long OpenConnections, double? P99Ms)
{
    public static ProgressSnapshot Sum(IReadOnlyCollection<ProgressSnapshot> parts)
    {
        ArgumentNullException.ThrowIfNull(parts);
        if (parts.Count == 0)
        {
            return new ProgressSnapshot("starting", 0, 0, 0, 0, 0, 0, 0, null);
        }

        // The p99 of the parts' union is not derivable from their p99s; the largest is a close upper bound for a display.
        return new ProgressSnapshot(
            parts.First().Phase, parts.Max(p => p.ElapsedS), parts.Sum(p => p.Sent), parts.Sum(p => p.Acknowledged), parts.Sum(p => p.Delivered),
            parts.Sum(p => p.InFlight), parts.Sum(p => p.Errors), parts.Sum(p => p.OpenConnections), parts.Max(p => p.P99Ms));
    }
}

/// <summary>
/// Shows progress while a run goes on: a live table on a terminal (Spectre.Console), a plain line every few seconds
/// when standard output is redirected, or, in a child process, one machine-readable line a second for the parent.
/// </summary>
internal static class ProgressReporter
{
    public const string ChildPrefix = "PARLEY_BENCH_PROGRESS ";

    public static async Task RunAsync(ProgressMode mode, bool child, Terminal terminal, Func<ProgressSnapshot> snapshot, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(snapshot);
        ArgumentNullException.ThrowIfNull(terminal);
        try
        {
            if (child)
            {
                await ChildAsync(terminal.Out, snapshot, cancellationToken);
                return;
            }

            if (mode == ProgressMode.None)
            {
                return;
            }

            var live = mode == ProgressMode.Live || (mode == ProgressMode.Auto && terminal.IsInteractive && AnsiConsole.Profile.Capabilities.Interactive);
            await (live ? LiveAsync(snapshot, cancellationToken) : PlainAsync(terminal.Out, snapshot, cancellationToken));
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // The run ended.
        }
    }

    /// <summary>One plain progress line: elapsed time, phase, rates over the last interval, totals.</summary>
    public static string Line(ProgressSnapshot now, ProgressSnapshot? before)
    {
        ArgumentNullException.ThrowIfNull(now);
        var (sent, acked, delivered) = Rates(now, before);
        return string.Create(
            CultureInfo.InvariantCulture,
            $"[{now.ElapsedS,6:F1} s] {now.Phase,-10} sent {sent,8:F0}/s  acked {acked,8:F0}/s  delivered {delivered,9:F0}/s  in-flight {now.InFlight,6}  "
            + $"open {now.OpenConnections,6}  errors {now.Errors,5}  p99 {(now.P99Ms is { } p ? p.ToString("F1", CultureInfo.InvariantCulture) + " ms" : "-")}");
    }

    private static (double Sent, double Acked, double Delivered) Rates(ProgressSnapshot now, ProgressSnapshot? before)
    {
        var seconds = before is null ? 0 : now.ElapsedS - before.ElapsedS;
        if (before is null || seconds <= 0)
        {
            return (0, 0, 0);
        }

        return ((now.Sent - before.Sent) / seconds, (now.Acknowledged - before.Acknowledged) / seconds, (now.Delivered - before.Delivered) / seconds);
    }

    private static async Task ChildAsync(TextWriter output, Func<ProgressSnapshot> snapshot, CancellationToken cancellationToken)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(1));
        while (await timer.WaitForNextTickAsync(cancellationToken))
        {
            output.WriteLine(ChildPrefix + JsonSerializer.Serialize(snapshot(), BenchJson.Default.ProgressSnapshot));
        }
    }

    private static async Task PlainAsync(TextWriter output, Func<ProgressSnapshot> snapshot, CancellationToken cancellationToken)
    {
        ProgressSnapshot? before = null;
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(5));
        while (await timer.WaitForNextTickAsync(cancellationToken))
        {
            var now = snapshot();
            output.WriteLine(Line(now, before));
            before = now;
        }
    }

    private static async Task LiveAsync(Func<ProgressSnapshot> snapshot, CancellationToken cancellationToken)
    {
        var table = new Table().Border(TableBorder.Rounded).Title("parley-bench");
        foreach (var column in new[] { "elapsed", "phase", "sent/s", "acked/s", "delivered/s", "in-flight", "open", "errors", "p99 so far" })
        {
            table.AddColumn(new TableColumn(column).RightAligned());
        }

        table.AddRow(Cells(snapshot(), null));
        await AnsiConsole.Live(table).AutoClear(false).StartAsync(async context =>
        {
            ProgressSnapshot? before = null;
            using var timer = new PeriodicTimer(TimeSpan.FromSeconds(1));
            try
            {
                while (await timer.WaitForNextTickAsync(cancellationToken))
                {
                    var now = snapshot();
                    var cells = Cells(now, before);
                    for (var i = 0; i < cells.Length; i++)
                    {
                        table.Rows.Update(0, i, new Text(cells[i]));
                    }

                    context.Refresh();
                    before = now;
                }
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                context.Refresh();
            }
        });
    }

    private static string[] Cells(ProgressSnapshot now, ProgressSnapshot? before)
    {
        var (sent, acked, delivered) = Rates(now, before);
        var c = CultureInfo.InvariantCulture;
        return
        [
            now.ElapsedS.ToString("F1", c) + " s", now.Phase, sent.ToString("F0", c), acked.ToString("F0", c), delivered.ToString("F0", c),
            now.InFlight.ToString(c), now.OpenConnections.ToString(c), now.Errors.ToString(c),
            now.P99Ms is { } p ? p.ToString("F1", c) + " ms" : "-",
        ];
    }
}
