using System.Globalization;

namespace Parley.Bench.Reporting;

/// <summary>One reading of a set of processes: summed RSS (and PSS where readable), CPU time per process.</summary>
internal sealed record ProcessSample(long Timestamp, long RssBytes, long? PssBytes, IReadOnlyDictionary<int, double> CpuMs);

/// <summary>
/// Reads the memory and CPU time of processes on this machine from /proc: <c>/proc/PID/status</c> (VmRSS),
/// <c>/proc/PID/smaps_rollup</c> (Pss) and <c>/proc/PID/stat</c> (utime + stime, in clock ticks of 1/100 s, the
/// USER_HZ of Linux on every common architecture). CPU over a window is the difference between two samples;
/// processes that end in between lose their share, and ones that start in between count from their start.
/// </summary>
internal sealed class ProcessProbe
{
    private const double TickMs = 10; // USER_HZ = 100

    private readonly IReadOnlyList<int> _pids;
    private readonly int? _parent;
    private readonly string _proc;

    /// <summary>Measures <paramref name="pids"/>.</summary>
    public ProcessProbe(IReadOnlyList<int> pids, string proc = "/proc")
    {
        _pids = pids;
        _proc = proc;
    }

    private ProcessProbe(int parent, string proc)
    {
        _pids = [parent];
        _parent = parent;
        _proc = proc;
    }

    /// <summary>Measures <paramref name="parent"/> and its children at each sample (a PostgreSQL postmaster and its backends).</summary>
    public static ProcessProbe WithChildren(int parent, string proc = "/proc") => new(parent, proc);

    public static bool Available => Directory.Exists("/proc/self");

    public IReadOnlyList<int> CurrentPids()
    {
        if (_parent is not { } parent)
        {
            return _pids;
        }

        // Children come and go (a PostgreSQL backend per client connection): they are found again at every sample.
        var found = new List<int>();
        foreach (var directory in Directory.EnumerateDirectories(_proc))
        {
            if (int.TryParse(Path.GetFileName(directory), NumberStyles.None, CultureInfo.InvariantCulture, out var pid)
                && (pid == parent || PostgresLocator.ParentOf(_proc, pid) == parent))
            {
                found.Add(pid);
            }
        }

        found.Sort();
        return found;
    }

    public ProcessSample Sample()
    {
        long rss = 0, pss = 0;
        var hasPss = false;
        var cpu = new Dictionary<int, double>();
        foreach (var pid in CurrentPids())
        {
            var directory = Path.Combine(_proc, pid.ToString(CultureInfo.InvariantCulture));
            var ticks = CpuTicks(TryRead(Path.Combine(directory, "stat")));
            if (ticks is null)
            {
                continue; // ended
            }

            cpu[pid] = ticks.Value * TickMs;
            rss += Kilobytes(TryRead(Path.Combine(directory, "status")), "VmRSS:") * 1024;
            var smaps = Kilobytes(TryRead(Path.Combine(directory, "smaps_rollup")), "Pss:");
            if (smaps > 0)
            {
                hasPss = true;
                pss += smaps * 1024;
            }
        }

        return new ProcessSample(System.Diagnostics.Stopwatch.GetTimestamp(), rss, hasPss ? pss : null, cpu);
    }

    /// <summary>CPU milliseconds between two samples: processes in <paramref name="after"/>, less what those in both had before.</summary>
    public static double CpuBetween(ProcessSample before, ProcessSample after)
    {
        ArgumentNullException.ThrowIfNull(before);
        ArgumentNullException.ThrowIfNull(after);
        double total = 0;
        foreach (var (pid, ms) in after.CpuMs)
        {
            total += ms - (before.CpuMs.TryGetValue(pid, out var earlier) ? earlier : 0);
        }

        return total;
    }

    /// <summary>utime + stime of a <c>/proc/PID/stat</c> line (fields 14 and 15; the command name may contain spaces and parentheses).</summary>
    public static long? CpuTicks(string? stat)
    {
        if (stat is null)
        {
            return null;
        }

        var close = stat.LastIndexOf(')');
        if (close < 0)
        {
            return null;
        }

        // After ") " come field 3 (state) onwards: utime is field 14, the 12th from there.
        var fields = stat[(close + 2)..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
        return fields.Length > 12
            && long.TryParse(fields[11], NumberStyles.None, CultureInfo.InvariantCulture, out var utime)
            && long.TryParse(fields[12], NumberStyles.None, CultureInfo.InvariantCulture, out var stime)
            ? utime + stime
            : null;
    }

    /// <summary>The kB value of a <c>Key:   123 kB</c> line.</summary>
    public static long Kilobytes(string? text, string key)
    {
        if (text is null)
        {
            return 0;
        }

        foreach (var line in text.AsSpan().EnumerateLines())
        {
            if (line.StartsWith(key, StringComparison.Ordinal))
            {
                var value = line[key.Length..].Trim();
                var space = value.IndexOf(' ');
                return long.TryParse(space < 0 ? value : value[..space], NumberStyles.None, CultureInfo.InvariantCulture, out var kb) ? kb : 0;
            }
        }

        return 0;
    }

    private static string? TryRead(string path)
    {
        try
        {
            return File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }
}
