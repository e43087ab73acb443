using Parley.Bench.Client;

namespace Parley.Bench.Scenarios;

/// <summary>
/// What Parley's clients do with <c>acks=true</c>: each connected device acknowledges (cumulative <c>ack</c>) what it holds
/// of each conversation without a gap, if that moved, once per interval; the server replies with cursor frames. The
/// devices' turns are spread over the interval (at most <see cref="MaxPhases"/> turns, on ticks of whole milliseconds),
/// as independent clients' would be: all of them at one tick would be a burst no real deployment sees.
/// </summary>
internal static class Acknowledger
{
    public const int MaxPhases = 25;

    public static async Task RunAsync(IReadOnlyList<Device> devices, TimeSpan interval, CancellationToken cancellationToken)
    {
        var (tickMs, phases) = Ticks((long)Math.Round(interval.TotalMilliseconds));
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(tickMs));
        var tick = 0L;
        try
        {
            while (await timer.WaitForNextTickAsync(cancellationToken))
            {
                var phase = (int)(tick++ % phases);
                for (var i = phase; i < devices.Count; i += phases)
                {
                    if (devices[i].Connection is not { } connection)
                    {
                        continue;
                    }

                    for (var slot = 0; slot < devices[i].ConversationCount; slot++)
                    {
                        var seq = devices[i].TakeAck(slot);
                        if (seq > 0)
                        {
                            connection.Enqueue(new Outbound(OutboundKind.Ack, seq, slot));
                        }
                    }
                }
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // The run is over.
        }
    }

    /// <summary>The tick (whole milliseconds, at least 1) and the number of turns that make up <paramref name="intervalMs"/>.</summary>
    internal static (long TickMs, int Phases) Ticks(long intervalMs)
    {
        var tick = Math.Max(1, intervalMs / MaxPhases);
        return (tick, (int)Math.Max(1, Math.Round((double)intervalMs / tick)));
    }
}
