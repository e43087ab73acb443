using System.Diagnostics;

namespace Parley.Bench.Scenarios;

/// <summary>
/// A stretch of sends at a fixed rate, starting <see cref="StartSeconds"/> after the run's start. Messages of a
/// <see cref="Measured"/> segment are counted in the result; their delivery latency is recorded unless
/// <see cref="RecordLatency"/> is false (messages sent to offline devices, whose latency is the time offline).
/// </summary>
internal sealed record ScheduleSegment(double StartSeconds, double Rate, long Count, bool Measured, bool RecordLatency = true);

/// <summary>
/// The open-loop plan: message i's intended send time is a pure function of i (segment start + k / rate), fixed
/// before the run, whatever happens to earlier sends. Latency is measured from this time, so a server (or a client)
/// that falls behind shows as latency instead of as a lower offered rate.
/// </summary>
internal sealed class Schedule
{
    private readonly ScheduleSegment[] _segments;
    private readonly long[] _firstIndex;

    public Schedule(params IReadOnlyList<ScheduleSegment> segments)
    {
        ArgumentNullException.ThrowIfNull(segments);
        _segments = [.. segments];
        _firstIndex = new long[_segments.Length + 1];
        for (var s = 0; s < _segments.Length; s++)
        {
            if (s > 0 && _segments[s].StartSeconds < _segments[s - 1].StartSeconds)
            {
                throw new ArgumentException("segments must be in time order", nameof(segments));
            }

            _firstIndex[s + 1] = _firstIndex[s] + _segments[s].Count;
        }
    }

    /// <summary>A warm-up (not measured) followed by the measured window, both at <paramref name="rate"/>.</summary>
    public static Schedule WarmupThenMeasured(double rate, double warmupSeconds, double durationSeconds) =>
        new(
            new ScheduleSegment(0, rate, Messages(rate, warmupSeconds), Measured: false),
            new ScheduleSegment(warmupSeconds, rate, Messages(rate, durationSeconds), Measured: true));

    /// <summary>How many sends <paramref name="seconds"/> at <paramref name="rate"/> hold (rounded to whole messages).</summary>
    public static long Messages(double rate, double seconds) => (long)Math.Round(rate * seconds);

    public long Count => _firstIndex[^1];

    public IReadOnlyList<ScheduleSegment> Segments => _segments;

    public long FirstIndexOf(int segment) => _firstIndex[segment];

    public int SegmentOf(long index)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(index, Count);
        var s = 0;
        while (index >= _firstIndex[s + 1])
        {
            s++;
        }

        return s;
    }

    public bool IsMeasured(long index) => _segments[SegmentOf(index)].Measured;

    /// <summary>Seconds from the run's start to message <paramref name="index"/>'s intended send time.</summary>
    public double IntendedSeconds(long index)
    {
        var s = SegmentOf(index);
        return _segments[s].StartSeconds + (index - _firstIndex[s]) / _segments[s].Rate;
    }

    /// <summary>The intended send time of message <paramref name="index"/> as a <see cref="Stopwatch"/> timestamp.</summary>
    public long IntendedTimestamp(long start, long index) => start + (long)(IntendedSeconds(index) * Stopwatch.Frequency);

    /// <summary>How many messages are due <paramref name="elapsedSeconds"/> after the start (intended time ≤ elapsed).</summary>
    public long DueBy(double elapsedSeconds)
    {
        long due = 0;
        for (var s = 0; s < _segments.Length; s++)
        {
            var segment = _segments[s];
            if (elapsedSeconds < segment.StartSeconds)
            {
                break;
            }

            // k / rate ≤ elapsed - start  ⇔  k ≤ (elapsed - start) · rate; +1 for k = 0.
            var inSegment = (long)Math.Floor((elapsedSeconds - segment.StartSeconds) * segment.Rate + 1e-9) + 1;
            due = _firstIndex[s] + Math.Min(segment.Count, inSegment);
        }

        return due;
    }

    /// <summary>Seconds from the start at which the last message is due (0 without messages).</summary>
    public double LastIntendedSeconds => Count == 0 ? 0 : IntendedSeconds(Count - 1);
}
