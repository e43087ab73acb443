using Parley.Bench.Reporting;

namespace Parley.Bench.Tests;

[Trait("Store", "Independent")]
public sealed class ProcessProbeTests
{
    [Fact]
    public void CpuTicks_AddsUserAndSystemTime_EvenWithSpacesAndParenthesesInTheName()
    {
        const string stat = "4242 (dotnet (x) y) S 1 4242 4242 0 -1 4194560 5000 0 3 0 1234 567 0 0 20 0 30 0 100 4000000 2500 18446744073709551615";

        Assert.Equal(1234 + 567, ProcessProbe.CpuTicks(stat));
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("4242 (dotnet) S 1")]
    public void CpuTicks_Unreadable_IsNull(string? stat) => Assert.Null(ProcessProbe.CpuTicks(stat));

    [Fact]
    public void Kilobytes_ReadsTheKeysLine()
    {
        const string status = "Name:\tdotnet\nVmPeak:\t  900000 kB\nVmRSS:\t  123456 kB\nThreads:\t30\n";

        Assert.Equal(123456, ProcessProbe.Kilobytes(status, "VmRSS:"));
        Assert.Equal(0, ProcessProbe.Kilobytes(status, "Pss:"));
    }

    [Fact]
    public void CpuBetween_CountsProcessesPresentAtTheEnd()
    {
        var before = new ProcessSample(0, 0, null, new Dictionary<int, double> { [1] = 100, [2] = 50 });
        var after = new ProcessSample(1, 0, null, new Dictionary<int, double> { [1] = 130, [3] = 20 });

        Assert.Equal(30 + 20, ProcessProbe.CpuBetween(before, after));
    }

    [Fact]
    public void Sample_OfThisProcess_HasItsMemoryAndCpu()
    {
        Assert.SkipUnless(ProcessProbe.Available, "/proc is not available");
        var probe = new ProcessProbe([Environment.ProcessId]);

        var sample = probe.Sample();

        Assert.True(sample.RssBytes > 1_000_000);
        Assert.True(sample.CpuMs[Environment.ProcessId] > 0);
    }

    [Fact]
    public void CurrentPids_ByName_FindsThisProcess()
    {
        Assert.SkipUnless(ProcessProbe.Available, "/proc is not available");
        var name = File.ReadAllText("/proc/self/comm").Trim();

        Assert.Contains(Environment.ProcessId, new ProcessProbe([], name).CurrentPids());
    }
}
