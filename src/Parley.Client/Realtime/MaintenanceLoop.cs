namespace Parley.Client.Realtime;

/// <summary>
/// The connection's housekeeping, one job at a time on one loop: acks (collected for <c>ackDelay</c> into one
/// cumulative ack per conversation, paced by the <see cref="AckPacer"/>), resends that are due, and checkpoint
/// saves (one at a time: they run nowhere else while the connection is open).
/// </summary>
/// <remarks>
/// Concurrency: one loop (<see cref="RunAsync"/>), woken by <c>wake</c> (consumption, a new socket, a retry
/// scheduled, a cursor reached) or by the next resend falling due. It has no state of its own.
/// </remarks>
internal sealed class MaintenanceLoop(Signal wake, AckPacer acks, Outbox outbox, Checkpointer checkpoints, TimeSpan ackDelay, TimeProvider time)
{
    public async Task RunAsync(CancellationToken stopping)
    {
        while (!stopping.IsCancellationRequested)
        {
            try
            {
                await wake.WaitAsync(outbox.UntilNextRetry(), time, stopping);
                if (acks.HasDue && outbox.IsConnected && ackDelay > TimeSpan.Zero)
                {
                    await Task.Delay(ackDelay, time, stopping);
                }
            }
            catch (OperationCanceledException) when (stopping.IsCancellationRequested)
            {
                return;
            }

            if (outbox.FlushAcks(acks))
            {
                // More conversations are due than this window allows: the rest after a pause (see AckPacer).
                try
                {
                    await Task.Delay(AckPacer.Window, time, stopping);
                }
                catch (OperationCanceledException) when (stopping.IsCancellationRequested)
                {
                    return;
                }

                wake.Set();
            }

            outbox.ResendDue();
            await checkpoints.SaveDueAsync(stopping);
        }
    }
}
