using Parley.Server.Realtime;

namespace Parley.Server.Sync;

/// <summary>A connection's cursor bookkeeping (written by its own tasks, read by the cursor ticker).</summary>
[System.Diagnostics.CodeAnalysis.SuppressMessage(
    "Reliability", "CA1001", Justification = "The SemaphoreSlim never creates a wait handle (AvailableWaitHandle is not used): nothing to dispose, and a cursor check may still release it after the connection ended.")]
internal sealed class CursorState
{
    // Held while a cursor is computed for the socket (one at a time; a second request is skipped), and by a resume
    // while it resets the socket's positions, so that no computation straddles the reset.
    private readonly SemaphoreSlim _computing = new(1, 1);

    // A cursor computed while withheld, sent once the first frame shows the device is not resuming.
    private OutboundFrame? _pending;

    /// <summary>The socket follows cursors (it presented one, resumed, or acknowledges): it gets cursor frames.</summary>
    public volatile bool Enabled;

    /// <summary>
    /// No cursor frame may be sent yet: the socket was opened without a cursor and its first frame has not shown
    /// that the device is not resuming (a later <c>resume</c> would make any cursor sent before it claim events the
    /// device lacks). Stays set for good when that first frame was a refused <c>resume</c> or not a valid frame.
    /// Cursor checks still run meanwhile (they also send events the socket lacks); their cursor waits.
    /// </summary>
    public volatile bool Withheld;

    /// <summary>A catch-up is running: no cursor may be computed until it ends.</summary>
    public volatile bool CatchingUp;

    /// <summary>Sequenced frames were written since the last cursor this socket got.</summary>
    public volatile bool SentSinceCursor;

    /// <summary>The socket holds events its last cursor did not cover: the ticker checks again (see <see cref="RecheckBudget"/>).</summary>
    public volatile bool Recheck;

    /// <summary>Checks left before giving up on covering held events without new traffic; only the cursor check uses it.</summary>
    public int RecheckBudget;

    /// <summary>The stream position of the last cursor this socket got (everything up to it was written to it).</summary>
    public long Pos;

    /// <summary>Events the last cursor check found missing, and since when (timestamps); only the check uses it.</summary>
    public Dictionary<(Guid ConversationId, long Seq), long> MissingSince { get; set; } = [];

    public long LastCheckTicks;

    /// <summary>A cursor check has something to do: the socket follows cursors, no catch-up runs, and it was sent events or holds uncovered ones.</summary>
    public bool Due => Enabled && !CatchingUp && (SentSinceCursor || Recheck);

    public bool TryBeginComputing() => _computing.Wait(0);

    public void EndComputing() => _computing.Release();

    /// <summary>Waits for a running computation to end and keeps new ones out until disposed.</summary>
    public async Task<IDisposable> ExclusiveAsync(CancellationToken cancellationToken)
    {
        await _computing.WaitAsync(cancellationToken);
        return new Exclusive(_computing);
    }

    /// <summary>Sends a computed cursor, or keeps it while cursors are withheld (the latest one wins).</summary>
    public void Offer(Connection connection, OutboundFrame cursor)
    {
        if (!Withheld)
        {
            connection.TryEnqueue(cursor);
            return;
        }

        Volatile.Write(ref _pending, cursor);
        if (!Withheld)
        {
            // Released meanwhile: whoever takes the pending cursor first sends it.
            SendPending(connection);
        }
    }

    /// <summary>The first frame showed the device is not resuming: cursors flow, starting with one computed meanwhile.</summary>
    public void StopWithholding(Connection connection)
    {
        Withheld = false;
        SendPending(connection);
    }

    /// <summary>A resume replaces what the socket assumed the device holds: a cursor computed from it is void.</summary>
    public void DiscardPending() => Volatile.Write(ref _pending, null);

    private void SendPending(Connection connection)
    {
        if (Interlocked.Exchange(ref _pending, null) is { } pending)
        {
            connection.TryEnqueue(pending);
        }
    }

    private sealed class Exclusive(SemaphoreSlim gate) : IDisposable
    {
        private int _disposed;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 0)
            {
                gate.Release();
            }
        }
    }
}
