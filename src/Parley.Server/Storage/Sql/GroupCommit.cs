using System.Threading.Channels;

namespace Parley.Server.Storage.Sql;

/// <summary>
/// A write waiting for its batch (<see cref="GroupCommit"/>): it runs inside the batch's transaction and learns its
/// outcome only after that transaction committed.
/// </summary>
internal abstract class PendingWrite
{
    /// <summary>The conversation the write changes; it chooses the lane (<see cref="GroupCommit.LaneOf"/>).</summary>
    public abstract Guid ConversationId { get; }

    /// <summary>
    /// Every conversation the write changes, all on <see cref="ConversationId"/>'s lane; the batch locks them (with
    /// the others) before any write runs.
    /// </summary>
    public virtual IEnumerable<Guid> Conversations => [ConversationId];

    /// <summary>
    /// Whether the write's first statement locks <see cref="ConversationId"/>, its only conversation, by itself (a
    /// send reads the conversation's row with its lock): a batch of this write alone then needs no lock statement.
    /// </summary>
    public virtual bool LocksItsConversation => false;

    /// <summary>
    /// Reads, asks the rules, and writes, in the batch's transaction. A write the rules reject must have written
    /// nothing: the batch commits the others. Runs again (in a batch of its own) when its batch failed.
    /// </summary>
    public abstract Task RunAsync(SqlSession session);

    /// <summary>The batch committed: hand the outcome of <see cref="RunAsync"/> to the waiting caller.</summary>
    public abstract void Complete();

    public abstract void Fail(Exception exception);
}

/// <summary>
/// Group commit: writes that arrive while a transaction is being written wait for it and then share the next
/// one, so a busy store pays one transaction (and one fsync) per batch instead of one per write, while an idle
/// store commits a lone write at once (no timer: the batch is whatever queued during the previous commit).
/// Every write is still acknowledged only after the commit that holds it.
/// <para>
/// Writes queue on one of several lanes, chosen by conversation, so a conversation's writes commit in the order
/// they were queued; each lane commits one batch at a time. Lanes are bounded: when the store cannot keep up,
/// queuing waits (back-pressure on the callers) instead of growing memory. When a batch fails, each of its writes
/// runs again in a batch of its own, so one bad write fails alone; writes alone that time out
/// (<see cref="StorageErrors.IsSlowFailure"/>) end that after the second, failing the rest at once.
/// </para>
/// </summary>
internal sealed class GroupCommit
{
    /// <summary>Most writes in one transaction: bounds the time a batch holds its conversations' locks.</summary>
    public const int MaxBatch = 128;

    private readonly Channel<PendingWrite>[] _lanes;
    private readonly Task[] _loops;
    private readonly Func<IReadOnlyList<PendingWrite>, Task> _commit;

    /// <param name="lanes">Batches committed at the same time (1 for a single-writer database).</param>
    /// <param name="capacity">Writes a lane may hold before queuing waits.</param>
    /// <param name="commit">Runs the writes of a batch in one transaction and commits it, or throws.</param>
    public GroupCommit(int lanes, int capacity, Func<IReadOnlyList<PendingWrite>, Task> commit)
    {
        _commit = commit;
        _lanes = new Channel<PendingWrite>[lanes];
        _loops = new Task[lanes];
        for (var i = 0; i < lanes; i++)
        {
            var lane = Channel.CreateBounded<PendingWrite>(new BoundedChannelOptions(capacity) { SingleReader = true });
            _lanes[i] = lane;
            _loops[i] = Task.Run(() => RunLaneAsync(lane.Reader));
        }
    }

    /// <summary>
    /// Queues <paramref name="write"/>; its outcome arrives through the write itself. After <see cref="DrainAsync"/>
    /// began: <see cref="StoreStoppedException"/>.
    /// </summary>
    public async ValueTask EnqueueAsync(PendingWrite write, CancellationToken cancellationToken)
    {
        try
        {
            await _lanes[LaneOf(write.ConversationId)].Writer.WriteAsync(write, cancellationToken);
        }
        catch (ChannelClosedException)
        {
            throw new StoreStoppedException();
        }
    }

