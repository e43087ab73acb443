using System.Diagnostics;
using HdrHistogram;
using HdrHistogram.Utilities;

namespace Parley.Bench.Reporting;

/// <summary>
/// Latencies in microseconds (1 µs to 1 h, 3 significant digits) in an HdrHistogram that many receive loops record
/// into at once. Child processes send theirs to the parent in HdrHistogram's compressed encoding (base64), and
/// the parent adds them: percentiles of the merged histogram are the percentiles of all samples, which averaging
/// the children's percentiles would not be.
/// </summary>
internal sealed class LatencyHistogram
{
    public const long HighestMicroseconds = 3_600_000_000;
    public const int SignificantDigits = 3;

    private readonly LongConcurrentHistogram _histogram = new(1, HighestMicroseconds, SignificantDigits);

    public long Count => _histogram.TotalCount;

    public void RecordTicks(long stopwatchTicks) => RecordMicroseconds(stopwatchTicks * 1_000_000 / Stopwatch.Frequency);

    public void RecordMicroseconds(long microseconds) => _histogram.RecordValue(Math.Clamp(microseconds, 1, HighestMicroseconds));

    /// <summary>A copy to read percentiles from while recording goes on.</summary>
    public HistogramBase Snapshot() => _histogram.Copy();

    public static HistogramBase Empty() => new LongHistogram(1, HighestMicroseconds, SignificantDigits);

    public static HistogramBase Merge(IEnumerable<HistogramBase> histograms)
    {
        ArgumentNullException.ThrowIfNull(histograms);
        var merged = Empty();
        foreach (var histogram in histograms)
        {
            merged.Add(histogram);
        }

        return merged;
    }

    /// <summary>HdrHistogram's compressed V2 encoding, base64.</summary>
    public static string Encode(HistogramBase histogram)
    {
        ArgumentNullException.ThrowIfNull(histogram);
        var buffer = ByteBuffer.Allocate(histogram.GetNeededByteBufferCapacity() + 64);
        var length = HistogramEncoding.EncodeIntoCompressedByteBuffer(histogram, buffer);
        buffer.Position = 0;
        var bytes = new byte[length];
        for (var i = 0; i < length; i++)
        {
            bytes[i] = buffer.Get();
        }

        return Convert.ToBase64String(bytes);
    }

    public static HistogramBase Decode(string base64)
    {
        var bytes = Convert.FromBase64String(base64);
        return HistogramEncoding.DecodeFromCompressedByteBuffer(ByteBuffer.Allocate(bytes), HighestMicroseconds);
    }

    /// <summary>Percentiles in milliseconds; null when nothing was recorded.</summary>
    public static LatencySummary? Summarize(HistogramBase histogram)
    {
        ArgumentNullException.ThrowIfNull(histogram);
        if (histogram.TotalCount == 0)
        {
            return null;
        }

        static double Ms(long microseconds) => Math.Round(microseconds / 1000.0, 3);
        return new LatencySummary(
            histogram.TotalCount,
            Ms(histogram.GetValueAtPercentile(50)),
            Ms(histogram.GetValueAtPercentile(95)),
            Ms(histogram.GetValueAtPercentile(99)),
            Ms(histogram.GetValueAtPercentile(99.9)),
            Ms(histogram.GetMaxValue()),
            Math.Round(histogram.GetMean() / 1000.0, 3));
    }
}

/// <summary>Latency percentiles in milliseconds.</summary>
internal sealed record LatencySummary(
    long Count, double P50, double P95, double P99, [property: System.Text.Json.Serialization.JsonPropertyName("p99_9")] double P999, double Max, double Mean);
