using System.Diagnostics;
using Npgsql;

namespace Parley.Server.Tests.Infrastructure;

/// <summary>
/// A throwaway PostgreSQL cluster of one test's own (initdb in a temp directory, a free loopback port), which
/// the test may stop and start: outages are tested without disturbing the shared server of the test command.
/// </summary>
internal sealed class PostgresCluster : IAsyncDisposable
{
    private readonly string _bin;
    private readonly string _data;

    private PostgresCluster(string bin, string data, int port)
    {
        _bin = bin;
        _data = data;
        Port = port;
    }

    public int Port { get; }

    public string ConnectionString(string database) =>
        $"Host=127.0.0.1;Port={Port};Username=postgres;Database={database};Maximum Pool Size=10";

    /// <summary>Creates and starts a cluster; skips the test when PostgreSQL's binaries are not installed.</summary>
    public static async Task<PostgresCluster> StartNewAsync()
    {
        var bin = Environment.GetEnvironmentVariable("PARLEY_TEST_PGBIN");
        if (string.IsNullOrEmpty(bin) && Directory.Exists("/usr/lib/postgresql"))
        {
            bin = Directory.GetDirectories("/usr/lib/postgresql").Select(d => Path.Combine(d, "bin"))
                .Where(d => File.Exists(Path.Combine(d, "initdb"))).OrderBy(d => d, StringComparer.Ordinal).LastOrDefault();
        }

        Assert.SkipWhen(string.IsNullOrEmpty(bin), "PostgreSQL is not installed: run ./test.sh, which installs it.");
        var data = Path.Combine(Path.GetTempPath(), "parley-pg-" + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(data);
        if (IsRoot)
        {
            await RunAsync("chown", ["postgres:postgres", data]);
        }

        var cluster = new PostgresCluster(bin!, data, TestServerSettings.FreePort());
        await cluster.RunPgAsync("initdb", "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync");
        await cluster.StartAsync();
        return cluster;
    }

    public Task StartAsync() => RunPgAsync(
        "pg_ctl", "-D", _data, "-l", Path.Combine(_data, "server.log"), "-w", "-t", "60",
        // fsync off is safe here (the machine does not crash, only PostgreSQL is stopped); synchronous_commit stays on,
        // or commits acknowledged just before an immediate stop would be lost with the WAL buffers.
        "-o", $"-c listen_addresses=127.0.0.1 -p {Port} -k {_data} -c fsync=off -c max_connections=50",
        "start");

    /// <summary>Stops the server at once (like a crash: no checkpoint, connections cut).</summary>
    public Task StopAsync() => RunPgAsync("pg_ctl", "-D", _data, "-m", "immediate", "-w", "stop");

    public async Task CreateDatabaseAsync(string name)
    {
        await using var connection = new NpgsqlConnection(ConnectionString("postgres"));
        await connection.OpenAsync(TestContext.Current.CancellationToken);
        await using var command = new NpgsqlCommand($"CREATE DATABASE {name}", connection);
        await command.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
    }

    public async ValueTask DisposeAsync()
    {
        NpgsqlConnection.ClearAllPools();
        try
        {
            await StopAsync();
        }
        catch (InvalidOperationException)
        {
            // Already stopped.
        }

        try
        {
            Directory.Delete(_data, recursive: true);
        }
        catch (IOException)
        {
            // A leftover temp directory is harmless.
        }
    }

    private static bool IsRoot => Environment.UserName == "root";

    private Task RunPgAsync(string tool, params string[] args) =>
        IsRoot ? RunAsync("runuser", ["-u", "postgres", "--", Path.Combine(_bin, tool), .. args]) : RunAsync(Path.Combine(_bin, tool), args);

    private static async Task RunAsync(string file, string[] args)
    {
        var start = new ProcessStartInfo(file)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        using var process = Process.Start(start)!;
        process.StandardInput.Close();
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(90));
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{file} {string.Join(' ', args)} exited with {process.ExitCode}: {await output} {await error}");
        }
    }
}