    /// <summary>The lane that commits the writes of <paramref name="conversationId"/>.</summary>
    public int LaneOf(Guid conversationId) => (int)((uint)conversationId.GetHashCode() % (uint)_lanes.Length);

    /// <summary>Stops taking writes and waits until the queued ones were committed.</summary>
    public async Task DrainAsync()
    {
        foreach (var lane in _lanes)
        {
            lane.Writer.TryComplete();
        }

        await Task.WhenAll(_loops);
    }

    private async Task RunLaneAsync(ChannelReader<PendingWrite> reader)
    {
        var batch = new List<PendingWrite>(MaxBatch);
        while (await reader.WaitToReadAsync())
        {
            while (batch.Count < MaxBatch && reader.TryRead(out var write))
            {
                batch.Add(write);
            }

            await CommitAsync(batch);
            batch.Clear();
        }
    }

    private async Task CommitAsync(List<PendingWrite> batch)
    {
        try
        {
            await _commit(batch);
            foreach (var write in batch)
            {
                write.Complete();
            }

            return;
        }
        catch (Exception ex) when ((batch.Count == 1 && ex is not CommitRolledBackException) || ex is CommitOutcomeUnknownException or BatchNotStartedException)
        {
            // Alone; or the commit itself failed and may have been applied (running the writes again could apply them
            // twice); or the transaction could not even start (the database unreachable): no write ran, and one at a time
            // each would wait for the same connection timeout again while the lane and its callers wait behind them.
            foreach (var write in batch)
            {
                write.Fail(Unwrap(ex));
            }

            return;
        }
        catch (CommitRolledBackException) when (batch.Count == 1)
        {
            // Its COMMIT failed and the database says it rolled back (the connection broke before it committed):
            // nothing was written, so the write runs once more, below.
        }
        catch (Exception)
        {
            // One of them (or the database) failed: the transaction rolled back; find out which, one at a time.
        }

        // A batch that failed on a timeout is split too (one conversation's row locked elsewhere holds up only its own
        // write), but each write alone that also times out makes it likelier that all would: after the second, the rest
        // fail at once. A table locked elsewhere then holds the lane for three timeouts, not for one per write (129).
        var slowFailures = 0;
        Exception? unavailable = null;
        foreach (var write in batch)
        {
            if (unavailable is not null)
            {
                // The database went away while the batch was being split: the rest fail at once, as a whole batch would.
                write.Fail(unavailable);
                continue;
            }

            try
            {
                await _commit([write]);
                write.Complete();
            }
            catch (Exception ex)
            {
                var error = Unwrap(ex);
                write.Fail(error);
                if (ex is BatchNotStartedException || (StorageErrors.IsSlowFailure(ex) && ++slowFailures == 2))
                {
                    unavailable = error;
                }
            }
        }
    }

    /// <summary>What the caller sees: the database's own error.</summary>
    private static Exception Unwrap(Exception exception) =>
        exception is CommitOutcomeUnknownException or CommitRolledBackException or BatchNotStartedException && exception.InnerException is { } inner
            ? inner
            : exception;
}

/// <summary>
/// A batch's transaction could not start (no connection to the database, or its BEGIN failed): none of its writes ran,
/// and alone each would fail the same way.
/// </summary>
internal sealed class BatchNotStartedException(Exception inner) : Exception("The batch's transaction could not start.", inner);

/// <summary>The commit itself failed (the connection broke during COMMIT): the batch may or may not have been written.</summary>
internal sealed class CommitOutcomeUnknownException(Exception inner) : Exception("The commit failed; its outcome is unknown.", inner);

/// <summary>
/// The commit failed and the database says the transaction rolled back (<see cref="SqlChatStore.SettleCommitAsync"/>):
/// nothing of the batch was written, so its writes may run again.
/// </summary>
internal sealed class CommitRolledBackException(Exception inner) : Exception("The commit failed; the transaction rolled back.", inner);

/// <summary>How a transaction whose COMMIT failed ended, as far as the database can tell.</summary>
internal enum CommitOutcome
{
    Unknown,
    Committed,
    RolledBack,
}
