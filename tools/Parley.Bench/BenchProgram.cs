using Parley.Bench.Options;
using Parley.Bench.Processes;
using Parley.Bench.Reporting;

namespace Parley.Bench;

/// <summary>The entry point: parse, then run in this process or split over child processes.</summary>
internal static class BenchProgram
{
    public static async Task<int> Main(string[] args)
    {
        using var cancel = new CancellationTokenSource();
        Console.CancelKeyPress += (_, e) =>
        {
            e.Cancel = true;
            cancel.Cancel();
        };

        try
        {
            return await RunAsync(args, Terminal.System, cancel.Token);
        }
        catch (OperationCanceledException) when (cancel.IsCancellationRequested)
        {
            await Console.Error.WriteLineAsync("parley-bench: interrupted");
            return 130;
        }
    }

    public static async Task<int> RunAsync(IReadOnlyList<string> args, Terminal terminal, CancellationToken cancellationToken)
    {
        var parsed = CommandLine.Parse(args);
        if (parsed.Help)
        {
            await terminal.Out.WriteAsync(CommandLine.Usage());
            return 0;
        }

        if (parsed.Options is not { } options)
        {
            await terminal.Error.WriteLineAsync($"parley-bench: {parsed.Error}. Run with --help for the options.");
            return Verdict.BadArguments;
        }

        return options.Processes > 1 && !options.IsChild
            ? await ParentRunner.RunAsync(options, args, terminal, cancellationToken)
            : await BenchRunner.RunAsync(options, terminal, cancellationToken);
    }
}
