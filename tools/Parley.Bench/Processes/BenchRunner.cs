using System.Diagnostics;
using Parley.Bench.Options;
using Parley.Bench.Reporting;
using Parley.Bench.Scenarios;
using Parley.Client;
using Spectre.Console;

namespace Parley.Bench.Processes;

/// <summary>Runs a scenario in this process: alone, or as one child of a split run (<c>--child</c>).</summary>
internal static class BenchRunner
{
    public static async Task<int> RunAsync(BenchOptions options, Terminal terminal, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(options);
        using var self = Process.GetCurrentProcess();
        var cpuAtStart = self.TotalProcessorTime;
        using var context = new RunContext(options, terminal.Error);
        var scenario = Scenario.Create(context);
        BenchResult result;
        ServerMonitor? monitor = null;
        try
        {
            try
            {
                monitor = options.IsChild ? null : new ServerMonitor(options);
                await scenario.SetUpAsync(cancellationToken);
            }
            catch (Exception e) when (e is SetupException or ParleyApiException or HttpRequestException)
            {
                context.Log("set-up failed: " + e.Message);
                return Verdict.SetupFailed;
            }

            var start = options.IsChild
                ? await Coordinator.WaitForGoAsync(Console.In, Console.Out, cancellationToken)
                : Coordinator.StandaloneStart();
            using var stopReporting = new CancellationTokenSource();
            var progress = ProgressReporter.RunAsync(options.Progress, options.IsChild, terminal, scenario.Snapshot, stopReporting.Token);
            var sampling = monitor?.RunAsync(start, stopReporting.Token) ?? Task.CompletedTask;
            if (!options.IsChild)
            {
                context.Log("running");
            }

            context.StartedAt = DateTimeOffset.UtcNow + Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), start);
            await scenario.RunAsync(start, cancellationToken);
            monitor?.Finish();
            await stopReporting.CancelAsync();
            await Task.WhenAll(progress, sampling);
            result = scenario.Result();
        }
        finally
        {
            // Closing thousands of sockets takes a moment; it happens before the result line, which stays the last one.
            await scenario.DisposeAsync();
        }

        self.Refresh();
        result = result with { Client = new ClientStats(Math.Round((self.TotalProcessorTime - cpuAtStart).TotalMilliseconds, 1), self.PeakWorkingSet64) };
        if (monitor is not null)
        {
            var (server, postgres) = monitor.Stats(result);
            result = result with { Server = server, Postgres = postgres };
        }

        result = Verdict.Apply(result, options);
        if (!options.IsChild)
        {
            Summary.Write(SummaryConsole(terminal), result);
        }

        await Output.WriteAsync(terminal, result, options, cancellationToken);
        return result.ExitCode;
    }

    /// <summary>Standard output for the summary; redirected output gets a fixed width instead of 80 columns.</summary>
    public static IAnsiConsole SummaryConsole(Terminal terminal)
    {
        ArgumentNullException.ThrowIfNull(terminal);
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(terminal.Out),
            Ansi = terminal.IsInteractive ? AnsiSupport.Detect : AnsiSupport.No,
            Interactive = terminal.IsInteractive ? InteractionSupport.Detect : InteractionSupport.No,
        });
        if (!terminal.IsInteractive)
        {
            console.Profile.Width = 140;
        }

        return console;
    }
}

/// <summary>Writes the result line (always the last line of standard output) and, when asked, the JSON file.</summary>
internal static class Output
{
    public static async Task WriteAsync(Terminal terminal, BenchResult result, BenchOptions options, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(terminal);
        ArgumentNullException.ThrowIfNull(options);
        await terminal.Out.WriteLineAsync(ResultLine.Format(result));
        await terminal.Out.FlushAsync(cancellationToken);
        if (options.OutputFile is { } file)
        {
            await File.WriteAllTextAsync(file, ResultLine.ToJson(result) + "\n", cancellationToken);
        }
    }
}
