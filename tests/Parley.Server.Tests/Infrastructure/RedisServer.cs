using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace Parley.Server.Tests.Infrastructure;

/// <summary>
/// A real <c>redis-server</c> (Debian's package) on a free loopback port, without persistence, owned by the test:
/// it can be stopped and started again on the same port (a restart loses every key, as a Redis without persistence
/// does). ./test.sh installs the package and sets PARLEY_TEST_REQUIRE_REDIS, so that a missing binary fails the run
/// there instead of skipping.
/// </summary>
internal sealed class RedisServer : IAsyncDisposable
{
    private const string Binary = "/usr/bin/redis-server";
    private readonly string _directory;
    private Process? _process;

    private RedisServer(int port)
    {
        Port = port;
        _directory = Directory.CreateTempSubdirectory("parley-redis-").FullName;
    }

    public int Port { get; }

    public string ConnectionString => $"127.0.0.1:{Port}";

    public static async Task<RedisServer> StartAsync()
    {
        var required = Environment.GetEnvironmentVariable("PARLEY_TEST_REQUIRE_REDIS") == "1";
        if (!File.Exists(Binary))
        {
            Assert.False(required, $"{Binary} is missing: ./test.sh installs Debian's redis-server package.");
            Assert.Skip($"{Binary} is not installed (./test.sh installs it).");
        }

        var server = new RedisServer(TestServerSettings.FreePort());
        await server.StartAgainAsync();
        return server;
    }

    /// <summary>Starts the server (again) on its port; returns once it accepts connections.</summary>
    public async Task StartAgainAsync()
    {
        var info = new ProcessStartInfo(Binary)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
            WorkingDirectory = _directory,
        };
        foreach (var argument in new[] { "--bind", "127.0.0.1", "--port", Port.ToString(System.Globalization.CultureInfo.InvariantCulture), "--save", "", "--appendonly", "no", "--dir", _directory })
        {
            info.ArgumentList.Add(argument);
        }

        _process = Process.Start(info) ?? throw new InvalidOperationException("redis-server did not start");
        // A safety net for a test whose clean-up failed before it got here: the server never outlives the test run.
        AppDomain.CurrentDomain.ProcessExit += KillOnExit;
        _process.OutputDataReceived += (_, _) => { };
        _process.ErrorDataReceived += (_, _) => { };
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while (true)
        {
            try
            {
                using var probe = new TcpClient();
                await probe.ConnectAsync(IPAddress.Loopback, Port);
                return;
            }
            catch (SocketException) when (DateTime.UtcNow < deadline && !_process.HasExited)
            {
                await Task.Delay(50);
            }
        }
    }

    /// <summary>Kills the server (no shutdown save: its data is gone).</summary>
    public async Task StopAsync()
    {
        AppDomain.CurrentDomain.ProcessExit -= KillOnExit;
        if (_process is { HasExited: false } process)
        {
            process.Kill();
            await process.WaitForExitAsync();
        }

        _process?.Dispose();
        _process = null;
    }

    /// <summary>
    /// Disposes what uses the server, then the server, even when the first fails: a redis-server left running would
    /// outlive the test run.
    /// </summary>
    public static async ValueTask DisposeAfterAsync(IAsyncDisposable? user, RedisServer? server)
    {
        try
        {
            if (user is not null)
            {
                await user.DisposeAsync();
            }
        }
        finally
        {
            if (server is not null)
            {
                await server.DisposeAsync();
            }
        }
    }

    private void KillOnExit(object? sender, EventArgs e)
    {
        try
        {
            _process?.Kill();
        }
        catch (InvalidOperationException)
        {
            // exited already
        }
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync();
        try
        {
            Directory.Delete(_directory, recursive: true);
        }
        catch (IOException)
        {
            // best effort
        }
    }
}
