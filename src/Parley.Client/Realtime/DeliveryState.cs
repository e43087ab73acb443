using System.Threading.Channels;

namespace Parley.Client.Realtime;

/// <summary>
/// One item of the ordered stream <see cref="ParleyRealtime.ReadEventsAsync"/> reads: an event (a
/// <see cref="HiddenEvent"/> is consumed silently) or a cursor that becomes safe to persist once every item
/// before it was consumed.
/// </summary>
internal readonly record struct DeliveryItem(ParleyEvent? Event, string? Cursor);

internal enum OfferResult
{
    Applied,
    Duplicate,
    Buffered,
}

/// <summary>
/// The rules for clients of docs/delivery.md, as a state machine without I/O: per conversation the last applied
/// seq; duplicates dropped; events after a gap buffered until the gap is filled; own removal stops a
/// conversation's positions and own re-joining restarts them; cursors released to the stream only when
/// nothing they cover is still held back. Not thread-safe: <see cref="DeliveryTracker"/> calls it under its lock.
/// </summary>
internal sealed class DeliveryState(ChannelWriter<DeliveryItem> output)
{
    private readonly Dictionary<Guid, Position> _positions = [];
    private int _buffered;

    /// <summary>This device's user (from <c>connected</c>): its own joining and removal move positions differently.</summary>
    public string? UserId { get; set; }

    /// <summary>The newest cursor the server gave, persisted or not: where a reconnect or a REST fill starts.</summary>
    public string? LatestCursor { get; private set; }

    /// <summary>Counts the cursors received: tells whether a cursor came after a conversation's start became unknown.</summary>
    public long CursorVersion { get; private set; }

    /// <summary>Some conversation holds events back behind a missing position.</summary>
    public bool HasGaps => _buffered > 0;

    public IEnumerable<Guid> ConversationsWithGaps => _positions.Where(p => p.Value.Buffer is { Count: > 0 }).Select(p => p.Key);

    public long? Applied(Guid conversationId) => _positions.TryGetValue(conversationId, out var p) ? p.Applied : null;

    public void Restore(DeliveryCheckpoint checkpoint)
    {
        LatestCursor = checkpoint.Cursor;
        foreach (var (conversationId, seq) in checkpoint.Positions)
        {
            _positions[conversationId] = new Position { Applied = seq };
        }
    }

    /// <summary>Rule 2 (and 3, 4): apply in order once, buffer after a gap.</summary>
    public OfferResult Offer(ConversationEvent e)
    {
        if (!_positions.TryGetValue(e.ConversationId, out var position))
        {
            // Rule 3: a conversation not seen yet starts at its creation (seq 1) or the device's user's joining. Any other
            // first event may have had predecessors this socket missed (written through another instance): it
            // waits until a sync from the cursor (or a catch-up) shows where the conversation starts.
            var certain = e.Seq == 1 || IsOwnJoining(e);
            position = new Position { Applied = e.Seq - 1, StartUnknown = !certain, UnknownSince = CursorVersion };
            _positions[e.ConversationId] = position;
        }
        else if (e.Seq > position.Applied + 1 && (position.Removed || IsOwnJoining(e)))
        {
            // Rule 4: after its removal a device has no positions in the conversation; being added again starts
            // them anew at that participant_added (the removal and re-adding may both have happened offline).
            DropBuffer(position);
            position.Applied = e.Seq - 1;
            position.StartUnknown = false;
        }

        if (position.StartUnknown)
        {
            position.Buffer ??= [];
            if (!position.Buffer.TryAdd(e.Seq, e))
            {
                return OfferResult.Duplicate;
            }

            _buffered++;
            return OfferResult.Buffered;
        }

        if (e.Seq <= position.Applied)
        {
            return OfferResult.Duplicate;
        }

        if (e.Seq > position.Applied + 1)
        {
            position.Buffer ??= [];
            if (!position.Buffer.TryAdd(e.Seq, e))
            {
                return OfferResult.Duplicate;
            }

            _buffered++;
            return OfferResult.Buffered;
        }

        Apply(position, e);
        Drain(position);
        return OfferResult.Applied;
    }

