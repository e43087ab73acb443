namespace Parley.Bench.Client;

/// <summary>
/// One user's device across its connections: its conversations and what it received of each, and its latest
/// cursor. A connection's receive loop is the only writer of the trackers; a device has one connection at a time.
/// </summary>
internal sealed class Device
{
    private readonly Guid[] _conversationIds;
    private readonly long[] _acked;
    private string? _cursor;

    public Device(int index, Identity identity, IReadOnlyList<(Guid Id, long LastSeq)> conversations)
    {
        ArgumentNullException.ThrowIfNull(conversations);
        Index = index;
        Identity = identity;
        _conversationIds = [.. conversations.Select(c => c.Id)];
        Trackers = [.. conversations.Select(c => new SeqTracker(c.LastSeq))];
        _acked = [.. conversations.Select(c => c.LastSeq)];
    }

    /// <summary>The device's number within its process (an index into the scenario's arrays).</summary>
    public int Index { get; }

    public Identity Identity { get; }

    public SeqTracker[] Trackers { get; }

    public Connection? Connection { get; set; }

    /// <summary>The latest resume point: the first <c>connected</c> cursor, then each <c>cursor</c> and <c>sync_complete</c>.</summary>
    public string? Cursor
    {
        get => Volatile.Read(ref _cursor);
        set => Volatile.Write(ref _cursor, value);
    }

    public Guid ConversationId(int slot) => _conversationIds[slot];

    /// <summary>The slot of a conversation of this device, or -1 (a device has one or a few conversations).</summary>
    public int SlotOf(Guid conversationId) => Array.IndexOf(_conversationIds, conversationId);

    public int ConversationCount => _conversationIds.Length;

    /// <summary>The seq to acknowledge in <paramref name="slot"/> if it moved since the last ack, else -1; records it as acknowledged.</summary>
    public long TakeAck(int slot)
    {
        var contiguous = Trackers[slot].Contiguous;
        if (contiguous <= _acked[slot])
        {
            return -1;
        }

        _acked[slot] = contiguous;
        return contiguous;
    }

    /// <summary>A <c>cursor</c> or <c>sync_complete</c> frame arrived: what the device holds contiguously is covered by its cursor.</summary>
    public void CursorReceived()
    {
        foreach (var tracker in Trackers)
        {
            tracker.CursorReceived();
        }
    }

    /// <summary>A new connection: its per-socket checks start over and it acknowledges from what the device holds.</summary>
    public void BeginConnection()
    {
        foreach (var tracker in Trackers)
        {
            tracker.NewConnection();
        }

        // The new socket has nothing acknowledged yet: resend the current position once.
        for (var slot = 0; slot < _acked.Length; slot++)
        {
            _acked[slot] = Math.Min(_acked[slot], Trackers[slot].Contiguous - 1);
        }
    }
}

/// <summary>Where a connection reports what it received; the scenario's ledger implements it.</summary>
internal interface IFrameSink
{
    /// <summary>A <c>new_message</c> of one of the device's conversations (<paramref name="fromSelf"/>: the device's own user sent it).</summary>
    void OnMessage(Device device, long messageIndex, Arrival arrival, bool fromSelf, long timestamp);

    void OnAck(long messageIndex, long timestamp);

    /// <summary>A send was sent (written to the socket) at <paramref name="timestamp"/>.</summary>
    void OnSent(long messageIndex, long timestamp);

    /// <summary>An <c>error</c> frame, a refused or failed send, or anything else that went wrong, by code.</summary>
    void OnError(string code, long messageIndex);

    void OnSyncComplete(Device device, long timestamp);

    /// <summary>The server closed the connection, or it broke, while the tool still used it.</summary>
    void OnClosed(Device device, string code);
}
