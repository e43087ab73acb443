namespace Parley.Bench.Client;

/// <summary>What one arrival of a conversation position means for a device.</summary>
internal enum Arrival
{
    /// <summary>First time on this device, in order on this socket.</summary>
    New,

    /// <summary>First time on this device, but after a higher seq on the same socket.</summary>
    NewOutOfOrder,

    /// <summary>Already received on this socket: the server promises this never happens.</summary>
    Duplicate,

    /// <summary>
    /// Received on an earlier connection of the device, after the position its last cursor covered, and again on this
    /// one: allowed (at least once across reconnects).
    /// </summary>
    Redelivered,

    /// <summary>Redelivered, and after a higher seq on the same socket.</summary>
    RedeliveredOutOfOrder,
}

/// <summary>
/// The positions of one conversation a device has received: which seqs arrived on the current connection and on
/// any connection, the highest seq up to which nothing is missing (what the device acknowledges), and that position
/// when the last cursor arrived (what a resume must not send again). Only the device's receive loop writes it;
/// <see cref="Contiguous"/> may be read from any thread.
/// </summary>
internal sealed class SeqTracker(long baseline)
{
    private ulong[] _device = new ulong[4];
    private ulong[] _socket = new ulong[4];
    private long _socketMax;
    private long _contiguous = baseline;
    private long _covered = baseline;

    /// <summary>The highest seq such that every seq after the baseline up to it has arrived.</summary>
    public long Contiguous => Volatile.Read(ref _contiguous);

    public Arrival Observe(long seq)
    {
        if (seq <= 0)
        {
            return Arrival.Duplicate;
        }

        if (IsSet(_socket, seq))
        {
            return Arrival.Duplicate;
        }

        Set(ref _socket, seq);
        var outOfOrder = seq < _socketMax;
        _socketMax = Math.Max(_socketMax, seq);
        if (IsSet(_device, seq))
        {
            // Resuming from a cursor, the server sends only what comes after it: a seq the cursor covered is a duplicate.
            return seq <= _covered ? Arrival.Duplicate : outOfOrder ? Arrival.RedeliveredOutOfOrder : Arrival.Redelivered;
        }

        Set(ref _device, seq);
        var contiguous = _contiguous;
        while (IsSet(_device, contiguous + 1))
        {
            contiguous++;
        }

        Volatile.Write(ref _contiguous, contiguous);
        return outOfOrder ? Arrival.NewOutOfOrder : Arrival.New;
    }

    /// <summary>
    /// A <c>cursor</c> or <c>sync_complete</c> frame arrived. A cursor covers only events already written to this
    /// socket (see delivery.md), all of which came before the frame: it covers at most what is contiguous now.
    /// </summary>
    public void CursorReceived() => _covered = Math.Max(_covered, _contiguous);

    /// <summary>A new connection of the device: the per-socket checks start over.</summary>
    public void NewConnection()
    {
        Array.Clear(_socket);
        _socketMax = 0;
    }

    private static bool IsSet(ulong[] bits, long seq)
    {
        var word = seq >> 6;
        return word < bits.Length && (bits[word] & (1UL << (int)(seq & 63))) != 0;
    }

    private static void Set(ref ulong[] bits, long seq)
    {
        var word = seq >> 6;
        if (word >= bits.Length)
        {
            var grown = new ulong[Math.Max(bits.Length * 2, (int)word + 1)];
            bits.CopyTo(grown, 0);
            bits = grown;
        }

        bits[word] |= 1UL << (int)(seq & 63);
    }
}
