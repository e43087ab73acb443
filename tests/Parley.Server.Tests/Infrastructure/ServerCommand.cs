using System.Diagnostics;
using System.Text;

namespace Parley.Server.Tests.Infrastructure;

/// <summary>What a server process printed and how it ended.</summary>
internal sealed record ServerRun(int ExitCode, string Output, string Error);

/// <summary>
/// The built server (Parley.Server.dll beside the tests) as a real process, in a directory of the test's own, as an
/// operator runs it: for what only the process shows (exit codes, standard error, files it creates, start-up logs).
/// Settings that the test environment may carry (Auth__*, Storage__*, ConnectionStrings__*) are removed.
/// </summary>
internal static class ServerCommand
{
    public static string ServerDll => Path.Combine(AppContext.BaseDirectory, "Parley.Server.dll");

    /// <summary>Runs the server with <paramref name="arguments"/> and waits for it to exit; a process still running after <paramref name="timeout"/> fails the test.</summary>
    public static async Task<ServerRun> RunAsync(string directory, string environment, IEnumerable<string> arguments, TimeSpan? timeout = null)
    {
        var ct = TestContext.Current.CancellationToken;
        using var process = Process.Start(StartInfo(directory, environment, arguments))!;
        try
        {
            var output = process.StandardOutput.ReadToEndAsync(ct);
            var error = process.StandardError.ReadToEndAsync(ct);
            var limit = timeout ?? TimeSpan.FromSeconds(60);
            try
            {
                await process.WaitForExitAsync(ct).WaitAsync(limit, ct);
            }
            catch (TimeoutException)
            {
                Assert.Fail($"The server did not exit within {limit.TotalSeconds} s (it started instead of refusing?).");
            }

            return new ServerRun(process.ExitCode, await output, await error);
        }
        finally
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
            }
        }
    }

    /// <summary>Starts the server and leaves it running; dispose the result to kill it.</summary>
    public static RunningServer Start(string directory, string environment, IEnumerable<string> arguments) =>
        new(Process.Start(StartInfo(directory, environment, arguments))!);

    /// <summary>Starts the server with <paramref name="variables"/> added to its environment and leaves it running.</summary>
    public static RunningServer Start(string directory, string environment, IEnumerable<string> arguments, IReadOnlyDictionary<string, string> variables)
    {
        var start = StartInfo(directory, environment, arguments);
        foreach (var (name, value) in variables)
        {
            start.Environment[name] = value;
        }

        return new(Process.Start(start)!);
    }

    private static ProcessStartInfo StartInfo(string directory, string environment, IEnumerable<string> arguments)
    {
        var start = new ProcessStartInfo(Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet")
        {
            WorkingDirectory = directory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add(ServerDll);
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        string[] prefixes = ["Auth__", "Storage__", "ConnectionStrings__"];
        foreach (var name in start.Environment.Keys.Where(k => prefixes.Any(p => k.StartsWith(p, StringComparison.OrdinalIgnoreCase))).ToList())
        {
            start.Environment.Remove(name);
        }

        start.Environment.Remove("DOTNET_ENVIRONMENT");
        start.Environment["ASPNETCORE_ENVIRONMENT"] = environment;
        return start;
    }
}

/// <summary>A server process that keeps running; its standard output is collected line by line.</summary>
internal sealed class RunningServer : IAsyncDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _output = new();
    private readonly SemaphoreSlim _lines = new(0);
    private int _disposed;

    public RunningServer(Process process)
    {
        _process = process;
        _process.OutputDataReceived += (_, e) => Append(e.Data);
        _process.ErrorDataReceived += (_, e) => Append(e.Data);
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    public string Output
    {
        get
        {
            lock (_output)
            {
                return _output.ToString();
            }
        }
    }

    /// <summary>Waits until the output contains <paramref name="text"/>; fails the test after <paramref name="timeout"/> or when the process exits first.</summary>
    public async Task WaitForOutputAsync(string text, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (!Output.Contains(text, StringComparison.Ordinal))
        {
            if (_process.HasExited)
            {
                // The parameterless wait also waits for the redirected output to be read to its end.
                _process.WaitForExit();
                Assert.Contains(text, Output, StringComparison.Ordinal);
                return;
            }

            var left = deadline - DateTime.UtcNow;
            if (left <= TimeSpan.Zero)
            {
                Assert.Fail($"The server did not print '{text}' within {timeout.TotalSeconds} s. It printed:\n{Output}");
            }

            // Woken by each new line; the bound also notices an exit, which prints no line.
            await _lines.WaitAsync(left < TimeSpan.FromSeconds(1) ? left : TimeSpan.FromSeconds(1), TestContext.Current.CancellationToken);
        }
    }

    /// <summary>Kills the process (SIGKILL) if it still runs; a second call does nothing.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1)
        {
            return;
        }

        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30));
        }

        _process.Dispose();
        _lines.Dispose();
    }

    private void Append(string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (_output)
        {
            _output.AppendLine(line);
        }

        _lines.Release();
    }
}
