using Parley.Bench.Reporting;
using Parley.Bench.Scenarios;

namespace Parley.Bench.Tests;

/// <summary>Against a fake /proc: two PostgreSQL servers with their backends, and an unrelated process.</summary>
[Trait("Store", "Independent")]
public sealed class PostgresLocatorTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("parley-bench-proc-").FullName;
    private readonly string _proc;
    private readonly string _dataA;
    private readonly string _dataB;

    public PostgresLocatorTests()
    {
        _proc = Directory.CreateDirectory(Path.Combine(_root, "proc")).FullName;
        _dataA = Directory.CreateDirectory(Path.Combine(_root, "a")).FullName;
        _dataB = Directory.CreateDirectory(Path.Combine(_root, "b")).FullName;
        Process(1, "systemd", parent: 0);
        Process(100, "postgres", parent: 1, "/usr/lib/postgresql/15/bin/postgres", "-D", _dataA, "-p", "25432");
        Process(101, "postgres", parent: 100, "postgres: checkpointer");
        Process(102, "postgres", parent: 100, "postgres: postgres parley 127.0.0.1(5000) idle");
        Process(200, "postgres", parent: 1, "/usr/lib/postgresql/15/bin/postgres", "-D" + _dataB); // port from postgresql.conf
        Process(201, "postgres", parent: 200, "postgres: walwriter");
        Process(300, "dotnet", parent: 1, "dotnet", "Parley.Server.dll");
        File.WriteAllText(Path.Combine(_dataB, "postmaster.pid"), $"200\n{_dataB}\n1700000000\n5433\n/var/run/postgresql\n*\n");
    }

    public void Dispose() => Directory.Delete(_root, recursive: true);

    [Fact]
    public void Find_ByPort_TakesThatServersPostmaster_FromItsCommandLineOrItsPidFile()
    {
        Assert.Equal(100, PostgresLocator.Find(_proc, port: 25432, dataDirectory: null));
        Assert.Equal(200, PostgresLocator.Find(_proc, port: 5433, dataDirectory: null));
    }

    [Fact]
    public void Find_ByDataDirectory_TakesThatServersPostmaster()
    {
        Assert.Equal(100, PostgresLocator.Find(_proc, port: null, dataDirectory: _dataA + "/"));
        Assert.Equal(200, PostgresLocator.Find(_proc, port: null, dataDirectory: _dataB));
    }

    [Fact]
    public void Find_WithoutAChoice_AmongSeveralServers_FailsTheSetUp_NamingThem()
    {
        var e = Assert.Throws<SetupException>(() => PostgresLocator.Find(_proc, port: null, dataDirectory: null));

        Assert.Contains("100, 200", e.Message, StringComparison.Ordinal);
        Assert.Throws<SetupException>(() => PostgresLocator.Find(_proc, port: 5432, dataDirectory: null));
    }

    [Fact]
    public void WithChildren_MeasuresThePostmasterAndItsChildrenOnly()
    {
        var probe = ProcessProbe.WithChildren(PostgresLocator.Find(_proc, 25432, null), _proc);

        Assert.Equal([100, 101, 102], probe.CurrentPids());
        var sample = probe.Sample();
        Assert.Equal(3 * 4096L * 1024, sample.RssBytes);
        Assert.Equal(3 * 30 * 10.0, ProcessProbe.CpuBetween(sample with { CpuMs = new Dictionary<int, double>() }, sample));
    }

    private void Process(int pid, string comm, int parent, params string[] commandLine)
    {
        var directory = Directory.CreateDirectory(Path.Combine(_proc, pid.ToString(System.Globalization.CultureInfo.InvariantCulture))).FullName;
        File.WriteAllText(Path.Combine(directory, "comm"), comm + "\n");
        File.WriteAllText(Path.Combine(directory, "cmdline"), string.Join('\0', commandLine) + "\0");
        File.WriteAllText(Path.Combine(directory, "stat"), $"{pid} ({comm}) S {parent} {pid} {pid} 0 -1 4194560 5000 0 3 0 20 10 0 0 20 0 1 0 100 4000000 1024 0\n");
        File.WriteAllText(Path.Combine(directory, "status"), $"Name:\t{comm}\nVmRSS:\t    4096 kB\n");
    }
}
