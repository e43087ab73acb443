using System.Runtime.InteropServices;

namespace Parley.Server.Observability;

/// <summary>
/// The CPU time the calling thread has used (user and kernel), where the platform tells it cheaply: 64-bit Linux
/// (<c>clock_gettime(CLOCK_THREAD_CPUTIME_ID)</c>). Elsewhere <see cref="IsSupported"/> is false and nothing is read.
/// </summary>
internal static partial class ThreadCpuClock
{
    private const int ClockThreadCpuTimeId = 3;

    public static bool IsSupported { get; } = OperatingSystem.IsLinux() && Environment.Is64BitProcess;

    /// <summary>The calling thread's CPU time so far; <see cref="TimeSpan.Zero"/> where not supported or the call failed.</summary>
    public static TimeSpan Now()
    {
        if (!IsSupported || clock_gettime(ClockThreadCpuTimeId, out var time) != 0)
        {
            return TimeSpan.Zero;
        }

        return TimeSpan.FromTicks((time.Seconds * TimeSpan.TicksPerSecond) + (time.Nanoseconds / 100));
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct Timespec
    {
        public long Seconds;
        public long Nanoseconds;
    }

    [LibraryImport("libc", EntryPoint = "clock_gettime")]
    private static partial int clock_gettime(int clock, out Timespec time);
}
