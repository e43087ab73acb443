using System.Diagnostics;
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
    public void CurrentPids_WithChildren_FindsThisProcessAndAChildItStarted()
    {
        Assert.SkipUnless(ProcessProbe.Available, "/proc is not available");
        using var child = Process.Start(new ProcessStartInfo("sleep", "30") { UseShellExecute = false })!;
        try
        {
            var pids = ProcessProbe.WithChildren(Environment.ProcessId).CurrentPids();

            Assert.Contains(Environment.ProcessId, pids);
            Assert.Contains(child.Id, pids);
        }
        finally
        {
            child.Kill();
            child.WaitForExit(TimeSpan.FromSeconds(10));
        }
    }

    [Fact]
    public void CpuBetween_OfThisProcess_AgreesWithTotalProcessorTime_AcrossABusyLoop()
    {
        Assert.SkipUnless(ProcessProbe.Available, "/proc is not available");
        var probe = new ProcessProbe([Environment.ProcessId]);
        using var self = Process.GetCurrentProcess();

        // Other tests may run in this process meanwhile: the probe's samples are bracketed by TotalProcessorTime
        // readings, so its CPU lies between what the inner and the outer readings saw (less or more 2 ticks of /proc).
        var outerBefore = Cpu(self);
        var before = probe.Sample();
        var innerBefore = Cpu(self);
        var spin = Stopwatch.StartNew();
        double sink = 0;
        while (Cpu(self) - innerBefore < TimeSpan.FromMilliseconds(300) && spin.Elapsed < TimeSpan.FromSeconds(30))
        {
            for (var i = 0; i < 100_000; i++)
            {
                sink += Math.Sqrt(i);
            }
        }

        var innerAfter = Cpu(self);
        var after = probe.Sample();
        var outerAfter = Cpu(self);

        var measured = ProcessProbe.CpuBetween(before, after);
        Assert.True(sink > 0);
        Assert.InRange(measured, (innerAfter - innerBefore).TotalMilliseconds - 20, (outerAfter - outerBefore).TotalMilliseconds + 20);
        Assert.True(measured >= 250, $"{measured} ms");
    }

    private static TimeSpan Cpu(Process process)
    {
        process.Refresh();
        return process.TotalProcessorTime;
    }
}
