using System.Threading.Channels;
using Parley.Client.Protocol;

namespace Parley.Client.Realtime;

/// <summary>Whether and from where the gap filler reads (<see cref="DeliveryTracker.NextFill"/>).</summary>
internal readonly record struct GapFill(GapFillKind Kind, string? Cursor = null, long CursorVersion = 0, long Skipped = 0);

internal enum GapFillKind
{
    /// <summary>Nothing to do now: no gap, no live socket, or a catch-up in progress (it fills gaps by itself).</summary>
    None,

    /// <summary>Read <c>GET /api/v1/sync</c> from <see cref="GapFill.Cursor"/>.</summary>
    FromCursor,

    /// <summary>The server gave no cursor, so nothing can fill the gaps: the held events were applied in order.</summary>
    Skipped,
}

/// <summary>
/// The connection's delivery state: the rules for clients (<see cref="DeliveryState"/>) plus where the current
/// socket is (connected, catching up) and whose device this is. Frames of the receive loop, sync pages of the
/// gap filler and the reconnect loop's resets all go through it.
/// </summary>
/// <remarks>
/// Concurrency: <c>_lock</c> guards every field and the <see cref="DeliveryState"/>, and so orders the writes into
/// the event queue (delivery order is stream order). Three loops share it: the receive loop, the gap filler and
/// the reconnect loop. Never held across an await; writes under it never wait (see <see cref="EventQueue"/>).
/// </remarks>
internal sealed class DeliveryTracker(ChannelWriter<DeliveryItem> output)
{
    private readonly Lock _lock = new();
    private readonly DeliveryState _state = new(output);
    private string? _userId;
    private bool _connected;
    private bool _catchingUp;
    private string? _pendingReset;

    /// <summary>The user the server authenticated (from the first <c>connected</c> frame); null before.</summary>
    public string? UserId => Volatile.Read(ref _userId);

    /// <summary>The newest cursor the server gave: where a reconnect or a REST fill starts.</summary>
    public string? LatestCursor
    {
        get
        {
            lock (_lock)
            {
                return _state.LatestCursor;
            }
        }
    }

    public bool HasGaps
    {
        get
        {
            lock (_lock)
            {
                return _state.HasGaps;
            }
        }
    }

    public void Restore(DeliveryCheckpoint checkpoint)
    {
        lock (_lock)
        {
            _state.Restore(checkpoint);
        }
    }

    /// <summary><c>connected</c>: returns whether the socket is catching up (live only at <c>sync_complete</c>).</summary>
    public bool Connected(ConnectedPayload connected, bool presentedCursor)
    {
        lock (_lock)
        {
            Volatile.Write(ref _userId, connected.UserId);
            _state.UserId = connected.UserId;
            _connected = true;

            // A server that knows cursors always names one in connected; one that does not ignores ours and
            // never sends sync_complete, so only the former is waited for.
            _catchingUp = presentedCursor && connected.Cursor is not null;
            if (_pendingReset is { } reason && !_catchingUp)
            {
                // This socket is subscribed: what the app reloads now, and everything after it, reaches it.
                _pendingReset = null;
                _state.Reset(connected.Cursor, reason);
            }
            else if (!presentedCursor && connected.Cursor is { } current)
            {
                _state.OnCursor(current);
            }

            return _catchingUp;
        }
    }

    /// <summary>The socket ended.</summary>
    public void Disconnected()
    {
        lock (_lock)
        {
            _connected = false;
            _catchingUp = false;
        }
    }

    /// <summary>A positioned event from the socket; <paramref name="catchingUp"/> tells whether a catch-up will fill a gap it opened.</summary>
    public OfferResult Offer(ConversationEvent e, out bool catchingUp)
    {
        lock (_lock)
        {
            catchingUp = _catchingUp;
            return _state.Offer(e);
        }
    }

    /// <summary>Receipts and typing: straight into the stream.</summary>
    public void Emit(ParleyEvent e)
    {
        lock (_lock)
        {
            _state.Emit(e);
        }
    }

