using Microsoft.Extensions.Logging;

namespace Parley.Client.Realtime;

/// <summary>
/// Cursor persistence (docs/client.md, "Cursors and persistence"): a cursor becomes a checkpoint once the app
/// consumed every event before it in the stream (<see cref="CursorReached"/> is called by the reader when it
/// reaches the cursor's place), saved with the positions consumed so far; saves are one at a time, the newest
/// wins, and a store that fails is logged and tried again with whatever checkpoint is due next.
/// </summary>
/// <remarks>
/// Concurrency, without a lock: the consumed positions belong to the app's event reader (one at a time:
/// <see cref="ParleyRealtime.ReadEventsAsync"/> enforces it; <see cref="Restore"/> runs before any event
/// exists). The checkpoint due passes from the reader to the saver through one atomic slot. Saves run on the
/// maintenance loop, and once more in <see cref="ParleyRealtime.DisposeAsync"/> after that loop ended.
/// </remarks>
internal sealed class Checkpointer(ICursorStore store, ILogger logger)
{
    private readonly Dictionary<Guid, long> _consumed = [];
    private DeliveryCheckpoint? _due;

    /// <summary>The newest checkpoint not saved yet.</summary>
    public DeliveryCheckpoint? Due => Volatile.Read(ref _due);

    /// <summary>The positions of the stored checkpoint, before the connection starts.</summary>
    public void Restore(IReadOnlyDictionary<Guid, long> positions)
    {
        foreach (var (conversationId, seq) in positions)
        {
            _consumed[conversationId] = seq;
        }
    }

    /// <summary>The reader consumed <paramref name="seq"/> of a conversation.</summary>
    public void Consumed(Guid conversationId, long seq)
    {
        if (seq > _consumed.GetValueOrDefault(conversationId))
        {
            _consumed[conversationId] = seq;
        }
    }

    /// <summary>A sync reset: the positions start over.</summary>
    public void Forget() => _consumed.Clear();

    /// <summary>The reader reached <paramref name="cursor"/>: every item before it was consumed, so it may be saved.</summary>
    public void CursorReached(string cursor) =>
        Volatile.Write(ref _due, new DeliveryCheckpoint(cursor, new Dictionary<Guid, long>(_consumed)));

    /// <summary>Saves the checkpoint due, if any; a failing store is logged (the connection goes on) and tried again on the next call.</summary>
    public async Task SaveDueAsync(CancellationToken cancellationToken)
    {
        if (Due is not { } checkpoint)
        {
            return;
        }

        try
        {
            await store.SaveAsync(checkpoint, cancellationToken);

            // A newer one that came meanwhile stays due.
            Interlocked.CompareExchange(ref _due, null, checkpoint);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // Saved by DisposeAsync instead.
        }
#pragma warning disable CA1031 // The store is the app's code: whatever it throws, keep the connection and retry with the next checkpoint.
        catch (Exception ex)
#pragma warning restore CA1031
        {
            ParleyRealtime.Log.CheckpointSaveFailed(logger, ex);
        }
    }
}
