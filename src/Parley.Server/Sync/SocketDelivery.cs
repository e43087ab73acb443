using Parley.Server.Realtime;

namespace Parley.Server.Sync;

/// <summary>
/// What one socket's device holds of the event stream, and the delivery rules of docs/delivery.md applied to
/// that socket: live events held back while a catch-up runs (or while the first frame may still be a
/// <c>resume</c>), a second copy of a written seq skipped, the seqs written recorded for cursors
/// (<see cref="Sent"/>, <see cref="Cursors"/>). The transport (<see cref="Connection"/>) only moves bytes; it calls
/// back into this class through the <see cref="OutboundHooks"/> it is given.
/// <para>
/// Concurrency: the hold list is guarded by <see cref="_holdLock"/>, which also orders enqueues against the
/// release of the held frames (held frames are written before any later live frame). <see cref="_written"/> is
/// confined to the send loop (the only caller of the write hooks).
/// </para>
/// </summary>
internal sealed class SocketDelivery
{
    // The hold list may grow to this many send queues before the socket counts as a slow consumer.
    private const int HeldQueues = 4;

    private readonly Lock _holdLock = new();
    private readonly int _holdCapacity;
    private List<OutboundFrame>? _held;
    private bool _holdingForCatchUp;
    private int _clientFrames;

    // Per conversation, the highest seq written to the socket; confined to the send loop.
    private readonly Dictionary<Guid, long> _written = [];

    public SocketDelivery(Connection connection, int sendQueueCapacity)
    {
        Connection = connection;
        _holdCapacity = sendQueueCapacity * HeldQueues;
        connection.UseHooks(new OutboundHooks(Intercept, ShouldWrite, Written));
    }

    public Connection Connection { get; }

    /// <summary>
    /// The sequenced events this socket's device holds: written to the socket, or (for a device that started
    /// without a cursor) committed before the socket subscribed, which the device loads over REST.
    /// </summary>
    public SentPositions Sent { get; } = new();

    /// <summary>This socket's cursor bookkeeping (whether it follows cursors, the last one it got).</summary>
    public CursorState Cursors { get; } = new();

    /// <summary>The connection was opened with <c>?cursor=</c>: its catch-up started at once, a <c>resume</c> frame is refused.</summary>
    public bool ResumedOnConnect { get; set; }

    /// <summary>True for the connection's first client frame only (a <c>resume</c> is accepted there).</summary>
    public bool MarkClientFrame() => Interlocked.Exchange(ref _clientFrames, 1) == 0;

    /// <summary>From now on live frames wait in the hold list (subscribe before reading the catch-up).</summary>
    public void Hold()
    {
        lock (_holdLock)
        {
            _held ??= [];
        }
    }

    /// <summary>
    /// Holds live frames for a catch-up: only the catch-up's own release ends this hold (the end of the wait for
    /// a first frame, which may race with a <c>resume</c>, no longer does).
    /// </summary>
    public void HoldForCatchUp()
    {
        lock (_holdLock)
        {
            _holdingForCatchUp = true;
            _held ??= [];
        }
    }

    /// <summary>
    /// Ends holding: held frames go to the queue in their order; then live frames flow directly again. A queue too
    /// full to take them all closes the socket as a slow consumer.
    /// </summary>
    public void Release()
    {
        bool overflow;
        lock (_holdLock)
        {
            if (_held is null)
            {
                return;
            }

            overflow = MoveHeldToQueue(alreadySent: null) < _held.Count;
            _held = null;
        }

        if (overflow)
        {
            Connection.CloseSlowConsumer();
        }
    }

    /// <summary>
    /// Under the hold lock: writes held frames to the send queue in their order, skipping those
    /// <paramref name="alreadySent"/> says the catch-up carried, until one does not fit. Returns that frame's index,
    /// or the number held when every one went.
    /// </summary>
    private int MoveHeldToQueue(Func<OutboundFrame, bool>? alreadySent)
    {
        var next = 0;
        while (next < _held!.Count && (alreadySent?.Invoke(_held[next]) == true || Connection.TryWriteQueue(_held[next])))
        {
            next++;
        }

        return next;
    }