    public void OnCursor(string cursor)
    {
        lock (_lock)
        {
            CursorReached(cursor);
        }
    }

    /// <summary>A cursor from the socket or a sync page; under the lock.</summary>
    private void CursorReached(string cursor)
    {
        // After a reset found by this client, the socket about to be replaced (or a sync page read before the reset)
        // does not say where to start: the next socket's connected does.
        if (_pendingReset is null)
        {
            _state.OnCursor(cursor);
        }
    }

    /// <summary>
    /// The catch-up held every event after the presented cursor: where new conversations start is known. A reset found
    /// by this client while this socket was being opened with a cursor read just before it (a gap fill refused as the
    /// reconnect began) is told now, after the catch-up: told at <c>connected</c>, the server's own <c>sync_reset</c>
    /// for an expired cursor would have made it a second one.
    /// </summary>
    public void SyncComplete(string cursor)
    {
        lock (_lock)
        {
            _catchingUp = false;
            _state.ResolveStarts(null);
            if (_pendingReset is { } reason)
            {
                _pendingReset = null;
                _state.Reset(cursor, reason);
                return;
            }

            CursorReached(cursor);
        }
    }

    /// <summary>Rule 7: the position could not be resumed (<c>sync_reset</c>, a refused cursor). <see cref="SyncResetEvent"/> goes into the stream.</summary>
    public void Reset(string? freshCursor, string reason, bool endsCatchUp = false)
    {
        lock (_lock)
        {
            if (endsCatchUp)
            {
                _catchingUp = false;
            }

            _pendingReset = null;
            _state.Reset(freshCursor, reason);
        }
    }

    /// <summary>
    /// Rule 7 found by this client, not by the server: a cursor refused before the upgrade or by REST sync. Every
    /// position is forgotten at once, so the next socket connects without a cursor, but the app is told
    /// (<see cref="SyncResetEvent"/>) only at that socket's <c>connected</c>: it is subscribed by then, so nothing
    /// committed while the app reloads is missed. Told at once, the app could reload before the socket is there,
    /// and a message committed in between would reach it neither way.
    /// </summary>
    public void ResetOnNextConnect(string reason)
    {
        lock (_lock)
        {
            _state.Forget();
            _pendingReset = reason;
        }
    }

    /// <summary>
    /// Rule 2's "fetch the missing positions", decided: only while a socket is live and not catching up, from the
    /// newest cursor; without any cursor the gaps cannot be filled and are skipped here.
    /// </summary>
    public GapFill NextFill()
    {
        lock (_lock)
        {
            if (!_state.HasGaps || !_connected || _catchingUp)
            {
                return new GapFill(GapFillKind.None);
            }

            return _state.LatestCursor is { } cursor
                ? new GapFill(GapFillKind.FromCursor, cursor, _state.CursorVersion)
                : new GapFill(GapFillKind.Skipped, Skipped: _state.SkipGaps());
        }
    }

    /// <summary>
    /// One page of a sync that started at the cursor of <paramref name="fromVersion"/>; <paramref name="synced"/>
    /// collects the highest seq per conversation over the pages read so far.
    /// </summary>
    public void ApplySyncPage(SyncPage page, Dictionary<Guid, long> synced, long fromVersion)
    {
        lock (_lock)
        {
            foreach (var e in page.Events)
            {
                if (e is ConversationEvent conversationEvent)
                {
                    _state.Offer(conversationEvent);
                    synced[conversationEvent.ConversationId] = Math.Max(synced.GetValueOrDefault(conversationEvent.ConversationId), conversationEvent.Seq);
                }
                else
                {
                    _state.Emit(e);
                }
            }

            if (!page.HasMore)
            {
                _state.ResolveStarts(synced, fromVersion);
            }

            // Every event up to next_cursor is in the pages read so far.
            CursorReached(page.NextCursor);
        }
    }

    /// <summary>The server cannot fill the gaps (no sync endpoint): apply what was held back; returns the positions skipped.</summary>
    public long SkipGaps()
    {
        lock (_lock)
        {
            return _state.SkipGaps();
        }
    }
}
