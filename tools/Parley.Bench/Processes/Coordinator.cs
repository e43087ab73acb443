using System.Diagnostics;
using System.Globalization;

namespace Parley.Bench.Processes;

/// <summary>
/// Agrees on the start time of a run. A single process starts shortly after its set-up; a child reports
/// <see cref="ReadyLine"/> on standard output and waits for <c>GO &lt;timestamp&gt;</c> on standard input, the
/// parent's <see cref="Stopwatch"/> timestamp: on Linux that is CLOCK_MONOTONIC, the same clock in every process
/// of the machine, so every child's intended send times line up.
/// </summary>
internal static class Coordinator
{
    public const string ReadyLine = "PARLEY_BENCH_READY";
    public const string GoPrefix = "GO ";

    public static long StandaloneStart() => Stopwatch.GetTimestamp() + Stopwatch.Frequency / 5;

    public static async Task<long> WaitForGoAsync(TextReader input, TextWriter output, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(output);
        await output.WriteLineAsync(ReadyLine);
        await output.FlushAsync(cancellationToken);
        while (await input.ReadLineAsync(cancellationToken) is { } line)
        {
            if (line.StartsWith(GoPrefix, StringComparison.Ordinal)
                && long.TryParse(line.AsSpan(GoPrefix.Length), NumberStyles.None, CultureInfo.InvariantCulture, out var start))
            {
                return start;
            }
        }

        throw new InvalidOperationException("the parent process went away before the start");
    }

    public static string GoLine(long start) => GoPrefix + start.ToString(CultureInfo.InvariantCulture);
}