    /// <summary>
    /// Conversations whose start is unknown learn it from a complete read from a cursor (a sync that reached the
    /// end, or a catch-up): it holds every event after that cursor, and a cursor never covers an event the
    /// socket was not given. So the lowest seq buffered is the start once the read includes the first event
    /// that arrived (events are positioned in seq order), or once it began at a cursor received after that
    /// event (every earlier event is then buffered already or in the read). <paramref name="synced"/> is the
    /// highest seq each conversation had in the read, <paramref name="fromVersion"/> the
    /// <see cref="CursorVersion"/> of the cursor it began at; <paramref name="synced"/> is null for a catch-up,
    /// which includes everything.
    /// </summary>
    public void ResolveStarts(IReadOnlyDictionary<Guid, long>? synced, long fromVersion = 0)
    {
        foreach (var (conversationId, position) in _positions)
        {
            if (position.StartUnknown
                && (synced is null
                    || fromVersion > position.UnknownSince
                    || (synced.TryGetValue(conversationId, out var seq) && seq >= position.Applied + 1)))
            {
                ResolveStart(position);
            }
        }
    }

    /// <summary>Receipts and typing are not positioned: straight through.</summary>
    public void Emit(ParleyEvent e) => output.TryWrite(new DeliveryItem(e, null));

    /// <summary>
    /// A cursor covers every event the socket carried before it (or a sync page held). It may be persisted only
    /// when none of those is still held back; returns whether it was released to the stream.
    /// </summary>
    public bool OnCursor(string cursor)
    {
        LatestCursor = cursor;
        CursorVersion++;
        if (HasGaps)
        {
            return false;
        }

        output.TryWrite(new DeliveryItem(null, cursor));
        return true;
    }

    /// <summary>Rule 7: the position could not be resumed. Forget every position; continue from the fresh cursor, if any.</summary>
    public void Reset(string? freshCursor, string reason)
    {
        Forget();
        output.TryWrite(new DeliveryItem(new SyncResetEvent { Reason = reason }, null));
        if (freshCursor is not null)
        {
            OnCursor(freshCursor);
        }
    }

    /// <summary>Forgets every position and the cursor, without telling the app (<see cref="Reset"/> does).</summary>
    public void Forget()
    {
        _positions.Clear();
        _buffered = 0;
        LatestCursor = null;
    }

    /// <summary>
    /// Gives up on the missing positions (the server cannot fill them: no cursor, no sync endpoint) and applies
    /// what was held back, in order. Returns the number of positions skipped.
    /// </summary>
    public long SkipGaps()
    {
        long skipped = 0;
        foreach (var position in _positions.Values)
        {
            if (position.StartUnknown)
            {
                ResolveStart(position);
            }

            while (position.Buffer is { Count: > 0 } buffer)
            {
                var first = buffer.Keys.First();
                skipped += first - position.Applied - 1;
                position.Applied = first - 1;
                Drain(position);
            }
        }

        return skipped;
    }

    private bool IsOwnJoining(ConversationEvent e) => e is ParticipantAddedEvent added && added.UserId == UserId;

    private void Apply(Position position, ConversationEvent e)
    {
        position.Applied = e.Seq;
        if (e is ParticipantRemovedEvent removed && removed.UserId == UserId)
        {
            position.Removed = true;
        }
        else if (position.Removed)
        {
            position.Removed = false;
        }

        output.TryWrite(new DeliveryItem(e, null));
    }

    private void Drain(Position position)
    {
        while (position.Buffer is { Count: > 0 } buffer)
        {
            var (seq, next) = buffer.First();
            if (seq == position.Applied + 1)
            {
                buffer.Remove(seq);
                _buffered--;
                Apply(position, next);
            }
            else if (position.Removed)
            {
                // Held back past our own removal: we were added again; positions restart there.
                buffer.Remove(seq);
                _buffered--;
                position.Applied = seq - 1;
                Apply(position, next);
            }
            else
            {
                return;
            }
        }
    }

    private void ResolveStart(Position position)
    {
        position.StartUnknown = false;
        if (position.Buffer is { Count: > 0 } buffer)
        {
            position.Applied = buffer.Keys.First() - 1;
            Drain(position);
        }
    }

    private void DropBuffer(Position position)
    {
        if (position.Buffer is { } buffer)
        {
            _buffered -= buffer.Count;
            buffer.Clear();
        }
    }

    private sealed class Position
    {
        public long Applied { get; set; }

        public bool Removed { get; set; }

        /// <summary>First seen through an event that may have had unseen predecessors: everything is buffered until resolved.</summary>
        public bool StartUnknown { get; set; }

        /// <summary>The <see cref="CursorVersion"/> when the start became unknown.</summary>
        public long UnknownSince { get; set; }

        public SortedDictionary<long, ConversationEvent>? Buffer { get; set; }
    }
}
