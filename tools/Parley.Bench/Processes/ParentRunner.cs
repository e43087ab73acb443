using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.Json;
using Parley.Bench.Options;
using Parley.Bench.Reporting;
using Parley.Bench.Scenarios;

namespace Parley.Bench.Processes;

/// <summary>
/// Splits a run over <c>--processes N</c> child processes of this tool (each may hold at most 20,000 open files):
/// child k gets slice k of the users and of the rates (<see cref="BenchPlan"/>), sets up, reports ready; the parent
/// then gives all of them one start time, samples the server, shows their summed progress, and merges their result
/// lines (histograms included) into one.
/// </summary>
internal static class ParentRunner
{
    private static readonly TimeSpan StartDelay = TimeSpan.FromMilliseconds(500);

    public static async Task<int> RunAsync(BenchOptions options, IReadOnlyList<string> args, Terminal terminal, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(terminal);
        var children = new List<Child>();
        ServerMonitor monitor;
        try
        {
            monitor = new ServerMonitor(options);
        }
        catch (SetupException e)
        {
            terminal.Error.WriteLine("parley-bench: set-up failed: " + e.Message);
            return Verdict.SetupFailed;
        }

        try
        {
            for (var k = 0; k < options.Processes; k++)
            {
                children.Add(Child.Start(k, CommandLine.ChildArguments(args, options, k), terminal.Error));
            }

            terminal.Error.WriteLine($"parley-bench: started {children.Count} processes; waiting for their set-up");
            var allReady = Task.WhenAll(children.Select(c => c.Ready));
            var anyExited = Task.WhenAny(children.Select(c => c.Exited));
            if (await Task.WhenAny(allReady, anyExited).WaitAsync(cancellationToken) != allReady)
            {
                var failed = children.First(c => c.Exited.IsCompleted);
                terminal.Error.WriteLine($"parley-bench: process {failed.Index} ended during set-up (exit code {failed.ExitCode}); stopping the others");
                return Verdict.SetupFailed;
            }

            var start = Stopwatch.GetTimestamp() + (long)(StartDelay.TotalSeconds * Stopwatch.Frequency);
            foreach (var child in children)
            {
                await child.GoAsync(start);
            }

            using var stopReporting = new CancellationTokenSource();
            var progress = ProgressReporter.RunAsync(
                options.Progress, child: false, terminal, () => ProgressSnapshot.Sum([.. children.Select(c => c.Progress).OfType<ProgressSnapshot>()]), stopReporting.Token);
            var sampling = monitor.RunAsync(start, stopReporting.Token);
            terminal.Error.WriteLine("parley-bench: running");
            await Task.WhenAll(children.Select(c => c.Exited)).WaitAsync(cancellationToken);
            monitor.Finish();
            await stopReporting.CancelAsync();
            await Task.WhenAll(progress, sampling);

            var missing = children.Where(c => c.Result is null).ToList();
            if (missing.Count > 0)
            {
                terminal.Error.WriteLine(
                    $"parley-bench: no result from process {string.Join(", ", missing.Select(c => c.Index))} (exit code {string.Join(", ", missing.Select(c => c.ExitCode))})");
                return Verdict.SetupFailed;
            }

            var result = ResultMerger.Merge([.. children.Select(c => c.Result!)]);
            var (server, postgres) = monitor.Stats(result);
            result = Verdict.Apply(result with { Server = server, Postgres = postgres }, options);
            Summary.Write(BenchRunner.SummaryConsole(terminal), result);
            await Output.WriteAsync(terminal, result, options, cancellationToken);
            return result.ExitCode;
        }
        finally
        {
            foreach (var child in children)
            {
                child.Dispose();
            }
        }
    }

    /// <summary>One child process and what it reported on its standard output.</summary>
    private sealed class Child : IDisposable
    {
        private readonly Process _process;
        private readonly TaskCompletionSource _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly ConcurrentQueue<string> _unused = new();
        private volatile ProgressSnapshot? _progress;

        private readonly TextWriter _errors;

        private Child(int index, Process process, TextWriter errors)
        {
            Index = index;
            _process = process;
            _errors = errors;
        }

        public int Index { get; }

        public Task Ready => _ready.Task;

        /// <summary>Completes when the process has ended and both of its output streams were read to the end.</summary>
        public Task Exited { get; private set; } = Task.CompletedTask;

        public int? ExitCode => _process.HasExited ? _process.ExitCode : null;

        public ProgressSnapshot? Progress => _progress;

        public BenchResult? Result { get; private set; }

        public static Child Start(int index, IReadOnlyList<string> arguments, TextWriter errors)
        {
            var start = SelfStartInfo();
            foreach (var argument in arguments)
            {
                start.ArgumentList.Add(argument);
            }

            start.RedirectStandardInput = true;
            start.RedirectStandardOutput = true;
            start.RedirectStandardError = true;
            start.UseShellExecute = false;
            var process = new Process { StartInfo = start, EnableRaisingEvents = true };
            var child = new Child(index, process, errors);
            process.OutputDataReceived += (_, e) => child.OnOutput(e.Data);
            process.ErrorDataReceived += (_, e) => child.OnError(e.Data);
            process.Start();
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            child.Exited = process.WaitForExitAsync();
            return child;
        }

        public async Task GoAsync(long start)
        {
            await _process.StandardInput.WriteLineAsync(Coordinator.GoLine(start));
            await _process.StandardInput.FlushAsync();
        }

        public void Dispose()
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
            }

            _process.Dispose();
        }

        /// <summary>This tool again: its apphost, or <c>dotnet Parley.Bench.dll</c>.</summary>
        private static ProcessStartInfo SelfStartInfo()
        {
            var path = Environment.ProcessPath ?? "dotnet";
            var start = new ProcessStartInfo(path);
            if (Path.GetFileNameWithoutExtension(path).Equals("dotnet", StringComparison.OrdinalIgnoreCase))
            {
                start.ArgumentList.Add(typeof(ParentRunner).Assembly.Location);
            }

            return start;
        }

        private void OnOutput(string? line)
        {
            if (line is null)
            {
                return;
            }

            if (line == Coordinator.ReadyLine)
            {
                _ready.TrySetResult();
            }
            else if (line.StartsWith(ProgressReporter.ChildPrefix, StringComparison.Ordinal))
            {
                _progress = JsonSerializer.Deserialize(line.AsSpan(ProgressReporter.ChildPrefix.Length), BenchJson.Default.ProgressSnapshot);
            }
            else if (ResultLine.TryParse(line) is { } result)
            {
                Result = result;
            }
            else
            {
                _errors.WriteLine($"parley-bench: [{Index}] {line}");
            }
        }

        private void OnError(string? line)
        {
            if (line is not null)
            {
                _errors.WriteLine(line);
            }
        }
    }
}
