using System.Diagnostics;
using System.Net;
using System.Text;

namespace Parley.Server.Tests.Infrastructure;

/// <summary>
/// The server as a child process (the built Parley.Server.dll beside the tests) on a fixed loopback port, so it
/// can be killed with SIGKILL and started again on the same data, as a crash and a restart would.
/// </summary>
internal sealed class ServerProcess : IAsyncDisposable
{
    private readonly Dictionary<string, string> _settings;
    private readonly StringBuilder _log = new();
    private Process? _process;

    public ServerProcess(Dictionary<string, string> settings)
    {
        _settings = settings;
        Port = TestServerSettings.FreePort();
    }

    public int Port { get; }

    public Uri Address => new($"http://127.0.0.1:{Port}/");

    public int Starts { get; private set; }

    /// <summary>The last lines the server printed (for failure messages).</summary>
    public string LogTail
    {
        get
        {
            lock (_log)
            {
                return _log.Length > 4000 ? _log.ToString(_log.Length - 4000, 4000) : _log.ToString();
            }
        }
    }

    /// <summary>Starts the server and waits until /ready answers 200.</summary>
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        var start = new ProcessStartInfo(Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "Parley.Server.dll"));
        start.ArgumentList.Add("--urls");
        start.ArgumentList.Add(Address.ToString().TrimEnd('/'));
        foreach (var (key, value) in _settings)
        {
            start.ArgumentList.Add($"--{key}={value}");
        }

        start.Environment["ASPNETCORE_ENVIRONMENT"] = "Production";
        _process = Process.Start(start)!;
        _process.OutputDataReceived += (_, e) => Append(e.Data);
        _process.ErrorDataReceived += (_, e) => Append(e.Data);
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
        Starts++;

        using var http = new HttpClient { BaseAddress = Address, Timeout = TimeSpan.FromSeconds(2) };
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (DateTime.UtcNow < deadline)
        {
            if (_process.HasExited)
            {
                throw new InvalidOperationException($"The server exited with {_process.ExitCode}: {LogTail}");
            }

            try
            {
                if ((await http.GetAsync(new Uri("ready", UriKind.Relative), cancellationToken)).StatusCode == HttpStatusCode.OK)
                {
                    return;
                }
            }
            catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException)
            {
                // Not listening yet.
            }

            await Task.Delay(50, cancellationToken);
        }

        throw new TimeoutException("The server did not become ready within 60 s: " + LogTail);
    }

    /// <summary>SIGKILL: no shutdown, no flush beyond what was committed.</summary>
    public async Task KillAsync()
    {
        if (_process is { HasExited: false } process)
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30));
        }

        _process?.Dispose();
        _process = null;
    }

    /// <summary>SIGSTOP, then SIGCONT after <paramref name="duration"/>: the process stands still (a long pause, a starved host) and goes on.</summary>
    public async Task FreezeAsync(TimeSpan duration, CancellationToken cancellationToken)
    {
        var process = _process ?? throw new InvalidOperationException("The server is not running.");
        await SignalAsync("STOP", process.Id);
        try
        {
            await Task.Delay(duration, cancellationToken);
        }
        finally
        {
            await SignalAsync("CONT", process.Id);
        }
    }

    public async ValueTask DisposeAsync() => await KillAsync();

    private static async Task SignalAsync(string signal, int processId)
    {
        using var kill = Process.Start("kill", ["-" + signal, processId.ToString(System.Globalization.CultureInfo.InvariantCulture)])!;
        await kill.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10));
    }

    private void Append(string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (_log)
        {
            _log.AppendLine(line);
            if (_log.Length > 200_000)
            {
                _log.Remove(0, 100_000);
            }
        }
    }
}
