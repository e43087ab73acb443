using System.Diagnostics;

namespace Parley.Bench.Scenarios;

/// <summary>
/// Fires the sends of a <see cref="Schedule"/> at their intended times from one dedicated thread: it wakes at least
/// every millisecond, fires every message that has come due (several at once when it woke late), and never waits
/// for an answer. One timer loop instead of one delay per message; firing only queues work (a socket's send queue,
/// the REST workers' queue), so a slow socket cannot hold it up. Recorded latency includes the up to ~1 ms a send
/// may wait for the loop's next wake-up.
/// </summary>
internal static class SendScheduler
{
    public static Task RunAsync(Schedule schedule, long start, Action<long> fire, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(schedule);
        ArgumentNullException.ThrowIfNull(fire);
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var thread = new Thread(() =>
        {
            try
            {
                Run(schedule, start, fire, cancellationToken);
                done.TrySetResult();
            }
            catch (OperationCanceledException e)
            {
                done.TrySetCanceled(e.CancellationToken);
            }
            catch (Exception e)
            {
                done.TrySetException(e);
            }
        })
        {
            IsBackground = true,
            Name = "parley-bench scheduler",
            Priority = ThreadPriority.AboveNormal,
        };
        thread.Start();
        return done.Task;
    }

    private static void Run(Schedule schedule, long start, Action<long> fire, CancellationToken cancellationToken)
    {
        long next = 0;
        while (next < schedule.Count)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var elapsed = Stopwatch.GetElapsedTime(start).TotalSeconds;
            var due = schedule.DueBy(elapsed);
            for (; next < due; next++)
            {
                fire(next);
            }

            if (next >= schedule.Count)
            {
                break;
            }

            var wait = schedule.IntendedSeconds(next) - Stopwatch.GetElapsedTime(start).TotalSeconds;
            Thread.Sleep(wait > 0.002 ? TimeSpan.FromSeconds(Math.Min(wait - 0.001, 0.05)) : TimeSpan.FromMilliseconds(1));
        }
    }
}
