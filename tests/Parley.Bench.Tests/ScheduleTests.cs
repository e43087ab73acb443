using System.Diagnostics;
using Parley.Bench.Scenarios;

namespace Parley.Bench.Tests;

[Trait("Store", "Independent")]
public sealed class ScheduleTests
{
    [Fact]
    public void IntendedSeconds_FixedRate_IsStartPlusIndexOverRate()
    {
        var schedule = new Schedule(new ScheduleSegment(0, 1000, 5000, Measured: true));

        Assert.Equal(0, schedule.IntendedSeconds(0));
        Assert.Equal(0.001, schedule.IntendedSeconds(1), 12);
        Assert.Equal(4.999, schedule.IntendedSeconds(4999), 12);
        Assert.Equal(4.999, schedule.LastIntendedSeconds, 12);
    }

    [Fact]
    public void IntendedTimestamp_IsIndependentOfWhenEarlierSendsHappened()
    {
        var schedule = new Schedule(new ScheduleSegment(0, 250, 1000, Measured: true));
        var start = 1_000_000L;

        Assert.Equal(start + 2 * Stopwatch.Frequency, schedule.IntendedTimestamp(start, 500));
    }

    [Fact]
    public void WarmupThenMeasured_SplitsTheMessagesAtTheWarmupsEnd()
    {
        var schedule = Schedule.WarmupThenMeasured(rate: 100, warmupSeconds: 5, durationSeconds: 30);

        Assert.Equal(3500, schedule.Count);
        Assert.False(schedule.IsMeasured(499));
        Assert.True(schedule.IsMeasured(500));
        Assert.Equal(5.0, schedule.IntendedSeconds(500), 12);
        Assert.Equal(34.99, schedule.IntendedSeconds(3499), 12);
    }

    [Fact]
    public void Segments_WithAGap_ContinueTheNumberingAndKeepTheirOwnStart()
    {
        var schedule = new Schedule(
            new ScheduleSegment(0, 10, 20, Measured: true),
            new ScheduleSegment(5, 20, 10, Measured: true, RecordLatency: false));

        Assert.Equal(30, schedule.Count);
        Assert.Equal(1, schedule.SegmentOf(20));
        Assert.Equal(20, schedule.FirstIndexOf(1));
        Assert.Equal(5.0, schedule.IntendedSeconds(20), 12);
        Assert.Equal(5.05, schedule.IntendedSeconds(21), 12);
    }

    [Theory]
    [InlineData(-1, 0)]
    [InlineData(0, 1)]
    [InlineData(0.0999, 1)]
    [InlineData(0.1, 2)]
    [InlineData(1.95, 20)]
    [InlineData(4.9, 20)]
    [InlineData(5, 21)]
    [InlineData(5.45, 30)]
    [InlineData(100, 30)]
    public void DueBy_CountsTheMessagesWhoseIntendedTimeHasCome(double elapsed, long due)
    {
        var schedule = new Schedule(
            new ScheduleSegment(0, 10, 20, Measured: true),
            new ScheduleSegment(5, 20, 10, Measured: true));

        Assert.Equal(due, schedule.DueBy(elapsed));
    }

    [Fact]
    public void Messages_RoundsRateTimesDuration()
    {
        Assert.Equal(1000, Schedule.Messages(333.4, 3));
        Assert.Equal(0, Schedule.Messages(100, 0));
    }

    [Fact]
    public async Task SendScheduler_FiresEveryMessageOnceInOrder()
    {
        var schedule = new Schedule(new ScheduleSegment(0, 20_000, 400, Measured: true), new ScheduleSegment(0.05, 20_000, 100, Measured: true));
        var fired = new List<long>();

        await SendScheduler.RunAsync(schedule, Stopwatch.GetTimestamp(), fired.Add, TestContext.Current.CancellationToken)
            .WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken);

        Assert.Equal(Enumerable.Range(0, 500).Select(i => (long)i), fired);
    }
}
