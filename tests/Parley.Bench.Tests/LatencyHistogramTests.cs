using Parley.Bench.Reporting;

namespace Parley.Bench.Tests;

[Trait("Store", "Independent")]
public sealed class LatencyHistogramTests
{
    [Fact]
    public void Merge_OfEncodedHistogramsFromTwoProcesses_HasThePercentilesOfAllSamples()
    {
        // One process saw only fast deliveries, the other only slow ones: the merged p50 lies between them,
        // which no combination of the two processes' own percentiles gives.
        var fast = new LatencyHistogram();
        var slow = new LatencyHistogram();
        var all = new LatencyHistogram();
        for (var i = 1; i <= 900; i++)
        {
            fast.RecordMicroseconds(i * 10);
            all.RecordMicroseconds(i * 10);
        }

        for (var i = 1; i <= 100; i++)
        {
            slow.RecordMicroseconds(100_000 + i * 1000);
            all.RecordMicroseconds(100_000 + i * 1000);
        }

        var merged = LatencyHistogram.Merge([LatencyHistogram.Decode(LatencyHistogram.Encode(fast.Snapshot())), LatencyHistogram.Decode(LatencyHistogram.Encode(slow.Snapshot()))]);

        Assert.Equal(LatencyHistogram.Summarize(all.Snapshot()), LatencyHistogram.Summarize(merged));
        var summary = LatencyHistogram.Summarize(merged)!;
        Assert.Equal(1000, summary.Count);
        Assert.InRange(summary.P50, 4.99, 5.01);
        Assert.InRange(summary.P95, 150, 151);
        Assert.InRange(summary.Max, 199.9, 200.1);
    }

    [Fact]
    public void EncodeDecode_RoundTripsEveryCount()
    {
        var histogram = new LatencyHistogram();
        histogram.RecordMicroseconds(1);
        histogram.RecordMicroseconds(1500);
        histogram.RecordMicroseconds(LatencyHistogram.HighestMicroseconds);

        var decoded = LatencyHistogram.Decode(LatencyHistogram.Encode(histogram.Snapshot()));

        Assert.Equal(3, decoded.TotalCount);
        Assert.Equal(1, decoded.GetCountAtValue(1500));
    }

    [Fact]
    public void Record_OutOfRangeValues_AreClampedNotLost()
    {
        var histogram = new LatencyHistogram();
        histogram.RecordMicroseconds(-5);
        histogram.RecordMicroseconds(long.MaxValue);

        Assert.Equal(2, histogram.Count);
    }

    [Fact]
    public void Summarize_Empty_IsNull() => Assert.Null(LatencyHistogram.Summarize(LatencyHistogram.Empty()));
}