    /// <summary>
    /// Ends a catch-up's hold like <see cref="Release"/>, except the frames <paramref name="alreadySent"/> says the
    /// catch-up carried, and waits for room in the send queue instead of closing the socket: the catch-up may have
    /// filled the queue just before (it waits for room too), and the held frames are no sign of a slow reader. Live frames that come meanwhile join the end of the hold, so the order stays.
    /// A device that really does not read still overflows the hold itself (<see cref="Intercept"/>).
    /// </summary>
    public async Task ReleaseAsync(Func<OutboundFrame, bool>? alreadySent, CancellationToken cancellationToken)
    {
        while (true)
        {
            OutboundFrame blocked;
            lock (_holdLock)
            {
                if (_held is null)
                {
                    return;
                }

                var next = MoveHeldToQueue(alreadySent);
                if (next == _held.Count)
                {
                    _held = null;
                    return;
                }

                blocked = _held[next];
                _held.RemoveRange(0, next + 1);
            }

            // Outside the lock (live frames keep joining the hold behind it); nothing else writes sequenced frames now.
            await Connection.EnqueueAsync(blocked, cancellationToken);
        }
    }

    /// <summary>
    /// Claims the hold for a first-frame <c>resume</c>: true while the live events since connecting are still held
    /// (nothing sequenced was written yet), after which only the catch-up's release ends the hold. False once the
    /// wait for a first frame ran out and live events flowed: a catch-up now would send older events after newer
    /// ones, so such a resume is refused. Atomic with <see cref="EndFirstFrameWait"/> (both under the hold lock).
    /// </summary>
    public bool TryClaimHoldForResume()
    {
        lock (_holdLock)
        {
            if (_held is null || Connection.IsClosing)
            {
                return false;
            }

            _holdingForCatchUp = true;
            return true;
        }
    }

    public bool IsHolding
    {
        get
        {
            lock (_holdLock)
            {
                return _held is not null;
            }
        }
    }

    /// <summary>
    /// The wait for a first frame that might be a <c>resume</c> is over (the frame came and was something else,
    /// or Delivery:FirstFrameWait passed): live events flow, unless a catch-up holds them.
    /// </summary>
    public void EndFirstFrameWait()
    {
        lock (_holdLock)
        {
            if (!_holdingForCatchUp)
            {
                Release();
            }
        }
    }

    /// <summary>Positions a device without a cursor already has: everything committed before it subscribed (read after subscribing).</summary>
    public void SetBaseline(IReadOnlyDictionary<Guid, long> lastSeqs)
    {
        foreach (var (conversationId, seq) in lastSeqs)
        {
            Sent.Confirm(conversationId, seq);
        }
    }

    /// <summary>The transport's enqueue hook: while holding, live frames wait here instead of in the send queue.</summary>
    private HoldOutcome Intercept(OutboundFrame frame)
    {
        lock (_holdLock)
        {
            if (_held is null)
            {
                return HoldOutcome.NotHeld;
            }

            if (frame.Transient)
            {
                // Not held (stale by the end of the catch-up); while the catch-up fills the queue it may not fit,
                // and a typing indicator is not worth closing the connection for.
                Connection.TryWriteQueue(frame);
                return HoldOutcome.Held;
            }

            if (_held.Count < _holdCapacity)
            {
                _held.Add(frame);
                return HoldOutcome.Held;
            }

            return HoldOutcome.Full;
        }
    }

    /// <summary>
    /// A live frame at or below the highest seq of its conversation already written here is a second copy: an
    /// event whose commit a catch-up already read, broadcast only after the catch-up released its held frames.
    /// Every path but one writes a conversation's events in seq order (live under the conversation's lock,
    /// catch-up by position, held frames released in order), so such a frame is never one the socket lacks; the
    /// exception, an event sent by the cursor check because it never arrived live, is marked
    /// <see cref="OutboundFrame.Redelivery"/> and always written.
    /// </summary>
    private bool ShouldWrite(OutboundFrame frame) =>
        !(frame.Seq > 0 && !frame.Redelivery && frame.ConversationId is { } conversationId
          && _written.TryGetValue(conversationId, out var written) && frame.Seq <= written);

    /// <summary>Recorded once written: a cursor check never counts a frame that is still queued.</summary>
    private void Written(OutboundFrame frame)
    {
        if (frame.Seq > 0 && frame.ConversationId is { } conversationId)
        {
            _written[conversationId] = Math.Max(_written.GetValueOrDefault(conversationId), frame.Seq);
            Sent.Record(conversationId, frame.Seq);
            Cursors.SentSinceCursor = true;
        }
    }
}
