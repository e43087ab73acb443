using System.Diagnostics;
using Parley.Bench.Processes;
using Parley.Bench.Reporting;

namespace Parley.Bench.Tests.Infrastructure;

/// <summary>Runs the tool (in this process, or as a real process) and returns its exit code and parsed result.</summary>
internal static class BenchRun
{
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(90);

    /// <summary>The tool's entry point in this process, its output captured; the result is the last line of its standard output.</summary>
    public static async Task<(int ExitCode, BenchResult? Result, string Output, string Errors)> InProcessAsync(params string[] args)
    {
        using var output = new StringWriter();
        using var errors = new StringWriter();
        var terminal = new Terminal(TextWriter.Synchronized(output), TextWriter.Synchronized(errors), IsInteractive: false);
        var exitCode = await BenchProgram.RunAsync([.. args, "--progress", "none"], terminal, TestContext.Current.CancellationToken)
            .WaitAsync(Timeout, TestContext.Current.CancellationToken);
        var stdout = output.ToString();
        return (exitCode, LastResult(stdout), stdout, errors.ToString());
    }

    /// <summary>The result line, which must be the last line of the output.</summary>
    public static BenchResult? LastResult(string output)
    {
        var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        return lines.Length > 0 ? ResultLine.TryParse(lines[^1]) : null;
    }

    /// <summary><c>dotnet Parley.Bench.dll ...</c> as a child process; the result is the last line of its standard output.</summary>
    public static async Task<(int ExitCode, BenchResult? Result, string Output, string Errors)> ProcessAsync(params string[] args)
    {
        var start = new ProcessStartInfo(Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "Parley.Bench.dll"));
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        using var process = Process.Start(start)!;
        process.StandardInput.Close();
        var output = process.StandardOutput.ReadToEndAsync(TestContext.Current.CancellationToken);
        var errors = process.StandardError.ReadToEndAsync(TestContext.Current.CancellationToken);
        try
        {
            await process.WaitForExitAsync(TestContext.Current.CancellationToken).WaitAsync(Timeout, TestContext.Current.CancellationToken);
        }
        finally
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
            }
        }

        var stdout = await output;
        return (process.ExitCode, LastResult(stdout), stdout, await errors);
    }
}
